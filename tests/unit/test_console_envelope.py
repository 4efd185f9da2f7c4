"""The shape check for raw console payloads: every wrong shape is refused with a named problem."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from shared.console.envelope import (
    ConsoleCommand,
    ConsoleError,
    ErrorCode,
    parse_payload,
    plain,
    recover_cmd_id,
)
from shared.console.results import ConsoleResult


def refused(raw: Any, **kw: Any) -> ConsoleError:
    with pytest.raises(ConsoleError) as info:
        parse_payload(raw, **kw)
    return info.value


def test_a_complete_payload_parses() -> None:
    cmd = parse_payload({"v": 1, "name": "spawn", "args": ["a", 1, 2], "kwargs": {"job": "x"},
                         "mode": "admin", "cmd_id": "c1", "issuer": "ops", "auth": {"token": "t"},
                         "timestamp_ms": 1700, "metadata": {"ticket": "INC-1"}})
    assert (cmd.name, cmd.args, cmd.kwargs, cmd.mode, cmd.cmd_id) == (
        "spawn", ["a", 1, 2], {"job": "x"}, "admin", "c1")
    assert cmd.auth == {"token": "t"} and cmd.timestamp_ms == 1700
    assert cmd.metadata == {"ticket": "INC-1"}


def test_defaults_for_a_minimal_payload() -> None:
    cmd = parse_payload({"name": "help"})
    assert (cmd.args, cmd.kwargs, cmd.mode, cmd.cmd_id, cmd.auth) == ([], {}, "viewer", None, None)


@pytest.mark.parametrize(("raw", "code", "fragment"), [
    ("help", ErrorCode.BAD_REQUEST, "must be a map"),
    ([1, 2], ErrorCode.BAD_REQUEST, "must be a map"),
    (None, ErrorCode.BAD_REQUEST, "must be a map"),
    ({}, ErrorCode.USAGE, "name is required"),
    ({"name": 5}, ErrorCode.USAGE, "name is required"),
    ({"name": ""}, ErrorCode.USAGE, "name is required"),
    ({"name": "help", "args": "x"}, ErrorCode.USAGE, "args must be a list"),
    ({"name": "help", "args": {"a": 1}}, ErrorCode.USAGE, "args must be a list"),
    ({"name": "help", "kwargs": [1]}, ErrorCode.USAGE, "kwargs must be a map"),
    ({"name": "help", "cmd_id": 7}, ErrorCode.USAGE, "cmd_id must be"),
    ({"name": "help", "cmd_id": ""}, ErrorCode.USAGE, "cmd_id must be"),
    ({"name": "help", "cmd_id": "x" * 129}, ErrorCode.USAGE, "at most 128"),
    ({"name": "help", "mode": "root"}, ErrorCode.USAGE, "mode must be one of"),
    ({"name": "help", "auth": "secret"}, ErrorCode.USAGE, "auth must be a map"),
    ({"name": "help", "auth": {"token": 5}}, ErrorCode.USAGE, "auth must be a map"),
    ({"name": "help", "auth": {"token": "t", "x": 1}}, ErrorCode.USAGE, "auth must be a map"),
    ({"name": "help", "extra": 1}, ErrorCode.USAGE, "unknown field(s) ['extra']"),
    ({"name": "help", "v": 2}, ErrorCode.BAD_REQUEST, "protocol version"),
    ({"name": "help", "timestamp_ms": "now"}, ErrorCode.USAGE, "timestamp_ms"),
    ({"name": "help", "metadata": [1]}, ErrorCode.USAGE, "metadata must be a map"),
    ({"name": "help", "args": [object()]}, ErrorCode.USAGE, "JSON values"),
    ({"name": "help", "kwargs": {"a": {1: 2}}}, ErrorCode.USAGE, "keys must be strings"),
    ({"name": "help", "args": [float("nan")]}, ErrorCode.INVALID_ARGS, "non-finite"),
    ({"name": "help", "issuer": 3}, ErrorCode.USAGE, "issuer must be"),
    ({"name": "help", "args": [2**64]}, ErrorCode.INVALID_ARGS, "beyond 64 bits"),
    ({"name": "help", "args": ["\ud800"]}, ErrorCode.USAGE, "not valid Unicode"),
    ({"name": "help", "cmd_id": "\udfff"}, ErrorCode.USAGE, "not valid Unicode"),
    ({"name": "help", "kwargs": {"n": -(2**63) - 1}}, ErrorCode.INVALID_ARGS, "beyond 64 bits"),
])
def test_wrong_shapes_are_refused_with_a_named_problem(raw: Any, code: str, fragment: str) -> None:
    error = refused(raw)
    assert error.code == code
    assert fragment in error.message


def test_cmd_id_of_exactly_128_characters_is_accepted() -> None:
    assert parse_payload({"name": "help", "cmd_id": "x" * 128}).cmd_id == "x" * 128


def test_oversized_payload_is_a_bad_request() -> None:
    error = refused({"name": "help", "args": ["x" * 2000]}, max_bytes=1000)
    assert error.code == ErrorCode.BAD_REQUEST and "exceeds the limit" in error.message


def test_refusal_never_quotes_the_refused_value() -> None:
    error = refused({"name": "help", "auth": "secret-value-123"})
    assert "secret-value-123" not in error.message


def test_recover_cmd_id_only_when_well_formed() -> None:
    assert recover_cmd_id({"cmd_id": "abc", "args": 5}) == "abc"
    assert recover_cmd_id({"cmd_id": 5}) is None
    assert recover_cmd_id("junk") is None


def test_plain_converts_tuples_numpy_and_keys() -> None:
    value = {"a": (1, 2), 3: np.int64(4), "f": np.float32(0.5), "arr": np.arange(2)}
    out = plain(value)
    assert out == {"a": [1, 2], "3": 4, "f": 0.5, "arr": [0, 1]}
    assert json.loads(json.dumps(out)) == out


def test_echo_drops_auth_and_reports_the_effective_role() -> None:
    cmd = ConsoleCommand(name="help", args=("x",), mode="admin", auth={"token": "t0p"})
    echo = cmd.echo("viewer", "c1", "ops")
    assert echo == {"name": "help", "args": ["x"], "kwargs": {}, "mode": "viewer",
                    "cmd_id": "c1", "issuer": "ops"}
    assert "t0p" not in repr(cmd)


def test_result_envelope_fields() -> None:
    ok = ConsoleResult.build(shard_id="s", cmd_id="c", name="help", tick=3, issuer="i",
                             latency_ms=1.23456, command={"name": "help"}, body={"x": (1,)},
                             applied=True).to_wire()
    assert ok == {"v": 1, "shard_id": "s", "cmd_id": "c", "name": "help", "status": "ok",
                  "tick": 3, "issuer": "i", "latency_ms": 1.235, "result": {"x": [1]},
                  "command": {"name": "help"}, "applied": True}
    err = ConsoleResult.build(shard_id="s", cmd_id="c", name="help", tick=3, issuer="i",
                              latency_ms=0, command=None,
                              error=ConsoleError(ErrorCode.USAGE, "nope", {"usage": "help"})
                              ).to_wire()
    assert err["status"] == "error" and "result" not in err
    assert err["error"] == {"code": "usage", "message": "nope", "details": {"usage": "help"}}


def test_a_result_read_back_from_the_wire_is_sent_byte_for_byte() -> None:
    """Journaled, checkpointed and audited results are published again from their wire form."""
    ok = ConsoleResult.build(shard_id="s", cmd_id="c", name="help", tick=3, issuer="i",
                             latency_ms=1.5, command={"name": "help"}, body={"x": [1]},
                             applied=True)
    err = ConsoleResult.build(shard_id="s", cmd_id="c", name=None, tick=3, issuer=None,
                              latency_ms=0, command=None,
                              error=ConsoleError(ErrorCode.CONFLICT, "used"))
    for result in (ok, err):
        wire_form = result.to_wire()
        assert ConsoleResult.from_wire(wire_form) == result
        assert json.dumps(ConsoleResult.from_wire(json.loads(json.dumps(wire_form))).to_wire()) \
            == json.dumps(wire_form)  # same keys, same order
    assert err.to_wire()["error"] == {"code": "conflict", "message": "used"}
    assert type(err.to_wire()["error"]["code"]) is str  # the enum never reaches the wire
