"""`townlet verify PATH [--key-env VAR]`: is this audit log (and its rotated files) intact?

Exit 0 when every line is what the audit writer wrote, 1 naming the first line that was edited,
removed, inserted or moved (``shared/audit/verify.py`` says how each is recognised). With the
fleet key (``TOWNLET_RESULT_KEY``, or the variable ``--key-env`` names; old keys may follow the
current one, see ops/runbooks/rotate-keys.md) every line's link signature and result signature
are checked too; without it only the hash chain is, and the output says so first, loudly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shared.audit.verify import Report, verify_log
from shared.trust.env import keyring_from_env
from shared.trust.keys import Keyring

EXIT_OK, EXIT_BROKEN = 0, 1


def load_keyring(var: str) -> Keyring | None:
    """The keyring in ``var`` (None when unset); TrustKeyError when it holds no usable key."""
    return keyring_from_env(var)


def unkeyed_warning(key_env: str) -> str:
    return (f"warning: {key_env} is not set: signatures are NOT checked, only the hash chain "
            "(anyone can write a chain; set the key to prove who wrote the lines)")


def verify_command(path: Path, key_env: str) -> tuple[int, list[str]]:
    """(exit code, lines to print) for ``townlet verify``."""
    keyring = load_keyring(key_env)
    out: list[str] = []
    if keyring is None:
        out.append(unkeyed_warning(key_env))
    report = verify_log(path, keyring)
    out.extend(f"note: {note}" for note in report.notes)
    out.append(summary(report))
    return (EXIT_OK if report.ok else EXIT_BROKEN), out


def verify_json(path: Path, key_env: str) -> tuple[int, dict[str, Any]]:
    """(exit code, report) for ``townlet verify --json``: the same verdict, machine-readable."""
    keyring = load_keyring(key_env)
    report = verify_log(path, keyring)
    problem = report.problem
    return (EXIT_OK if report.ok else EXIT_BROKEN), {
        "ok": report.ok, "files": [str(p) for p in report.files], "lines": report.lines,
        "legacy_lines": report.legacy, "first_seq": report.first_seq,
        "head_seq": report.head.seq, "head_hash": report.head.hash,
        "signatures_checked": report.keyed, "notes": list(report.notes),
        "problem": None if problem is None else {"file": str(problem.file),
                                                 "line": problem.line,
                                                 "message": problem.message},
        "warning": None if keyring is not None else unkeyed_warning(key_env)}


def summary(report: Report) -> str:
    files = len(report.files)
    if report.problem is not None:
        return f"FAILED: {report.problem}"
    legacy = f", {report.legacy} written before chaining" if report.legacy else ""
    if report.first_seq is None:
        return f"ok: {report.lines} lines in {files} file(s){legacy}; no chained line yet"
    checked = ("link and result signatures valid" if report.keyed else "signatures not checked")
    return (f"ok: {report.lines} lines in {files} file(s){legacy}; chain intact from seq "
            f"{report.first_seq} to {report.head.seq} (head {report.head.hash}); {checked}")
