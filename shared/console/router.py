"""The console router: checks a command, runs its handler, and gives its result.

Two entry points, with different trust (docs/CONSOLE.md, "Two entry points"):

* ``apply(payload, tick=..., received_at=...)`` is for UNTRUSTED payloads (the broker, or
  ``TelemetryHub.queue_console_command``). The checks run in the order of docs/CONSOLE.md,
  "Checks and their order": shape -> auth -> known command (``unsupported``) -> role
  (``forbidden``) -> cmd_id required for admin commands (``usage``) -> cmd_id seen: replay the
  stored result exactly, or ``conflict`` for a different command -> run the handler
  (``internal`` if it crashes). It returns a typed ``ConsoleResult``; the caller records it
  (the loop does it for a whole tick boundary at once).
* ``dispatch(ConsoleCommand(...))`` is the TRUSTED in-process path (the dry-run script, tests, a
  local REPL): whoever can call it already owns the process and could edit the world directly,
  so there is no token check, the role is admin and the issuer defaults to ``local``. Ids are
  still honoured (replay/conflict) and assigned when absent; the result is recorded at once and
  returned in its wire form (a plain dict), as the script prints it.

The router owns the shard's ``CommandLedger`` (docs/CONSOLE.md, "Exactly once"). Only results
of handlers that ran and returned (ok, or an error value such as ``not_found``) are stored for
replay. Pre-check refusals and ``internal`` crashes are not: a retry after fixing a token, a role
or a transient fault must get a real answer (a refusal that comes out the same again is answered
with its first copy). Assigned ids (``auto-<shard>-<tick>-<seq>``, ``local-<tick>-<seq>``) are
never stored either: nobody can retry with them, and after a snapshot restore the same ids recur
for the re-applied commands, which must run again rather than replay.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from shared.config import SimulationConfig
from shared.sim.employment import EmploymentError
from shared.sim.ops import OpError
from shared.sim.persist import rollback, save_state
from shared.sim.world import UnknownAgent, World
from shared.telemetry import Health, LastError

from .auth import ANONYMOUS, Authenticator, Identity
from .commands import ArgReader, CommandSpec, Context, Controls, Registry, default_registry
from .envelope import (
    ConsoleCommand,
    ConsoleError,
    ErrorCode,
    command_as_payload,
    is_assigned_id,
    parse_payload,
    plain,
    recover_cmd_id,
    recover_name,
    usable_cmd_id,
)
from .ledger import CommandLedger, command_fingerprint
from .outcomes import Outcomes, trimmed_fingerprint
from .results import ConsoleResult

if TYPE_CHECKING:
    from shared.telemetry import TelemetryHub


class ConsoleRouter:
    def __init__(self, telemetry: TelemetryHub, world: World, *, config: SimulationConfig,
                 policy: Any = None, policy_provider: str | None = None,
                 telemetry_provider: str | None = None, controls: Controls | None = None,
                 registry: Registry | None = None, ledger: CommandLedger | None = None,
                 errors: LastError | None = None,
                 health: Callable[[], Health] | None = None) -> None:
        """``ledger``, ``errors`` and ``health`` default to the router's own; a second router
        for one shard passes the first one's, so both share one exactly-once state."""
        self.telemetry = telemetry
        self.world = world
        self.config = config
        self.policy = policy
        self.policy_provider = policy_provider
        self.telemetry_provider = telemetry_provider
        self.controls = controls
        self.registry = registry if registry is not None else default_registry()
        self.auth = Authenticator(config.console_auth)
        self.ledger = ledger if ledger is not None else CommandLedger(
            config.console.cmd_id_window, telemetry.shard_id,
            config.console.stored_results_max_bytes)
        self.errors = errors if errors is not None else LastError()
        self.health = health if health is not None else self._own_health
        self._out = Outcomes(telemetry.shard_id, self.auth, self.ledger, self.errors,
                             telemetry.clock, echo_max_bytes=config.console.echo_max_bytes)

    def _own_health(self) -> Health:
        """Health as far as a router alone can tell (no owner gave it a better view)."""
        controls = self.controls
        return Health(tick_rate_hz=controls.tick_rate_hz if controls else 0.0,
                      queue_depth=self.telemetry.queue_depth, last_error=self.errors.value,
                      paused=controls.paused if controls else False)

    # -- entry points -------------------------------------------------------------------------
    def apply(self, payload: Any, *, tick: int, received_at: float,
              remember_refusal: bool = True) -> ConsoleResult:
        """Check and apply one untrusted payload at tick boundary ``tick``; never raises.

        ``remember_refusal=False`` is for a look that may be thrown away (the worker's early
        answer): a refusal it finds is neither remembered nor taken from the memo."""
        try:
            result = self._apply(payload, tick, received_at)
            return self.ledger.settle(result) if remember_refusal else result
        except Exception as exc:  # a bug in the checks must not stop the shard either
            return self._out.crashed(exc, None, recover_name(payload), tick, received_at,
                                     prefix="auto", cmd_id=recover_cmd_id(payload))

    def reject(self, cmd_id: str | None, code: ErrorCode, message: str, *, tick: int,
               received_at: float, name: str | None = None) -> ConsoleResult:
        """An error result for a delivery refused before its command could be checked (it
        could not be decoded, or its reply_to/correlation_id are refused), addressed to
        ``cmd_id`` when that is usable as a caller's id, else to an assigned one."""
        return self.ledger.settle(self._out.refused(
            ConsoleError(code, message), tick, received_at, "auto",
            cmd_id=usable_cmd_id(cmd_id), name=name))

    def reapply(self, result: ConsoleResult) -> None:
        """Re-run the effect of a journaled or audited result at its tick (crash recovery,
        `townlet replay`). The stored result stays the original, byte for byte; a result that
        was answered from the ledger the first time (a redelivery) is skipped. A refusal has
        no effect; it is only remembered, so its redeliveries keep getting the same body."""
        if not result.applied:
            self.ledger.note_refusal(result)
            return
        if result.cmd_id in self.ledger:
            return
        echo = result.command or {}
        command = ConsoleCommand(name=echo["name"], args=list(echo.get("args") or []),
                                 kwargs=dict(echo.get("kwargs") or {}), mode=echo["mode"],
                                 cmd_id=result.cmd_id, issuer=echo.get("issuer"))
        spec = self.registry.get(command.name)
        if spec is None:
            raise ValueError(f"cannot re-apply unknown command {command.name!r}")
        trimmed = trimmed_fingerprint(echo)
        if trimmed is None:  # a trimmed echo is a command that changed nothing: skip its run
            identity = Identity(command.mode, command.issuer or ANONYMOUS, True)
            self._execute(spec, command, identity, result.tick, self.telemetry.clock())
        if not is_assigned_id(result.cmd_id):
            self.ledger.remember(result.cmd_id, trimmed or _fingerprint(command), result)

    def dispatch(self, command: ConsoleCommand) -> dict[str, Any]:
        """Run a trusted in-process command now (admin, no token) and record its result."""
        tick, received_at = self.world.tick, self.telemetry.clock()
        try:
            result = self._dispatch(command, tick, received_at)
        except Exception as exc:
            name = recover_name({"name": getattr(command, "name", None)})
            result = self._out.crashed(exc, None, name, tick, received_at, prefix="local")
        wire = result.to_wire()
        self.telemetry.record_results(tick, [wire])
        return copy.deepcopy(wire)  # the caller's to keep: changing it changes no record

    # -- the checks -----------------------------------------------------------------------------
    def _apply(self, payload: Any, tick: int, received_at: float) -> ConsoleResult:
        try:
            command = parse_payload(payload, max_bytes=self.config.console.max_body_bytes)
        except ConsoleError as exc:
            return self._out.refused(exc, tick, received_at, "auto",
                                     cmd_id=recover_cmd_id(payload), name=recover_name(payload))
        try:
            identity = self.auth.authenticate(command)
            self.auth.check_no_token_outside_auth(command)
        except ConsoleError as exc:
            # docs/CONSOLE.md, "Auth": an issuer nobody vouched for is never the issuer.
            unverified = Identity(command.mode, ANONYMOUS, False)
            return self._out.refused(exc, tick, received_at, "auto", command=command,
                                     identity=unverified)
        return self._checked(command, identity, tick, received_at, prefix="auto")

    def _dispatch(self, command: ConsoleCommand, tick: int, received_at: float) -> ConsoleResult:
        if not isinstance(command, ConsoleCommand):
            error = ConsoleError(ErrorCode.BAD_REQUEST, "dispatch takes a ConsoleCommand")
            return self._out.refused(error, tick, received_at, "local")
        try:
            parsed = parse_payload(command_as_payload(command))
            self.auth.check_no_token_outside_auth(parsed)
        except ConsoleError as exc:
            return self._out.refused(exc, tick, received_at, "local",
                                     cmd_id=recover_cmd_id({"cmd_id": command.cmd_id}),
                                     name=recover_name({"name": command.name}))
        identity = Identity("admin", parsed.issuer or "local", authenticated=False)
        return self._checked(parsed, identity, tick, received_at, prefix="local")

    def _checked(self, command: ConsoleCommand, identity: Identity, tick: int,
                 received_at: float, *, prefix: str) -> ConsoleResult:
        """Known command -> role -> cmd_id -> replay/conflict -> run (the post-auth checks)."""
        refuse = self._out.refuser(command, identity, tick, received_at, prefix)
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
        command.cmd_id = self.ledger.assign_id(prefix, tick)
        return self._execute(spec, command, identity, tick, received_at)

    def _once(self, spec: CommandSpec, command: ConsoleCommand, identity: Identity, tick: int,
              received_at: float) -> ConsoleResult:
        """Exactly-once for a caller's cmd_id: replay, refuse a reuse, or run and remember."""
        assert command.cmd_id is not None
        fingerprint = _fingerprint(command)
        stored = self.ledger.lookup(command.cmd_id)
        if stored is not None:
            if stored[0] == fingerprint:
                return stored[1]  # exactly what was answered the first time
            return self._out.refused(ConsoleError(
                ErrorCode.CONFLICT, f"cmd_id {command.cmd_id!r} was already used for a "
                "different command; use a new cmd_id", {"cmd_id": command.cmd_id}),
                tick, received_at, "auto", command=command, identity=identity)
        result = self._execute(spec, command, identity, tick, received_at)
        if result.code is not ErrorCode.INTERNAL:
            self.ledger.remember(command.cmd_id, fingerprint, result)
        return result

    def _forbidden(self, spec: CommandSpec, identity: Identity) -> ConsoleError:
        details = {"required_role": spec.role, "role": identity.role}
        if not self.auth.enabled:
            return ConsoleError(ErrorCode.FORBIDDEN, f"{spec.name} is an admin command and "
                                "admin commands are refused while console auth is disabled",
                                details)
        return ConsoleError(ErrorCode.FORBIDDEN, f"{spec.name} needs the admin role", details)

    # -- running ----------------------------------------------------------------------------------
    def _execute(self, spec: CommandSpec, command: ConsoleCommand, identity: Identity, tick: int,
                 received_at: float) -> ConsoleResult:
        assert command.cmd_id is not None
        ctx = Context(self.world, self.telemetry, self.config, self.registry, tick, self.health,
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
            return self._out.crashed(exc, command, spec.name, tick, received_at,
                                     identity=identity)
        # Only what changes the world must be echoed in full: replays re-run it from the echo.
        return self._out.finish(command, identity, tick, received_at, body=body, error=error,
                                applied=True, full_echo=spec.needs_cmd_id)


def _fingerprint(command: ConsoleCommand) -> str:
    return command_fingerprint(command.name, plain(list(command.args)), plain(command.kwargs))


def create_console_router(telemetry: TelemetryHub, world: World, *, policy: Any = None,
                          policy_provider: str | None = None,
                          telemetry_provider: str | None = None,
                          config: SimulationConfig | None = None,
                          controls: Controls | None = None) -> ConsoleRouter:
    """A router on a hub and a world (the dry-run script's factory). ``config`` defaults to
    the hub's; ``controls`` enable pause & co. The router has its own ledger: its stored
    results and assigned ids are its own, and only ``loop.router``'s are in the loop's
    snapshots (docs/CONSOLE.md, "Commands")."""
    return ConsoleRouter(telemetry, world, config=config or telemetry.config, policy=policy,
                         policy_provider=policy_provider, telemetry_provider=telemetry_provider,
                         controls=controls)
