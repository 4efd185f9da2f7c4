"""Results kept aside: what the audit consumer refused to log, for inspection (bounded in bytes).

``commands.quarantine.jsonl`` beside the audit log holds one JSON line per refused result: when,
why (the verdict), who the broker says published it (the AMQP ``user_id``, when set), and the
record itself, scrubbed like an audit line and cut to ``MAX_RECORD_CHARS``. The file is capped
at ``max_bytes``: past that it is renamed to ``.1`` (replacing the previous one), so a flood of
forged results costs at most twice the cap on disk. Writing is best effort, never fsynced:
quarantine is evidence, and must never slow down or stop the audit log.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from shared.audit.records import AuditRecordError, encode_text

DEFAULT_MAX_BYTES = 16 * 1024 * 1024
MAX_RECORD_CHARS = 8192


def quarantine_path(audit_path: Path) -> Path:
    """``logs/console/commands.jsonl`` -> ``logs/console/commands.quarantine.jsonl``."""
    return audit_path.with_name(f"{audit_path.stem}.quarantine{audit_path.suffix or '.jsonl'}")


class Quarantine:
    def __init__(self, path: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        if max_bytes <= 0:
            raise ValueError("max_bytes must be > 0")
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.kept = 0

    def keep(self, record: Mapping[str, Any] | None, *, verdict: str, source: str | None,
             message_id: str | None, size: int) -> None:
        """Append one refused result; OSError when the disk refuses (the caller counts it)."""
        entry: dict[str, Any] = {"at_ms": int(time.time() * 1000), "verdict": verdict,
                                 "source": source, "message_id": message_id, "bytes": size}
        try:
            text = encode_text(record) if record is not None else ""
        except AuditRecordError:
            text = ""
        if len(text) > MAX_RECORD_CHARS:
            entry["record_cut"] = text[:MAX_RECORD_CHARS]
        elif text:
            entry["record"] = json.loads(text)
        line = (encode_text(entry) + "\n").encode("utf-8")
        self._append(line)
        self.kept += 1

    def _append(self, line: bytes) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            size = 0
        if size and size + len(line) > self.max_bytes:
            os.replace(self.path, self.path.with_name(self.path.name + ".1"))
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            view = memoryview(line)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
