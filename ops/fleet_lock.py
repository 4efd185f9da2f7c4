"""One `townlet up` per directory: an flock on ``<state_root>/fleet.lock``.

A second fleet in the same directory would fight the first over every shard's state-dir lock
and the audit log's lock (its audit child crash-looped); it is refused in one line instead. The
kernel drops the lock when the holder dies, even by SIGKILL, so a stale file never blocks.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType
from typing import IO

from ops.vocabulary import CliError


class FleetLock:
    def __init__(self, state_root: Path) -> None:
        self.path = state_root / "fleet.lock"
        self._fh: IO[str] | None = None

    def __enter__(self) -> FleetLock:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fh = self.path.open("a+", encoding="utf-8")
        except OSError as exc:
            raise CliError(f"cannot create {self.path}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "?"
            fh.close()
            raise CliError(f"another `townlet up` (pid {holder}) is running in this directory "
                           f"(it holds {self.path}); stop it first") from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        self._fh = fh
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._fh is not None:
            self._fh.close()  # closing releases the flock
            self._fh = None
