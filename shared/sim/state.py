"""The simulation state and the small helpers every system shares. Imports no system.

A ``State`` is four kinds of thing, and persistence treats each by kind, never by name:

* what the config fixes (``Catalog``: job and affordance tables), rebuilt on restore;
* world-level values (``Scalars``, one dataclass), walked field by field by ``codec``;
* the RNG and the agent and object tables;
* each system's own state (``parts``, by system name), exported and restored by the part.

Systems are values that share one interface (``System``); the scheduler runs them in a fixed
order (docs/SIMULATION.md, "Tick order"). Pure and deterministic: no I/O, no wall clock, no
unseeded randomness; every random draw comes from ``rng``, whose state is part of the snapshot
and of the state hash (docs/SIMULATION.md, "Determinism and the state hash").
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any, NamedTuple, Protocol

import numpy as np

from shared.settings import AffordanceSpec, SimulationConfig

from .catalog import Catalog
from .codec import log_field
from .events import Event, event_to_wire
from .tables import AGENT_COLUMNS, AgentTable, ColumnSpec

# Social events kept for the console (docs/SIMULATION.md, "Relationships").
SOCIAL_EVENT_HISTORY = 200


class UnknownAgent(KeyError):
    """Raised for an agent id that is not in the town (console maps it to not_found)."""

    def __str__(self) -> str:
        return f"unknown agent {self.args[0]!r}"


class Respawn(NamedTuple):
    """A replacement due for a retired agent (docs/SIMULATION.md, "Agents and needs")."""

    due_tick: int
    origin: str
    job: str | None
    home_x: int
    home_y: int


@dataclass(eq=False, repr=False)  # a world is compared and shown by identity, as before
class Scalars:
    """World-level values beside the tables. Persistence walks these fields one by one, so a
    field added here is saved, restored and hashed with no other edit."""

    tick: int = 0
    power_on: bool = True
    water_on: bool = True
    prices: dict[str, float] = field(default_factory=dict)
    respawns: list[Respawn] = field(default_factory=list)
    respawn_counts: dict[str, int] = field(default_factory=dict)
    next_job: int = 0  # round-robin job for agents spawned without one
    social_events: list[Event] = log_field()
    # Chained digest of every append-only log entry (social events, exits): the state hash
    # covers those logs without re-encoding them every tick.
    log_digest: str = ""


class SystemState(Protocol):
    """A system's own persisted state (``codec.FieldState`` implements it for a dataclass)."""

    def export(self, *, for_hash: bool = False) -> dict[str, Any]: ...

    def restore(self, data: dict[str, Any]) -> None: ...


class System(Protocol):
    """One simulation system: what the scheduler runs and lifecycle cleans up after."""

    name: str
    columns: dict[str, ColumnSpec]  # agent columns it adds, after the existing ones

    def enabled(self, config: SimulationConfig) -> bool: ...

    def step(self, state: State, tick: int, events: list[Event]) -> None: ...

    def forget(self, state: State, slot: int, tick: int, reason: str,
               events: list[Event]) -> None: ...

    def create_state(self, config: SimulationConfig) -> SystemState | None: ...


class BaseSystem:
    """Defaults for the optional parts of ``System``: always on, no cleanup, no own state."""

    name = ""
    columns: dict[str, ColumnSpec] = {}

    def enabled(self, config: SimulationConfig) -> bool:
        return True

    def step(self, state: State, tick: int, events: list[Event]) -> None:
        raise NotImplementedError

    def forget(self, state: State, slot: int, tick: int, reason: str,
               events: list[Event]) -> None:
        return None

    def create_state(self, config: SimulationConfig) -> SystemState | None:
        return None


def agent_layout(systems: Sequence[System]) -> dict[str, ColumnSpec]:
    """The agent columns in hash order: the base layout, then each system's, in order."""
    layout = dict(AGENT_COLUMNS)
    for system in systems:
        for name, spec in system.columns.items():
            if name in layout:
                raise ValueError(f"system {system.name!r} redefines agent column {name!r}")
            layout[name] = spec
    return layout


class State(Scalars, Catalog):
    """Everything a tick reads and writes. Catalog and scalar values are plain attributes of
    the state itself (``state.job_start``, ``state.power_on``): systems read them per tick and
    per agent, so they cost no extra lookup."""

    def __init__(self, config: SimulationConfig, systems: Sequence[System]) -> None:
        Catalog.__init__(self, config)
        Scalars.__init__(self, prices={
            "meal_cost": config.economy.meal_cost,
            "ingredients_cost": config.economy.ingredients_cost,
            "shower_cost": config.economy.shower_cost,
        })
        self.systems = tuple(systems)  # every system: all of them clean up after an agent
        # The systems a tick runs, decided once: a world's config is fixed for its life.
        self.schedule = tuple(s for s in self.systems if s.enabled(config))
        self.rng = np.random.default_rng(config.world.seed)
        self.agents = AgentTable(columns=agent_layout(self.systems))
        self.objects = self.initial_objects()
        self.parts: dict[str, SystemState] = {}
        taken = {f.name for f in fields(Scalars)} | {"rng", "agents", "objects"}
        for system in self.systems:
            part = system.create_state(config)
            if part is None:
                continue
            if system.name in taken or system.name in self.parts:
                # A part is exported under its system's name, beside the scalars and tables.
                raise ValueError(f"{system.name!r} is already a name in the exported state")
            self.parts[system.name] = part

    # -- agents ---------------------------------------------------------------------------
    def require_agent(self, agent_id: str) -> int:
        slot = self.agents.slot_of.get(agent_id)
        if slot is None:
            raise UnknownAgent(agent_id)
        return slot

    def agent_id(self, slot: int) -> str:
        """The id of the agent in a live slot (for events)."""
        agent_id = self.agents.ids[slot]
        if agent_id is None:
            raise UnknownAgent(f"slot {slot}")
        return agent_id

    def leave_queue(self, slot: int) -> None:
        """Take an agent off its reservation queue, if any (docs/SIMULATION.md, "Reservation
        queues")."""
        ag = self.agents
        o = int(ag.queued_obj[slot])
        if o >= 0:
            queue = self.objects.queues[o]
            queue[:] = [entry for entry in queue if entry[0] != slot]
            ag.queued_obj[slot] = -1

    def nearest(self, x: int, y: int, type_idx: int) -> int:
        return self.objects.nearest(x, y, type_idx)

    def affordance_cost(self, spec: AffordanceSpec) -> float:
        """What an affordance costs now: its price key (operators may change it) or its cost."""
        return self.prices.get(spec.cost_key, spec.cost) if spec.cost_key else spec.cost

    # -- append-only logs -----------------------------------------------------------------
    def chain(self, record: dict[str, Any]) -> None:
        h = hashlib.blake2b(self.log_digest.encode(), digest_size=16)
        h.update(json.dumps(record, sort_keys=True, separators=(",", ":")).encode())
        self.log_digest = h.hexdigest()

    def record_social(self, event: Event) -> None:
        self.chain(event_to_wire(event))
        self.social_events.append(event)
        del self.social_events[: -SOCIAL_EVENT_HISTORY]
