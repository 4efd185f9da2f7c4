"""Journal records are typed values whose wire form is the one earlier versions wrote.

``tests/golden/journal-v1.bin`` was written by the worker before records were typed (a shard
killed mid-run: boundaries with applied results, refusals and replies, and sent marks). Every
record must read back and encode to the very same bytes, or existing journals stop recovering.
"""

from __future__ import annotations

from pathlib import Path

from shared import wire
from shared.console.results import ConsoleResult
from workers.shard.journal import Journal
from workers.shard.records import BoundaryRecord, SentMark, record_from_wire

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "journal-v1.bin"


def test_a_journal_written_before_typed_records_reads_back_byte_for_byte(
        tmp_path: Path) -> None:
    copy = tmp_path / "journal.bin"
    copy.write_bytes(GOLDEN.read_bytes())
    raw = Journal(copy).records()
    records = [record_from_wire(r) for r in raw]
    assert {type(r) for r in records} == {BoundaryRecord, SentMark}
    boundaries = [r for r in records if isinstance(r, BoundaryRecord)]
    results = [res for b in boundaries for res in b.results]
    assert {res.status for res in results} == {"ok", "error"} and any(r.applied for r in results)
    for record, original in zip(records, raw, strict=True):
        assert wire.encode(record.to_wire()) == wire.encode(original)


def test_records_from_before_replies_and_counters_were_journaled_still_read() -> None:
    result = ConsoleResult.build(shard_id="s", cmd_id="c", name="help", tick=1, issuer=None,
                                 latency_ms=0, command={"name": "help"}, applied=True)
    old = {"k": "b", "seq": 1, "boundary": 1, "stepped": True, "hash": "h",
           "results": [result.to_wire()]}
    record = record_from_wire(old)
    assert isinstance(record, BoundaryRecord)
    assert record.replies == ((None, None),) and record.auto_ids is None
    assert record.results == (result,)
