"""The operator console: envelopes, auth, the command ledger, the registry and the router.

The rules are docs/CONSOLE.md; the wire forms docs/PROTOCOL.md. Only the light names are
exported here; import the router from ``shared.console.router`` (or ``shared.console.handlers``,
the import path the dry-run script uses).
"""

from __future__ import annotations

from .envelope import ConsoleCommand, ConsoleError, ErrorCode, parse_payload
from .results import ConsoleResult

__all__ = ["ConsoleCommand", "ConsoleError", "ConsoleResult", "ErrorCode", "parse_payload"]
