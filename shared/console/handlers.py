"""The seed's import path (``townlet.console.handlers``): the command type and router factory."""

from __future__ import annotations

from .envelope import ConsoleCommand
from .router import ConsoleRouter, create_console_router

__all__ = ["ConsoleCommand", "ConsoleRouter", "create_console_router"]
