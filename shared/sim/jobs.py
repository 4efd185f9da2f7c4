"""Jobs and shifts: daily recurring shift windows, the shift state machine, wages, penalties.

Everything is evaluated on ``tick % ticks_per_day`` so shifts recur every day. The state machine
runs as masks over all employed agents at once; only the (few) agents whose state changes this
tick produce events. See docs/SIMULATION.md, "Jobs and shifts".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import social
from .events import Event, ShiftAbsent, ShiftEvent, ShiftLateStart
from .state import BaseSystem, State
from .tables import ABSENT, AWAIT_START, IDLE, LATE, ON_TIME, POST_SHIFT

COWORKER_LIMIT = 3  # coworkers affected by one late/absent colleague (keeps the cost bounded)


def charge(state: State, slots: np.ndarray, amount: np.ndarray | float) -> None:
    """Deduct penalties without ever taking a wallet below zero."""
    ag = state.agents
    if slots.size == 0:
        return
    paid = np.minimum(amount, ag.wallet[slots])
    ag.wallet[slots] -= paid
    ag.penalties_paid[slots] += paid


def _events(state: State, slots: np.ndarray, kind: type[ShiftEvent], tick: int,
            events: list[Event]) -> None:
    jobs, job = state.job_ids, state.agents.job
    for s in slots.tolist():
        events.append(kind(tick, state.agent_id(s), jobs[int(job[s])]))


def _close_shift(state: State, slots: np.ndarray) -> None:
    """Record the on-time fraction of a finished shift in the attendance ring."""
    ag = state.agents
    if slots.size == 0:
        return
    length = (state.job_end - state.job_start)[ag.job[slots]]
    frac = np.where(ag.shift_state[slots] == ABSENT, 0.0, ag.worked_ticks[slots] / length)
    ring = ag.attendance.shape[1]
    pos = ag.attendance_count[slots] % ring
    ag.attendance[slots, pos] = np.clip(frac, 0.0, 1.0)
    ag.attendance_count[slots] += 1
    ag.shift_state[slots] = POST_SHIFT


def attendance_ratio(state: State, slot: int) -> float:
    ag = state.agents
    window = state.config.employment.attendance_window
    count = int(ag.attendance_count[slot])
    if count == 0:
        return 1.0
    ring = ag.attendance.shape[1]
    take = min(window, count)
    idx = [(count - 1 - k) % ring for k in range(take)]
    return round(float(np.mean(ag.attendance[slot, idx])), 6)


def absent_shifts_7d(state: State, slots: np.ndarray) -> np.ndarray:
    counts: np.ndarray = state.agents.absences[slots].sum(axis=1)
    return counts


def _coworker_effect(state: State, slot: int, kind: str, on_tile: np.ndarray,
                     employed: np.ndarray) -> None:
    ag = state.agents
    mates = employed[(ag.job[employed] == ag.job[slot]) & on_tile & (employed != slot)]
    for mate in mates[:COWORKER_LIMIT].tolist():
        if kind == "late":  # a colleague covered: a little goodwill both ways
            social.adjust_tie(state, slot, mate, trust=0.02, fam=0.05)
        else:  # shift taken: resentment
            social.adjust_tie(state, slot, mate, trust=-0.05, riv=0.05)


@dataclass
class _Shift:
    """This tick's view of every employed agent, shared by the phases of ``shift_system``."""

    tick: int
    day_tick: int
    employed: np.ndarray
    on_tile: np.ndarray
    in_shift: np.ndarray
    since: np.ndarray
    coworker_ties: bool


def shift_system(state: State, tick: int, events: list[Event]) -> None:
    ag = state.agents
    day_tick = tick % state.ticks_per_day
    if not state.job_ids or not state.in_shift_season(day_tick):
        return  # nothing in the state machine can change outside every job's window
    live = ag.live_slots()
    employed = live[ag.job[live] >= 0]
    if employed.size == 0:
        return
    features = state.config.features
    job = ag.job[employed]
    start, end = state.job_start[job], state.job_end[job]
    on_tile = (ag.x[employed] == state.job_x[job]) & (ag.y[employed] == state.job_y[job])
    shift = _Shift(tick, day_tick, employed, on_tile,
                   in_shift=(day_tick >= start) & (day_tick < end), since=day_tick - start,
                   # Coworker effects are relationship changes: off whenever the social
                   # system is off.
                   coworker_ties=features.relationships and features.coworker_effects)
    _start_shifts(state, shift, start, events)
    working = _pay(state, shift)
    _absences(state, shift, working, events)
    ending = (day_tick == end) & (ag.shift_state[employed] != POST_SHIFT)
    ending &= ag.shift_state[employed] != IDLE
    _close_shift(state, employed[ending])


def _start_shifts(state: State, shift: _Shift, start: np.ndarray, events: list[Event]) -> None:
    """Before the window: idle, then await_start; at its start: on time, or late after grace."""
    ag, employed = state.agents, shift.employed
    grace = state.config.employment.grace_ticks
    current = ag.shift_state[employed]
    waiting = (shift.day_tick < start) & (current == IDLE)
    waiting &= shift.day_tick >= start - state.arrival_buffer
    ag.shift_state[employed[waiting]] = AWAIT_START

    fresh = shift.in_shift & ((current == IDLE) | (current == AWAIT_START))
    arrive_on_time = fresh & shift.on_tile & (shift.since <= grace)
    ag.shift_state[employed[arrive_on_time]] = ON_TIME
    ag.arrived[employed[arrive_on_time]] = True

    late_slots = employed[fresh & (shift.since > grace)]
    ag.shift_state[late_slots] = LATE
    charge(state, late_slots, state.job_late_penalty[ag.job[late_slots]])
    _events(state, late_slots, ShiftLateStart, shift.tick, events)
    if shift.coworker_ties:
        for s in late_slots.tolist():
            _coworker_effect(state, s, "late", shift.on_tile, employed)


def _pay(state: State, shift: _Shift) -> np.ndarray:
    """Wages on the job tile; withheld wages and per-tick lateness penalties off it.

    Returns the mask of employed agents working this tick (on time or late, in the window).
    """
    ag, employed, on_tile = state.agents, shift.employed, shift.on_tile
    current = ag.shift_state[employed]
    working: np.ndarray = shift.in_shift & ((current == ON_TIME) | (current == LATE))
    late_arrival = working & on_tile & ~ag.arrived[employed]
    ag.arrived[employed[late_arrival]] = True
    paid = working & on_tile
    wage = state.job_wage[ag.job[employed]]
    ag.wallet[employed[paid]] += wage[paid]
    ag.wages_earned[employed[paid]] += wage[paid]
    ag.worked_ticks[employed[paid]] += 1
    off = working & ~on_tile
    ag.wages_withheld[employed[off]] += wage[off]
    charge(state, employed[off & (current == LATE)], state.config.employment.late_tick_penalty)
    return working


def _absences(state: State, shift: _Shift, working: np.ndarray, events: list[Event]) -> None:
    """No-shows past the cutoff and walk-outs past the slack are absent for the shift."""
    ag, employed, emp = state.agents, shift.employed, state.config.employment
    arrived = ag.arrived[employed]
    streak = ag.off_tile_streak[employed]
    ag.off_tile_streak[employed] = np.where(working & ~shift.on_tile & arrived, streak + 1, 0)
    no_show = working & ~arrived & (shift.since >= emp.absent_cutoff)
    walked_out = working & arrived & (ag.off_tile_streak[employed] > emp.absence_slack)
    absent_slots = employed[no_show | walked_out]
    if absent_slots.size == 0:
        return
    ag.shift_state[absent_slots] = ABSENT
    charge(state, absent_slots, emp.absence_penalty)
    ag.absences[absent_slots, (shift.tick // state.ticks_per_day) % 7] += 1
    _events(state, absent_slots, ShiftAbsent, shift.tick, events)
    if shift.coworker_ties:
        for s in absent_slots.tolist():
            _coworker_effect(state, s, "absent", shift.on_tile, employed)


class Shifts(BaseSystem):
    name = "shifts"

    def step(self, state: State, tick: int, events: list[Event]) -> None:
        shift_system(state, tick, events)


SYSTEM = Shifts()
