"""The day: at tick 0 of every day free agents go home, needs get a floor of 0.5, and the
shift state machine starts over. See docs/SIMULATION.md, "The day".
"""

from __future__ import annotations

import numpy as np

from .events import Event, NightlyReset
from .state import BaseSystem, State
from .tables import IDLE


def nightly_reset(state: State, tick: int, events: list[Event]) -> None:
    """Start of a day: free agents go home, needs get a floor, shift state resets."""
    ag = state.agents
    live = ag.live_slots()
    free = live[ag.busy_obj[live] < 0]
    for s in free.tolist():
        state.leave_queue(s)
    ag.x[free] = ag.home_x[free]
    ag.y[free] = ag.home_y[free]
    ag.needs[live] = np.maximum(ag.needs[live], 0.5)
    ag.shift_state[live] = IDLE
    ag.arrived[live] = False
    ag.worked_ticks[live] = 0
    ag.off_tile_streak[live] = 0
    ag.absences[live, (tick // state.ticks_per_day) % 7] = 0
    events.append(NightlyReset(tick, int(live.size)))


class Day(BaseSystem):
    """Runs only on the first tick of a day."""

    name = "nightly_reset"

    def step(self, state: State, tick: int, events: list[Event]) -> None:
        if tick % state.ticks_per_day == 0:
            nightly_reset(state, tick, events)


SYSTEM = Day()
