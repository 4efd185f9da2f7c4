"""Jobs and shifts: daily recurring shift windows, the shift state machine, wages, penalties.

Everything is evaluated on ``tick % ticks_per_day`` so shifts recur every day. The state machine
runs as masks over all employed agents at once; only the (few) agents whose state changes this
tick produce events.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from . import social
from .tables import ABSENT, AWAIT_START, IDLE, LATE, ON_TIME, POST_SHIFT

if TYPE_CHECKING:
    from .world import World

COWORKER_LIMIT = 3  # coworkers affected by one late/absent colleague (keeps the cost bounded)


def charge(world: World, slots: np.ndarray, amount: np.ndarray | float) -> None:
    """Deduct penalties without ever taking a wallet below zero."""
    ag = world.agents
    if slots.size == 0:
        return
    paid = np.minimum(amount, ag.wallet[slots])
    ag.wallet[slots] -= paid
    ag.penalties_paid[slots] += paid


def _events(world: World, slots: np.ndarray, kind: str, tick: int,
            events: list[dict[str, Any]], **extra: Any) -> None:
    ids = world.agents.ids
    jobs = world.job_ids
    for s in slots.tolist():
        events.append({"type": kind, "tick": tick, "agent_id": ids[s],
                       "job": jobs[int(world.agents.job[s])], **extra})


def _close_shift(world: World, slots: np.ndarray) -> None:
    """Record the on-time fraction of a finished shift in the attendance ring."""
    ag = world.agents
    if slots.size == 0:
        return
    length = (world.job_end - world.job_start)[ag.job[slots]]
    frac = np.where(ag.shift_state[slots] == ABSENT, 0.0, ag.worked_ticks[slots] / length)
    ring = ag.attendance.shape[1]
    pos = ag.attendance_count[slots] % ring
    ag.attendance[slots, pos] = np.clip(frac, 0.0, 1.0)
    ag.attendance_count[slots] += 1
    ag.shift_state[slots] = POST_SHIFT


def attendance_ratio(world: World, slot: int) -> float:
    ag = world.agents
    window = world.config.employment.attendance_window
    count = int(ag.attendance_count[slot])
    if count == 0:
        return 1.0
    ring = ag.attendance.shape[1]
    take = min(window, count)
    idx = [(count - 1 - k) % ring for k in range(take)]
    return round(float(np.mean(ag.attendance[slot, idx])), 6)


def absent_shifts_7d(world: World, slots: np.ndarray) -> np.ndarray:
    return world.agents.absences[slots].sum(axis=1)


def _coworker_effect(world: World, slot: int, kind: str, on_tile: np.ndarray,
                     employed: np.ndarray) -> None:
    ag = world.agents
    mates = employed[(ag.job[employed] == ag.job[slot]) & on_tile & (employed != slot)]
    for mate in mates[:COWORKER_LIMIT].tolist():
        if kind == "late":  # a colleague covered: a little goodwill both ways
            social.adjust_tie(world, slot, mate, trust=0.02, fam=0.05)
        else:  # shift taken: resentment
            social.adjust_tie(world, slot, mate, trust=-0.05, riv=0.05)


def shift_system(world: World, tick: int, events: list[dict[str, Any]]) -> None:
    ag = world.agents
    day_tick = tick % world.ticks_per_day
    if not world.job_ids or not world.in_shift_season(day_tick):
        return  # nothing in the state machine can change outside every job's window
    live = ag.live_slots()
    employed = live[ag.job[live] >= 0]
    if employed.size == 0:
        return
    emp = world.config.employment
    features = world.config.features
    # Coworker effects are relationship changes: off whenever the social system is off.
    coworker_ties = features.relationships and features.coworker_effects
    job = ag.job[employed]
    start, end = world.job_start[job], world.job_end[job]
    on_tile = (ag.x[employed] == world.job_x[job]) & (ag.y[employed] == world.job_y[job])
    state = ag.shift_state[employed]

    # Before the window: idle, then await_start within the arrival buffer.
    waiting = (day_tick < start) & (state == IDLE) & (day_tick >= start - world.arrival_buffer)
    ag.shift_state[employed[waiting]] = AWAIT_START

    in_shift = (day_tick >= start) & (day_tick < end)
    since = day_tick - start
    fresh = in_shift & ((state == IDLE) | (state == AWAIT_START))
    arrive_on_time = fresh & on_tile & (since <= emp.grace_ticks)
    ag.shift_state[employed[arrive_on_time]] = ON_TIME
    ag.arrived[employed[arrive_on_time]] = True

    turns_late = fresh & (since > emp.grace_ticks)
    late_slots = employed[turns_late]
    ag.shift_state[late_slots] = LATE
    charge(world, late_slots, world.job_late_penalty[ag.job[late_slots]])
    _events(world, late_slots, "shift_late_start", tick, events)
    if coworker_ties:
        for s in late_slots.tolist():
            _coworker_effect(world, s, "late", on_tile, employed)

    state = ag.shift_state[employed]
    working = in_shift & ((state == ON_TIME) | (state == LATE))
    late_arrival = working & on_tile & ~ag.arrived[employed]
    ag.arrived[employed[late_arrival]] = True
    arrived = ag.arrived[employed]

    # Wages on the job tile; withheld wages and per-tick lateness penalties off it.
    paid = working & on_tile
    wage = world.job_wage[job]
    ag.wallet[employed[paid]] += wage[paid]
    ag.wages_earned[employed[paid]] += wage[paid]
    ag.worked_ticks[employed[paid]] += 1
    off = working & ~on_tile
    ag.wages_withheld[employed[off]] += wage[off]
    charge(world, employed[off & (state == LATE)], emp.late_tick_penalty)

    streak = ag.off_tile_streak[employed]
    ag.off_tile_streak[employed] = np.where(working & ~on_tile & arrived, streak + 1, 0)
    no_show = working & ~arrived & (since >= emp.absent_cutoff)
    walked_out = working & arrived & (ag.off_tile_streak[employed] > emp.absence_slack)
    absent_slots = employed[no_show | walked_out]
    if absent_slots.size:
        ag.shift_state[absent_slots] = ABSENT
        charge(world, absent_slots, emp.absence_penalty)
        ag.absences[absent_slots, (tick // world.ticks_per_day) % 7] += 1
        _events(world, absent_slots, "shift_absent", tick, events)
        if coworker_ties:
            for s in absent_slots.tolist():
                _coworker_effect(world, s, "absent", on_tile, employed)

    ending = (day_tick == end) & (ag.shift_state[employed] != POST_SHIFT)
    ending &= ag.shift_state[employed] != IDLE
    _close_shift(world, employed[ending])


def nightly_reset(world: World, tick: int, events: list[dict[str, Any]]) -> None:
    """Start of a day: free agents go home, needs get a floor, shift state resets."""
    ag = world.agents
    live = ag.live_slots()
    free = live[ag.busy_obj[live] < 0]
    for s in free.tolist():
        world.leave_queue(s)
    ag.x[free] = ag.home_x[free]
    ag.y[free] = ag.home_y[free]
    ag.needs[live] = np.maximum(ag.needs[live], 0.5)
    ag.shift_state[live] = IDLE
    ag.arrived[live] = False
    ag.worked_ticks[live] = 0
    ag.off_tile_streak[live] = 0
    ag.absences[live, (tick // world.ticks_per_day) % 7] = 0
    events.append({"type": "nightly_reset", "tick": tick, "agents": int(live.size)})
