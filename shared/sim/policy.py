"""Scripted behaviour: pick a target for every free agent and take one step toward it.

Priorities: a need below the critical level > the job (from ``job_arrival_buffer`` ticks before
the shift until its end) > the most urgent need below its threshold > home. An object whose
cooldown still refuses the agent is not targeted: another type serving the need is, or the agent
waits beside it until the cooldown ends. All of it is vectorised; movement is one tile per tick
(x first, then y) or a teleport when configured.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .tables import ABSENT, POST_SHIFT

if TYPE_CHECKING:
    from .world import World

CRITICAL_NEED = 0.15
POLICY_NAME = "scripted"


def _need_targets(world: World, slots: np.ndarray, need: np.ndarray,
                  tick: int) -> tuple[np.ndarray, np.ndarray]:
    """Object slot serving each agent's chosen need now (-1: none), and where to wait (-1: none).

    Candidate types are tried in config order, the first with an object (and stock) wins. A
    type whose cooldown still refuses the agent (``join_queues`` would not let it queue) is
    skipped for another type that satisfies the need directly; a type that only serves it
    indirectly (the stove: cooking feeds nobody) is not worth starting while one that does is
    merely cooling down. Failing a target, the agent waits at the first cooling object, off
    its queue, and queues the tick its cooldown ends.
    """
    ag, ob = world.agents, world.objects
    target = np.full(slots.size, -1, dtype=np.int32)
    wait = np.full(slots.size, -1, dtype=np.int32)
    for n, candidates in enumerate(world.serving):
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
            if world.effects[type_idx, n] <= 0:
                ok &= cooling_at < 0
            cooling = ok & (ag.cooldown_until[slots[rows], type_idx] > tick)
            first = cooling & (cooling_at < 0)
            cooling_at[first] = obj[first]
            ok &= ~cooling
            chosen[ok] = obj[ok]
        target[rows] = chosen
        wait[rows] = np.where(chosen < 0, cooling_at, -1)
    return target, wait


def decide(world: World, tick: int) -> None:
    ag, ob = world.agents, world.objects
    live = ag.live_slots()
    free = live[ag.busy_obj[live] < 0]
    if free.size == 0:
        return
    urgency = world.need_thresholds - ag.needs[free]
    need = np.argmax(urgency, axis=1)
    needy = urgency[np.arange(free.size), need] > 0
    critical = ag.needs[free].min(axis=1) < CRITICAL_NEED

    obj, wait = _need_targets(world, free, need, tick)
    obj = np.where(needy, obj, -1).astype(np.int32)
    spot = np.where(needy, np.where(obj >= 0, obj, wait), -1)
    tx = np.where(spot >= 0, ob.x[np.maximum(spot, 0)], ag.home_x[free])
    ty = np.where(spot >= 0, ob.y[np.maximum(spot, 0)], ag.home_y[free])

    if world.job_ids:
        job = ag.job[free]
        has_job = job >= 0
        j = np.maximum(job, 0)
        day_tick = tick % world.ticks_per_day
        window = (day_tick >= world.job_start[j] - world.arrival_buffer) & (
            day_tick < world.job_end[j])
        state = ag.shift_state[free]
        to_work = has_job & window & (state != ABSENT) & (state != POST_SHIFT) & ~critical
        tx = np.where(to_work, world.job_x[j], tx)
        ty = np.where(to_work, world.job_y[j], ty)
        obj = np.where(to_work, -1, obj).astype(np.int32)

    changed = free[(ag.queued_obj[free] >= 0) & (ag.queued_obj[free] != obj)]
    for s in changed.tolist():
        world.leave_queue(s)
    ag.target_obj[free] = obj
    _move(world, free, tx, ty)


def _move(world: World, slots: np.ndarray, tx: np.ndarray, ty: np.ndarray) -> None:
    ag = world.agents
    if world.config.features.teleport_movement:
        ag.x[slots] = tx
        ag.y[slots] = ty
        return
    dx = np.sign(tx - ag.x[slots])
    dy = np.sign(ty - ag.y[slots])
    ag.x[slots] += dx.astype(np.int32)
    ag.y[slots] += np.where(dx == 0, dy, 0).astype(np.int32)
