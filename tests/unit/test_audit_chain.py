"""The audit log is tamper-evident: every edit, removal, insertion or move is named by line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from shared.audit.reader import rotated_files
from shared.audit.sink import AuditLog
from shared.audit.verify import verify_log
from shared.trust.keys import parse_keyring
from shared.trust.signing import ResultSigner

RING = parse_keyring("k" * 48, "K")
SIGNER = ResultSigner(RING.current.shard_key("s1"))


def rec(i: int, **extra: Any) -> dict[str, Any]:
    return SIGNER.sign({"v": 1, "shard_id": "s1", "cmd_id": f"c{i}", "applied": True,
                        "tick": i, "status": "ok", "result": {"n": i}, **extra})


def write(path: Path, n: int = 6, **kw: Any) -> None:
    with AuditLog(path, fsync=False, chain_key=RING.current, **kw) as log:
        log.append_many([rec(i) for i in range(1, n + 1)])


def lines(path: Path) -> list[bytes]:
    return path.read_bytes().split(b"\n")[:-1]


def put(path: Path, rows: list[bytes]) -> None:
    path.write_bytes(b"".join(row + b"\n" for row in rows))


@pytest.fixture
def log(tmp_path: Path) -> Path:
    path = tmp_path / "commands.jsonl"
    write(path)
    return path


def test_an_intact_log_verifies_with_and_without_the_key(log: Path) -> None:
    for keyring in (RING, None):
        report = verify_log(log, keyring)
        assert report.ok, report.problem
        assert (report.lines, report.first_seq, report.head.seq) == (6, 1, 6)


def test_an_edited_line_is_named(log: Path) -> None:
    rows = lines(log)
    rows[2] = rows[2].replace(b'"n":3', b'"n":30')
    put(log, rows)
    problem = verify_log(log, None).problem
    assert problem is not None and problem.line == 3 and "edited" in problem.message


def test_an_edited_and_rehashed_line_is_named_with_the_key(log: Path) -> None:
    """Without the key, a re-hashed line is caught at the next line; with it, at itself."""
    from shared.audit.chain import body_of, line_hash

    rows = lines(log)
    record = json.loads(rows[2])
    record["result"] = {"n": 30}
    link = record.pop("chain")
    digest = line_hash(link["seq"], link["prev"], body_of(record))
    record["chain"] = {**link, "hash": digest}
    rows[2] = json.dumps(record, separators=(",", ":")).encode()
    put(log, rows)
    keyless = verify_log(log, None).problem
    assert keyless is not None and keyless.line == 4 and "does not follow" in keyless.message
    keyed = verify_log(log, RING).problem
    assert keyed is not None and keyed.line == 3 and "re-hashed" in keyed.message


@pytest.mark.parametrize("change, line", [
    (lambda rows: rows[:2] + rows[3:], 3),  # removed: the line after the gap is named
    (lambda rows: rows[:2] + [rows[3], rows[2]] + rows[4:], 3),  # moved
    (lambda rows: rows[:3] + [rows[1]] + rows[3:], 4),  # a copy inserted
    (lambda rows: rows[1:], 1),  # the first line removed
])
def test_removed_moved_and_inserted_lines_are_named(log: Path, change: Any, line: int) -> None:
    put(log, change(lines(log)))
    for keyring in (None, RING):
        problem = verify_log(log, keyring).problem
        assert problem is not None and problem.line == line, problem


def test_a_line_forged_without_the_key_is_named_even_with_a_valid_chain(log: Path) -> None:
    """An attacker may compute hashes; only the key signs them."""
    from shared.audit.chain import Chain, head_after

    rows = lines(log)
    chain = Chain(head_after(rows[-1] + b"\n") or pytest.fail("no head"))  # no key
    forged = {"v": 1, "shard_id": "s1", "cmd_id": "evil", "applied": True, "tick": 99,
              "name": "kill", "command": {"name": "kill", "args": ["agent_6"]}}
    from shared.audit.records import encode_line

    rows.append(chain.link(encode_line(forged).data).rstrip(b"\n"))
    put(log, rows)
    assert verify_log(log, None).ok  # a chain alone proves nothing about who wrote it
    problem = verify_log(log, RING).problem
    assert problem is not None and problem.line == 7 and "no link signature" in problem.message


def test_a_result_not_signed_by_its_shard_fails_with_the_key(tmp_path: Path) -> None:
    path = tmp_path / "commands.jsonl"
    with AuditLog(path, fsync=False, chain_key=RING.current) as log:
        log.append(rec(1))
        log.append({"v": 1, "shard_id": "s1", "cmd_id": "unsigned", "applied": True})
    problem = verify_log(path, RING).problem
    assert problem is not None and problem.line == 2 and "unsigned" in problem.message


def test_the_chain_runs_across_rotated_files_and_rotation_is_not_removal(
        tmp_path: Path) -> None:
    path = tmp_path / "commands.jsonl"
    write(path, n=30, max_bytes=1200, keep=2)
    assert [n for n, _ in rotated_files(path)] == [1, 2]
    report = verify_log(path, RING)
    assert report.ok, report.problem
    assert report.head.seq == 30 and report.first_seq is not None and report.first_seq > 1
    assert any("rotated away" in note for note in report.notes)
    oldest = rotated_files(path)[-1][1]
    put(oldest, lines(oldest)[1:])  # removal at the head of the oldest file: not rotation
    problem = verify_log(path, RING).problem
    assert problem is not None and problem.file == oldest and problem.line == 1


def test_the_chain_continues_after_a_restart_and_over_unchained_lines(tmp_path: Path) -> None:
    path = tmp_path / "commands.jsonl"
    path.write_bytes(b'{"shard_id":"s1","cmd_id":"old","applied":true}\n')  # before chaining
    write(path, n=2)
    write(path, n=4)  # a new writer: c1, c2 are duplicates, c3, c4 continue the chain
    report = verify_log(path, None)
    assert report.ok, report.problem
    assert (report.legacy, report.lines, report.head.seq) == (1, 5, 4)
    rows = lines(path)
    put(path, rows + [rows[0]])  # an unchained line after chaining began: inserted
    problem = verify_log(path, None).problem
    assert problem is not None and problem.line == 6 and "no chain link" in problem.message


def test_no_character_can_break_a_line(tmp_path: Path) -> None:
    """Every control and line/paragraph separator str.splitlines() knows stays inside."""
    breakers = "".join(chr(c) for c in range(32)) + "\x7f\x85\u2028\u2029"
    path = tmp_path / "commands.jsonl"
    with AuditLog(path, fsync=False) as log:
        log.append({"shard_id": "s1", "cmd_id": f"x{breakers}", "args": [breakers]})
    text = path.read_text(encoding="utf-8")
    assert len(text.splitlines()) == 1 == text.count("\n")
    assert json.loads(text.splitlines()[0])["args"] == [breakers]
    assert verify_log(path, None).ok


def test_a_log_written_across_a_key_rotation_verifies_with_the_keyring(tmp_path: Path) -> None:
    """ops/runbooks/rotate-keys.md: old lines stay verifiable while the old key is kept."""
    new = parse_keyring("n" * 48 + "," + "k" * 48, "K")  # newest first, then RING's key
    path = tmp_path / "commands.jsonl"
    write(path, n=3)  # under the old key
    with AuditLog(path, fsync=False, chain_key=new.current) as log:
        log.append(ResultSigner(new.current.shard_key("s1")).sign(
            {"v": 1, "shard_id": "s1", "cmd_id": "after", "applied": True}))
        log.append(rec(9))  # a result still signed under the old key, during the rotation
    assert verify_log(path, new).ok
    problem = verify_log(path, parse_keyring("n" * 48, "K")).problem  # old key dropped
    assert problem is not None and problem.line == 1 and "does not hold" in problem.message
