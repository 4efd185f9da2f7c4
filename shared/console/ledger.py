"""The command ledger: everything exactly-once needs, in one object the router owns.

See docs/CONSOLE.md, "Exactly once". Three parts, private to this module:

* stored results: a cmd_id maps to the fingerprint of the command that first used it and the
  result it produced. A repeat with the same fingerprint replays the stored result byte for
  byte; a repeat with a different fingerprint is a ``conflict``. Bounded (oldest ids first).
* the refusal memo: refusals (bad token, wrong role, ...) are not answers a retry must live
  with, but a redelivery of the same refused command must get the same body (docs/PROTOCOL.md,
  guarantee 2). Each refusal is kept under a key made of everything that decided it (cmd_id,
  command, issuer, code, message): the same refusal again is answered with the first copy.
* the assigned-id counters (``auto-<shard>-<tick>-<seq>``, ``local-<tick>-<seq>``): while
  paused many boundaries share a tick number, so a restarted shard that forgot them would hand
  out an id a second time.

``export``/``restore`` give the ledger's part of a snapshot (keys ``cmd_ids``, ``refusals``,
``auto_ids``; their contents are unchanged from earlier checkpoints, so those still restore).

Bounded in bytes as well as in count (docs/CONSOLE.md, "Exactly once"): results of commands run
with the admin role are bounded by the id window only (an admin's retry must never apply
twice), while every other stored result, and every remembered refusal, counts against a byte
budget (``console.stored_results_max_bytes``, each), oldest dropped first: anonymous commands
with big arguments cannot grow the memory or the checkpoint without bound, nor push an admin's
result out of the window.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from .envelope import ErrorCode, is_assigned_id
from .results import ConsoleResult


def command_fingerprint(name: str, args: list[Any], kwargs: dict[str, Any]) -> str:
    """What makes two commands "the same": name, args and kwargs (not auth, issuer or time)."""
    body = json.dumps([name, args, kwargs], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(body.encode()).hexdigest()[:32]


def refusal_key(result: ConsoleResult) -> str | None:
    """The memo key of a refusal, or None for anything that must not be memoised.

    Applied results are stored results; ``internal`` crashes may be transient; shard-assigned
    ids are never retried. Tokens are never part of a result, so never part of a key.
    """
    error = result.error
    if result.applied or error is None or error.code is ErrorCode.INTERNAL \
            or is_assigned_id(result.cmd_id):
        return None
    echo = result.command or {}
    decided_by = [result.cmd_id, result.name, echo.get("args"), echo.get("kwargs"),
                  echo.get("mode"), result.issuer, error.code.value, error.message]
    for extra in ("claimed_issuer", "trimmed"):  # absent from older results: keys unchanged
        if echo.get(extra) is not None:
            decided_by.append(echo[extra])
    body = json.dumps(decided_by, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(body.encode()).hexdigest()[:32]


def result_size(result: ConsoleResult) -> int:
    """About what a stored result costs (its JSON size): the byte budget's unit."""
    return len(json.dumps(result.to_wire(), separators=(",", ":"), default=str))


class _Budget:
    """Sizes of the budgeted entries of one map, oldest first, and their total."""

    def __init__(self, max_bytes: int | None) -> None:
        self.max_bytes = max_bytes
        self.sizes: OrderedDict[str, int] = OrderedDict()
        self.used = 0

    def add(self, key: str, size: int) -> None:
        self.drop(key)
        self.sizes[key] = size
        self.used += size

    def drop(self, key: str) -> None:
        self.used -= self.sizes.pop(key, 0)

    def over(self) -> str | None:
        """The oldest key to evict while over budget, else None."""
        if self.max_bytes is None or self.used <= self.max_bytes or not self.sizes:
            return None
        return next(iter(self.sizes))


def _bound(items: OrderedDict[str, Any], window: int, budget: _Budget) -> None:
    while len(items) > window:
        key, _ = items.popitem(last=False)
        budget.drop(key)
    while (oldest := budget.over()) is not None:
        budget.drop(oldest)
        items.pop(oldest, None)


class CommandLedger:
    def __init__(self, window: int, shard_id: str, max_bytes: int | None = None) -> None:
        self.window = window
        self.shard_id = shard_id
        self.max_bytes = max_bytes
        self._stored: OrderedDict[str, tuple[str, ConsoleResult]] = OrderedDict()
        self._refusals: OrderedDict[str, ConsoleResult] = OrderedDict()
        self._stored_budget = _Budget(max_bytes)
        self._refusal_budget = _Budget(max_bytes)
        self._counters: dict[str, tuple[int, int]] = {}  # prefix -> (tick, next seq)

    # -- stored results ---------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._stored)

    def __contains__(self, cmd_id: object) -> bool:
        return cmd_id in self._stored

    def lookup(self, cmd_id: str) -> tuple[str, ConsoleResult] | None:
        """(fingerprint, result) stored for ``cmd_id``, if any."""
        return self._stored.get(cmd_id)

    def remember(self, cmd_id: str, fingerprint: str, result: ConsoleResult) -> None:
        self._stored[cmd_id] = (fingerprint, result)
        if (result.command or {}).get("mode") == "admin":
            self._stored_budget.drop(cmd_id)  # an admin's answer: only the window bounds it
        elif self.max_bytes is not None:
            self._stored_budget.add(cmd_id, result_size(result))
        _bound(self._stored, self.window, self._stored_budget)

    @property
    def stored_bytes(self) -> int:
        """Bytes of the budgeted stored results (admin results are not counted)."""
        return self._stored_budget.used

    # -- refusals ---------------------------------------------------------------------------
    def settle(self, result: ConsoleResult) -> ConsoleResult:
        """The answer to publish: the first copy of this same refusal if there was one."""
        key = refusal_key(result)
        if key is None:
            return result
        first = self._refusals.get(key)
        if first is not None:
            return first
        self._note(key, result)
        return result

    def note_refusal(self, result: ConsoleResult) -> None:
        """Remember a refusal that was answered (live, or re-read from a journal)."""
        key = refusal_key(result)
        if key is not None:
            self._note(key, result)

    def _note(self, key: str, result: ConsoleResult) -> None:
        self._refusals[key] = result
        if self.max_bytes is not None:
            self._refusal_budget.add(key, result_size(result))
        _bound(self._refusals, self.window, self._refusal_budget)

    # -- assigned ids -----------------------------------------------------------------------
    def assign_id(self, prefix: str, tick: int) -> str:
        last_tick, seq = self._counters.get(prefix, (tick, 0))
        seq = seq if last_tick == tick else 0
        self._counters[prefix] = (tick, seq + 1)
        if prefix == "auto":
            return f"auto-{self.shard_id}-{tick}-{seq}"
        return f"{prefix}-{tick}-{seq}"

    def auto_ids(self) -> dict[str, list[int]]:
        """The counters, for checkpoints and journal records."""
        return {prefix: [tick, seq] for prefix, (tick, seq) in self._counters.items()}

    def restore_auto_ids(self, saved: Mapping[str, Any]) -> None:
        self._counters = {str(p): (int(v[0]), int(v[1])) for p, v in saved.items()}

    # -- snapshots --------------------------------------------------------------------------
    def export(self) -> dict[str, Any]:
        return {"cmd_ids": [[cid, fp, res.to_wire()] for cid, (fp, res) in self._stored.items()],
                "refusals": [res.to_wire() for res in self._refusals.values()],
                "auto_ids": self.auto_ids()}

    def restore(self, saved: Mapping[str, Any]) -> None:
        """Replace the ledger with a snapshot's (missing parts restore as empty)."""
        self._stored = OrderedDict()
        self._stored_budget = _Budget(self.max_bytes)
        for cid, fp, res in saved.get("cmd_ids", []):
            self.remember(str(cid), str(fp), ConsoleResult.from_wire(res))
        self._refusals = OrderedDict()
        self._refusal_budget = _Budget(self.max_bytes)
        for row in saved.get("refusals", []):
            self.note_refusal(ConsoleResult.from_wire(row))
        self.restore_auto_ids(saved.get("auto_ids", {}))
