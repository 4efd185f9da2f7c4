"""The result envelope as a typed value, and the one place it is converted to and from the wire.

The wire form is the result message of docs/PROTOCOL.md ("Messages"; fields explained in
docs/CONSOLE.md, "Envelopes"). ``to_wire`` writes the keys in one fixed order and
``from_wire(to_wire(r)) == r``, so a result that is journaled, checkpointed or audited and read
back is published again byte for byte (docs/CONSOLE.md, "Exactly once").

Everything a result holds is already a plain JSON/msgpack value (``plain`` at construction),
so nothing here shares state with the world: a stored result cannot change after it was given.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .envelope import PROTOCOL_VERSION, ConsoleError, ErrorCode, plain

Redact = Callable[[Any], Any]
MAX_ERROR_MESSAGE = 1024


@dataclass(frozen=True, slots=True)
class ResultError:
    """``error: {code, message, details?}``; ``details`` is omitted on the wire when empty."""

    code: ErrorCode
    message: str
    details: dict[str, Any] | None = None

    @classmethod
    def of(cls, error: ConsoleError) -> ResultError:
        message = error.message
        if len(message) > MAX_ERROR_MESSAGE:  # it may quote a (huge) argument: keep the start
            message = f"{message[:MAX_ERROR_MESSAGE]}... ({len(message)} characters)"
        return cls(error.code, message, plain(error.details) if error.details else None)

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code.value, "message": self.message}
        if self.details:
            out["details"] = self.details
        return out

    @classmethod
    def from_wire(cls, raw: Mapping[str, Any]) -> ResultError:
        return cls(ErrorCode(raw["code"]), str(raw["message"]), raw.get("details"))


@dataclass(frozen=True, slots=True)
class ConsoleResult:
    """One command's outcome. ``body`` is the handler's ``result`` (when ok); ``applied`` says
    whether the handler ran to completion at ``tick`` (ok, or an error value it raised): exactly
    the results a replay must re-run. Refusals by the checks and crashes are not applied."""

    shard_id: str
    cmd_id: str
    name: str | None
    tick: int
    issuer: str | None
    latency_ms: float
    applied: bool
    command: dict[str, Any] | None
    body: Any = None
    error: ResultError | None = None
    v: int = PROTOCOL_VERSION

    @classmethod
    def build(cls, *, shard_id: str, cmd_id: str, name: str | None, tick: int,
              issuer: str | None, latency_ms: float, command: dict[str, Any] | None,
              body: Any = None, error: ConsoleError | None = None,
              applied: bool = False) -> ConsoleResult:
        return cls(shard_id=shard_id, cmd_id=cmd_id, name=name, tick=int(tick), issuer=issuer,
                   latency_ms=round(float(latency_ms), 3), applied=bool(applied),
                   command=command, body=None if error is not None else plain(body),
                   error=ResultError.of(error) if error is not None else None)

    @property
    def status(self) -> str:
        return "error" if self.error is not None else "ok"

    @property
    def code(self) -> ErrorCode | None:
        return self.error.code if self.error is not None else None

    def redacted(self, redact: Redact) -> ConsoleResult:
        """This result with ``redact`` applied to every value it carries (tokens scrubbed)."""
        error = self.error
        if error is not None:
            error = ResultError(error.code, redact(error.message), redact(error.details))
        return ConsoleResult(
            shard_id=redact(self.shard_id), cmd_id=redact(self.cmd_id), name=redact(self.name),
            tick=self.tick, issuer=redact(self.issuer), latency_ms=self.latency_ms,
            applied=self.applied, command=redact(self.command), body=redact(self.body),
            error=error, v=self.v)

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "v": self.v, "shard_id": self.shard_id, "cmd_id": self.cmd_id, "name": self.name,
            "status": self.status, "tick": self.tick, "issuer": self.issuer,
            "latency_ms": self.latency_ms, "applied": self.applied,
        }
        if self.error is not None:
            out["error"] = self.error.to_wire()
        else:
            out["result"] = self.body
        out["command"] = self.command
        return out

    @classmethod
    def from_wire(cls, raw: Mapping[str, Any]) -> ConsoleResult:
        """A result as published, journaled, checkpointed or audited; KeyError/ValueError
        when ``raw`` is not one."""
        error = raw.get("error")
        return cls(shard_id=str(raw["shard_id"]), cmd_id=str(raw["cmd_id"]), name=raw["name"],
                   tick=int(raw["tick"]), issuer=raw["issuer"],
                   latency_ms=float(raw["latency_ms"]), applied=bool(raw["applied"]),
                   command=raw["command"], body=raw.get("result"),
                   error=ResultError.from_wire(error) if error is not None else None,
                   v=int(raw["v"]))


def results_to_wire(results: list[ConsoleResult]) -> list[dict[str, Any]]:
    return [result.to_wire() for result in results]
