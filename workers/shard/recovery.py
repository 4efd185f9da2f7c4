"""Rebuild a shard's exact state after a crash: checkpoint + journal, hash-checked.

docs/PROTOCOL.md, guarantee 4. Records after the checkpoint are re-applied in order: each
result whose command ran is re-run for its effect (its stored result is kept, so answers stay
byte-identical) and each stepped boundary runs its tick and must reproduce the journaled state
hash. Boundaries after the last "outputs sent" mark are to be published again: results from the
journal, telemetry rebuilt from state (identical to the first send because it depends on
nothing else). ``recover`` returns them; the worker puts them in its outbox.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.config import SimulationConfig
from shared.console.results import results_to_wire
from shared.loop import SimulationLoop
from shared.snapshot import SnapshotError, write_atomic
from workers.shard.durability import checkpoint_data
from workers.shard.records import BoundaryRecord, JournalRecord, SentMark
from workers.shard.statedir import StateDir


class Divergence(RuntimeError):
    """Replaying the journal produced a different state hash: never tick on suspect state."""


@dataclass(frozen=True)
class Resend:
    """A recovered boundary whose outputs may not have gone out."""

    record: BoundaryRecord
    telemetry: dict[str, Any] | None  # the tick's message, rebuilt (None: not stepped)


@dataclass(frozen=True)
class Recovered:
    last_seq: int  # the journal sequence number to continue after
    resend: list[Resend]
    checkpoint_seq: int  # the journal position the checkpoint covered (0: no checkpoint)
    replayed: int  # journal records after it, re-applied


def seed_state_dir(root: Path, loop: SimulationLoop, config: SimulationConfig) -> Path:
    """Make ``root`` a state dir a worker resumes from at ``loop``'s tick (empty journal).

    For rebuilding a shard whose state dir was lost or damaged (`townlet replay --write-state`).
    Refuses a state dir that a worker owns or that already holds a checkpoint or a journal:
    overwriting either could silently roll a live shard back.
    """
    state = StateDir(root)
    if not state.try_lock():
        raise FileExistsError(f"{root} is owned by a running worker (its lock is held)")
    try:
        journal = state.journal_path
        if state.snapshot_path.exists() or (journal.exists() and journal.stat().st_size):
            raise FileExistsError(f"{root} already holds a checkpoint or a journal: move it "
                                  "aside first")
        write_atomic(state.snapshot_path, checkpoint_data(loop, config, journal_seq=0))
    finally:
        state.unlock()
    return state.snapshot_path


def recover(loop: SimulationLoop, state: StateDir,
            journal: list[JournalRecord]) -> Recovered:
    """Restore ``loop`` from the checkpoint in ``state`` and the ``journal`` records."""
    base_seq = 0
    if state.snapshot_path.exists():
        try:
            extra = loop.load_snapshot(state.snapshot_path)
        except SnapshotError as exc:
            raise SnapshotError(f"{state.snapshot_path}: {exc}") from None
        base_seq = int(extra.get("journal_seq", 0))
    records = [r for r in journal if r.seq > base_seq]
    sent_through = max([r.seq for r in records if isinstance(r, SentMark)], default=base_seq)
    boundaries = [r for r in records if isinstance(r, BoundaryRecord)]
    stepped = [r for r in boundaries if r.stepped]
    # Telemetry diffs are against the end of the previous stepped tick, so the base is taken
    # right after that tick replays (paused boundaries in between may change the world).
    primes_after = {a.seq for a, b in zip(stepped, stepped[1:], strict=False)
                    if b.seq > sent_through}
    if stepped and stepped[0].seq > sent_through:
        loop.telemetry.prime(loop.world)
    resend: list[Resend] = []
    last_seq = base_seq
    for record in boundaries:
        last_seq = record.seq
        message = _replay_boundary(loop, record, republish=record.seq > sent_through)
        if record.seq in primes_after:
            loop.telemetry.prime(loop.world)
        if record.seq > sent_through:
            resend.append(Resend(record, message))
        if record.stepped and loop.last_hash != record.hash:
            raise Divergence(f"replay of tick {record.boundary} gave {loop.last_hash}, "
                             f"journal has {record.hash}")
    loop.telemetry.prime(loop.world)
    return Recovered(max(last_seq, base_seq), resend, base_seq, len(records))


def _replay_boundary(loop: SimulationLoop, record: BoundaryRecord,
                     republish: bool) -> dict[str, Any] | None:
    for result in record.results:
        loop.router.reapply(result)
    if record.auto_ids is not None:  # ids handed out at this boundary must not be again
        loop.router.ledger.restore_auto_ids(record.auto_ids)
    results = results_to_wire(list(record.results))
    loop.telemetry.record_results(record.boundary, results)
    if not record.stepped:
        return None
    events, digest = loop.advance(record.boundary)
    if not republish:
        return None
    return loop.telemetry.tick_message(loop.world, digest, events, results)
