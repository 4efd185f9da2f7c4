"""The world: a ``State`` wired to the scheduler's systems, with its configured agents.

This is the simulation's entry point (``World(config)``, ``world.step(tick)``); what the state
holds is in ``state.py``, the tick order in ``scheduler.py`` (docs/SIMULATION.md, "Tick order").
"""

from __future__ import annotations

from shared.settings import SimulationConfig

from . import lifecycle, scheduler
from .employment import EmploymentQueue, queue_of
from .events import Event
from .state import State, UnknownAgent

__all__ = ["UnknownAgent", "World"]


class World(State):
    def __init__(self, config: SimulationConfig) -> None:
        super().__init__(config, scheduler.SYSTEMS)
        for spec in config.agents:
            lifecycle.spawn(self, spec.id, spec.position, job=spec.job, home=spec.home,
                            needs=spec.needs, wallet=spec.wallet)

    @property
    def employment(self) -> EmploymentQueue:
        """The employment exit queue (operators act on it: enqueue, approve, defer, cap)."""
        return queue_of(self)

    def step(self, tick: int) -> list[Event]:
        """Run one tick; returns the events it produced, in the order they happened."""
        return scheduler.run(self, tick)
