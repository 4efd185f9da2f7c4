"""The operator console: envelopes, auth, the command registry and the router.

Only the light, dependency-free names are exported here; import the router from
``shared.console.router`` (or ``shared.console.handlers``, the seed's path). Keeping this module
light matters: ``shared.telemetry`` imports ``shared.console.replay`` while the router imports
the world, so an eager import here would make a cycle.
"""

from __future__ import annotations

from .envelope import ConsoleCommand, ConsoleError, ErrorCode, parse_payload

__all__ = ["ConsoleCommand", "ConsoleError", "ErrorCode", "parse_payload"]
