"""The telemetry hub: console inbox, latest results and history, and per-tick payloads.

One hub per shard, reached as ``loop.telemetry``: operators queue raw console payloads here
(applied at the next tick boundary), read ``latest_console_results()`` (docs/CONSOLE.md, "Two
entry points" and "Results history and the audit log"), and the shard publishes one telemetry
message per tick built here (docs/PROTOCOL.md, "Messages": a full snapshot every N ticks, diffs
of changed keys in between, so a diff's size never depends on how long the run has been).

The hub holds wire values only (results as plain dicts, events as ``events_to_wire`` gives
them); the command ledger belongs to the console router and health to its owner (``Health``).
"""

from __future__ import annotations

import copy
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from shared.config import SimulationConfig
from shared.sim import views
from shared.sim.world import World

PROVIDER_NAME = "townlet.telemetry.hub"


class AuditSink(Protocol):
    def append(self, record: dict[str, Any]) -> bool: ...


ErrorValue = str | dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class Health:
    """A shard's health at one moment: the ``health`` telemetry payload (docs/PROTOCOL.md).

    Built on demand by its owner (``SimulationLoop.health``, ``ShardWorker.health``) from the
    one writer of each value: the loop's controls (``tick_rate_hz``, ``paused``), the inbox
    (``queue_depth``), the outbox (``unsent_outputs``), the broker adapter's counters
    (``broker_reconnects``) and the shard's ``LastError``. It depends on wall time, so it is
    never part of a per-tick message.
    """

    tick_rate_hz: float = 0.0
    queue_depth: int = 0
    last_error: ErrorValue = None
    broker_reconnects: int = 0
    paused: bool = False
    unsent_outputs: int = 0

    def to_wire(self) -> dict[str, Any]:
        return {"tick_rate_hz": self.tick_rate_hz, "queue_depth": self.queue_depth,
                "last_error": copy.deepcopy(self.last_error),
                "broker_reconnects": self.broker_reconnects, "paused": self.paused,
                "unsent_outputs": self.unsent_outputs}


class LastError:
    """The most recent error worth an operator's attention (a crashed command, broker trouble,
    a refused journal write). Several parts report into it; health shows the latest."""

    def __init__(self) -> None:
        self.value: ErrorValue = None

    def note(self, error: ErrorValue) -> None:
        self.value = error


def diff_payload(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """Changed keys only, two levels deep: {"set": {"a.b": v}, "unset": ["a.c"]}."""
    changed: dict[str, Any] = {}
    unset: list[str] = []
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, dict) and isinstance(before, dict):
            for sub, sub_value in value.items():
                if before.get(sub) != sub_value:
                    changed[f"{key}.{sub}"] = sub_value
            unset.extend(f"{key}.{sub}" for sub in before if sub not in value)
        elif before != value:
            changed[key] = value
    unset.extend(key for key in old if key not in new)
    return {"set": changed, "unset": sorted(unset)}


class TelemetryHub:
    def __init__(self, config: SimulationConfig, *, shard_id: str = "local",
                 audit: AuditSink | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.shard_id = shard_id
        self.audit = audit
        self.clock = clock
        self.pending: deque[tuple[Any, float]] = deque()
        self.history: deque[dict[str, Any]] = deque(maxlen=config.console.result_history)
        self._latest: list[dict[str, Any]] = []
        self._latest_tick: int | None = None
        self._last_full: dict[str, Any] | None = None
        self._last_full_tick = -1

    # -- console inbox and results --------------------------------------------------------
    def queue_console_command(self, payload: Any) -> None:
        """Queue a raw (untrusted) payload; it is checked and applied at the next boundary."""
        self.pending.append((copy.deepcopy(payload), self.clock()))

    @property
    def queue_depth(self) -> int:
        """Payloads queued and not yet applied."""
        return len(self.pending)

    def drain(self, budget: int) -> list[tuple[Any, float]]:
        """Take at most ``budget`` queued payloads, oldest first; the rest wait their turn."""
        return [self.pending.popleft() for _ in range(min(budget, len(self.pending)))]

    def record_results(self, tick: int, results: list[dict[str, Any]]) -> None:
        """Store one boundary's results (wire form) as the latest, append to history, and
        audit them."""
        if not results:
            return
        if self._latest_tick != tick:
            self._latest = []
            self._latest_tick = tick
        self._latest.extend(results)
        self.history.extend(results)
        if self.audit is not None:
            for result in results:
                self.audit.append(result)

    def latest_console_results(self) -> list[dict[str, Any]]:
        """Results of the latest tick that had commands (a copy; never stale)."""
        return copy.deepcopy(self._latest)

    def console_history(self, limit: int | None = None) -> list[dict[str, Any]]:
        items = list(self.history)
        return copy.deepcopy(items[-limit:] if limit else items)

    # -- per-tick payloads ------------------------------------------------------------------
    def state_views(self, world: World) -> dict[str, Any]:
        """The diffed part of a tick's payload: a function of the world state alone."""
        return {
            "world": views.world_summary(world),
            "employment": world.employment.metrics(),
            "jobs": views.jobs_view(world),
            "needs": views.needs_summary(world),
            "relationships": views.relationships_summary(world),
            "objects": views.objects_view(world),
        }

    def prime(self, world: World) -> None:
        """Set the diff base to the world as it is now (after a restore or a replay)."""
        self._last_full = self.state_views(world)
        self._last_full_tick = world.tick

    def tick_message(self, world: World, state_hash: str, events: list[dict[str, Any]],
                     results: list[dict[str, Any]], *, force_full: bool = False) -> dict[str, Any]:
        """The telemetry body for one tick (docs/PROTOCOL.md: snapshot first and every N, else
        diff). ``events`` and ``results`` are wire values (``events_to_wire``, ``to_wire``).

        Deterministic in (state before the tick, state after it, the tick's events and
        results), so the message for a tick is identical whenever it is rebuilt and resent.
        Health is deliberately not in here: it goes out as separate ``health`` messages.
        """
        full = self.state_views(world)
        every = self.config.telemetry.snapshot_every
        has_base = self._last_full is not None and self._last_full_tick == world.tick - 1
        # The kind depends on the tick alone (ticks 1, 1+N, 1+2N, ...), never on when this
        # process started, so a tick's message is the same before and after a restart.
        if force_full or not has_base or (world.tick - 1) % every == 0:
            kind, payload = "snapshot", dict(full)
        else:
            assert self._last_full is not None
            kind, payload = "diff", diff_payload(self._last_full, full)
        self._last_full, self._last_full_tick = full, world.tick
        payload["events"] = events
        payload["console_results"] = results
        return {"shard_id": self.shard_id, "tick": world.tick,
                "schema_version": self.config.console.schema_version, "kind": kind,
                "state_hash": state_hash, "payload": payload}

    def health_message(self, tick: int, health: Health) -> dict[str, Any]:
        return {"shard_id": self.shard_id, "tick": tick, "kind": "health",
                "schema_version": self.config.console.schema_version,
                "payload": {"health": health.to_wire()}}
