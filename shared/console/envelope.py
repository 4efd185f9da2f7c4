"""Console commands, error codes, and the shape check for raw payloads.

See docs/CONSOLE.md, "Envelopes" and "Checks and their order" (step 1, shape). A raw payload is
untrusted: it may come from the broker (decoded msgpack) or from
``TelemetryHub.queue_console_command``. ``parse_payload`` turns it into a ``ConsoleCommand`` or
raises ``ConsoleError``; it never echoes a value it refused (a refused value may be a secret).
Everything a result carries is made of plain JSON/msgpack values (``plain``), so a stored
result survives the snapshot's JSON round trip unchanged and a replay is byte-identical. The
result envelope itself is ``shared.console.results``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np

PROTOCOL_VERSION = 1
MAX_CMD_ID = 128
MAX_NAME = 64
MAX_ISSUER = 128
MAX_DEPTH = 32
INT_MIN, INT_MAX = -(2**63), 2**64 - 1
MODES = ("viewer", "admin")
KNOWN_KEYS = frozenset(
    {"v", "name", "args", "kwargs", "mode", "cmd_id", "issuer", "auth", "timestamp_ms",
     "metadata"})


class ErrorCode(StrEnum):
    """The ``error.code`` of a result; the values are the wire strings (docs/CONSOLE.md,
    "Envelopes")."""

    USAGE = "usage"
    INVALID_ARGS = "invalid_args"
    NOT_FOUND = "not_found"
    FORBIDDEN = "forbidden"
    UNAUTHORIZED = "unauthorized"
    UNSUPPORTED = "unsupported"
    CONFLICT = "conflict"
    INTERNAL = "internal"
    BAD_REQUEST = "bad_request"


class ConsoleError(Exception):
    """A command that cannot run; becomes an ``error`` result with this code and message."""

    def __init__(self, code: ErrorCode, message: str,
                 details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = ErrorCode(code)
        self.message = message
        self.details = details


@dataclass
class ConsoleCommand:
    name: str
    args: tuple[Any, ...] | list[Any] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    mode: str = "viewer"
    cmd_id: str | None = None
    issuer: str | None = None
    auth: dict[str, Any] | None = field(default=None, repr=False)  # never printed
    timestamp_ms: int | None = None
    metadata: dict[str, Any] | None = None

    def echo(self, role: str, cmd_id: str, issuer: str | None) -> dict[str, Any]:
        """The command as applied, for the result: effective role, auth removed."""
        out: dict[str, Any] = {"name": self.name, "args": plain(list(self.args)),
                               "kwargs": plain(self.kwargs), "mode": role, "cmd_id": cmd_id,
                               "issuer": issuer}
        if self.issuer is not None and self.issuer != issuer:
            out["claimed_issuer"] = self.issuer  # what the caller said, never verified
        if self.timestamp_ms is not None:
            out["timestamp_ms"] = self.timestamp_ms
        if self.metadata is not None:
            out["metadata"] = plain(self.metadata)
        return out


def plain(value: Any) -> Any:
    """JSON/msgpack-native copy: tuples -> lists, numpy -> Python, map keys -> str."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return plain(value.tolist())
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return str(value)


def _usage(message: str) -> ConsoleError:
    return ConsoleError(ErrorCode.USAGE, message)


def _encodable(value: str) -> bool:
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: no wire or log line can carry them
        return False
    return True


def _check_text(value: str, what: str) -> None:
    if not _encodable(value):
        raise _usage(f"{what} holds text that is not valid Unicode")


def _check_number(value: int | float, what: str) -> None:
    if isinstance(value, int) and not INT_MIN <= value <= INT_MAX:
        # msgpack (the wire) stops at 64 bits: such a value could never be answered or audited
        raise ConsoleError(ErrorCode.INVALID_ARGS, f"{what} holds an integer beyond 64 bits")
    if isinstance(value, float) and not math.isfinite(value):
        raise ConsoleError(ErrorCode.INVALID_ARGS, f"{what} holds a non-finite number")


def _check_json(value: Any, what: str, depth: int = 0) -> None:
    """Arguments must be JSON values so fingerprints, replays and the audit are stable."""
    if depth > MAX_DEPTH:
        raise _usage(f"{what} nests deeper than {MAX_DEPTH} levels")
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, str):
        _check_text(value, what)
    elif isinstance(value, int | float):
        _check_number(value, what)
    elif isinstance(value, list | tuple):
        for item in value:
            _check_json(item, what, depth + 1)
    elif isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise _usage(f"{what} map keys must be strings")
            _check_json(item, what, depth + 1)
    else:
        raise _usage(f"{what} must hold only JSON values, not {type(value).__name__}")


def _opt_str(raw: Mapping[str, Any], key: str, limit: int) -> str | None:
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > limit:
        raise _usage(f"{key} must be a non-empty string of at most {limit} characters")
    _check_text(value, key)
    return value


def _auth(raw: Mapping[str, Any]) -> dict[str, Any] | None:
    auth = raw.get("auth")
    if auth is None:
        return None
    if not isinstance(auth, dict) or set(auth) != {"token"} or not isinstance(auth["token"], str):
        raise _usage("auth must be a map {token: <string>}")
    return {"token": auth["token"]}


def _check_top_level(raw: Any, max_bytes: int | None) -> None:
    if not isinstance(raw, dict):
        raise ConsoleError(ErrorCode.BAD_REQUEST,
                           f"command must be a map, not {type(raw).__name__}")
    unknown = sorted(str(k) for k in raw if k not in KNOWN_KEYS)
    if unknown:
        raise _usage(f"unknown field(s) {unknown}; expected some of {sorted(KNOWN_KEYS)}")
    version = raw.get("v", PROTOCOL_VERSION)
    if version != PROTOCOL_VERSION or isinstance(version, bool):
        raise ConsoleError(ErrorCode.BAD_REQUEST,
                           f"unsupported protocol version; this shard speaks v{PROTOCOL_VERSION}")
    if max_bytes is not None:
        try:
            size = len(json.dumps(raw, default=repr))
        except (TypeError, ValueError, RecursionError):
            raise ConsoleError(ErrorCode.BAD_REQUEST, "command is not serialisable") from None
        if size > max_bytes:
            raise ConsoleError(ErrorCode.BAD_REQUEST,
                               f"command of {size} bytes exceeds the limit of {max_bytes}")


def _args_kwargs(raw: Mapping[str, Any]) -> tuple[list[Any], dict[str, Any]]:
    args = raw.get("args", [])
    if args is None:
        args = []
    if not isinstance(args, list | tuple):
        raise _usage("args must be a list")
    kwargs = raw.get("kwargs", {})
    if kwargs is None:
        kwargs = {}
    if not isinstance(kwargs, dict):
        raise _usage("kwargs must be a map")
    _check_json(list(args), "args")
    _check_json(kwargs, "kwargs")
    return list(args), dict(kwargs)


def _mode_and_meta(raw: Mapping[str, Any]) -> tuple[str, int | None, dict[str, Any] | None]:
    mode = raw.get("mode", "viewer")
    if mode is None:
        mode = "viewer"
    if mode not in MODES:
        raise _usage(f"mode must be one of {list(MODES)}")
    stamp = raw.get("timestamp_ms")
    if stamp is not None and (not isinstance(stamp, int) or isinstance(stamp, bool)):
        raise _usage("timestamp_ms must be an integer")
    metadata = raw.get("metadata")
    if metadata is not None:
        if not isinstance(metadata, dict):
            raise _usage("metadata must be a map")
        _check_json(metadata, "metadata")
    return str(mode), stamp, metadata


def parse_payload(raw: Any, *, max_bytes: int | None = None) -> ConsoleCommand:
    """Check the shape of an untrusted payload; raise ``ConsoleError`` naming the problem."""
    _check_top_level(raw, max_bytes)
    name = raw.get("name")
    if not isinstance(name, str) or not name or len(name) > MAX_NAME:
        raise _usage(f"name is required and must be a command name of at most {MAX_NAME} "
                     "characters")
    _check_text(name, "name")
    cmd_id = _opt_str(raw, "cmd_id", MAX_CMD_ID)
    if cmd_id is not None and cmd_id.startswith(RESERVED_ID_PREFIXES):
        raise _usage(f"cmd_ids starting with {' or '.join(RESERVED_ID_PREFIXES)} are reserved "
                     "for ids the shard assigns")
    args, kwargs = _args_kwargs(raw)
    mode, stamp, metadata = _mode_and_meta(raw)
    return ConsoleCommand(name=name, args=args, kwargs=kwargs, mode=mode, cmd_id=cmd_id,
                          issuer=_opt_str(raw, "issuer", MAX_ISSUER), auth=_auth(raw),
                          timestamp_ms=stamp, metadata=metadata)


RESERVED_ID_PREFIXES = ("auto-", "local-")


def is_assigned_id(cmd_id: str) -> bool:
    """Whether a cmd_id was assigned by a shard (never by a caller, so never remembered)."""
    return cmd_id.startswith(RESERVED_ID_PREFIXES)


def command_as_payload(command: ConsoleCommand) -> dict[str, Any]:
    """A ``ConsoleCommand`` built in-process, as a raw payload (so it gets the same checks)."""
    raw: dict[str, Any] = {"name": command.name, "args": command.args,
                           "kwargs": command.kwargs, "mode": command.mode}
    for key in ("cmd_id", "issuer", "auth", "timestamp_ms", "metadata"):
        value = getattr(command, key)
        if value is not None:
            raw[key] = value
    return raw


def recover_cmd_id(raw: Any) -> str | None:
    """The cmd_id of a payload that failed the shape check, when it is itself well formed.

    Never a reserved one (``auto-``, ``local-``): a refusal under a caller's ``auto-...`` id
    could take the audit key of a refusal the shard answers under that id later."""
    if isinstance(raw, dict):
        return usable_cmd_id(raw.get("cmd_id"))
    return None


def usable_cmd_id(value: Any) -> str | None:
    """``value`` if a refusal may be addressed to it as a caller's cmd_id, else None."""
    if isinstance(value, str) and 0 < len(value) <= MAX_CMD_ID and _encodable(value) \
            and not value.startswith(RESERVED_ID_PREFIXES):
        return value
    return None


def recover_name(raw: Any) -> str | None:
    if isinstance(raw, dict):
        name = raw.get("name")
        if isinstance(name, str) and 0 < len(name) <= MAX_NAME and _encodable(name):
            return name
    return None
