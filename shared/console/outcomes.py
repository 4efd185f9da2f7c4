"""Turning what happened to a command into its result: finished, refused, or crashed.

Every result leaves through ``_redacted``: tokens are scrubbed from the finished envelope
(docs/CONSOLE.md, "Auth") and refusals are logged from the scrubbed copy. Ids for commands
that came without one are assigned by the ledger (docs/CONSOLE.md, "Exactly once").
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from typing import Any

from shared.logging import get_logger
from shared.telemetry import LastError

from .auth import Authenticator, Identity
from .envelope import ConsoleCommand, ConsoleError, ErrorCode
from .ledger import CommandLedger
from .results import ConsoleResult


class Outcomes:
    def __init__(self, shard_id: str, auth: Authenticator, ledger: CommandLedger,
                 errors: LastError, clock: Callable[[], float]) -> None:
        self.shard_id = shard_id
        self.auth = auth
        self.ledger = ledger
        self.errors = errors
        self.clock = clock
        self._log = get_logger("console.router", shard_id=shard_id)

    def finish(self, command: ConsoleCommand, identity: Identity, tick: int,
               received_at: float, *, body: Any = None, error: ConsoleError | None = None,
               applied: bool = False) -> ConsoleResult:
        """The result of a command that got past the shape and auth checks."""
        assert command.cmd_id is not None
        result = ConsoleResult.build(
            shard_id=self.shard_id, cmd_id=command.cmd_id, name=command.name, tick=tick,
            issuer=identity.issuer, latency_ms=self._latency(received_at),
            command=command.echo(identity.role, command.cmd_id, identity.issuer),
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
