"""Durability: the journal (boundary records, sent marks) and checkpoints of one shard.

docs/PROTOCOL.md, guarantee 4: a boundary's record is appended and fsynced before any of its
outputs leave; a sent mark is written (best effort) once they are all out; every
``checkpoint_every`` ticks a checkpoint (the complete state plus the journal position it
covers) replaces the journal. A checkpoint waits for an empty outbox, because it drops the
journal records a resend needs: the worker only asks for one when nothing is unsent.

A refused append (disk full) is returned, not retried here: the worker holds and retries,
keeping its broker connection serviced meanwhile.
"""

from __future__ import annotations

from typing import Any

from shared.config import SimulationConfig
from shared.loop import SimulationLoop
from shared.snapshot import encode_snapshot, write_atomic
from shared.telemetry import LastError
from workers.shard.journal import Journal
from workers.shard.records import BoundaryRecord, JournalRecord, SentMark, record_from_wire
from workers.shard.statedir import StateDir


def checkpoint_data(loop: SimulationLoop, config: SimulationConfig, journal_seq: int) -> bytes:
    """A worker checkpoint: the complete state, plus the journal records it covers."""
    return encode_snapshot(loop.world, config, {**loop.shell_state(), "journal_seq": journal_seq})


class Durability:
    def __init__(self, state: StateDir, errors: LastError, log: Any,
                 checkpoint_every: int) -> None:
        self.state = state
        self.errors = errors
        self.log = log
        self.checkpoint_every = checkpoint_every
        self.journal: Journal | None = None
        self.seq = 0  # the last journal sequence number handed out
        self.checkpoint_due = False
        self.appends = 0  # boundary records made durable (a counter for metrics)
        self.append_failures = 0

    def open(self) -> list[JournalRecord]:
        """Open (and repair) the journal; its records, for recovery."""
        self.journal = Journal(self.state.journal_path)
        return [record_from_wire(raw) for raw in self.journal.records()]

    def close(self) -> None:
        if self.journal is not None:
            self.journal.close()

    # -- boundary records and sent marks ---------------------------------------------------
    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def try_append(self, record: BoundaryRecord, attempt: int) -> bool:
        """Append and fsync ``record``; False when the disk refused (nothing was written)."""
        assert self.journal is not None
        try:
            self.journal.append(record.to_wire())
        except OSError as exc:
            self.append_failures += 1
            self.errors.note(f"journal: {exc.strerror or exc}")
            self.log.error("journal_write_failed", error=str(exc), seq=record.seq,
                           attempt=attempt)
            return False
        self.appends += 1
        return True

    def mark_sent(self, seqs: tuple[int, ...]) -> None:
        """Note that these boundaries' outputs (and all before them) are out; best effort:
        losing a mark only means a resend."""
        for seq in seqs:
            assert self.journal is not None
            try:
                self.journal.append(SentMark(seq).to_wire(), durable=False)
            except OSError as exc:
                self.log.warning("journal_mark_failed", error=str(exc), seq=seq)

    # -- checkpoints ------------------------------------------------------------------------
    def note_tick(self, tick: int) -> None:
        if tick % self.checkpoint_every == 0:
            self.checkpoint_due = True

    def checkpoint(self, loop: SimulationLoop, config: SimulationConfig) -> None:
        """Snapshot the complete state, then drop the journal records it covers."""
        self.checkpoint_due = False
        try:
            self.write_checkpoint(checkpoint_data(loop, config, self.seq))
        except OSError as exc:  # the journal still holds everything: keep it, try next time
            self.log.error("checkpoint_failed", error=str(exc), tick=loop.tick)
            return
        self.reset_journal()
        self.log.info("checkpoint", tick=loop.tick, seq=self.seq)

    def write_checkpoint(self, data: bytes) -> None:
        write_atomic(self.state.snapshot_path, data)  # a crash here leaves the old one intact

    def reset_journal(self) -> None:
        # A crash before this leaves records the checkpoint already covers; recovery skips
        # them by sequence number.
        if self.journal is not None:
            self.journal.reset()
