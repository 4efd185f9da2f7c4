"""The cmd_id replay window: exactly-once effects for retried or redelivered commands.

A cmd_id maps to the fingerprint of the command that first used it and the result it produced.
A repeat with the same fingerprint replays the stored result byte for byte; a repeat with a
different fingerprint is a ``conflict``. The window is bounded (oldest ids fall out first) and is
part of the snapshot, so it survives restarts.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from typing import Any


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
