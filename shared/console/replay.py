"""The cmd_id replay window: exactly-once effects for retried or redelivered commands.

A cmd_id maps to the fingerprint of the command that first used it and the result it produced.
A repeat with the same fingerprint replays the stored result byte for byte; a repeat with a
different fingerprint is a ``conflict``. The window is bounded (oldest ids fall out first) and is
part of the snapshot, so it survives restarts.

Refusals (bad token, wrong role, ...) are not answers a retry must live with: a retry that fixes
its token must be applied. But a redelivery of the same refused command must still get the same
body (PROTOCOL guarantee 2), so ``RefusalMemo`` keeps each refusal under a key made of everything
that decided it (cmd_id, command, issuer, code, message): the same refusal again is answered with
the first copy, and anything that changes the outcome gets a fresh answer.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections import OrderedDict
from typing import Any

from .envelope import ErrorCode, is_assigned_id


def command_fingerprint(name: str, args: list[Any], kwargs: dict[str, Any]) -> str:
    """What makes two commands "the same": name, args and kwargs (not auth, issuer or time)."""
    body = json.dumps([name, args, kwargs], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(body.encode()).hexdigest()[:32]


class CmdIdStore:
    def __init__(self, window: int = 100_000) -> None:
        self.window = window
        self._items: OrderedDict[str, tuple[str, dict[str, Any]]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, cmd_id: str) -> bool:
        return cmd_id in self._items

    def lookup(self, cmd_id: str) -> tuple[str, dict[str, Any]] | None:
        return self._items.get(cmd_id)

    def remember(self, cmd_id: str, fingerprint: str, result: dict[str, Any]) -> None:
        self._items[cmd_id] = (fingerprint, result)
        while len(self._items) > self.window:
            self._items.popitem(last=False)

    def export(self) -> list[list[Any]]:
        return [[cid, fp, res] for cid, (fp, res) in self._items.items()]

    def restore(self, rows: list[list[Any]]) -> None:
        self._items = OrderedDict((str(cid), (str(fp), dict(res))) for cid, fp, res in rows)
        while len(self._items) > self.window:
            self._items.popitem(last=False)


def refusal_key(result: dict[str, Any]) -> str | None:
    """The memo key of a refusal, or None for anything that must not be memoised.

    Applied results live in ``CmdIdStore``; ``internal`` crashes may be transient; shard-assigned
    ids are never retried. Tokens are never part of a result, so never part of a key.
    """
    error = result.get("error") or {}
    code = error.get("code")
    cmd_id = result.get("cmd_id")
    if result.get("applied") or code in (None, ErrorCode.INTERNAL) or not isinstance(cmd_id, str) \
            or is_assigned_id(cmd_id):
        return None
    echo = result.get("command") or {}
    decided_by = [cmd_id, result.get("name"), echo.get("args"), echo.get("kwargs"),
                  echo.get("mode"), result.get("issuer"), code, error.get("message")]
    body = json.dumps(decided_by, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(body.encode()).hexdigest()[:32]


class RefusalMemo:
    """Bounded memory of refusals, so a redelivered refused command is answered identically."""

    def __init__(self, window: int = 100_000) -> None:
        self.window = window
        self._items: OrderedDict[str, dict[str, Any]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def settle(self, result: dict[str, Any]) -> dict[str, Any]:
        """The answer to publish: the first copy of this same refusal if there was one."""
        key = refusal_key(result)
        if key is None:
            return result
        first = self._items.get(key)
        if first is not None:
            return copy.deepcopy(first)
        self.note(result)
        return result

    def note(self, result: dict[str, Any]) -> None:
        """Remember a refusal that was answered (live, or re-read from a journal)."""
        key = refusal_key(result)
        if key is None:
            return
        self._items[key] = copy.deepcopy(result)
        while len(self._items) > self.window:
            self._items.popitem(last=False)

    def export(self) -> list[dict[str, Any]]:
        return list(self._items.values())

    def restore(self, rows: list[dict[str, Any]]) -> None:
        self._items = OrderedDict()
        for row in rows:
            self.note(dict(row))
