"""Result signatures: HMAC-SHA256 over a result's canonical bytes (docs/PROTOCOL.md, "Signatures").

A signed result carries ``sig: {alg: "hmac-sha256", kid, mac}``; the MAC is keyed with the
shard key of the shard the result names (``keys.FleetKey.shard_key``), so a verifier holding
the fleet key checks any shard and a shard key signs for its own shard only. Signing is
deterministic: a result re-published after a crash gets the same bytes (while the key is the
same). ``verify_result`` never raises: it returns a ``Verdict``.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from shared.trust.canonical import NotCanonical, canonical
from shared.trust.keys import Keyring, ShardKey

ALG = "hmac-sha256"
SIG_FIELD = "sig"
_RESULT_LABEL = b"townlet result v1\n"
_WITHOUT_SIG = frozenset({SIG_FIELD})


class Verdict(StrEnum):
    """What a verifier found; everything but ``OK`` keeps a result out of the audit log."""

    OK = "ok"
    UNSIGNED = "unsigned"
    UNKNOWN_KEY = "unknown_key"
    BAD_SIGNATURE = "bad_signature"
    MALFORMED = "malformed"


def _mac(secret: bytes, body: bytes) -> str:
    return hmac.new(secret, _RESULT_LABEL + body, hashlib.sha256).hexdigest()


class ResultSigner:
    """Signs the results of one shard with its shard key."""

    def __init__(self, key: ShardKey) -> None:
        self._key = key
        # The keyed state is set up once; each signature copies it (cheaper than re-keying).
        self._keyed = hmac.new(key.secret, _RESULT_LABEL, hashlib.sha256)

    @property
    def shard_id(self) -> str:
        return self._key.shard_id

    @property
    def kid(self) -> str:
        return self._key.kid

    def signature(self, result: Mapping[str, Any]) -> dict[str, str]:
        """The ``sig`` field for ``result`` (a result's wire form, without ``sig``)."""
        if result.get("shard_id") != self._key.shard_id:
            # A shard signs its own results only; anything else is a bug, never a signature.
            raise ValueError("a shard key signs results of its own shard only")
        mac = self._keyed.copy()
        mac.update(canonical(result, without=_WITHOUT_SIG))
        return {"alg": ALG, "kid": self._key.kid, "mac": mac.hexdigest()}

    def sign(self, result: Mapping[str, Any]) -> dict[str, Any]:
        """``result`` with its ``sig`` field."""
        return {**result, SIG_FIELD: self.signature(result)}


def verify_result(record: Mapping[str, Any], keyring: Keyring) -> Verdict:
    """Whether ``record`` is a result signed by the shard it names, under a key of ``keyring``."""
    sig = record.get(SIG_FIELD)
    if sig is None:
        return Verdict.UNSIGNED
    if not isinstance(sig, Mapping) or sig.get("alg") != ALG \
            or not isinstance(sig.get("mac"), str) or not isinstance(sig.get("kid"), str):
        return Verdict.MALFORMED
    shard_id = record.get("shard_id")
    if not isinstance(shard_id, str) or not shard_id:
        return Verdict.MALFORMED
    fleet = keyring.get(sig["kid"])
    if fleet is None:
        return Verdict.UNKNOWN_KEY
    try:
        body = canonical(record, without=_WITHOUT_SIG)
    except NotCanonical:
        return Verdict.MALFORMED
    expected = _mac(fleet.shard_key(shard_id).secret, body)
    return Verdict.OK if hmac.compare_digest(expected, str(sig["mac"])) else \
        Verdict.BAD_SIGNATURE


def without_signature(record: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k != SIG_FIELD}
