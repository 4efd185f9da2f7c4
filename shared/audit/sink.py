"""The console audit log: ``logs/console/commands.jsonl``, one JSON line per (shard_id, cmd_id).

Guarantee 5 of docs/PROTOCOL.md lives here: exactly one line per command (a refusal keyed apart,
docs/CONSOLE.md, "Results history and the audit log"), never a torn line, never a token. How
each part is kept:

* exactly once: an in-memory key index, rebuilt at open from the current file and every rotated
  file, makes ``append`` refuse a key already written; a key enters the index only after its
  line is fsynced, so the caller may ack the broker when ``append`` returns.
* never torn: each batch is one ``os.write`` on an O_APPEND descriptor; a crash mid-write leaves
  at most a partial last line, which the next open truncates away (the broker redelivers it,
  because it was never acked). A failed write truncates back and forces the same recovery.
* rotation: files are only ever renamed (``os.replace``), never copied, so a line lives in
  exactly one file at every instant, whatever point a crash interrupts the renames at.
* one writer: an exclusive ``flock`` on ``<name>.lock``; two writers would defeat the index.
* tamper-evident: every line written carries its hash chain link (``shared/audit/chain.py``),
  continued from the newest line on disk at every open; ``chain_key`` (the audit consumer's
  fleet key) signs each link. A file that rotation deletes leaves its last link behind in
  ``<name>.anchor``, so ``townlet verify`` can tell rotation from removal.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from threading import Lock
from types import TracebackType
from typing import Any

from shared.audit.chain import Chain, Head, head_after
from shared.audit.reader import last_line, read_tail, rotated_files, rotated_path
from shared.audit.records import AuditRecordError, EncodedLine, Key, encode_line, record_key
from shared.logging import get_logger
from shared.trust.keys import FleetKey

__all__ = [
    "DEFAULT_KEEP",
    "DEFAULT_MAX_BYTES",
    "AuditLog",
    "AuditLogLocked",
    "AuditRecordError",
    "EncodedLine",
    "encode_line",
    "read_tail",
]

DEFAULT_MAX_BYTES = 64 * 1024 * 1024
DEFAULT_KEEP = 10
_READ_CHUNK = 64 * 1024


class AuditLogLocked(RuntimeError):
    """Another AuditLog (in this or another process) already writes this file."""


def _parse_key(line: bytes) -> Key | None:
    try:
        record = json.loads(line)
        return record_key(record) if isinstance(record, dict) else None
    except (ValueError, AuditRecordError):
        return None


def _iter_lines(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as handle:
        yield from handle


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class AuditLog:
    """Append-only, deduplicating, rotating JSONL log. Thread-safe; one instance per file."""

    def __init__(
        self,
        path: Path,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        fsync: bool = True,
        keep: int = DEFAULT_KEEP,
        dedupe_existing: bool = True,
        chain_key: FleetKey | None = None,
    ) -> None:
        """``dedupe_existing=False`` starts the key index empty: for in-process sessions, whose
        towns (and so their ids) start afresh each run, while lines of earlier runs stay put.
        ``chain_key`` signs every chain link (the audit consumer passes its fleet key)."""
        if max_bytes <= 0 or keep < 1:
            raise ValueError("max_bytes must be > 0 and keep >= 1")
        self._path = Path(path)
        self._dedupe_existing = dedupe_existing
        self._max_bytes = max_bytes
        self._fsync = fsync
        self._keep = keep
        self._chain_key = chain_key
        self._chain = Chain(Head(), chain_key)
        self._log = get_logger("audit.sink", path=str(self._path))
        self._mutex = Lock()
        self._keys: set[Key] = set()
        self._fd: int | None = None
        self._size = 0
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._lock_fd: int | None = self._take_lock()
        try:
            self._recover()
        except BaseException:
            self.close()
            raise

    # -- public API ---------------------------------------------------------------------------

    @property
    def path(self) -> Path:
        return self._path

    @property
    def head(self) -> Head:
        """The chain head: the last line's ``seq`` and ``hash`` (worth logging elsewhere: a
        chain cannot show that lines were cut off its end)."""
        return self._chain.head

    def append(self, record: Mapping[str, Any]) -> bool:
        """Write one record durably; False (nothing written) if its key is already logged."""
        return self.append_encoded([encode_line(record)])[0]

    def append_many(self, records: Iterable[Mapping[str, Any]]) -> list[bool]:
        """Write a batch with one fsync; all records are validated before anything is written."""
        return self.append_encoded([encode_line(r) for r in records])

    def append_encoded(self, lines: Sequence[EncodedLine]) -> list[bool]:
        """Write pre-encoded lines; per line, True if written, False if a duplicate.

        On an exception (disk full...) no key of this call is reported written; lines already
        fsynced before a rotation stay and are found as duplicates when redelivered.
        """
        with self._mutex:
            if self._lock_fd is None:
                raise ValueError(f"audit log {self._path} is closed")
            if self._fd is None:
                self._recover()  # an earlier failure left the file in an unknown state
            return self._write_batch(lines)

    def keys(self) -> frozenset[Key]:
        with self._mutex:
            return frozenset(self._keys)

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def __len__(self) -> int:
        return len(self._keys)

    def tail(self, n: int) -> list[dict[str, Any]]:
        """The newest ``n`` records (oldest first), across rotated files."""
        with self._mutex:
            return read_tail(self._path, n)

    def close(self) -> None:
        """Release the descriptors. Writes are unbuffered, so this does no I/O of its own and
        abandoning an instance without it is exactly what a crash looks like."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # also releases the flock
            self._lock_fd = None

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- opening and recovery -----------------------------------------------------------------

    def _take_lock(self) -> int:
        lock_path = self._path.with_name(self._path.name + ".lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            os.close(fd)
            raise AuditLogLocked(f"{self._path} is already open for writing") from exc
        return fd

    def _recover(self) -> None:
        """Repair a torn tail, rebuild the key index from every file, reopen for appending."""
        self._repair_tail()
        self._keys = self._read_keys() if self._dedupe_existing else set()
        self._chain = Chain(self._read_head(), self._chain_key)
        self._open_current()

    def _read_head(self) -> Head:
        """The chain continues from the newest complete line on disk (current file first)."""
        for file in [self._path] + [p for _, p in rotated_files(self._path)]:
            line = last_line(file) if file.exists() else None
            head = head_after(line) if line is not None else None
            if head is not None:
                return head
        return Head()

    def _repair_tail(self) -> None:
        if not self._path.exists():
            return
        with open(self._path, "rb+") as handle:
            size = handle.seek(0, os.SEEK_END)
            end = self._complete_end(handle, size)
            if end == size:
                return
            handle.truncate(end)
            handle.flush()
            os.fsync(handle.fileno())
        self._log.warning("audit_torn_tail_repaired", dropped_bytes=size - end, kept_bytes=end)

    def _complete_end(self, handle: Any, size: int) -> int:
        """Offset just past the last line that is complete (newline) and a valid record."""
        end = size
        while end > 0:
            line_start, line = self._line_before(handle, end)
            if line.endswith(b"\n") and _parse_key(line) is not None:
                return end
            end = line_start
        return 0

    @staticmethod
    def _line_before(handle: Any, end: int) -> tuple[int, bytes]:
        """The line (or torn fragment) ending at ``end``, and its start offset."""
        tail = b""
        pos = end
        while pos > 0:
            start = max(0, pos - _READ_CHUNK)
            handle.seek(start)
            tail = handle.read(pos - start) + tail
            pos = start
            # a newline before the last byte marks the end of the previous line
            cut = tail.rfind(b"\n", 0, len(tail) - 1)
            if cut >= 0:
                return pos + cut + 1, tail[cut + 1 :]
        return 0, tail

    def _read_keys(self) -> set[Key]:
        keys: set[Key] = set()
        bad = duplicated = 0
        oldest_first = [p for _, p in reversed(rotated_files(self._path))] + [self._path]
        for file in oldest_first:
            if not file.exists():
                continue
            for line in _iter_lines(file):
                key = _parse_key(line)
                if key is None:
                    bad += 1
                elif key in keys:
                    duplicated += 1
                else:
                    keys.add(key)
        if bad or duplicated:
            # Mid-file damage is kept as evidence, never rewritten; only the tail is repaired.
            self._log.warning("audit_log_anomalies", unreadable=bad, duplicated=duplicated)
        return keys

    def _open_current(self) -> None:
        created = not self._path.exists()
        self._fd = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._size = os.fstat(self._fd).st_size
        if created and self._fsync:
            _fsync_dir(self._path.parent)

    # -- writing ------------------------------------------------------------------------------

    def _write_batch(self, lines: Sequence[EncodedLine]) -> list[bool]:
        written: list[bool] = []
        chunk = bytearray()
        chunk_keys: set[Key] = set()
        for line in lines:
            if line.key in self._keys or line.key in chunk_keys:
                written.append(False)
                continue
            # Linked first (a rotation does not change the link); a failed commit forces
            # _recover, which re-reads the head from disk.
            data = self._chain.link(line.data)
            pending = self._size + len(chunk)
            if pending > 0 and pending + len(data) > self._max_bytes:
                self._commit(chunk, chunk_keys)
                self._rotate()
                chunk, chunk_keys = bytearray(), set()
            chunk += data
            chunk_keys.add(line.key)
            written.append(True)
        self._commit(chunk, chunk_keys)
        return written

    def _commit(self, chunk: bytearray, keys: set[Key]) -> None:
        """Write and fsync one chunk; only then do its keys count as logged."""
        if not chunk:
            return
        assert self._fd is not None
        start = self._size
        try:
            view = memoryview(chunk)
            while view:  # os.write may write less than asked (signals, quotas)
                view = view[os.write(self._fd, view) :]
            if self._fsync:
                os.fsync(self._fd)
        except BaseException:
            self._abandon(truncate_to=start)
            raise
        self._size += len(chunk)
        self._keys.update(keys)

    def _rotate(self) -> None:
        """commands.jsonl -> .1, .1 -> .2, ...; renames only, so no line is ever copied."""
        try:
            for index, old in reversed(rotated_files(self._path)):
                if index >= self._keep:
                    self._write_anchor(old)
                    os.unlink(old)
                else:  # descending order: the target was just moved away or never existed
                    os.replace(old, rotated_path(self._path, index + 1))
            os.replace(self._path, rotated_path(self._path, 1))
            assert self._fd is not None
            os.close(self._fd)
            self._fd = None
            self._open_current()
            if self._fsync:
                _fsync_dir(self._path.parent)
        except BaseException:
            self._abandon(truncate_to=None)
            raise

    def _write_anchor(self, doomed: Path) -> None:
        """Record the last link of a file about to be deleted, atomically (docstring above)."""
        line = last_line(doomed)
        head = head_after(line) if line is not None else None
        if head is None:
            return
        anchor = self._path.with_name(self._path.name + ".anchor")
        tmp = anchor.with_name(anchor.name + ".tmp")
        tmp.write_text(json.dumps(self._chain.anchor(head), sort_keys=True) + "\n")
        if self._fsync:
            with open(tmp, "rb") as handle:
                os.fsync(handle.fileno())
        os.replace(tmp, anchor)

    def _abandon(self, truncate_to: int | None) -> None:
        """After a failed write or rotation: undo what we can, then force a full recovery."""
        if self._fd is None:
            return
        try:
            if truncate_to is not None:
                os.ftruncate(self._fd, truncate_to)
        except OSError:
            pass  # the next _recover repairs the tail and re-reads whatever did land
        finally:
            os.close(self._fd)
            self._fd = None
