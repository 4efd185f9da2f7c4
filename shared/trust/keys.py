"""Result keys: the fleet key, the keys derived from it, their ids (docs/THREAT_MODEL.md).

* The **fleet key** is a secret of at least 32 characters (``openssl rand -hex 32``) from
  ``TOWNLET_RESULT_KEY``. Whoever holds it can sign for every shard: only verifiers (the audit
  consumer, ``townlet verify``, ``townlet replay``) need it.
* A **shard key** is HMAC-SHA256(fleet key, "townlet result key v1" NUL shard id): a shard
  handed only its own (``TOWNLET_SHARD_KEY``, in the form ``tsk1:<kid>:<shard>:<hex>``, made
  by ``townlet shard-key``) cannot sign for another shard, because a verifier derives the key
  from the shard id the result names.
* The **audit-line key** is derived the same way; the audit consumer signs each line's chain
  link with it, so an edited line cannot be re-hashed without the fleet key.
* A **key id** (``kid``, 16 hex digits) names a fleet key without revealing it; signatures
  carry it, so several fleet keys can be accepted at once while one is rotated out.

A keyring string holds one or more fleet keys separated by commas or whitespace, the newest
first: the first signs, all verify. No key, derived or not, is ever logged or published.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass, field

MIN_KEY_CHARS = 32
TOKEN_PREFIX = "tsk1"
_KID_LABEL = b"townlet key id v1"
_SHARD_LABEL = b"townlet result key v1\x00"
_AUDIT_LABEL = b"townlet audit line key v1"
_SEPARATORS = re.compile(r"[\s,]+")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_KID = re.compile(r"^[0-9a-f]{16}$")


class TrustKeyError(ValueError):
    """A key that cannot be used; the message names the variable, never the key."""


def _mac(key: bytes, label: bytes) -> bytes:
    return hmac.new(key, label, hashlib.sha256).digest()


@dataclass(frozen=True)
class FleetKey:
    secret: bytes = field(repr=False)

    @property
    def kid(self) -> str:
        return _mac(self.secret, _KID_LABEL)[:8].hex()

    def shard_key(self, shard_id: str) -> ShardKey:
        return ShardKey(self.kid, shard_id, _mac(self.secret, _SHARD_LABEL + shard_id.encode()))

    def audit_key(self) -> bytes:
        return _mac(self.secret, _AUDIT_LABEL)


@dataclass(frozen=True)
class ShardKey:
    kid: str
    shard_id: str
    secret: bytes = field(repr=False)

    def token(self) -> str:
        """The form a shard is handed (``TOWNLET_SHARD_KEY``)."""
        return f"{TOKEN_PREFIX}:{self.kid}:{self.shard_id}:{self.secret.hex()}"


@dataclass(frozen=True)
class Keyring:
    """Fleet keys by id, the newest (the one that signs) first."""

    keys: tuple[FleetKey, ...]

    def __post_init__(self) -> None:
        if not self.keys:
            raise TrustKeyError("a keyring needs at least one key")

    @property
    def current(self) -> FleetKey:
        return self.keys[0]

    @property
    def kids(self) -> tuple[str, ...]:
        return tuple(key.kid for key in self.keys)

    def get(self, kid: object) -> FleetKey | None:
        for key in self.keys:
            if isinstance(kid, str) and hmac.compare_digest(key.kid, kid):
                return key
        return None


def parse_keyring(text: str, source: str) -> Keyring:
    """The fleet keys in ``text`` (from ``source``, named in errors)."""
    parts = [p for p in _SEPARATORS.split(text.strip()) if p]
    if not parts:
        raise TrustKeyError(f"{source} holds no key")
    for number, part in enumerate(parts, start=1):
        if len(part) < MIN_KEY_CHARS:
            raise TrustKeyError(f"{source}: key {number} is shorter than {MIN_KEY_CHARS} "
                                "characters (make one with `openssl rand -hex 32`)")
    return Keyring(tuple(FleetKey(part.encode("utf-8")) for part in parts))


def parse_shard_token(text: str, shard_id: str, source: str) -> ShardKey:
    """A shard key as ``townlet shard-key`` prints it; it must be this shard's."""
    parts = text.strip().split(":")
    if len(parts) != 4 or parts[0] != TOKEN_PREFIX or not _KID.match(parts[1]) \
            or not _HEX64.match(parts[3]):
        raise TrustKeyError(f"{source} is not a shard key (expected {TOKEN_PREFIX}:<kid>:<shard>:"
                        "<64 hex digits>, as `townlet shard-key` prints it)")
    if parts[2] != shard_id:
        raise TrustKeyError(f"{source} is the key of shard {parts[2]!r}, not of {shard_id!r}")
    return ShardKey(parts[1], shard_id, bytes.fromhex(parts[3]))
