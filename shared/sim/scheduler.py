"""The fixed order systems run in each tick (docs/SIMULATION.md, "Tick order").

Needs decay and fainting, the nightly reset at the start of a day, the shift state machine,
behaviour, affordances, relationships (decay, chat), employment lifecycle, respawns. The order
is part of the rules: every state hash depends on it. Adding a system is one module that
defines it (``state.System``) and one entry here.
"""

from __future__ import annotations

from . import affordances, day, employment, jobs, lifecycle, needs, policy, social
from .events import Event
from .state import State, System

SYSTEMS: tuple[System, ...] = (
    needs.SYSTEM,
    day.SYSTEM,
    jobs.SYSTEM,
    policy.SYSTEM,
    affordances.SYSTEM,
    social.SYSTEM,
    employment.SYSTEM,
    lifecycle.SYSTEM,
)


def run(state: State, tick: int) -> list[Event]:
    """Run one tick; returns the events it produced, in the order they happened."""
    state.tick = tick
    events: list[Event] = []
    for system in state.schedule:
        system.step(state, tick, events)
    return events
