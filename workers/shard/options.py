"""How one shard worker runs: its shard, state dir, pace, and limits (``townlet shard``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from shared.trust.signing import ResultSigner


@dataclass
class WorkerOptions:
    shard_id: str
    state_dir: Path
    tick_rate_hz: float | None = None  # None: keep the shard's own (console-settable) rate
    checkpoint_every: int = 200
    health_every_s: float = 1.0
    # Unacked deliveries held at once; None = the per-tick budget. Kept small on purpose: every
    # delivery held when a worker dies counts toward the queue's delivery limit.
    prefetch: int | None = None
    max_ticks: int | None = None  # stop after this process has run this many ticks
    # Boundaries kept unsent while the broker is unreachable before the worker stops ticking.
    outbox_limit: int = 10_000
    until_tick: int | None = None  # stop once the town reaches this tick (counts recovered ones)
    # docs/PROTOCOL.md, "Signatures": signs every result (None: unsigned, local development).
    signer: ResultSigner | None = None
    user_id: str | None = None  # the broker user every publish names (RabbitMQ checks it)
