"""The shard's write-ahead journal: one framed, checksummed record per tick boundary.

Frame: u32 body length, u32 crc32 of the body, body (a msgpack map via shared.wire). A crash
mid-append leaves at most one torn frame at the tail; opening the journal truncates it, which
is safe because nothing about that boundary ever left the worker (output commit).
"""

from __future__ import annotations

import os
import struct
import time
import zlib
from pathlib import Path
from typing import Any, BinaryIO

from shared import wire
from shared.logging import get_logger
from shared.metrics import Histogram

_HEADER = struct.Struct(">II")
MAX_RECORD = 64 * 1024 * 1024

log = get_logger("shard.journal")


class Journal:
    def __init__(self, path: Path, *, fsync: bool = True) -> None:
        self.path = path
        self.fsync = fsync
        self.fsync_seconds = Histogram()  # durable appends' fsyncs (townlet_journal_fsync_seconds)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._records = self._load_and_repair()
        self._fh: BinaryIO = open(path, "ab")  # noqa: SIM115 - held open for appends

    def _load_and_repair(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        data = self.path.read_bytes()
        records, good_end = _parse(data)
        if good_end < len(data):
            log.warning("journal_torn_tail_repaired", path=str(self.path),
                        dropped_bytes=len(data) - good_end)
            with open(self.path, "r+b") as fh:
                fh.truncate(good_end)
                fh.flush()
                os.fsync(fh.fileno())
        return records

    def records(self) -> list[dict[str, Any]]:
        """Every complete record present when the journal was opened, in order."""
        return list(self._records)

    def append(self, record: dict[str, Any], *, durable: bool = True) -> None:
        """Append one record; on an I/O error (disk full) the file is cut back to where it
        was, so the caller can retry the same record without leaving a torn frame behind."""
        body = wire.encode(record)
        start = self._fh.tell()
        try:
            self._fh.write(_HEADER.pack(len(body), zlib.crc32(body)) + body)
            self._fh.flush()
            if durable and self.fsync:
                started = time.perf_counter()
                os.fsync(self._fh.fileno())
                self.fsync_seconds.observe(time.perf_counter() - started)
        except OSError:
            self._cut_back(start)
            raise

    def _cut_back(self, offset: int) -> None:
        try:
            self._fh.seek(offset)
            self._fh.truncate(offset)  # never needs free space
        except (OSError, ValueError):
            # The buffered writer may still hold the failed bytes; reopen to drop them.
            self._fh = open(self.path, "r+b")  # noqa: SIM115
            self._fh.truncate(offset)
            self._fh.seek(offset)

    def reset(self) -> None:
        """Drop every record (called once a snapshot covering them is durable)."""
        self._fh.truncate(0)
        self._fh.seek(0)
        self._fh.flush()
        if self.fsync:
            os.fsync(self._fh.fileno())
        self._records = []

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.flush()
            if self.fsync:
                os.fsync(self._fh.fileno())
            self._fh.close()


def _parse(data: bytes) -> tuple[list[dict[str, Any]], int]:
    records: list[dict[str, Any]] = []
    pos = 0
    while pos + _HEADER.size <= len(data):
        length, crc = _HEADER.unpack_from(data, pos)
        start, end = pos + _HEADER.size, pos + _HEADER.size + length
        if length > MAX_RECORD or end > len(data):
            break
        body = data[start:end]
        if zlib.crc32(body) != crc:
            break
        try:
            records.append(wire.decode(body))
        except wire.WireError:
            break
        pos = end
    return records, pos
