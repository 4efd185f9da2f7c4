"""SimulationLoop: the seed's Python surface around the pure world.

A step is: apply the queued console commands at the tick boundary (within the per-tick budget,
oldest first), run the tick, hash the state, record and audit the results. The shard worker
drives the same pieces; this class is the in-process, single-shard composition of them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.config import SimulationConfig
from shared.console.router import ConsoleRouter, create_console_router
from shared.sim import policy as sim_policy
from shared.sim import views
from shared.sim.events import events_to_wire
from shared.sim.persist import adopt_state, state_hash
from shared.sim.world import World
from shared.snapshot import encode_snapshot, read_snapshot, write_atomic
from shared.telemetry import PROVIDER_NAME, AuditSink, TelemetryHub


@dataclass
class TickArtifacts:
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

    # A new in-process loop is a new town whose ids (local-<tick>-<seq>, the seed's fixed ones)
    # start over: dedupe within this run only, or a second run's lines would be dropped.
    return AuditLog(Path(config.console.audit_path), dedupe_existing=False)


class SimulationLoop:
    def __init__(self, config: SimulationConfig, *, shard_id: str = "local",
                 audit: AuditSink | None | bool = True,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.shard_id = shard_id
        self.world = World(config)
        self.policy = ScriptedPolicy()
        sink = _default_audit(config) if audit is True else (audit or None)
        self.telemetry = TelemetryHub(config, shard_id=shard_id, audit=sink, clock=clock)
        self.paused = False
        self.tick_rate_hz = 0.0
        self.snapshot_dir = Path("snapshots")
        self.last_hash = state_hash(self.world)
        self.router: ConsoleRouter = create_console_router(
            self.telemetry, self.world, policy=self.policy,
            policy_provider=policy_provider_name(self),
            telemetry_provider=telemetry_provider_name(self), config=config, controls=self)

    @property
    def tick(self) -> int:
        return self.world.tick

    # -- loop controls (console: pause, resume, set_tick_rate, snapshot_save) ---------------
    def pause(self) -> None:
        self.paused = True
        self.telemetry.health["paused"] = True

    def resume(self) -> None:
        self.paused = False
        self.telemetry.health["paused"] = False

    def set_tick_rate(self, hz: float) -> None:
        self.tick_rate_hz = float(hz)
        self.telemetry.health["tick_rate_hz"] = self.tick_rate_hz

    # -- stepping -------------------------------------------------------------------------
    def apply_commands(self, boundary: int,
                       items: list[tuple[Any, float]]) -> list[dict[str, Any]]:
        """Apply raw payloads, in order, at the boundary before tick ``boundary`` runs."""
        return [self.router.apply(payload, tick=boundary, received_at=received)
                for payload, received in items]

    def advance(self, boundary: int) -> tuple[list[dict[str, Any]], str]:
        """Run tick ``boundary``; returns its events and the new state hash."""
        events = events_to_wire(self.world.step(boundary))
        self.last_hash = state_hash(self.world)
        return events, self.last_hash

    def step(self, collect: bool = True) -> TickArtifacts:
        """One boundary: queued commands (within the per-tick budget), then one tick."""
        boundary = self.world.tick + 1
        budget = self.config.console.max_commands_per_tick
        results = self.apply_commands(boundary, self.telemetry.drain(budget))
        self.telemetry.record_results(boundary, results)
        if self.paused:  # commands still apply (so `resume` can arrive); the world waits
            return TickArtifacts(self.world.tick, self.last_hash, [], {}, results)
        events, digest = self.advance(boundary)
        agents = {}
        if collect:
            agents = {str(self.world.agents.ids[s]): views.agent_view(self.world, int(s))
                      for s in self.world.agents.live_slots()}
        return TickArtifacts(boundary, digest, events, agents, results)

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
        return {"paused": self.paused, "tick_rate_hz": self.tick_rate_hz,
                "cmd_ids": self.telemetry.cmd_store.export(),
                "refusals": self.telemetry.refusals.export(),
                "auto_ids": self.telemetry.export_auto_ids()}

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
        self.telemetry.cmd_store.restore(extra.get("cmd_ids", []))
        self.telemetry.refusals.restore(extra.get("refusals", []))
        self.telemetry.restore_auto_ids(extra.get("auto_ids", {}))
        self.last_hash = state_hash(self.world)
        return extra


def policy_provider_name(loop: SimulationLoop) -> str:
    return str(loop.policy.name)


def telemetry_provider_name(loop: SimulationLoop) -> str:
    return PROVIDER_NAME
