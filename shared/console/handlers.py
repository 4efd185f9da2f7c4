"""The import path of the dry-run script (``shared.console.handlers``): the command type and
the router factory (docs/CONSOLE.md, "Two entry points")."""

from __future__ import annotations

from .envelope import ConsoleCommand
from .router import ConsoleRouter, create_console_router

__all__ = ["ConsoleCommand", "ConsoleRouter", "create_console_router"]
