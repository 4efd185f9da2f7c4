"""Audit records as lines: scrubbing, dedupe keys and the one JSON encoding (pure functions).

A line is compact JSON with sorted keys and unescaped UTF-8, so the same record always gives the
same bytes; numpy values and other odd types the wire may carry are converted, never rejected.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

Key = tuple[str, str]

SCRUB_KEYS = frozenset({"token", "auth", "password"})


class AuditRecordError(ValueError):
    """The record can never be logged (no shard_id/cmd_id, unserialisable): poison, not I/O."""


@dataclass(frozen=True)
class EncodedLine:
    """A scrubbed, serialised record: its dedupe key and its bytes (ending in a newline)."""

    key: Key
    data: bytes


def scrub(value: Any) -> Any:
    """Deep copy of ``value`` without any key named token/auth/password (any case).

    Non-string keys become strings, because JSON objects only have string keys and mixed key
    types would make ``sort_keys`` fail.
    """
    if isinstance(value, Mapping):
        return {
            _str_key(k): scrub(v)
            for k, v in value.items()
            if not (isinstance(k, str) and k.lower() in SCRUB_KEYS)
        }
    if isinstance(value, list | tuple):
        return [scrub(v) for v in value]
    return value


def _str_key(key: object) -> str:
    if isinstance(key, bytes):
        return key.decode("utf-8", "backslashreplace")
    return key if isinstance(key, str) else str(key)


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
    """
    shard_id, cmd_id = record.get("shard_id"), record.get("cmd_id")
    if not (isinstance(shard_id, str) and shard_id and isinstance(cmd_id, str) and cmd_id):
        raise AuditRecordError("record needs string shard_id and cmd_id")
    if record.get("applied") is False:
        error = record.get("error")
        code = error.get("code") if isinstance(error, Mapping) else None
        return (shard_id, f"{cmd_id}#refused:{code}")
    return (shard_id, cmd_id)


def encode_line(record: Mapping[str, Any]) -> EncodedLine:
    """Scrub and serialise one record (compact, sorted keys, UTF-8) into one line."""
    if not isinstance(record, Mapping):
        raise AuditRecordError(f"record must be a mapping, not {type(record).__name__}")
    try:
        clean = scrub(record)
        text = json.dumps(
            clean, separators=(",", ":"), sort_keys=True, ensure_ascii=False, default=_json_default
        )
    except (TypeError, ValueError, RecursionError) as exc:
        raise AuditRecordError(f"record cannot be serialised: {exc}") from exc
    # json.dumps escapes control characters, so the only newline is the terminator.
    return EncodedLine(record_key(clean), text.encode("utf-8") + b"\n")
