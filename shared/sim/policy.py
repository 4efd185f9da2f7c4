"""Scripted behaviour: pick a target for every free agent and take one step toward it.

Priorities: a need below the critical level > the job (from ``job_arrival_buffer`` ticks before
the shift until its end) > the most urgent need below its threshold > home. An object whose
cooldown still refuses the agent is not targeted: another type serving the need is, or the agent
waits beside it until the cooldown ends. All of it is vectorised; movement is one tile per tick
(x first, then y) or a teleport when configured. See docs/SIMULATION.md, "Behaviour".
"""

from __future__ import annotations

import numpy as np

from .events import Event
from .state import BaseSystem, State
from .tables import ABSENT, POST_SHIFT

CRITICAL_NEED = 0.15
POLICY_NAME = "scripted"


def _need_targets(state: State, slots: np.ndarray, need: np.ndarray,
                  tick: int) -> tuple[np.ndarray, np.ndarray]:
    """Object slot serving each agent's chosen need now (-1: none), and where to wait (-1: none).

    Candidate types are tried in config order, the first with an object (and stock) wins. A
    type whose cooldown still refuses the agent (``join_queues`` would not let it queue) is
    skipped for another type that satisfies the need directly; a type that only serves it
    indirectly (the stove: cooking feeds nobody) is not worth starting while one that does is
    merely cooling down. Failing a target, the agent waits at the first cooling object, off
    its queue, and queues the tick its cooldown ends.
    """
    ag, ob = state.agents, state.objects
    target = np.full(slots.size, -1, dtype=np.int32)
    wait = np.full(slots.size, -1, dtype=np.int32)
    for n, candidates in enumerate(state.serving):
        rows = np.flatnonzero(need == n)
        if rows.size == 0:
            continue
        chosen = np.full(rows.size, -1, dtype=np.int32)
        cooling_at = np.full(rows.size, -1, dtype=np.int32)
        for type_idx, consumes in candidates:
            obj = ag.assigned[slots[rows], type_idx]
            ok = (obj >= 0) & (chosen < 0)
            if consumes:
                ok &= ob.stock[np.maximum(obj, 0)] >= consumes
            if state.effects[type_idx, n] <= 0:
                ok &= cooling_at < 0
            cooling = ok & (ag.cooldown_until[slots[rows], type_idx] > tick)
            first = cooling & (cooling_at < 0)
            cooling_at[first] = obj[first]
            ok &= ~cooling
            chosen[ok] = obj[ok]
        target[rows] = chosen
        wait[rows] = np.where(chosen < 0, cooling_at, -1)
    return target, wait


def decide(state: State, tick: int) -> None:
    ag, ob = state.agents, state.objects
    live = ag.live_slots()
    free = live[ag.busy_obj[live] < 0]
    if free.size == 0:
        return
    urgency = state.need_thresholds - ag.needs[free]
    need = np.argmax(urgency, axis=1)
    needy = urgency[np.arange(free.size), need] > 0
    critical = ag.needs[free].min(axis=1) < CRITICAL_NEED

    obj, wait = _need_targets(state, free, need, tick)
    obj = np.where(needy, obj, -1).astype(np.int32)
    spot = np.where(needy, np.where(obj >= 0, obj, wait), -1)
    tx = np.where(spot >= 0, ob.x[np.maximum(spot, 0)], ag.home_x[free])
    ty = np.where(spot >= 0, ob.y[np.maximum(spot, 0)], ag.home_y[free])

    if state.job_ids:
        job = ag.job[free]
        has_job = job >= 0
        j = np.maximum(job, 0)
        day_tick = tick % state.ticks_per_day
        window = (day_tick >= state.job_start[j] - state.arrival_buffer) & (
            day_tick < state.job_end[j])
        shift = ag.shift_state[free]
        to_work = has_job & window & (shift != ABSENT) & (shift != POST_SHIFT) & ~critical
        tx = np.where(to_work, state.job_x[j], tx)
        ty = np.where(to_work, state.job_y[j], ty)
        obj = np.where(to_work, -1, obj).astype(np.int32)

    changed = free[(ag.queued_obj[free] >= 0) & (ag.queued_obj[free] != obj)]
    for s in changed.tolist():
        state.leave_queue(s)
    ag.target_obj[free] = obj
    _move(state, free, tx, ty)


def _move(state: State, slots: np.ndarray, tx: np.ndarray, ty: np.ndarray) -> None:
    ag = state.agents
    if state.config.features.teleport_movement:
        ag.x[slots] = tx
        ag.y[slots] = ty
        return
    dx = np.sign(tx - ag.x[slots])
    dy = np.sign(ty - ag.y[slots])
    ag.x[slots] += dx.astype(np.int32)
    ag.y[slots] += np.where(dx == 0, dy, 0).astype(np.int32)


class Policy(BaseSystem):
    name = "policy"

    def step(self, state: State, tick: int, events: list[Event]) -> None:
        decide(state, tick)


SYSTEM = Policy()
