"""A shard's state directory: the owner lock, the checkpoint snapshot and the journal.

The lock (flock on ``lock``) makes "one owner per shard" hold on the filesystem as well as on
the broker (single active consumer): a second worker for the same shard waits here until the
first one exits or dies, then recovers from the same snapshot and journal.
"""

from __future__ import annotations

import fcntl
import os
import threading
from pathlib import Path
from typing import IO


class StateDir:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.snapshot_path = root / "checkpoint.tlsnap"
        self.journal_path = root / "journal.bin"
        self.exports = root / "exports"
        self._lock: IO[bytes] | None = None

    def try_lock(self) -> bool:
        self.root.mkdir(parents=True, exist_ok=True)
        fh = open(self.root / "lock", "a+b")  # noqa: SIM115 - held for the worker's lifetime
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            return False
        fh.truncate(0)
        fh.write(f"{os.getpid()}\n".encode())
        fh.flush()
        self._lock = fh
        return True

    def wait_for_lock(self, stop: threading.Event, poll: float = 0.2) -> bool:
        """Block until this process owns the shard (True) or ``stop`` is set (False)."""
        while not stop.is_set():
            if self.try_lock():
                return True
            stop.wait(poll)
        return False

    def unlock(self) -> None:
        if self._lock is not None:
            fcntl.flock(self._lock.fileno(), fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None
