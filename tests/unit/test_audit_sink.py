"""The audit sink: durable, deduplicated, never torn, never split by rotation, never a token."""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shared.audit.chain import GENESIS
from shared.audit.reader import read_tail, rotated_files
from shared.audit.sink import AuditLog, AuditLogLocked, AuditRecordError


def rec(i: int, shard: str = "s1", **extra: Any) -> dict[str, Any]:
    return {"v": 1, "shard_id": shard, "cmd_id": f"c{i}", "status": "ok", "tick": i, **extra}


def all_files(path: Path) -> list[Path]:
    """Oldest first: .N ... .1, then the current file."""
    return [p for _, p in reversed(rotated_files(path))] + ([path] if path.exists() else [])


def all_lines(path: Path) -> list[bytes]:
    lines: list[bytes] = []
    for file in all_files(path):
        data = file.read_bytes()
        assert data == b"" or data.endswith(b"\n"), f"{file.name} ends mid-line"
        lines.extend(data.split(b"\n")[:-1])
    return lines


def logged_keys(path: Path) -> list[tuple[str, str]]:
    return [(r["shard_id"], r["cmd_id"]) for r in map(json.loads, all_lines(path))]


def chained_len(record: dict[str, Any], tmp: Path, seq: int = 10) -> int:
    """The bytes ``record`` takes on disk as line ``seq``, chain link included (the link has
    a fixed length but for the digits of its seq)."""
    scratch = tmp / "scratch" / "measure.jsonl"
    with AuditLog(scratch, fsync=False) as log:
        log.append_many([rec(1000 + i) for i in range(seq - 1)] + [record])
    return len(scratch.read_bytes().split(b"\n")[-2]) + 1


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    return tmp_path / "logs" / "console" / "commands.jsonl"


@pytest.fixture
def fsync_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = os.fsync

    def counting(fd: int) -> None:
        calls.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fsync", counting)
    return calls


def test_append_creates_dirs_and_writes_one_compact_sorted_line(log_path: Path) -> None:
    with AuditLog(log_path) as log:
        ok = log.append({"tick": np.int64(7), "shard_id": "s1", "cmd_id": "c1", "msg": "héllo"})
    assert ok is True
    data = log_path.read_bytes()
    body, link = data.split(b',"chain":')  # the writer's link comes last
    assert body + b"}\n" == '{"cmd_id":"c1","msg":"héllo","shard_id":"s1","tick":7}\n'.encode()
    chain = json.loads(link[:-2])
    assert (chain["seq"], chain["prev"], len(chain["hash"])) == (1, GENESIS, 64)
    assert data.count(b"\n") == 1 and data.endswith(b"}\n")


def test_odd_values_are_serialised_not_rejected(log_path: Path) -> None:
    with AuditLog(log_path) as log:
        log.append(rec(1, arr=np.arange(3), f=np.float32(0.5), raw=b"\xff", tags={"b"}, k={1: 2}))
    line = json.loads(log_path.read_bytes())
    assert (line["arr"], line["f"], line["raw"], line["tags"], line["k"]) == (
        [0, 1, 2],
        0.5,
        "ff",
        ["b"],
        {"1": 2},
    )


def test_append_fsyncs_once_per_call(log_path: Path, fsync_calls: list[int]) -> None:
    with AuditLog(log_path) as log:
        fsync_calls.clear()  # the directory fsync of file creation is not what we count
        log.append(rec(1))
        assert len(fsync_calls) == 1
        log.append_many([rec(i) for i in range(2, 12)])
        assert len(fsync_calls) == 2
        log.append(rec(1))  # duplicate: nothing to make durable
        assert len(fsync_calls) == 2


def test_duplicate_is_refused_and_writes_nothing(log_path: Path) -> None:
    with AuditLog(log_path) as log:
        assert log.append(rec(1)) is True
        size = log_path.stat().st_size
        assert log.append(rec(1, status="changed")) is False
        assert log.append_many([rec(2), rec(2), rec(1)]) == [True, False, False]
    assert logged_keys(log_path) == [("s1", "c1"), ("s1", "c2")]
    assert size < log_path.stat().st_size


def test_same_cmd_id_on_two_shards_is_two_records(log_path: Path) -> None:
    with AuditLog(log_path) as log:
        assert log.append_many([rec(1, "a"), rec(1, "b")]) == [True, True]


def test_dedupe_survives_reopen_including_rotated_files(log_path: Path) -> None:
    with AuditLog(log_path, max_bytes=200) as log:
        log.append_many([rec(i) for i in range(10)])
    assert rotated_files(log_path), "the test needs rotated files"
    with AuditLog(log_path, max_bytes=200) as log:
        assert log.keys() == {("s1", f"c{i}") for i in range(10)}
        assert log.append_many([rec(i) for i in range(11)]) == [False] * 10 + [True]
    assert sorted(logged_keys(log_path)) == sorted(("s1", f"c{i}") for i in range(11))


@pytest.mark.parametrize(
    "tail",
    [
        b'{"cmd_id":"c3","shard',  # torn mid-record
        b"\x00" * 5000,  # zero-filled blocks after a power cut
        b'{"cmd_id":"c3"}\n',  # complete but not a record
        b"not json\n\x00\x00",  # two bad lines
    ],
)
def test_torn_tail_is_truncated_at_open(log_path: Path, tail: bytes) -> None:
    with AuditLog(log_path) as log:
        log.append_many([rec(1), rec(2)])
    good = log_path.read_bytes()
    with open(log_path, "ab") as handle:
        handle.write(tail)
    with AuditLog(log_path) as log:
        assert log_path.read_bytes() == good
        assert log.append(rec(3)) is True  # the redelivered record now lands whole
    assert logged_keys(log_path) == [("s1", "c1"), ("s1", "c2"), ("s1", "c3")]


def test_file_of_only_a_torn_line_becomes_empty(log_path: Path) -> None:
    log_path.parent.mkdir(parents=True)
    log_path.write_bytes(b'{"shard_id":"s1","cmd_id":"c')
    with AuditLog(log_path) as log:
        assert len(log) == 0
    assert log_path.read_bytes() == b""


def test_failed_write_leaves_no_fragment(log_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_write = os.write
    calls = 0

    def disk_full_once(fd: int, data: Any) -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            real_write(fd, bytes(data)[:10])
            raise OSError(28, "No space left on device")
        return real_write(fd, data)

    with AuditLog(log_path) as log:
        log.append(rec(1))
        monkeypatch.setattr(os, "write", disk_full_once)
        with pytest.raises(OSError):
            log.append(rec(2))
        assert ("s1", "c2") not in log
        assert log.append(rec(2)) is True
    assert logged_keys(log_path) == [("s1", "c1"), ("s1", "c2")]


def test_rotation_keeps_whole_lines_under_the_limit_and_drops_the_oldest(
        log_path: Path, tmp_path: Path) -> None:
    line_len = chained_len(rec(10), tmp_path)
    with AuditLog(log_path, max_bytes=3 * line_len, keep=3) as log:
        for i in range(10, 40):  # two-digit ids: every line has the same length
            log.append(rec(i))
    assert [n for n, _ in rotated_files(log_path)] == [1, 2, 3]
    for file in all_files(log_path):
        assert file.stat().st_size <= 3 * line_len
    # 30 lines, 3 per file, 4 files kept: the newest 12 survive, in order.
    assert logged_keys(log_path) == [("s1", f"c{i}") for i in range(28, 40)]


def test_a_line_bigger_than_max_bytes_gets_a_file_of_its_own(log_path: Path) -> None:
    with AuditLog(log_path, max_bytes=50) as log:
        log.append_many([rec(1), rec(2, blob="x" * 200), rec(3)])
    sizes = [len(f.read_bytes().split(b"\n")) - 1 for f in all_files(log_path)]
    assert sizes == [1, 1, 1]


class SimulatedCrash(BaseException):
    """Raised where the process would die; BaseException so no `except Exception` eats it."""


def crash_on_call(real: Callable[..., Any], at: int, partial: bool) -> Callable[..., Any]:
    """Wrap an os function to die on its ``at``-th call (for os.write: after half the bytes)."""
    count = 0

    def wrapper(*args: Any) -> Any:
        nonlocal count
        count += 1
        if count == at:
            if partial:
                real(args[0], bytes(args[1])[: max(1, len(args[1]) // 2)])
            raise SimulatedCrash
        return real(*args)

    return wrapper


def crash_plan(rng: random.Random, path: Path) -> tuple[str, int]:
    """Where the next "process" dies: inside a batch write, at any rename of its first
    rotation (the shift of each older file, or the final current -> .1), or right after
    that rotation's renames, before the new file exists."""
    renames_per_rotation = len(rotated_files(path)) + 1
    return rng.choice(
        [
            ("write", rng.randint(1, 6)),
            ("replace", rng.randint(1, renames_per_rotation)),
            ("open", 1),
        ]
    )


@pytest.mark.parametrize("seed", range(6))
def test_rotation_with_crashes_never_splits_loses_or_duplicates(
    log_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    """A broker-like driver: records stay pending until an append for them returns; the
    process "dies" inside os.write (half a batch on disk) or between rotation renames, and a
    fresh AuditLog then sees everything pending (and some already acked ones) again."""
    rng = random.Random(seed)
    wanted = {("s1", f"c{i}") for i in range(300)}
    pending = [rec(i) for i in range(300)]
    acked: list[dict[str, Any]] = []
    crashes = 0
    # A real crash does not clean up: the failed-write truncation must not happen either.
    monkeypatch.setattr(os, "ftruncate", lambda fd, n: None)
    real: dict[str, Callable[..., Any]] = {
        "write": os.write,
        "replace": os.replace,
        "open": os.open,
    }
    while pending:
        log = AuditLog(log_path, max_bytes=rng.choice([300, 700, 2000]), fsync=False, keep=10_000)
        name, at = crash_plan(rng, log_path)
        monkeypatch.setattr(os, name, crash_on_call(real[name], at, partial=name == "write"))
        try:
            while pending:
                batch = [pending.pop(0) for _ in range(min(len(pending), rng.randint(1, 8)))]
                batch += rng.sample(acked, min(len(acked), rng.randint(0, 2)))  # redeliveries
                try:
                    log.append_many(batch)
                except SimulatedCrash:
                    pending[:0] = batch  # never acked: the broker delivers them again
                    crashes += 1
                    break
                acked.extend(batch)
        finally:
            monkeypatch.setattr(os, name, real[name])
            log.close()  # closes descriptors only, which is what the kernel does on exit
    assert crashes >= 5, "the test must actually crash"
    assert len(rotated_files(log_path)) > 10
    keys = logged_keys(log_path)  # also asserts every file ends with a whole line
    assert len(keys) == len(set(keys)), "a line was duplicated"
    assert set(keys) == wanted
    with AuditLog(log_path, fsync=False) as log:  # and the recovered index agrees
        assert log.keys() == wanted


def test_token_auth_password_are_scrubbed_at_any_depth(log_path: Path) -> None:
    secret = "s3cr3t-t0ken"
    record = rec(
        1,
        token=secret,
        command={"name": "spawn", "Auth": {"token": secret}, "kwargs": {"PASSWORD": secret}},
        result=[{"nested": [{"TOKEN": secret, "keep": 1}]}],
    )
    with AuditLog(log_path) as log:
        log.append(record)
    text = log_path.read_text()
    assert secret not in text
    line = json.loads(text)
    assert line["command"] == {"name": "spawn", "kwargs": {}}
    assert line["result"] == [{"nested": [{"keep": 1}]}]
    assert record["token"] == secret, "the caller's record must not be mutated"


@pytest.mark.parametrize(
    "bad",
    [{"shard_id": "s1"}, {"shard_id": "s1", "cmd_id": 5}, {"shard_id": "", "cmd_id": "c"}, []],
)
def test_records_without_string_ids_are_rejected(log_path: Path, bad: Any) -> None:
    with AuditLog(log_path) as log, pytest.raises(AuditRecordError):
        log.append_many([rec(1), bad])
    assert log_path.read_bytes() == b"", "a rejected batch writes nothing"


def test_tail_reads_across_rotated_files(log_path: Path, tmp_path: Path) -> None:
    with AuditLog(log_path, max_bytes=3 * chained_len(rec(10), tmp_path)) as log:
        log.append_many([rec(i) for i in range(20)])
        assert [r["cmd_id"] for r in log.tail(7)] == [f"c{i}" for i in range(13, 20)]
        assert log.tail(0) == []
        assert len(log.tail(100)) == 20
    with open(log_path, "ab") as handle:
        handle.write(b'{"half a line')  # a reader may see a write in progress
    assert [r["cmd_id"] for r in read_tail(log_path, 2)] == ["c18", "c19"]


def test_second_writer_is_refused_until_the_first_closes(log_path: Path) -> None:
    first = AuditLog(log_path)
    with pytest.raises(AuditLogLocked):
        AuditLog(log_path)
    first.close()
    AuditLog(log_path).close()


def test_append_after_close_raises(log_path: Path) -> None:
    log = AuditLog(log_path)
    log.close()
    with pytest.raises(ValueError, match="closed"):
        log.append(rec(1))
