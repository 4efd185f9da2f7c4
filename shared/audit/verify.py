"""Checking an audit log and its rotated files: the reader's side of ``shared/audit/chain.py``.

``verify_log`` walks every line, oldest file first, and stops at the first one that is not
what the writer wrote: a line whose content no longer matches its hash was **edited**; a line
whose ``seq``/``prev`` does not continue the line before it comes after a line that was
**removed, inserted or moved**; with the fleet keyring, a line without a valid link signature
was **inserted** (or edited and re-hashed) by someone without the key, and a line whose result
signature fails was never a shard's result. Lines are split on ``\\n`` only.

A chain cannot show lines cut off its *end*: the report gives the head (last ``seq`` and
``hash``) to compare with what the audit consumer logged (``audit_stopped``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.audit.chain import GENESIS, Head, anchor_mac, body_of, legacy_hash, line_hash, line_mac
from shared.audit.reader import rotated_files
from shared.audit.records import CHAIN_FIELD
from shared.trust.keys import Keyring
from shared.trust.signing import Verdict, verify_result


@dataclass(frozen=True)
class Problem:
    file: Path
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file} line {self.line}: {self.message}"


@dataclass
class Report:
    files: list[Path] = field(default_factory=list)
    lines: int = 0
    legacy: int = 0  # lines written before chaining (accepted only before the first link)
    first_seq: int | None = None
    head: Head = field(default_factory=Head)
    keyed: bool = False  # link and result signatures were checked
    notes: list[str] = field(default_factory=list)
    problem: Problem | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None


def log_files(path: Path) -> list[Path]:
    """The log's files, oldest first: ``.N`` ... ``.1``, then the current file."""
    rotated = [p for _, p in sorted(rotated_files(path), reverse=True)]
    return rotated + ([path] if path.exists() else [])


def _read_anchor(path: Path) -> dict[str, Any] | None:
    anchor = path.with_name(path.name + ".anchor")
    try:
        value = json.loads(anchor.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


class _Walker:
    """The state carried from one line to the next."""

    def __init__(self, report: Report, keyring: Keyring | None,
                 anchor: dict[str, Any] | None) -> None:
        self.report = report
        self.keyring = keyring
        self.anchor = anchor
        self.prev: Head | None = None  # the line before (None: none yet)
        self.chained = False  # a chained line has been seen

    def line(self, raw: bytes) -> str | None:
        """Check one complete line; the problem with it, if any."""
        try:
            record = json.loads(raw)
        except ValueError:
            return "not valid JSON (edited, or not written by the audit writer)"
        if not isinstance(record, dict):
            return "not an audit record"
        link = record.get(CHAIN_FIELD)
        if link is None:
            if self.chained:
                return "has no chain link: inserted after chaining began"
            self.report.legacy += 1
            self.prev = Head(0, legacy_hash(raw))
            return None
        if not (isinstance(link, dict) and isinstance(link.get("seq"), int)
                and isinstance(link.get("prev"), str) and isinstance(link.get("hash"), str)):
            return "has a malformed chain link"
        digest = line_hash(link["seq"], link["prev"], body_of(record))
        if digest != link["hash"]:
            return "was edited: its content no longer matches its chain hash"
        problem = self._signatures(record, link) or self._follows(link["seq"], link["prev"])
        if problem is None:
            self.chained = True
            self.prev = Head(link["seq"], digest)
            if self.report.first_seq is None:
                self.report.first_seq = link["seq"]
        return problem

    def _signatures(self, record: dict[str, Any], link: dict[str, Any]) -> str | None:
        if self.keyring is None:
            return None
        if "mac" not in link:
            return "carries no link signature: inserted, or written without the key"
        key = self.keyring.get(link.get("kid"))
        if key is None:
            return f"is signed with a key this keyring does not hold (kid {link.get('kid')!r})"
        if line_mac(key.audit_key(), link["hash"]) != link.get("mac"):
            return "was edited and re-hashed: its link signature does not match"
        verdict = verify_result({k: v for k, v in record.items() if k != CHAIN_FIELD},
                                self.keyring)
        if verdict is not Verdict.OK:
            return f"holds a result that fails verification ({verdict.value})"
        return None

    def _follows(self, seq: int, prev: str) -> str | None:
        """Whether a link continues the line before it (or starts the log correctly)."""
        if self.prev is None:
            return self._starts(seq, prev)
        expected = self.prev.seq + 1
        if seq == expected and prev == self.prev.hash:
            return None
        if seq != expected:
            return (f"does not follow the line before it (seq {seq}, expected {expected}): a "
                    "line was removed, inserted or moved here")
        return ("does not follow the line before it (its prev is not that line's hash): a line "
                "was removed, inserted or moved here")

    def _starts(self, seq: int, prev: str) -> str | None:
        if seq == 1 and prev == GENESIS:
            return None
        anchor = self.anchor
        if anchor is not None and anchor.get("seq") == seq - 1 and anchor.get("hash") == prev:
            if self.keyring is not None and not self._anchor_signed(anchor):
                return "follows an anchor whose signature does not match (edited)"
            self.report.notes.append(f"older files were rotated away: the log starts at seq "
                                     f"{seq}, right after the recorded anchor")
            return None
        return (f"is the first line but has seq {seq}: the lines before it were removed "
                "(no rotation anchor accounts for them)")

    def _anchor_signed(self, anchor: dict[str, Any]) -> bool:
        assert self.keyring is not None
        key = self.keyring.get(anchor.get("kid"))
        head = Head(int(anchor["seq"]), str(anchor["hash"]))
        return key is not None and anchor_mac(key.audit_key(), head) == anchor.get("mac")


def verify_log(path: Path, keyring: Keyring | None = None) -> Report:
    """Check ``path`` and its rotated files; the report names the first problem found."""
    report = Report(files=log_files(path), keyed=keyring is not None)
    if not report.files:
        report.problem = Problem(path, 0, "no such audit log (nor rotated files)")
        return report
    walker = _Walker(report, keyring, _read_anchor(path))
    for file in report.files:
        problem = _walk_file(file, walker, last=file == report.files[-1])
        if problem is not None:
            report.problem = problem
            return report
    if walker.prev is not None:
        report.head = walker.prev
    return report


def _walk_file(file: Path, walker: _Walker, *, last: bool) -> Problem | None:
    with open(file, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.endswith(b"\n"):
                if last:  # the writer may be mid-write, or a crash cut it (repaired at open)
                    walker.report.notes.append(f"{file} line {number} is incomplete and was "
                                               "not checked")
                    return None
                return Problem(file, number, "is incomplete (cut off)")
            walker.report.lines += 1
            message = walker.line(raw)
            if message is not None:
                return Problem(file, number, message)
    return None
