"""Turning what happened to a command into its result: finished, refused, or crashed.

Every result leaves through ``_redacted``: tokens are scrubbed from the finished envelope
(docs/CONSOLE.md, "Auth") and refusals are logged from the scrubbed copy. Ids for commands
that came without one are assigned by the ledger (docs/CONSOLE.md, "Exactly once").

Echoes are bounded (docs/CONSOLE.md, "Envelopes"): a command that changes nothing (read-only,
or refused) whose arguments take more than ``echo_max_bytes`` is echoed with its arguments
replaced by ``trimmed: {bytes, fingerprint}`` (the fingerprint keeps exactly-once and
``conflict`` working), so a stored result never holds a big argument twice.
"""

from __future__ import annotations

import json
import traceback
from collections.abc import Callable, Mapping
from typing import Any

from shared.logging import get_logger
from shared.telemetry import LastError

from .auth import Authenticator, Identity
from .envelope import ConsoleCommand, ConsoleError, ErrorCode
from .ledger import CommandLedger, command_fingerprint
from .results import ConsoleResult

TRIMMED = "trimmed"


def trimmed_fingerprint(echo: Mapping[str, Any]) -> str | None:
    """The fingerprint a trimmed echo kept, or None when the echo is whole."""
    trimmed = echo.get(TRIMMED)
    value = trimmed.get("fingerprint") if isinstance(trimmed, Mapping) else None
    return value if isinstance(value, str) else None


def _trim(echo: dict[str, Any], limit: int) -> dict[str, Any]:
    """``echo`` with big arguments replaced by their size and fingerprint (docstring above)."""
    carried = [echo.get("args"), echo.get("kwargs"), echo.get("metadata")]
    size = len(json.dumps(carried, separators=(",", ":"), default=str))
    if size <= limit:
        return echo
    fingerprint = command_fingerprint(str(echo.get("name")), echo.get("args") or [],
                                      echo.get("kwargs") or {})
    out = {k: v for k, v in echo.items() if k != "metadata"}
    out.update(args=[], kwargs={}, **{TRIMMED: {"bytes": size, "fingerprint": fingerprint}})
    return out


class Outcomes:
    def __init__(self, shard_id: str, auth: Authenticator, ledger: CommandLedger,
                 errors: LastError, clock: Callable[[], float], *,
                 echo_max_bytes: int | None = None) -> None:
        self.shard_id = shard_id
        self.echo_max_bytes = echo_max_bytes
        self.auth = auth
        self.ledger = ledger
        self.errors = errors
        self.clock = clock
        self._log = get_logger("console.router", shard_id=shard_id)

    def finish(self, command: ConsoleCommand, identity: Identity, tick: int,
               received_at: float, *, body: Any = None, error: ConsoleError | None = None,
               applied: bool = False, full_echo: bool = False) -> ConsoleResult:
        """The result of a command that got past the shape and auth checks; ``full_echo`` for
        a command that changed the world (its replay re-runs the echo)."""
        assert command.cmd_id is not None
        echo = command.echo(identity.role, command.cmd_id, identity.issuer)
        if not full_echo and self.echo_max_bytes is not None:
            echo = _trim(echo, self.echo_max_bytes)
        result = ConsoleResult.build(
            shard_id=self.shard_id, cmd_id=command.cmd_id, name=command.name, tick=tick,
            issuer=identity.issuer, latency_ms=self._latency(received_at), command=echo,
            body=body, error=error, applied=applied)
        return self._redacted(result)

    def refuser(self, command: ConsoleCommand, identity: Identity, tick: int,
                received_at: float, prefix: str) -> Callable[[ConsoleError], ConsoleResult]:
        def refuse(error: ConsoleError) -> ConsoleResult:
            return self.refused(error, tick, received_at, prefix, command=command,
                                identity=identity)
        return refuse

    def refused(self, error: ConsoleError, tick: int, received_at: float, prefix: str, *,
                cmd_id: str | None = None, name: str | None = None,
                command: ConsoleCommand | None = None,
                identity: Identity | None = None) -> ConsoleResult:
        """A pre-check failure: an error result (audited by the caller), never stored."""
        if command is not None and identity is not None:
            command.cmd_id = command.cmd_id or self.ledger.assign_id(prefix, tick)
            return self.finish(command, identity, tick, received_at, error=error)
        cmd_id = cmd_id or self.ledger.assign_id(prefix, tick)
        result = ConsoleResult.build(
            shard_id=self.shard_id, cmd_id=cmd_id, name=name, tick=tick, issuer=None,
            latency_ms=self._latency(received_at), command={"name": name, "cmd_id": cmd_id},
            error=error)
        return self._redacted(result)

    def crashed(self, exc: Exception, command: ConsoleCommand | None, name: str | None,
                tick: int, received_at: float, *, identity: Identity | None = None,
                prefix: str = "auto", cmd_id: str | None = None) -> ConsoleResult:
        """``internal``: the handler (or a check) raised; the shard carries on."""
        text = self.auth.redact(f"{type(exc).__name__}: {exc}")
        trace = self.auth.redact("".join(traceback.format_exception(exc)))
        shown = self.auth.redact(name)
        self._log.error("console_command_crashed", command=shown, tick=tick, error=text,
                        traceback=trace)
        self.errors.note({"tick": tick, "command": shown, "error": text})
        error = ConsoleError(ErrorCode.INTERNAL, f"{name or 'command'} failed: {text}")
        if command is not None and identity is not None:
            return self.finish(command, identity, tick, received_at, error=error)
        return self.refused(error, tick, received_at, prefix, cmd_id=cmd_id, name=name)

    def _latency(self, received_at: float) -> float:
        return max(0.0, (self.clock() - received_at) * 1000.0)

    def _redacted(self, result: ConsoleResult) -> ConsoleResult:
        """Scrub tokens from the finished envelope; refusals are logged from the scrubbed copy."""
        redact = self.auth.redactor()
        if redact is not None:
            result = result.redacted(redact)
        code = result.code
        if code is not None and code is not ErrorCode.INTERNAL:  # crashes log themselves
            self._log.info("console_command_refused", cmd_id=result.cmd_id,
                           command=result.name, code=code.value, tick=result.tick)
        return result
