"""Keys and result signatures (shared/trust): derivation, rotation, and what a forgery gets."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared import wire
from shared.audit.records import encode_line
from shared.trust.env import SHARD_KEY_ENV, shard_signer
from shared.trust.keys import TrustKeyError, parse_keyring, parse_shard_token
from shared.trust.signing import ResultSigner, Verdict, verify_result

FLEET = "f" * 16 + "0123456789abcdef0123456789abcdef"
OLD = "o" * 40


def result(shard: str = "alpha", **extra: Any) -> dict[str, Any]:
    return {"v": 1, "shard_id": shard, "cmd_id": "c1", "name": "kill", "status": "ok",
            "tick": 9, "issuer": "ops-admin", "latency_ms": 0.5, "applied": True,
            "result": {"agent": "agent_6"}, "command": {"name": "kill", "args": ["agent_6"]},
            **extra}


def test_a_shard_signs_and_the_fleet_key_verifies() -> None:
    ring = parse_keyring(FLEET, "TOWNLET_RESULT_KEY")
    signed = ResultSigner(ring.current.shard_key("alpha")).sign(result())
    assert signed["sig"]["alg"] == "hmac-sha256" and signed["sig"]["kid"] == ring.current.kid
    assert verify_result(signed, ring) is Verdict.OK
    assert FLEET not in json.dumps(signed)  # the key never travels


def test_every_forgery_is_named_for_what_it_is() -> None:
    ring = parse_keyring(FLEET, "K")
    beta = ResultSigner(ring.current.shard_key("beta"))
    assert verify_result(result(), ring) is Verdict.UNSIGNED
    # A leaked shard key cannot sign for another shard: beta's key, alpha's name.
    stolen = {**result(), "sig": beta.signature(result("beta"))}
    assert verify_result(stolen, ring) is Verdict.BAD_SIGNATURE
    other = parse_keyring("x" * 40, "K")
    foreign = ResultSigner(other.current.shard_key("alpha")).sign(result())
    assert verify_result(foreign, ring) is Verdict.UNKNOWN_KEY
    good = ResultSigner(ring.current.shard_key("alpha")).sign(result())
    for edit in ({"applied": False}, {"tick": 10}, {"issuer": "root"},
                 {"command": {"name": "kill", "args": ["agent_7"]}}):
        assert verify_result({**good, **edit}, ring) is Verdict.BAD_SIGNATURE, edit
    for bad_sig in ("x", {"alg": "md5", "kid": "a", "mac": "b"}, {"alg": "hmac-sha256"}):
        assert verify_result({**good, "sig": bad_sig}, ring) is Verdict.MALFORMED
    with pytest.raises(ValueError, match="own shard"):
        beta.signature(result("alpha"))


def test_rotation_old_keys_still_verify_the_newest_signs() -> None:
    old = parse_keyring(OLD, "K")
    signed_before = ResultSigner(old.current.shard_key("alpha")).sign(result())
    ring = parse_keyring(f"{FLEET}, {OLD}", "K")  # newest first
    assert ring.current.kid == parse_keyring(FLEET, "K").current.kid
    assert verify_result(signed_before, ring) is Verdict.OK
    assert verify_result(signed_before, parse_keyring(FLEET, "K")) is Verdict.UNKNOWN_KEY


def test_keys_are_refused_with_a_reason_never_quoted() -> None:
    for text in ("", "  ,  ", "s3cr3t-but-tiny"):
        with pytest.raises(TrustKeyError) as err:
            parse_keyring(text, "TOWNLET_RESULT_KEY")
        assert "TOWNLET_RESULT_KEY" in str(err.value)
        assert text.strip(" ,") == "" or text not in str(err.value)
    token = parse_keyring(FLEET, "K").current.shard_key("alpha").token()
    assert parse_shard_token(token, "alpha", SHARD_KEY_ENV).shard_id == "alpha"
    with pytest.raises(TrustKeyError, match="of shard 'alpha', not of 'beta'"):
        parse_shard_token(token, "beta", SHARD_KEY_ENV)
    with pytest.raises(TrustKeyError, match="not a shard key") as err:
        parse_shard_token(token[:-2], "alpha", SHARD_KEY_ENV)
    assert token[20:] not in str(err.value)


def test_a_shard_handed_only_its_key_signs_what_the_fleet_key_verifies(
        monkeypatch: pytest.MonkeyPatch) -> None:
    token = parse_keyring(FLEET, "K").current.shard_key("alpha").token()
    monkeypatch.delenv("TOWNLET_RESULT_KEY", raising=False)
    monkeypatch.setenv(SHARD_KEY_ENV, token)
    signer = shard_signer("alpha")
    assert signer is not None
    assert verify_result(signer.sign(result()), parse_keyring(FLEET, "K")) is Verdict.OK
    with pytest.raises(TrustKeyError):
        shard_signer("beta")  # a shard started with another shard's key refuses to start
    monkeypatch.delenv(SHARD_KEY_ENV)
    assert shard_signer("alpha") is None  # local development: unsigned, said loudly elsewhere


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20)


@settings(max_examples=150, deadline=None)
@given(body=JSON, cmd_id=st.text(min_size=1, max_size=20))
def test_a_signature_survives_the_wire_and_the_audit_line(body: Any, cmd_id: str) -> None:
    """Signed on msgpack, verified on the JSON line the audit log keeps: any plain value."""
    ring = parse_keyring(FLEET, "K")
    signed = ResultSigner(ring.current.shard_key("alpha")).sign(
        result(cmd_id=cmd_id, result=body))
    received = wire.decode(wire.encode(signed))
    assert verify_result(received, ring) is Verdict.OK
    line = json.loads(encode_line(received).data)
    assert verify_result(line, ring) is Verdict.OK
