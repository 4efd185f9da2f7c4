"""The console router: checks a command, runs its handler, and builds the result envelope.

Two entry points, with different trust:

* ``apply(payload, tick=..., received_at=...)`` is for UNTRUSTED payloads (the broker, or
  ``TelemetryHub.queue_console_command``). Checks run in the order of SPEC.md section 3:
  shape -> auth -> known command (``unsupported``) -> role (``forbidden``) -> cmd_id required for
  admin commands (``usage``) -> cmd_id seen: replay the stored result exactly, or ``conflict``
  for a different command -> run the handler (``internal`` if it crashes). The caller records
  the result (the loop does it for a whole tick boundary at once).
* ``dispatch(ConsoleCommand(...))`` is the TRUSTED in-process path (the seed's script, tests, a
  local REPL): whoever can call it already owns the process and could edit the world directly,
  so there is no token check, the role is admin and the issuer defaults to ``local``. Ids are
  still honoured (replay/conflict) and assigned when absent; the result is recorded at once.

Only results of handlers that ran and returned (ok, or an error value such as ``not_found``)
are remembered for replay. Pre-check refusals and ``internal`` crashes are not: a retry after
fixing a token, a role or a transient fault must get a real answer. (A refusal that comes out
the same again is answered with its first copy; see ``RefusalMemo``.) Auto-assigned ids
(``auto-<shard>-<tick>-<seq>``, ``local-<tick>-<seq>``) are never remembered either: nobody can
retry with them, and after a snapshot restore the same ids recur for the re-applied commands,
which must run again rather than replay.
"""

from __future__ import annotations

import copy
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from shared.config import SimulationConfig
from shared.logging import get_logger
from shared.sim.employment import EmploymentError
from shared.sim.ops import OpError
from shared.sim.persist import rollback, save_state
from shared.sim.world import UnknownAgent, World

from .auth import ANONYMOUS, Authenticator, Identity
from .commands import REGISTRY, ArgReader, CommandSpec, Context, Controls, Registry
from .envelope import (
    MAX_CMD_ID,
    ConsoleCommand,
    ConsoleError,
    ErrorCode,
    build_result,
    command_as_payload,
    is_assigned_id,
    parse_payload,
    plain,
    recover_cmd_id,
    recover_name,
)
from .replay import command_fingerprint

if TYPE_CHECKING:
    from shared.telemetry import TelemetryHub

class ConsoleRouter:
    def __init__(self, telemetry: TelemetryHub, world: World, *, config: SimulationConfig,
                 policy: Any = None, policy_provider: str | None = None,
                 telemetry_provider: str | None = None, controls: Controls | None = None,
                 registry: Registry = REGISTRY) -> None:
        self.telemetry = telemetry
        self.world = world
        self.config = config
        self.policy = policy
        self.policy_provider = policy_provider
        self.telemetry_provider = telemetry_provider
        self.controls = controls
        self.registry = registry
        self.auth = Authenticator(config.console_auth)
        self._log = get_logger("console.router", shard_id=telemetry.shard_id)

    # -- entry points -------------------------------------------------------------------------
    def apply(self, payload: Any, *, tick: int, received_at: float,
              remember_refusal: bool = True) -> dict[str, Any]:
        """Check and apply one untrusted payload at tick boundary ``tick``; never raises.

        ``remember_refusal=False`` is for a look that may be thrown away (the worker's early
        answer): a refusal it finds is neither remembered nor taken from the memo."""
        try:
            result = self._apply(payload, tick, received_at)
            return self.telemetry.refusals.settle(result) if remember_refusal else result
        except Exception as exc:  # a bug in the checks must not stop the shard either
            return self._crashed(exc, None, recover_name(payload), tick, received_at,
                                 prefix="auto", cmd_id=recover_cmd_id(payload))

    def reject(self, cmd_id: str, code: str, message: str, *, tick: int,
               received_at: float) -> dict[str, Any]:
        """An error result for a delivery that could not be decoded but named its cmd_id."""
        return self.telemetry.refusals.settle(self._refused(
            ConsoleError(code, message), tick, received_at, "auto", cmd_id=cmd_id[:MAX_CMD_ID]))

    def reapply(self, result: dict[str, Any]) -> None:
        """Re-run the effect of a journaled or audited result at its tick (crash recovery,
        `townlet replay`). The stored result stays the original, byte for byte; a result that
        was answered from the replay store the first time (a redelivery) is skipped. A refusal
        has no effect; it is only remembered, so its redeliveries keep getting the same body."""
        if not result.get("applied"):
            self.telemetry.refusals.note(result)
            return
        cmd_id = str(result["cmd_id"])
        if self.telemetry.cmd_store.lookup(cmd_id) is not None:
            return
        echo = result["command"]
        command = ConsoleCommand(name=echo["name"], args=list(echo.get("args") or []),
                                 kwargs=dict(echo.get("kwargs") or {}), mode=echo["mode"],
                                 cmd_id=cmd_id, issuer=echo.get("issuer"))
        spec = self.registry.get(command.name)
        if spec is None:
            raise ValueError(f"cannot re-apply unknown command {command.name!r}")
        identity = Identity(command.mode, command.issuer or ANONYMOUS, True)
        self._execute(spec, command, identity, int(result["tick"]), self.telemetry.clock())
        if not is_assigned_id(cmd_id):
            fingerprint = command_fingerprint(command.name, plain(list(command.args)),
                                              plain(command.kwargs))
            self.telemetry.cmd_store.remember(cmd_id, fingerprint, copy.deepcopy(result))

    def dispatch(self, command: ConsoleCommand) -> dict[str, Any]:
        """Run a trusted in-process command now (admin, no token) and record its result."""
        tick, received_at = self.world.tick, self.telemetry.clock()
        try:
            result = self._dispatch(command, tick, received_at)
        except Exception as exc:
            name = recover_name({"name": getattr(command, "name", None)})
            result = self._crashed(exc, None, name, tick, received_at, prefix="local")
        self.telemetry.record_results(tick, [result])
        return result

    # -- the checks -----------------------------------------------------------------------------
    def _apply(self, payload: Any, tick: int, received_at: float) -> dict[str, Any]:
        try:
            command = parse_payload(payload, max_bytes=self.config.console.max_body_bytes)
        except ConsoleError as exc:
            return self._refused(exc, tick, received_at, "auto", cmd_id=recover_cmd_id(payload),
                                 name=recover_name(payload))
        try:
            identity = self.auth.authenticate(command)
            self.auth.check_no_token_outside_auth(command)
        except ConsoleError as exc:
            unverified = Identity(command.mode, command.issuer or ANONYMOUS, False)
            return self._refused(exc, tick, received_at, "auto", command=command,
                                 identity=unverified)
        return self._checked(command, identity, tick, received_at, prefix="auto")

    def _dispatch(self, command: ConsoleCommand, tick: int, received_at: float) -> dict[str, Any]:
        if not isinstance(command, ConsoleCommand):
            error = ConsoleError(ErrorCode.BAD_REQUEST, "dispatch takes a ConsoleCommand")
            return self._refused(error, tick, received_at, "local")
        try:
            parsed = parse_payload(command_as_payload(command))
            self.auth.check_no_token_outside_auth(parsed)
        except ConsoleError as exc:
            return self._refused(exc, tick, received_at, "local",
                                 cmd_id=recover_cmd_id({"cmd_id": command.cmd_id}),
                                 name=recover_name({"name": command.name}))
        identity = Identity("admin", parsed.issuer or "local", authenticated=False)
        return self._checked(parsed, identity, tick, received_at, prefix="local")

    def _checked(self, command: ConsoleCommand, identity: Identity, tick: int,
                 received_at: float, *, prefix: str) -> dict[str, Any]:
        """Known command -> role -> cmd_id -> replay/conflict -> run (the post-auth checks)."""
        refuse = self._refuser(command, identity, tick, received_at, prefix)
        spec = self.registry.get(command.name)
        if spec is None:
            return refuse(ConsoleError(ErrorCode.UNSUPPORTED, f"unknown command {command.name!r}",
                                       {"hint": "run `help` to list the commands"}))
        if spec.role == "admin" and identity.role != "admin":
            return refuse(self._forbidden(spec, identity))
        if command.cmd_id is not None:
            return self._once(spec, command, identity, tick, received_at)
        if spec.needs_cmd_id and prefix == "auto":
            return refuse(ConsoleError(ErrorCode.USAGE, f"{spec.name} changes the world: "
                                       "give it a cmd_id so a retry cannot apply it twice"))
        command.cmd_id = self._auto_id(prefix, tick)
        return self._execute(spec, command, identity, tick, received_at)

    def _once(self, spec: CommandSpec, command: ConsoleCommand, identity: Identity, tick: int,
              received_at: float) -> dict[str, Any]:
        """Exactly-once for a caller's cmd_id: replay, refuse a reuse, or run and remember."""
        assert command.cmd_id is not None
        fingerprint = command_fingerprint(command.name, plain(list(command.args)),
                                          plain(command.kwargs))
        stored = self.telemetry.cmd_store.lookup(command.cmd_id)
        if stored is not None:
            if stored[0] == fingerprint:
                return copy.deepcopy(stored[1])  # exactly what was answered the first time
            return self._refused(ConsoleError(
                ErrorCode.CONFLICT, f"cmd_id {command.cmd_id!r} was already used for a "
                "different command; use a new cmd_id", {"cmd_id": command.cmd_id}),
                tick, received_at, "auto", command=command, identity=identity)
        result = self._execute(spec, command, identity, tick, received_at)
        if result.get("error", {}).get("code") != ErrorCode.INTERNAL:
            self.telemetry.cmd_store.remember(command.cmd_id, fingerprint, result)
        return copy.deepcopy(result)

    def _forbidden(self, spec: CommandSpec, identity: Identity) -> ConsoleError:
        details = {"required_role": spec.role, "role": identity.role}
        if not self.auth.enabled:
            return ConsoleError(ErrorCode.FORBIDDEN, f"{spec.name} is an admin command and "
                                "admin commands are refused while console auth is disabled",
                                details)
        return ConsoleError(ErrorCode.FORBIDDEN, f"{spec.name} needs the admin role", details)

    def _auto_id(self, prefix: str, tick: int) -> str:
        # Counters live on the telemetry hub (one per shard), so two routers on one hub (the
        # loop's and the seed script's) never hand out the same id.
        counters = self.telemetry.auto_id_counters
        last_tick, seq = counters.get(prefix, (tick, 0))
        seq = seq if last_tick == tick else 0
        counters[prefix] = (tick, seq + 1)
        if prefix == "auto":
            return f"auto-{self.telemetry.shard_id}-{tick}-{seq}"
        return f"{prefix}-{tick}-{seq}"

    # -- running ----------------------------------------------------------------------------------
    def _execute(self, spec: CommandSpec, command: ConsoleCommand, identity: Identity, tick: int,
                 received_at: float) -> dict[str, Any]:
        assert command.cmd_id is not None
        ctx = Context(self.world, self.telemetry, self.config, self.registry, tick,
                      self.controls, self.policy_provider, self.telemetry_provider)
        body: Any = None
        error: ConsoleError | None = None
        # A handler that crashes half way must not leave half an effect: mutating commands
        # run against a saved copy of the state and are rolled back if they raise.
        saved = save_state(self.world) if spec.needs_cmd_id else None
        try:
            body = spec.handler(ctx, ArgReader(spec.usage, command.args, command.kwargs))
        except ConsoleError as exc:
            error = exc
        except UnknownAgent as exc:
            error = ConsoleError(ErrorCode.NOT_FOUND, str(exc))
        except (OpError, EmploymentError) as exc:
            error = ConsoleError(ErrorCode.INVALID_ARGS, str(exc))
        except Exception as exc:
            if saved is not None:
                rollback(self.world, saved)
            return self._crashed(exc, command, spec.name, tick, received_at, identity=identity)
        return self._finish(command, identity, tick, received_at, body=body, error=error,
                            applied=True)

    def _finish(self, command: ConsoleCommand, identity: Identity, tick: int,
                received_at: float, *, body: Any = None,
                error: ConsoleError | None = None, applied: bool = False) -> dict[str, Any]:
        assert command.cmd_id is not None
        result = build_result(
            shard_id=self.telemetry.shard_id, cmd_id=command.cmd_id, name=command.name,
            tick=tick, issuer=identity.issuer, latency_ms=self._latency(received_at),
            command=command.echo(identity.role, command.cmd_id, identity.issuer),
            result=body, error=error, applied=applied)
        return self._redacted(result)

    def _refuser(self, command: ConsoleCommand, identity: Identity, tick: int,
                 received_at: float, prefix: str) -> Callable[[ConsoleError], dict[str, Any]]:
        def refuse(error: ConsoleError) -> dict[str, Any]:
            return self._refused(error, tick, received_at, prefix, command=command,
                                 identity=identity)
        return refuse

    def _refused(self, error: ConsoleError, tick: int, received_at: float, prefix: str, *,
                 cmd_id: str | None = None, name: str | None = None,
                 command: ConsoleCommand | None = None,
                 identity: Identity | None = None) -> dict[str, Any]:
        """A pre-check failure: an error result (audited by the caller), never remembered."""
        if command is not None and identity is not None:
            command.cmd_id = command.cmd_id or self._auto_id(prefix, tick)
            return self._finish(command, identity, tick, received_at, error=error)
        cmd_id = cmd_id or self._auto_id(prefix, tick)
        result = build_result(shard_id=self.telemetry.shard_id, cmd_id=cmd_id, name=name,
                              tick=tick, issuer=None, latency_ms=self._latency(received_at),
                              command={"name": name, "cmd_id": cmd_id}, error=error)
        return self._redacted(result)

    def _crashed(self, exc: Exception, command: ConsoleCommand | None, name: str | None,
                 tick: int, received_at: float, *, identity: Identity | None = None,
                 prefix: str = "auto", cmd_id: str | None = None) -> dict[str, Any]:
        """``internal``: the handler (or a check) raised; the shard carries on."""
        text = self.auth.redact(f"{type(exc).__name__}: {exc}")
        trace = self.auth.redact("".join(traceback.format_exception(exc)))
        shown = self.auth.redact(name)
        self._log.error("console_command_crashed", command=shown, tick=tick, error=text,
                        traceback=trace)
        self.telemetry.health["last_error"] = {"tick": tick, "command": shown, "error": text}
        error = ConsoleError(ErrorCode.INTERNAL, f"{name or 'command'} failed: {text}")
        if command is not None and identity is not None:
            return self._finish(command, identity, tick, received_at, error=error)
        return self._refused(error, tick, received_at, prefix, cmd_id=cmd_id, name=name)

    # -- helpers ----------------------------------------------------------------------------------
    def _latency(self, received_at: float) -> float:
        return max(0.0, (self.telemetry.clock() - received_at) * 1000.0)

    def _redacted(self, result: dict[str, Any]) -> dict[str, Any]:
        """Scrub tokens from the finished envelope; refusals are logged from the scrubbed copy."""
        redacted: dict[str, Any] = self.auth.redact(result)
        error = redacted.get("error")
        if error is not None and error["code"] != ErrorCode.INTERNAL:  # crashes log themselves
            self._log.info("console_command_refused", cmd_id=redacted["cmd_id"],
                           command=redacted["name"], code=error["code"], tick=redacted["tick"])
        return redacted


def create_console_router(telemetry: TelemetryHub, world: World, *, policy: Any = None,
                          policy_provider: str | None = None,
                          telemetry_provider: str | None = None,
                          config: SimulationConfig | None = None,
                          controls: Controls | None = None) -> ConsoleRouter:
    """The seed's factory. ``config`` defaults to the hub's; ``controls`` enable pause & co."""
    return ConsoleRouter(telemetry, world, config=config or telemetry.config, policy=policy,
                         policy_provider=policy_provider, telemetry_provider=telemetry_provider,
                         controls=controls)
