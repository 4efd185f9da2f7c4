"""The employment exit queue and lifecycle evaluation (docs/SIMULATION.md, "The employment
exit queue").

The queue is small (bounded by operators and the daily cap), so it is plain ordered Python
state; everything here is deterministic and part of the snapshot and the state hash. It is the
employment system's own state (``State.parts["employment"]``, ``World.employment``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from shared.settings import EmploymentConfig, SimulationConfig

from . import lifecycle
from .events import (
    Event,
    ExitDeferred,
    ExitPending,
    ExitProcessed,
    ExitQueueOverflow,
    event_from_wire,
    events_to_wire,
)
from .jobs import absent_shifts_7d
from .state import BaseSystem, State

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
        self.history: list[dict[str, Any]] = []  # exit records, chained into the log digest
        self.pending_events: list[Event] = []  # raised outside a tick, emitted next tick

    # -- operator surface -------------------------------------------------------------------
    def enqueue_exit(self, state: State, agent_id: str, tick: int) -> bool:
        """Queue an agent for exit once; returns False if it was already pending."""
        slot = state.require_agent(agent_id)
        if agent_id in self.enqueued_at:
            return False
        self.deferred.pop(agent_id, None)
        self.queue.append(agent_id)
        self.enqueued_at[agent_id] = int(tick)
        state.agents.exit_pending[slot] = True
        self._emit(ExitPending(int(tick), agent_id, len(self.queue)))
        if len(self.queue) > self.cfg.exit_queue_limit:
            self._emit(ExitQueueOverflow(int(tick), len(self.queue), self.cfg.exit_queue_limit))
        return True

    def approve(self, state: State, agent_id: str) -> None:
        """Mark a manual exit: processed at the next lifecycle evaluation, bypassing the cap."""
        state.require_agent(agent_id)
        if agent_id not in self.enqueued_at:
            self.enqueue_exit(state, agent_id, state.tick)
        if agent_id not in self.manual:
            self.manual.append(agent_id)

    def defer(self, state: State, agent_id: str) -> None:
        """Take an agent off the queue and the manual set and clear its exit_pending flag."""
        if agent_id not in self.enqueued_at:
            raise EmploymentError(f"agent {agent_id} has no pending exit")
        self._drop(state, agent_id)
        slot = state.agents.slot_of.get(agent_id)
        if slot is not None:
            self.deferred[agent_id] = int(absent_shifts_7d(state, np.array([slot]))[0])
        self._emit(ExitDeferred(state.tick, agent_id))

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
    def evaluate(self, state: State, tick: int, events: list[Event]) -> None:
        events.extend(self.pending_events)
        self.pending_events.clear()
        if tick - self.window_start >= self.cfg.exit_review_window:
            self.window_start = tick
            self.exits_today = 0
        if not state.config.employment.enforce_job_loop:
            return
        for agent_id in list(self.manual):  # (1) manual approvals bypass the cap
            self._exit(state, agent_id, tick, "manual_approve", events)
        self._enqueue_chronic_absentees(state, tick)
        events.extend(self.pending_events)
        self.pending_events.clear()
        for agent_id in list(self.queue):  # (3) waited past the review window
            if tick - self.enqueued_at[agent_id] > self.cfg.exit_review_window:
                self._exit(state, agent_id, tick, "auto_review", events)
        while self.queue and (self.daily_exit_cap == 0 or self.exits_today < self.daily_exit_cap):
            self._exit(state, self.queue[0], tick, "daily_cap", events)  # (4) under the cap

    def _enqueue_chronic_absentees(self, state: State, tick: int) -> None:
        ag = state.agents
        limit = self.cfg.max_absent_shifts
        self._refresh_deferrals(state)
        live = ag.live_slots()
        employed = live[(ag.job[live] >= 0) & ~ag.exit_pending[live]]
        chronic = employed[absent_shifts_7d(state, employed) >= limit]
        for slot in chronic.tolist():
            agent_id = ag.ids[slot]
            if agent_id is not None and agent_id not in self.deferred:
                self.enqueue_exit(state, agent_id, tick)

    def _refresh_deferrals(self, state: State) -> None:
        """Keep a defer in force until the agent is absent again (cost: one row per deferral).

        A record is dropped when the agent is gone, when its count falls below the threshold
        (the defer has served its purpose), or when the count rises above the lowest value
        seen since the defer (a new absence: the agent is chronic again and may be enqueued).
        """
        if not self.deferred:
            return
        ag = state.agents
        limit = self.cfg.max_absent_shifts
        for agent_id in list(self.deferred):
            slot = ag.slot_of.get(agent_id)
            if slot is None:
                del self.deferred[agent_id]
                continue
            count = int(absent_shifts_7d(state, np.array([slot]))[0])
            if count < limit or count > self.deferred[agent_id]:
                del self.deferred[agent_id]
            else:  # an old absence rolled out of the 7 days: the next new one still counts
                self.deferred[agent_id] = count

    def _exit(self, state: State, agent_id: str, tick: int, reason: str,
              events: list[Event]) -> None:
        self._drop(state, agent_id)
        self.exits_today += 1
        record = {"agent_id": agent_id, "tick": tick, "reason": reason}
        state.chain(record)
        self.history.append(record)
        del self.history[:-HISTORY_LIMIT]
        events.append(ExitProcessed(agent_id, tick, reason, self.exits_today))
        lifecycle.retire(state, agent_id, tick, reason, events)

    def _drop(self, state: State, agent_id: str) -> None:
        if agent_id in self.enqueued_at:
            self.queue.remove(agent_id)
            del self.enqueued_at[agent_id]
        if agent_id in self.manual:
            self.manual.remove(agent_id)
        slot = state.agents.slot_of.get(agent_id)
        if slot is not None:
            state.agents.exit_pending[slot] = False

    def forget(self, state: State, agent_id: str) -> None:
        """An agent left the town by other means (faint, kill): it cannot exit any more."""
        self._drop(state, agent_id)
        self.deferred.pop(agent_id, None)

    def _emit(self, event: Event) -> None:
        self.pending_events.append(event)

    # -- persistence ----------------------------------------------------------------------
    def export(self, *, for_hash: bool = False) -> dict[str, Any]:
        data: dict[str, Any] = {
            "queue": list(self.queue),
            "enqueued_at": [[a, self.enqueued_at[a]] for a in self.queue],
            "manual": list(self.manual),
            "exits_today": self.exits_today,
            "window_start": self.window_start,
            "daily_exit_cap": self.daily_exit_cap,
            # The history is in the log digest already (see ``_exit``): the hash counts it.
            "history": len(self.history) if for_hash else list(self.history),
            "pending_events": events_to_wire(self.pending_events),
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
        self.pending_events = [event_from_wire(e) for e in data["pending_events"]]


def queue_of(state: State) -> EmploymentQueue:
    """The employment system's queue in a state (created with the state, see ``Employment``)."""
    queue = state.parts[Employment.name]
    assert isinstance(queue, EmploymentQueue)
    return queue


class Employment(BaseSystem):
    """Lifecycle evaluation each tick; its queue is persisted under ``employment``."""

    name = "employment"

    def create_state(self, config: SimulationConfig) -> EmploymentQueue:
        return EmploymentQueue(config.employment)

    def step(self, state: State, tick: int, events: list[Event]) -> None:
        queue_of(state).evaluate(state, tick, events)

    def forget(self, state: State, slot: int, tick: int, reason: str,
               events: list[Event]) -> None:
        agent_id = state.agents.ids[slot]
        if agent_id is not None:
            queue_of(state).forget(state, agent_id)


SYSTEM = Employment()
