"""Audit records as lines: scrubbing, dedupe keys and the one JSON encoding (pure functions).

A line is compact JSON with sorted keys and unescaped UTF-8, so the same record always gives the
same bytes; numpy values and other odd types the wire may carry are converted, never rejected.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from shared.trust.canonical import SCRUB_KEYS, scrub

__all__ = ["SCRUB_KEYS", "AuditRecordError", "EncodedLine", "encode_line", "encode_text",
           "record_key", "scrub"]

Key = tuple[str, str]

CHAIN_FIELD = "chain"  # added by the writer (shared/audit/chain.py), never by a record
# str.splitlines() (and some other readers) also split on these; JSON does not escape them.
_LINE_BREAKS = {"\u0085": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"}


class AuditRecordError(ValueError):
    """The record can never be logged (no shard_id/cmd_id, unserialisable): poison, not I/O."""


@dataclass(frozen=True)
class EncodedLine:
    """A scrubbed, serialised record: its dedupe key and its bytes (ending in a newline)."""

    key: Key
    data: bytes


def _json_default(obj: Any) -> Any:
    """Numpy scalars/arrays (duck-typed: ``tolist``), bytes, sets; anything else as text."""
    if isinstance(obj, bytes | bytearray | memoryview):
        raw = bytes(obj)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return raw.hex()
    if hasattr(obj, "tolist"):
        return scrub(obj.tolist())
    if isinstance(obj, set | frozenset):
        return sorted((scrub(v) for v in obj), key=repr)
    return str(obj)


def record_key(record: Mapping[str, Any]) -> Key:
    """The dedupe key of a record: (shard_id, cmd_id) for a result whose command was applied.

    A refusal (bad token, wrong role, ...) is keyed apart, as ``<cmd_id>#refused:<code>``, so a
    retry that fixes the problem and is applied still gets its own line: exactly one line per
    applied (shard_id, cmd_id), plus one per distinct refusal of it.

    A ``#`` in a cmd_id is doubled first, so no cmd_id can spell another's refusal key (an
    applied ``X#refused:forbidden`` would otherwise take the key of a refusal of ``X``); ids
    without ``#`` keep the keys earlier versions gave them.
    """
    shard_id, cmd_id = record.get("shard_id"), record.get("cmd_id")
    if not (isinstance(shard_id, str) and shard_id and isinstance(cmd_id, str) and cmd_id):
        raise AuditRecordError("record needs string shard_id and cmd_id")
    escaped = cmd_id.replace("#", "##")
    if record.get("applied") is False:
        error = record.get("error")
        code = error.get("code") if isinstance(error, Mapping) else None
        return (shard_id, f"{escaped}#refused:{code}")
    return (shard_id, escaped)


def encode_text(record: Mapping[str, Any]) -> str:
    """The one JSON form of a record: scrubbed, compact, sorted keys, unescaped UTF-8 except
    the characters other readers take for line breaks (docs/PROTOCOL.md, "The audit log")."""
    try:
        text = json.dumps(scrub(record), separators=(",", ":"), sort_keys=True,
                          ensure_ascii=False, default=_json_default)
    except (TypeError, ValueError, RecursionError) as exc:
        raise AuditRecordError(f"record cannot be serialised: {exc}") from exc
    # json.dumps escapes control characters, so after this the only newline is the terminator.
    for char, escape in _LINE_BREAKS.items():
        if char in text:
            text = text.replace(char, escape)
    return text


def encode_line(record: Mapping[str, Any]) -> EncodedLine:
    """Scrub and serialise one record (compact, sorted keys, UTF-8) into one line."""
    if not isinstance(record, Mapping):
        raise AuditRecordError(f"record must be a mapping, not {type(record).__name__}")
    if CHAIN_FIELD in record:
        raise AuditRecordError(f"{CHAIN_FIELD!r} is the audit writer's field, not a record's")
    text = encode_text(record)
    return EncodedLine(record_key(record), text.encode("utf-8") + b"\n")
