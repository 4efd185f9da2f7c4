"""SimulationLoop: the in-process Python surface around the pure world.

A step is: apply the queued console commands at the tick boundary (within the per-tick budget,
oldest first; docs/CONSOLE.md, "Two entry points"), run the tick, hash the state, record and
audit the results. The shard worker drives the same pieces; this class is the in-process,
single-shard composition of them, and the owner of the shard's health and last error.

Typed values stop here: ``TickArtifacts`` and the hub carry wire forms (results as
``ConsoleResult.to_wire`` gives them, events as ``events_to_wire`` gives them).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.config import SimulationConfig
from shared.console.results import ConsoleResult, results_to_wire
from shared.console.router import ConsoleRouter
from shared.sim import policy as sim_policy
from shared.sim import views
from shared.sim.events import events_to_wire
from shared.sim.persist import adopt_state, state_hash
from shared.sim.world import World
from shared.snapshot import encode_snapshot, read_snapshot, write_atomic
from shared.telemetry import PROVIDER_NAME, AuditSink, Health, LastError, TelemetryHub


@dataclass
class TickArtifacts:
    """One step, in wire form (plain dicts): what tests and tools assert on."""

    tick: int
    state_hash: str
    events: list[dict[str, Any]]
    agents: dict[str, dict[str, Any]] = field(default_factory=dict)
    console_results: list[dict[str, Any]] = field(default_factory=list)


class ScriptedPolicy:
    """The built-in behaviour (``shared.sim.policy``); named so operators can see what runs."""

    name = sim_policy.POLICY_NAME


def _default_audit(config: SimulationConfig) -> AuditSink | None:
    if not config.console.audit_enabled:
        return None
    from shared.audit.sink import AuditLog  # the same writer the audit consumer uses

    # A new in-process loop is a new town whose assigned ids (local-<tick>-<seq>) start over:
    # dedupe within this run only, or a second run's lines would be dropped.
    return AuditLog(Path(config.console.audit_path), dedupe_existing=False)


class SimulationLoop:
    def __init__(self, config: SimulationConfig, *, shard_id: str = "local",
                 audit: AuditSink | None | bool = True,
                 clock: Callable[[], float] = time.monotonic,
                 health: Callable[[], Health] | None = None) -> None:
        """``health`` replaces the loop's own view of its health (the shard worker's has its
        inbox, outbox and broker in it); commands such as ``telemetry_snapshot`` read it."""
        self.config = config
        self.shard_id = shard_id
        self.world = World(config)
        self.policy = ScriptedPolicy()
        sink = _default_audit(config) if audit is True else (audit or None)
        self.telemetry = TelemetryHub(config, shard_id=shard_id, audit=sink, clock=clock)
        self.paused = False
        self.tick_rate_hz = 0.0
        self.errors = LastError()
        self._health = health
        self.snapshot_dir = Path("snapshots")
        self.last_hash = state_hash(self.world)
        self.router = ConsoleRouter(
            self.telemetry, self.world, config=config, policy=self.policy,
            policy_provider=policy_provider_name(self),
            telemetry_provider=telemetry_provider_name(self), controls=self,
            errors=self.errors, health=self.health)

    @property
    def tick(self) -> int:
        return self.world.tick

    def health(self) -> Health:
        """The shard's health now (docs/PROTOCOL.md, the ``health`` message)."""
        if self._health is not None:
            return self._health()
        return Health(tick_rate_hz=self.tick_rate_hz, queue_depth=self.telemetry.queue_depth,
                      last_error=self.errors.value, paused=self.paused)

    # -- loop controls (console: pause, resume, set_tick_rate, snapshot_save) ---------------
    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        self.paused = False

    def set_tick_rate(self, hz: float) -> None:
        self.tick_rate_hz = float(hz)

    # -- stepping -------------------------------------------------------------------------
    def apply_commands(self, boundary: int,
                       items: list[tuple[Any, float]]) -> list[ConsoleResult]:
        """Apply raw payloads, in order, at the boundary before tick ``boundary`` runs."""
        return [self.router.apply(payload, tick=boundary, received_at=received)
                for payload, received in items]

    def advance(self, boundary: int) -> tuple[list[dict[str, Any]], str]:
        """Run tick ``boundary``; returns its events (wire form) and the new state hash."""
        events = events_to_wire(self.world.step(boundary))
        self.last_hash = state_hash(self.world)
        return events, self.last_hash

    def step(self, collect: bool = True) -> TickArtifacts:
        """One boundary: queued commands (within the per-tick budget), then one tick."""
        boundary = self.world.tick + 1
        budget = self.config.console.max_commands_per_tick
        results = results_to_wire(self.apply_commands(boundary, self.telemetry.drain(budget)))
        self.telemetry.record_results(boundary, results)
        # The artifacts are the caller's to keep: changing them changes no stored result.
        mine = copy.deepcopy(results) if results else []
        if self.paused:  # commands still apply (so `resume` can arrive); the world waits
            return TickArtifacts(self.world.tick, self.last_hash, [], {}, mine)
        events, digest = self.advance(boundary)
        agents = {}
        if collect:
            agents = {str(self.world.agents.ids[s]): views.agent_view(self.world, int(s))
                      for s in self.world.agents.live_slots()}
        return TickArtifacts(boundary, digest, events, agents, mine)

    def run_for_ticks(self, n: int, collect: bool = False) -> list[TickArtifacts]:
        """Advance ``n`` ticks; with ``collect`` keep every tick's artifacts (with agents)."""
        out: list[TickArtifacts] = []
        for _ in range(n):
            artifacts = self.step(collect=collect)
            if collect:
                out.append(artifacts)
        return out

    # -- snapshots ------------------------------------------------------------------------
    def shell_state(self) -> dict[str, Any]:
        """What a snapshot keeps besides the world: the controls and the command ledger."""
        return {"paused": self.paused, "tick_rate_hz": self.tick_rate_hz,
                **self.router.ledger.export()}

    def save_snapshot(self, directory: str | Path | None = None) -> Path:
        target = Path(directory) if directory is not None else self.snapshot_dir
        path = target / f"snapshot-{self.world.tick:010d}.tlsnap"
        write_atomic(path, encode_snapshot(self.world, self.config, self.shell_state()))
        return path

    def load_snapshot(self, path: str | Path) -> dict[str, Any]:
        """Restore in place, so every holder of ``loop.world`` sees the restored state.

        Returns the shell state stored with the snapshot (callers may keep their own keys).
        """
        world, extra = read_snapshot(Path(path), self.config)
        adopt_state(self.world, world)
        self.paused = bool(extra.get("paused", False))
        self.tick_rate_hz = float(extra.get("tick_rate_hz", 0.0))
        self.router.ledger.restore(extra)
        self.last_hash = state_hash(self.world)
        return extra


def policy_provider_name(loop: SimulationLoop) -> str:
    return str(loop.policy.name)


def telemetry_provider_name(loop: SimulationLoop) -> str:
    return PROVIDER_NAME
