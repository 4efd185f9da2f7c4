"""The wire format: msgpack maps. This is the only module that imports msgpack.

``encode`` produces canonical bytes: map keys are sorted, numpy values become plain Python
values and tuples become lists, so the same logical message always has the same bytes
(telemetry re-sent after a crash must be identical, see docs/PROTOCOL.md guarantee 4).
``decode`` treats its input as hostile: size is checked before unpacking, container lengths
are bounded by the body size, and anything but a map with string keys is a ``WireError``
(unless the caller checks keys itself: the shard's console answers a command with a bad key
with an error result naming its cmd_id, which a dead letter could not do).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgpack
import numpy as np

PROTOCOL_VERSION = 1

# Deeper nesting than this is never produced by townlet and only costs stack on decode.
MAX_DEPTH = 64


class WireError(ValueError):
    """A body that cannot be encoded or decoded.

    ``code`` says whose fault it is: ``bad_request`` (someone sent us garbage: the console
    answers with that error code) or ``unencodable`` (a value of ours has no wire form: a bug).
    """

    def __init__(self, message: str, code: str = "bad_request") -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def encode(obj: Mapping[str, Any]) -> bytes:
    """Encode a map as canonical msgpack bytes; raise ``WireError`` for unsupported values."""
    if not isinstance(obj, Mapping):
        raise WireError(f"top-level value must be a map, got {type(obj).__name__}", "unencodable")
    plain = _to_plain(obj, 0)
    try:
        packed: bytes = msgpack.packb(plain, use_bin_type=True)
    except (OverflowError, ValueError, TypeError) as exc:
        raise WireError(f"cannot encode: {exc}", "unencodable") from None
    return packed


def decode(body: bytes, max_bytes: int | None = None, *,
           string_keys: bool = True) -> dict[str, Any]:
    """Decode one msgpack map with string keys; raise ``WireError`` for anything else.

    ``string_keys=False`` lets maps with other (hashable) keys through, for callers that
    validate keys themselves."""
    if not isinstance(body, bytes | bytearray | memoryview):
        raise WireError(f"body must be bytes, got {type(body).__name__}")
    size = len(body)
    if max_bytes is not None and size > max_bytes:
        raise WireError(f"body of {size} bytes exceeds the limit of {max_bytes} bytes")
    if size == 0:
        raise WireError("body is empty")
    value = _unpack(bytes(body), size, string_keys)
    if not isinstance(value, dict):
        raise WireError(f"body must be a msgpack map, got {type(value).__name__}")
    _check_keys(value, 0, string_keys)
    return value


def peek_cmd_id(body: bytes, max_bytes: int) -> str | None:
    """The top-level ``cmd_id`` string of a body ``decode`` refused (nested too deep, too
    big, a bad key further on), when the map's entries up to it can be read from its first
    ``max_bytes``; None otherwise. Lets a shard answer such a command instead of only
    dead-lettering it (docs/PROTOCOL.md, "Bad input")."""
    head = bytes(body[:max_bytes])
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=False, max_buffer_size=len(head) or 1,
                                max_str_len=len(head), max_bin_len=len(head),
                                max_array_len=len(head), max_map_len=len(head), max_ext_len=0)
    unpacker.feed(head)
    try:
        for _ in range(min(unpacker.read_map_header(), 64)):
            if unpacker.unpack() == "cmd_id":
                value = unpacker.unpack()
                return value if isinstance(value, str) else None
            unpacker.skip()
    except Exception:  # any malformation or truncation: nothing readable (hostile input)
        return None
    return None


def _unpack(body: bytes, size: int, string_keys: bool) -> Any:
    # Every element takes at least one byte, so no honest container is longer than the body;
    # passing that bound stops a 5-byte header from announcing (and allocating) 4 billion items.
    try:
        return msgpack.unpackb(
            body,
            raw=False,
            strict_map_key=string_keys,
            use_list=True,
            max_str_len=size,
            max_bin_len=size,
            max_array_len=size,
            max_map_len=size,
            max_ext_len=0,  # ext types (timestamps, custom) are not part of the protocol
        )
    except msgpack.ExtraData:
        raise WireError("trailing bytes after the msgpack map") from None
    except (ValueError, TypeError, RecursionError, msgpack.UnpackException) as exc:
        raise WireError(f"body is not valid msgpack: {type(exc).__name__}") from None


def _check_keys(value: Any, depth: int, string_keys: bool) -> None:
    if depth > MAX_DEPTH:
        raise WireError(f"body nests deeper than {MAX_DEPTH} levels")
    if isinstance(value, dict):
        for key, item in value.items():
            if string_keys and not isinstance(key, str):
                raise WireError(f"map keys must be strings, got {type(key).__name__}")
            _check_keys(item, depth + 1, string_keys)
    elif isinstance(value, list):
        for item in value:
            _check_keys(item, depth + 1, string_keys)


def _to_plain(value: Any, depth: int) -> Any:
    """Convert to the msgpack-native subset, sorting map keys for canonical bytes."""
    if depth > MAX_DEPTH:
        raise WireError(f"value nests deeper than {MAX_DEPTH} levels", "unencodable")
    if value is None or isinstance(value, bool | int | float | str | bytes):
        return value
    if isinstance(value, np.generic):
        return _to_plain(value.item(), depth)
    if isinstance(value, np.ndarray):
        return _array_to_plain(value, depth)
    if isinstance(value, Mapping):
        return _map_to_plain(value, depth)
    if isinstance(value, list | tuple):
        return [_to_plain(item, depth + 1) for item in value]
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    # Sets have no stable order, so they would break canonical bytes; the caller must choose.
    raise WireError(f"cannot encode value of type {type(value).__name__}", "unencodable")


def _array_to_plain(array: np.ndarray[Any, Any], depth: int) -> Any:
    if array.dtype.kind in "biuf":
        return array.tolist()  # already plain bool/int/float, no per-item walk needed
    return _to_plain(array.tolist(), depth)


def _map_to_plain(mapping: Mapping[Any, Any], depth: int) -> dict[str, Any]:
    for key in mapping:
        if not isinstance(key, str):
            raise WireError(f"map keys must be strings, got {type(key).__name__}", "unencodable")
    return {key: _to_plain(mapping[key], depth + 1) for key in sorted(mapping)}
