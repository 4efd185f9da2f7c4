"""Small builders for simulation tests: a tiny town whose every number the test controls."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, TypeVar

from shared.config import SimulationConfig, load_config, parse_config
from shared.sim.events import Event
from shared.sim.world import World

E = TypeVar("E", bound=Event)

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "configs" / "examples" / "poc_hybrid.yaml"
EXAMPLE_SNAPSHOT_EVERY = load_config(EXAMPLE).telemetry.snapshot_every  # full telemetry period


def example_config() -> SimulationConfig:
    return load_config(EXAMPLE)


def tiny_config(agents: list[dict[str, Any]] | None = None, **sections: Any) -> SimulationConfig:
    """One household (shower, fridge, stove, bed) at the origin and one job at (5, 5)."""
    raw = example_config().model_dump(mode="json")
    raw["jobs"] = {"grocer": {"start_tick": 100, "end_tick": 200, "wage_rate": 0.02,
                              "lateness_penalty": 0.1, "location": [5, 5]}}
    raw["objects"] = [
        {"id": "shower", "type": "shower", "position": [0, 0]},
        {"id": "fridge", "type": "fridge", "position": [1, 0]},
        {"id": "stove", "type": "stove", "position": [2, 0]},
        {"id": "bed", "type": "bed", "position": [0, 1]},
    ]
    raw["agents"] = agents if agents is not None else [
        {"id": "alice", "position": [3, 3], "needs": {"hunger": 1, "hygiene": 1, "energy": 1}},
    ]
    raw["world"] = {"seed": 7, "ticks_per_day": 1440, "grid_size": 12}
    raw["behavior"]["chat_probability"] = 0.0
    for name, value in sections.items():
        # Sections are merged into the defaults, except `jobs`, a table of jobs: `jobs={}`
        # means "no jobs", not "the default job".
        if name != "jobs" and isinstance(value, dict) and isinstance(raw.get(name), dict):
            merged = copy.deepcopy(raw[name])
            merged.update(value)
            raw[name] = merged
        else:
            raw[name] = value
    return parse_config(raw)


def run(world: World, until: int) -> list[Event]:
    """Step the world up to and including tick ``until``; return every event."""
    events: list[Event] = []
    for t in range(world.tick + 1, until + 1):
        events.extend(world.step(t))
    return events


def of_type(events: list[Event], kind: type[E]) -> list[E]:
    """The events of exactly this type (a subclass is another kind of event)."""
    return [e for e in events if type(e) is kind]
