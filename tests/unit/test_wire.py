"""The wire format: canonical msgpack maps in, hostile bytes rejected as values."""

from __future__ import annotations

import struct
from typing import Any

import msgpack
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.wire import PROTOCOL_VERSION, WireError, decode, encode


def test_round_trip_plain_values() -> None:
    msg = {"v": PROTOCOL_VERSION, "name": "spawn", "args": [1, "a", None, True, 2.5],
           "kwargs": {"x": {"y": [b"\x00\xff"]}}, "neg": -(2**63), "big": 2**64 - 1}
    assert decode(encode(msg)) == msg


def test_numpy_and_tuples_become_plain_python() -> None:
    msg = {
        "i": np.int64(7), "f": np.float32(0.5), "b": np.bool_(True),
        "arr": np.arange(4, dtype=np.int32), "grid": np.array([[1.5, 2.0], [3.0, 4.0]]),
        "mask": np.array([True, False]), "names": np.array(["a", "b"]), "t": (1, (2, 3)),
    }
    out = decode(encode(msg))
    assert out == {"i": 7, "f": 0.5, "b": True, "arr": [0, 1, 2, 3],
                   "grid": [[1.5, 2.0], [3.0, 4.0]], "mask": [True, False],
                   "names": ["a", "b"], "t": [1, [2, 3]]}
    assert type(out["i"]) is int and type(out["b"]) is bool and type(out["f"]) is float


def test_encoding_is_canonical_regardless_of_insertion_order() -> None:
    a = {"b": 1, "a": {"y": 2, "x": 3}}
    b = {"a": {"x": 3, "y": 2}, "b": 1}
    assert encode(a) == encode(b)
    assert encode(a) == encode(dict(a))


@pytest.mark.parametrize("bad", [{"s": {1, 2}}, {"o": object()}, {"c": np.array([1j])},
                                 {"n": {1: "int key"}}, {"huge": 2**64}])
def test_unencodable_values_raise_wire_error(bad: dict[str, Any]) -> None:
    with pytest.raises(WireError) as info:
        encode(bad)
    assert info.value.code == "unencodable"


def test_oversized_body_rejected_before_unpacking() -> None:
    body = encode({"pad": "x" * 1000})
    with pytest.raises(WireError, match="exceeds the limit") as info:
        decode(body, max_bytes=100)
    assert info.value.code == "bad_request"
    assert decode(body, max_bytes=len(body))["pad"] == "x" * 1000


@pytest.mark.parametrize("body", [
    b"", b"\xc1", b"not msgpack at all \xff\xfe", b"\x81\xa1a",  # empty, reserved, junk, torn
    b"\xdd\xff\xff\xff\xff",  # array32 claiming 4 billion items in 5 bytes
    b"\xdf\xff\xff\xff\xff",  # map32 likewise
    b"\x81\xa1a\xdb\xff\xff\xff\xff",  # str32 claiming 4 GiB
    b"\x81\xa1a\xd7\xff" + struct.pack(">Q", 0),  # ext type (timestamp): not in the protocol
    b"\x81\xa1a\xa2\xff\xfe",  # invalid UTF-8 string
])
def test_garbage_is_a_wire_error(body: bytes) -> None:
    with pytest.raises(WireError) as info:
        decode(body)
    assert info.value.code == "bad_request"


def test_trailing_bytes_rejected() -> None:
    with pytest.raises(WireError, match="trailing"):
        decode(encode({"a": 1}) + b"\x00")


@pytest.mark.parametrize("value", [[1, 2], "text", 5, None, b"raw"])
def test_top_level_must_be_a_map(value: Any) -> None:
    with pytest.raises(WireError, match="must be a msgpack map"):
        decode(msgpack.packb(value, use_bin_type=True))


@pytest.mark.parametrize("value", [{1: "x"}, {b"k": 1}, {"ok": {2: "nested"}}, {"l": [{3: 4}]}])
def test_non_string_keys_rejected(value: Any) -> None:
    with pytest.raises(WireError):
        decode(msgpack.packb(value, use_bin_type=True, strict_types=False))


@pytest.mark.parametrize("value", [{1: "x"}, {"ok": {2: "nested"}}, {"l": [{3: 4}]}])
def test_other_keys_pass_when_the_caller_checks_them(value: Any) -> None:
    assert decode(msgpack.packb(value), string_keys=False) == value


def test_deep_nesting_rejected() -> None:
    body = b"\x81\xa1a" + b"\x91" * 5000 + b"\xc0"
    with pytest.raises(WireError):
        decode(body)


_scalars = (st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1)
            | st.floats(allow_nan=False) | st.text() | st.binary())
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=30,
)


@given(st.dictionaries(st.text(), _values, max_size=8))
def test_property_round_trip(msg: dict[str, Any]) -> None:
    body = encode(msg)
    assert decode(body) == msg
    assert encode(decode(body)) == body  # canonical: re-encoding gives identical bytes
