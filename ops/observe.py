"""What the fleet shows of itself on the broker: per-shard telemetry seen, and queue statistics.

`townlet status` and `townlet top` share this. Shards are discovered from the telemetry they
publish (every live shard sends a ``health`` message about once a second, paused or not, plus
one message per tick); queue statistics (ready messages and consumers, by passive declare) tell
a shard that died (its inbox exists, nobody consumes it) from one that never existed.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

from ops.client import private_queue_spec
from shared import wire
from shared.broker.base import AccessRefused, Broker, NotFound, QueueStats
from shared.topology import Topology


@dataclass
class ShardSeen:
    """The latest of one shard's telemetry, with monotonic receive times."""

    shard_id: str
    first_tick: int | None = None
    first_tick_at: float = 0.0
    tick: int | None = None
    tick_at: float = 0.0
    state_hash: str | None = None
    health: dict[str, Any] | None = None
    health_tick: int | None = None
    health_at: float = 0.0
    employment: dict[str, Any] = field(default_factory=dict)
    last_error: Any = None

    def note(self, body: dict[str, Any], now: float) -> None:
        tick = body.get("tick")
        payload = body.get("payload") or {}
        if body.get("kind") == "health":
            self.health = payload.get("health") or {}
            self.health_tick, self.health_at = tick if isinstance(tick, int) else None, now
            self.last_error = self.health.get("last_error")
            return
        if not isinstance(tick, int):
            return
        if self.first_tick is None:
            self.first_tick, self.first_tick_at = tick, now
        self.tick, self.tick_at, self.state_hash = tick, now, body.get("state_hash")
        if body.get("kind") == "snapshot" and isinstance(payload.get("employment"), dict):
            self.employment = dict(payload["employment"])
        for key, value in (payload.get("set") or {}).items():
            if key.startswith("employment."):
                self.employment[key.split(".", 1)[1]] = value

    def rate(self) -> float | None:
        """Ticks per second over what was seen (None with fewer than two tick messages)."""
        if self.first_tick is None or self.tick is None or self.tick_at <= self.first_tick_at:
            return None
        return (self.tick - self.first_tick) / (self.tick_at - self.first_tick_at)

    def last_seen(self) -> float:
        return max(self.tick_at, self.health_at)


class Observer:
    """A private queue on the telemetry exchange, pumped on demand. Not thread-safe."""

    def __init__(self, broker: Broker, topo: Topology | None = None) -> None:
        self.broker = broker
        self.topo = topo or Topology()
        self.seen: dict[str, ShardSeen] = {}
        # A read-only monitor may create only broker-named exclusive queues, and may not
        # declare exchanges (ops/rabbitmq/definitions.json): the shards have declared it.
        with contextlib.suppress(AccessRefused):
            broker.declare_exchange(self.topo.telemetry_exchange_spec())
        self.queue = broker.declare_queue(private_queue_spec(((self.topo.telemetry_exchange, ""),)))
        broker.consume(self.queue, prefetch=500)

    def pump(self, seconds: float, until: Any = None) -> None:
        """Take telemetry for ``seconds`` (or until ``until(seen)`` holds)."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            for delivery in self.broker.poll(timeout=min(left, 0.1)):
                self.broker.ack(delivery)
                try:
                    body = wire.decode(delivery.body)
                except wire.WireError:
                    continue
                shard_id = str(body.get("shard_id"))
                self.seen.setdefault(shard_id, ShardSeen(shard_id)).note(body, time.monotonic())
            if until is not None and until(self.seen):
                return

    def queue_stats(self, queue: str) -> QueueStats | None:
        """Ready messages and consumers of ``queue``; None if it does not exist."""
        try:
            return self.broker.queue_stats(queue)
        except NotFound:
            return None

    def close(self) -> None:
        self.broker.cancel(self.queue)
        self.broker.delete_queue(self.queue)
