"""The canonical bytes of a record: what a signature covers (docs/PROTOCOL.md, "Signatures").

A result travels as msgpack (the wire) and is stored as JSON (the audit log); a signature must
verify on both, so it covers neither encoding but this one: compact JSON with sorted keys and
every non-ASCII character escaped, of the record *as the audit log keeps it* (``scrub``: keys
named token/auth/password dropped, map keys as strings). The same plain value always gives the
same bytes, and a JSON or msgpack round trip of a plain value gives the same value back.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

# Keys never kept in an audit line (docs/CONSOLE.md, "Auth"), so never covered by a signature.
SCRUB_KEYS = frozenset({"token", "auth", "password"})


class NotCanonical(ValueError):
    """The record holds a value JSON cannot carry (bytes, a set...): it cannot be signed."""


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


def _refuse(obj: Any) -> Any:
    raise NotCanonical(f"a {type(obj).__name__} has no canonical form")


def canonical(record: Mapping[str, Any], *, without: frozenset[str] = frozenset()) -> bytes:
    """The canonical bytes of ``record`` minus its top-level keys in ``without``."""
    body = {k: v for k, v in record.items() if k not in without}
    # Fast path (every result a shard signs): nothing to scrub shows in the text, so scrubbing
    # would change nothing and the walk is skipped. Anything else takes the full path.
    try:
        text = _dumps(body)
    except (TypeError, ValueError, RecursionError):
        text = None
    if text is None or any(name in text.lower() for name in _SCRUBBED_KEY_TEXT):
        try:
            text = _dumps(scrub(body))
        except (TypeError, ValueError, RecursionError) as exc:
            raise NotCanonical(f"record cannot be made canonical: {exc}") from None
    return text.encode("ascii")


_SCRUBBED_KEY_TEXT = tuple(f'"{key}":' for key in SCRUB_KEYS)


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      default=_refuse)
