"""The employment exit queue and lifecycle evaluation (the heart of the seed's dry run).

The queue is small (bounded by operators and the daily cap), so it is plain ordered Python
state; everything here is deterministic and part of the snapshot and the state hash.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .jobs import absent_shifts_7d

if TYPE_CHECKING:
    from shared.config import EmploymentConfig

    from .world import World

HISTORY_LIMIT = 500


class EmploymentError(ValueError):
    """An operator asked for something the queue cannot do (unknown or not pending agent)."""


class EmploymentQueue:
    def __init__(self, cfg: EmploymentConfig) -> None:
        self.cfg = cfg
        self.queue: list[str] = []
        self.enqueued_at: dict[str, int] = {}
        self.manual: list[str] = []
        # Deferred agents -> the lowest absent_shifts_7d seen since the operator's defer. A
        # chronic absentee is only re-enqueued once it is absent again (its count rises above
        # this); the record is cleared when the count falls below max_absent_shifts.
        self.deferred: dict[str, int] = {}
        self.exits_today = 0
        self.window_start = 0
        self.daily_exit_cap = cfg.daily_exit_cap
        self.history: list[dict[str, Any]] = []
        self.pending_events: list[dict[str, Any]] = []  # raised outside a tick, emitted next tick

    # -- operator surface -------------------------------------------------------------------
    def enqueue_exit(self, world: World, agent_id: str, tick: int) -> bool:
        """Queue an agent for exit once; returns False if it was already pending."""
        slot = world.require_agent(agent_id)
        if agent_id in self.enqueued_at:
            return False
        self.deferred.pop(agent_id, None)
        self.queue.append(agent_id)
        self.enqueued_at[agent_id] = int(tick)
        world.agents.exit_pending[slot] = True
        self._emit(world, {"type": "employment_exit_pending", "tick": int(tick),
                           "agent_id": agent_id, "pending_count": len(self.queue)})
        if len(self.queue) > self.cfg.exit_queue_limit:
            self._emit(world, {"type": "employment_exit_queue_overflow", "tick": int(tick),
                               "pending_count": len(self.queue),
                               "queue_limit": self.cfg.exit_queue_limit})
        return True

    def approve(self, world: World, agent_id: str) -> None:
        """Mark a manual exit: processed at the next lifecycle evaluation, bypassing the cap."""
        world.require_agent(agent_id)
        if agent_id not in self.enqueued_at:
            self.enqueue_exit(world, agent_id, world.tick)
        if agent_id not in self.manual:
            self.manual.append(agent_id)

    def defer(self, world: World, agent_id: str) -> None:
        """Take an agent off the queue and the manual set and clear its exit_pending flag."""
        if agent_id not in self.enqueued_at:
            raise EmploymentError(f"agent {agent_id} has no pending exit")
        self._drop(world, agent_id)
        slot = world.agents.slot_of.get(agent_id)
        if slot is not None:
            self.deferred[agent_id] = int(absent_shifts_7d(world, np.array([slot]))[0])
        self._emit(world, {"type": "employment_exit_deferred", "tick": world.tick,
                           "agent_id": agent_id})

    def metrics(self) -> dict[str, Any]:
        return {
            "pending": list(self.queue),
            "pending_count": len(self.queue),
            "manual_approvals": list(self.manual),
            "exits_today": self.exits_today,
            "daily_exit_cap": self.daily_exit_cap,
            "queue_limit": self.cfg.exit_queue_limit,
            "review_window": self.cfg.exit_review_window,
        }

    # -- lifecycle ------------------------------------------------------------------------
    def evaluate(self, world: World, tick: int, events: list[dict[str, Any]]) -> None:
        events.extend(self.pending_events)
        self.pending_events.clear()
        if tick - self.window_start >= self.cfg.exit_review_window:
            self.window_start = tick
            self.exits_today = 0
        if not world.config.employment.enforce_job_loop:
            return
        for agent_id in list(self.manual):  # (1) manual approvals bypass the cap
            self._exit(world, agent_id, tick, "manual_approve", events)
        self._enqueue_chronic_absentees(world, tick)
        events.extend(self.pending_events)
        self.pending_events.clear()
        for agent_id in list(self.queue):  # (3) waited past the review window
            if tick - self.enqueued_at[agent_id] > self.cfg.exit_review_window:
                self._exit(world, agent_id, tick, "auto_review", events)
        while self.queue and (self.daily_exit_cap == 0 or self.exits_today < self.daily_exit_cap):
            self._exit(world, self.queue[0], tick, "daily_cap", events)  # (4) under the cap

    def _enqueue_chronic_absentees(self, world: World, tick: int) -> None:
        ag = world.agents
        limit = self.cfg.max_absent_shifts
        self._refresh_deferrals(world)
        live = ag.live_slots()
        employed = live[(ag.job[live] >= 0) & ~ag.exit_pending[live]]
        chronic = employed[absent_shifts_7d(world, employed) >= limit]
        for slot in chronic.tolist():
            agent_id = ag.ids[slot]
            if agent_id is not None and agent_id not in self.deferred:
                self.enqueue_exit(world, agent_id, tick)

    def _refresh_deferrals(self, world: World) -> None:
        """Keep a defer in force until the agent is absent again (cost: one row per deferral).

        A record is dropped when the agent is gone, when its count falls below the threshold
        (the defer has served its purpose), or when the count rises above the lowest value
        seen since the defer (a new absence: the agent is chronic again and may be enqueued).
        """
        if not self.deferred:
            return
        ag = world.agents
        limit = self.cfg.max_absent_shifts
        for agent_id in list(self.deferred):
            slot = ag.slot_of.get(agent_id)
            if slot is None:
                del self.deferred[agent_id]
                continue
            count = int(absent_shifts_7d(world, np.array([slot]))[0])
            if count < limit or count > self.deferred[agent_id]:
                del self.deferred[agent_id]
            else:  # an old absence rolled out of the 7 days: the next new one still counts
                self.deferred[agent_id] = count

    def _exit(self, world: World, agent_id: str, tick: int, reason: str,
              events: list[dict[str, Any]]) -> None:
        self._drop(world, agent_id)
        self.exits_today += 1
        record = {"agent_id": agent_id, "tick": tick, "reason": reason}
        world.chain(record)
        self.history.append(record)
        del self.history[:-HISTORY_LIMIT]
        events.append({"type": "employment_exit_processed", **record,
                       "exits_today": self.exits_today})
        world.retire_agent(agent_id, tick, reason, events)

    def _drop(self, world: World, agent_id: str) -> None:
        if agent_id in self.enqueued_at:
            self.queue.remove(agent_id)
            del self.enqueued_at[agent_id]
        if agent_id in self.manual:
            self.manual.remove(agent_id)
        slot = world.agents.slot_of.get(agent_id)
        if slot is not None:
            world.agents.exit_pending[slot] = False

    def forget(self, world: World, agent_id: str) -> None:
        """An agent left the town by other means (faint, kill): it cannot exit any more."""
        self._drop(world, agent_id)
        self.deferred.pop(agent_id, None)

    def _emit(self, world: World, event: dict[str, Any]) -> None:
        self.pending_events.append(event)

    # -- persistence ----------------------------------------------------------------------
    def export(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "queue": list(self.queue),
            "enqueued_at": [[a, self.enqueued_at[a]] for a in self.queue],
            "manual": list(self.manual),
            "exits_today": self.exits_today,
            "window_start": self.window_start,
            "daily_exit_cap": self.daily_exit_cap,
            "history": list(self.history),
            "pending_events": list(self.pending_events),
        }
        if self.deferred:  # only when present, so hashes of worlds without deferrals are as before
            data["deferred"] = [[a, self.deferred[a]] for a in sorted(self.deferred)]
        return data

    def restore(self, data: dict[str, Any]) -> None:
        self.queue = list(data["queue"])
        self.enqueued_at = {a: int(t) for a, t in data["enqueued_at"]}
        self.manual = list(data["manual"])
        # Snapshots written before deferrals were recorded have no such key: nothing deferred.
        self.deferred = {a: int(n) for a, n in data.get("deferred", [])}
        self.exits_today = int(data["exits_today"])
        self.window_start = int(data["window_start"])
        self.daily_exit_cap = int(data["daily_exit_cap"])
        self.history = list(data["history"])
        self.pending_events = list(data["pending_events"])
