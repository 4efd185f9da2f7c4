"""Rebuild a shard's exact state after a crash: checkpoint + journal, hash-checked.

Records after the checkpoint are re-applied in order: each result whose command ran is re-run
for its effect (its stored result is kept, so answers stay byte-identical) and each stepped
boundary runs its tick and must reproduce the journaled state hash. Boundaries after the last
"outputs sent" marker are published again: results from the journal, telemetry rebuilt from
state (identical to the first send because it depends on nothing else).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from shared.config import SimulationConfig
from shared.snapshot import SnapshotError, encode_snapshot, write_atomic
from workers.shard.statedir import StateDir

if TYPE_CHECKING:
    from shared.loop import SimulationLoop
    from workers.shard.worker import ShardWorker


def checkpoint_data(loop: SimulationLoop, config: SimulationConfig, journal_seq: int) -> bytes:
    """A worker checkpoint: the complete state, plus the journal records it covers."""
    return encode_snapshot(loop.world, config, {**loop.shell_state(), "journal_seq": journal_seq})


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


def recover(worker: ShardWorker) -> int:
    """Restore ``worker.loop`` from its state dir; returns the last journal sequence number."""
    from workers.shard.worker import Divergence, Outgoing

    loop, state, log = worker.loop, worker.state, worker.log
    assert worker.journal is not None
    base_seq = 0
    if state.snapshot_path.exists():
        try:
            extra = loop.load_snapshot(state.snapshot_path)
        except SnapshotError as exc:
            raise SnapshotError(f"{state.snapshot_path}: {exc}") from None
        base_seq = int(extra.get("journal_seq", 0))
    records = [r for r in worker.journal.records() if int(r["seq"]) > base_seq]
    sent_through = max([int(r["seq"]) for r in records if r["k"] == "out"], default=base_seq)
    resend: list[tuple[dict[str, Any], dict[str, Any] | None]] = []
    boundaries = [r for r in records if r["k"] == "b"]
    stepped = [r for r in boundaries if r["stepped"]]
    # Telemetry diffs are against the end of the previous stepped tick, so the base is taken
    # right after that tick replays (paused boundaries in between may change the world).
    primes_after = {int(a["seq"]) for a, b in zip(stepped, stepped[1:], strict=False)
                    if int(b["seq"]) > sent_through}
    if stepped and int(stepped[0]["seq"]) > sent_through:
        loop.telemetry.prime(loop.world)
    last_seq = base_seq
    for record in boundaries:
        last_seq = int(record["seq"])
        message = _replay_boundary(worker, record, republish=last_seq > sent_through)
        if last_seq in primes_after:
            loop.telemetry.prime(loop.world)
        if int(record["seq"]) > sent_through:
            resend.append((record, message))
        if record["stepped"] and loop.last_hash != record["hash"]:
            raise Divergence(f"replay of tick {record['boundary']} gave {loop.last_hash}, "
                             f"journal has {record['hash']}")
    loop.telemetry.prime(loop.world)
    if records or base_seq:
        log.info("recovered", tick=loop.tick, checkpoint_seq=base_seq, replayed=len(records),
                 resent=len(resend), state_hash=loop.last_hash)
    for record, message in resend:
        replies = record.get("replies") or [[None, None]] * len(record["results"])
        worker.outbox.append(Outgoing(int(record["seq"]), record["results"], replies, message))
    worker.flush()  # what the broker can't take now stays in the outbox, in order
    return max(last_seq, base_seq)


def _replay_boundary(worker: ShardWorker, record: dict[str, Any],
                     republish: bool) -> dict[str, Any] | None:
    loop = worker.loop
    boundary = int(record["boundary"])
    for result in record["results"]:
        loop.router.reapply(result)
    if "auto_ids" in record:  # ids handed out at this boundary must not be handed out again
        loop.telemetry.restore_auto_ids(record["auto_ids"])
    loop.telemetry.record_results(boundary, record["results"])
    if not record["stepped"]:
        return None
    events, digest = loop.advance(boundary)
    if not republish:
        return None
    return loop.telemetry.tick_message(loop.world, digest, events, record["results"])
