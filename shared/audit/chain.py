"""The hash chain of the audit log: every line names the one before it (docs/PROTOCOL.md,
"The audit log").

Each line the writer appends ends with ``"chain": {seq, prev, hash[, kid, mac]}``:

* ``seq`` counts lines across the current and rotated files (1 is the first chained line);
* ``prev`` is the previous line's ``hash`` (``GENESIS`` for the first line of a log; for the
  first chained line after lines written before chaining, ``legacy_hash`` of that line);
* ``hash`` is SHA-256 over ``seq``, ``prev`` and the line's own bytes without the chain field
  (the writer's one encoding, so a verifier re-encodes the parsed line and gets them back);
* ``kid``/``mac``: HMAC-SHA256 of ``hash`` under the audit-line key derived from the fleet key,
  when the writer has one (the audit consumer does), so a line edited and re-hashed, or one
  inserted, is caught by anyone holding the fleet key.

Editing a line breaks its ``hash``; removing, inserting or reordering lines breaks the next
line's ``prev`` or ``seq``. ``Chain`` is the writer's side (pure: bytes in, bytes out);
``shared/audit/verify.py`` is the reader's.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from shared.audit.records import CHAIN_FIELD, encode_text
from shared.trust.keys import FleetKey

GENESIS = "0" * 64
_HASH_LABEL = b"townlet audit chain v1\n"
_MAC_LABEL = b"townlet audit line v1\n"
_LEGACY_LABEL = b"townlet audit legacy v1\n"
_ANCHOR_LABEL = b"townlet audit anchor v1\n"


@dataclass(frozen=True, slots=True)
class Head:
    """Where the chain stands: the last line's ``seq`` and ``hash``."""

    seq: int = 0
    hash: str = GENESIS


def line_hash(seq: int, prev: str, body: bytes) -> str:
    return hashlib.sha256(_HASH_LABEL + f"{seq}\n{prev}\n".encode() + body).hexdigest()


def line_mac(audit_key: bytes, digest: str) -> str:
    return hmac.new(audit_key, _MAC_LABEL + digest.encode("ascii"), hashlib.sha256).hexdigest()


def anchor_mac(audit_key: bytes, head: Head) -> str:
    text = f"{head.seq}\n{head.hash}".encode("ascii")
    return hmac.new(audit_key, _ANCHOR_LABEL + text, hashlib.sha256).hexdigest()


def legacy_hash(line: bytes) -> str:
    """What a line written before chaining counts as (its raw bytes, without the newline)."""
    return hashlib.sha256(_LEGACY_LABEL + line.rstrip(b"\n")).hexdigest()


def body_of(record: Mapping[str, Any]) -> bytes:
    """The bytes a chained line's ``hash`` covers: the line re-encoded without its link."""
    return encode_text({k: v for k, v in record.items() if k != CHAIN_FIELD}).encode("utf-8")


class Chain:
    """Links lines as they are written; the writer owns one per log."""

    def __init__(self, head: Head, key: FleetKey | None = None) -> None:
        self.head = head
        self._kid = key.kid if key is not None else None
        self._audit_key = key.audit_key() if key is not None else None

    @property
    def signed(self) -> bool:
        return self._audit_key is not None

    def link(self, data: bytes) -> bytes:
        """``data`` (one encoded line: a JSON object and a newline) with its chain link."""
        body = data[:-1] if data.endswith(b"\n") else data
        if not (body.startswith(b"{") and body.endswith(b"}") and len(body) > 2):
            raise ValueError("only a non-empty JSON object line can be chained")
        seq = self.head.seq + 1
        digest = line_hash(seq, self.head.hash, body)
        link: dict[str, Any] = {"seq": seq, "prev": self.head.hash, "hash": digest}
        if self._audit_key is not None:
            link["kid"] = self._kid
            link["mac"] = line_mac(self._audit_key, digest)
        self.head = Head(seq, digest)
        text = json.dumps(link, separators=(",", ":"), sort_keys=True)
        return body[:-1] + f',"{CHAIN_FIELD}":{text}}}\n'.encode()

    def anchor(self, head: Head) -> dict[str, Any]:
        """The record of the last line of a file rotation deletes (``<log>.anchor``): the
        oldest file left must start right after it, or lines were removed."""
        out: dict[str, Any] = {"seq": head.seq, "hash": head.hash}
        if self._audit_key is not None:
            out["kid"] = self._kid
            out["mac"] = anchor_mac(self._audit_key, head)
        return out


def head_after(line: bytes) -> Head | None:
    """The chain head a complete line leaves behind (None: not a JSON object line)."""
    try:
        record = json.loads(line)
    except ValueError:
        return None
    if not isinstance(record, dict):
        return None
    link = record.get(CHAIN_FIELD)
    if isinstance(link, dict) and isinstance(link.get("seq"), int) \
            and isinstance(link.get("hash"), str):
        return Head(int(link["seq"]), str(link["hash"]))
    return Head(0, legacy_hash(line))  # written before chaining: the next line starts at 1
