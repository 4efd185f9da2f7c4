"""Needs decay every tick; with mortality on, an agent whose hunger reaches the faint
threshold faints and is retired (a replacement respawns later). First in the tick.
See docs/SIMULATION.md, "Agents and needs" and "Tick order".
"""

from __future__ import annotations

import numpy as np

from . import lifecycle
from .events import AgentFaint, Event
from .state import BaseSystem, State


def decay_and_faint(state: State, tick: int, events: list[Event]) -> None:
    ag = state.agents
    live = ag.live_slots()
    ag.needs[live] = np.maximum(ag.needs[live] - state.decay_rates, 0.0)
    if not state.config.features.mortality:
        return
    fainted = live[ag.needs[live, 0] <= state.config.rewards.faint_threshold]
    for s in fainted.tolist():
        agent_id = ag.ids[s]
        if agent_id is not None:
            events.append(AgentFaint(tick, agent_id))
            lifecycle.retire(state, agent_id, tick, "faint", events)


class Needs(BaseSystem):
    name = "needs"

    def step(self, state: State, tick: int, events: list[Event]) -> None:
        decay_and_faint(state, tick, events)


SYSTEM = Needs()
