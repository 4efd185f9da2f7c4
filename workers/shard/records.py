"""The journal's records as typed values, and the one place they meet the wire.

Two kinds (docs/PROTOCOL.md, guarantee 4): a ``BoundaryRecord`` per tick boundary (its results,
whether the tick ran, the state hash) written and fsynced before any output of that boundary,
and a ``SentMark`` once a boundary's outputs (and all before it) are published. The wire forms
are msgpack maps, ``{"k": "b", ...}`` and ``{"k": "out", "seq": n}``, exactly as earlier
versions wrote them, so an existing journal still recovers (records from before replies or
auto-id counters were journaled read as "no reply" and "no counters").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from shared.console.results import ConsoleResult

Reply = tuple[str | None, str | None]  # (reply_to, correlation_id) of the delivery answered


@dataclass(frozen=True, slots=True)
class BoundaryRecord:
    seq: int
    boundary: int  # the tick number the boundary's commands were applied at
    stepped: bool  # whether tick ``boundary`` ran (False while paused)
    hash: str  # the state hash after the boundary
    results: tuple[ConsoleResult, ...]
    replies: tuple[Reply, ...]
    auto_ids: dict[str, list[int]] | None  # the ledger's assigned-id counters after it

    def to_wire(self) -> dict[str, Any]:
        return {"k": "b", "seq": self.seq, "boundary": self.boundary, "stepped": self.stepped,
                "hash": self.hash, "results": [r.to_wire() for r in self.results],
                "replies": [[reply_to, corr] for reply_to, corr in self.replies],
                "auto_ids": self.auto_ids}


@dataclass(frozen=True, slots=True)
class SentMark:
    seq: int  # outputs of this boundary and every earlier one are published

    def to_wire(self) -> dict[str, Any]:
        return {"k": "out", "seq": self.seq}


JournalRecord = BoundaryRecord | SentMark


def record_from_wire(raw: Mapping[str, Any]) -> JournalRecord:
    """A journal record; ValueError for a kind this version does not know."""
    kind = raw.get("k")
    if kind == "out":
        return SentMark(int(raw["seq"]))
    if kind != "b":
        raise ValueError(f"unknown journal record kind {kind!r}")
    results = tuple(ConsoleResult.from_wire(r) for r in raw["results"])
    replies = raw.get("replies") or [[None, None]] * len(results)
    auto_ids = raw.get("auto_ids")
    return BoundaryRecord(
        seq=int(raw["seq"]), boundary=int(raw["boundary"]), stepped=bool(raw["stepped"]),
        hash=str(raw["hash"]), results=results,
        replies=tuple((reply_to, corr) for reply_to, corr in replies),
        auto_ids=dict(auto_ids) if auto_ids is not None else None)
