"""The console command catalogue: importing this package registers every command.

``REGISTRY`` is the single table the router dispatches from and ``help`` lists.
"""

from __future__ import annotations

from . import admin, loop_controls, status  # noqa: F401  (registration side effect)
from .args import ArgReader
from .registry import REGISTRY, CommandSpec, Context, Controls, Registry

__all__ = ["REGISTRY", "ArgReader", "CommandSpec", "Context", "Controls", "Registry"]
