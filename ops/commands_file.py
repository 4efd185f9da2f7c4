"""The `townlet up --commands` file: one JSON command per line, checked before anything starts.

A line is a command as docs/PROTOCOL.md has it plus ``shard`` (the target shard id), e.g.
``{"shard": "town-a", "name": "employment_status", "cmd_id": "demo-1"}``. The whole file is
validated up front so a typo fails in one line instead of after the fleet has started (or,
for an unknown shard, after waiting for a result that can never come).
"""

from __future__ import annotations

import json
from collections.abc import Collection
from pathlib import Path
from typing import Any

from ops.client import new_cmd_id
from shared.console.envelope import KNOWN_KEYS

ALLOWED_KEYS = frozenset({"shard", *KNOWN_KEYS})
# Optional fields the shard would refuse later (null means "absent", as on the wire).
_TYPES: dict[str, tuple[type, str]] = {
    "args": (list, "a list"), "kwargs": (dict, "an object"), "cmd_id": (str, "a string"),
    "mode": (str, "a string")}


class CommandsFileError(ValueError):
    """A commands file that can't be used; the message names the file and line."""


def read_commands(path: Path, shard_ids: Collection[str]) -> list[tuple[str, dict[str, Any]]]:
    """(shard id, payload) per non-blank line; a missing ``cmd_id`` is generated (as `send`)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CommandsFileError(f"cannot read commands file {path}: {exc}") from None
    out = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            out.append(_entry(line, shard_ids))
        except CommandsFileError as exc:
            raise CommandsFileError(f"{path} line {number}: {exc}") from None
    return out


def _entry(line: str, shard_ids: Collection[str]) -> tuple[str, dict[str, Any]]:
    try:
        item = json.loads(line)
    except json.JSONDecodeError as exc:
        raise CommandsFileError(f"not valid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(item, dict):
        raise CommandsFileError(f"expected a JSON object, got {type(item).__name__}")
    unknown = sorted(set(item) - ALLOWED_KEYS)
    if unknown:
        raise CommandsFileError(f"unknown key(s) {unknown}; allowed: {sorted(ALLOWED_KEYS)}")
    shard = item.get("shard")
    if not isinstance(shard, str) or not shard:
        raise CommandsFileError('missing "shard" (the target shard id)')
    if shard not in shard_ids:
        raise CommandsFileError(f"shard {shard!r} is not in the fleet (shards: "
                                f"{', '.join(sorted(shard_ids))})")
    name = item.get("name")
    if not isinstance(name, str) or not name:
        raise CommandsFileError('missing "name" (the console command, e.g. employment_status)')
    for key, (kind, label) in _TYPES.items():
        if item.get(key) is not None and not isinstance(item[key], kind):
            raise CommandsFileError(f'"{key}" must be {label}')
    payload = {k: v for k, v in item.items() if k != "shard"}
    if payload.get("cmd_id") is None:
        payload["cmd_id"] = new_cmd_id()
    return shard, payload
