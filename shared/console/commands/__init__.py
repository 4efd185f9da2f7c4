"""The console command catalogue (docs/CONSOLE.md, "Commands").

``default_registry()`` is the one table a router dispatches from and ``help`` lists; it is
built when called, from each command module's ``SPECS``. To add a command, write its handler
in the module of its kind (``status``: read-only, ``admin``: changes the world,
``loop_controls``: runs the shard) and add its entry to that module's ``SPECS``.
"""

from __future__ import annotations

from . import admin, loop_controls, status
from .args import ArgReader
from .registry import CommandSpec, Context, Controls, Registry, spec

MODULES = (status, admin, loop_controls)


def default_registry() -> Registry:
    """Every command this shard runs, in a fresh table."""
    registry = Registry()
    for module in MODULES:
        module.register(registry)
    return registry


__all__ = ["ArgReader", "CommandSpec", "Context", "Controls", "Registry", "default_registry",
           "spec"]
