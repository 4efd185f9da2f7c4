"""Lock-free reading of the audit log and its rotated files (for ``townlet tail`` and tests).

Readers never take the writer's lock: they only read whole lines, so a line being written or a
rotation in progress is skipped or seen in its new file, never half-parsed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

_READ_CHUNK = 64 * 1024


def rotated_path(path: Path, index: int) -> Path:
    return path.with_name(f"{path.name}.{index}")


def rotated_files(path: Path) -> list[tuple[int, Path]]:
    """Existing ``<name>.<n>`` files, by ascending n (newest first); gaps are tolerated."""
    found: list[tuple[int, Path]] = []
    for candidate in path.parent.glob(f"{path.name}.*"):
        suffix = candidate.name[len(path.name) + 1 :]
        if suffix.isdigit():
            found.append((int(suffix), candidate))
    return sorted(found)


def _last_lines(path: Path, n: int) -> list[bytes]:
    """The last ``n`` complete lines of ``path`` (oldest first), reading backwards."""
    if n <= 0:
        return []
    with open(path, "rb") as handle:
        start = handle.seek(0, os.SEEK_END)
        buf = b""
        while start > 0 and buf.count(b"\n") <= n:  # n lines need n+1 newlines to be whole
            step = min(start, _READ_CHUNK)
            start -= step
            handle.seek(start)
            buf = handle.read(step) + buf
    if start > 0:
        buf = buf[buf.find(b"\n") + 1 :]  # the head may be the end of an unread line
    complete = buf[: buf.rfind(b"\n") + 1]  # a reader may see a line mid-write: skip it
    return complete.split(b"\n")[:-1][-n:]


def last_line(path: Path) -> bytes | None:
    """The last complete line of ``path`` (with its newline), None if it has none."""
    try:
        lines = _last_lines(path, 1)
    except FileNotFoundError:
        return None
    return lines[0] + b"\n" if lines else None


def read_tail(path: Path, n: int) -> list[dict[str, Any]]:
    """The newest ``n`` records across the current and rotated files, oldest first.

    Takes no lock, so ``townlet tail`` can read while the audit consumer writes.
    """
    records: list[dict[str, Any]] = []
    files = [path] + [p for _, p in rotated_files(path)]
    for file in files:
        if len(records) >= n:
            break
        try:
            lines = _last_lines(file, n - len(records))
        except FileNotFoundError:
            continue  # rotated away while we looked
        parsed = [_loads_or_none(line) for line in lines]
        records = [r for r in parsed if r is not None] + records
    return records[-n:] if n > 0 else []


def _loads_or_none(line: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
