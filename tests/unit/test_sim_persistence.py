"""Persistence covers the whole state: every attribute is exported and restored, in place.

The state is four kinds of thing (see shared/sim/state.py): what the config fixes (rebuilt),
the ``Scalars`` fields (walked), the RNG and tables, and each system's own state. An attribute
that is none of these has been added without persistence, and the first test fails.
"""

from __future__ import annotations

import copy
import functools
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

import numpy as np
import pytest

from shared.config import SimulationConfig
from shared.scenarios import generate_town
from shared.sim import lifecycle, ops, scheduler
from shared.sim.catalog import Catalog
from shared.sim.codec import FieldState, log_field
from shared.sim.events import Event, NightlyReset
from shared.sim.persist import (
    adopt_state,
    export_state,
    restore_in_place,
    restore_world,
    rollback,
    save_state,
    state_hash,
)
from shared.sim.state import BaseSystem, Scalars, State
from shared.sim.tables import AGENT_COLUMNS, ColumnSpec
from shared.sim.world import World
from shared.snapshot import decode_snapshot, encode_snapshot

WIRING = {"systems", "schedule"}  # the scheduler's systems: code, not state
BUSY_TICKS = 1_700  # past the day's end at 1440 and into the next day's first shift
# Table attributes that are caches or indexes derived from what is exported (and the table's
# layout, which comes from the systems): everything else a table holds must be exported.
AGENT_TABLE_DERIVED = {"layout", "capacity", "version", "ids_cache", "_live_key", "_live",
                       "slot_of"}
OBJECT_TABLE_DERIVED = {"slot_of", "active"}


def busy_world() -> World:
    """A fresh copy of the busy town (built once: it runs for over a day)."""
    return copy.deepcopy(_busy_world())


@functools.cache
def _busy_world() -> World:
    """A town in which every world-level value and the employment queue are off their defaults,
    run past a day's end so the nightly reset and a second day's shifts have touched the state."""
    cfg = generate_town(24, seed=5)
    world = World(cfg)
    for tick in range(1, BUSY_TICKS + 1):
        if tick == 10:
            ops.spawn(world, "newcomer", (1, 1))
        if tick == 20:
            ops.set_need(world, "agent_1", "hunger", 0.0)  # faints, respawns 10 ticks later
        if tick == 40:
            ops.force_chat(world, "agent_2", "agent_3", 0.9, tick)
            ops.set_price(world, "meal_cost", 0.55)
        if tick == 100:
            world.employment.approve(world, "agent_4")
        if tick == BUSY_TICKS - 1:
            ops.set_need(world, "agent_5", "hunger", 0.0)  # its respawn is still due at the end
        world.step(tick)
    world.employment.enqueue_exit(world, "agent_6", world.tick)
    world.employment.enqueue_exit(world, "agent_7", world.tick)
    world.employment.defer(world, "agent_7")
    ops.perturb(world, "blackout")
    ops.perturb(world, "outage")
    return world


def rebuilt_from_config(world: State) -> set[str]:
    return set(vars(Catalog(world.config))) | WIRING


def test_every_attribute_of_the_state_is_exported_or_rebuilt_from_the_config() -> None:
    world = busy_world()
    _arrays, meta = export_state(world)
    stored = set(vars(world)) - rebuilt_from_config(world) - {"parts"}
    assert stored == set(meta) - set(world.parts), "an attribute is neither exported nor rebuilt"
    with_state = {s.name for s in world.systems if s.create_state(world.config) is not None}
    assert set(world.parts) == with_state and set(world.parts) <= set(meta)
    for name, part in world.parts.items():  # a part exports every attribute but its config
        assert set(vars(part)) - {"cfg"} == set(part.export()), name


def test_every_attribute_of_the_tables_is_exported_or_derived() -> None:
    world = busy_world()
    agents, objects = world.agents, world.objects
    agent_meta = agents.export()[1]
    held = set(vars(agents)) - AGENT_TABLE_DERIVED - set(agents.layout)  # columns: in ``cols``
    assert held == {"cols"} | set(agent_meta), "an agent-table attribute is not exported"
    assert all(getattr(agents, name) is col for name, col in agents.cols.items())
    arrays, object_meta = objects.export()
    held = set(vars(objects)) - OBJECT_TABLE_DERIVED
    assert held == {key.removeprefix("object.") for key in arrays} | set(object_meta), \
        "an object-table attribute is not exported"


def test_what_the_config_fixes_is_not_changed_by_running() -> None:
    """Catalog values are rebuilt from the config on restore, so no tick may change them."""
    world = busy_world()
    fresh = Catalog(world.config)
    for name, value in vars(fresh).items():
        now = getattr(world, name)
        if isinstance(value, np.ndarray):
            np.testing.assert_array_equal(now, value, err_msg=name)
        else:
            assert now == value, f"the catalog value {name} changed while the town ran"


def test_the_busy_world_moves_every_scalar_off_its_default() -> None:
    """So the round trips below compare real values (a new field must be exercised here)."""
    world = busy_world()
    for f in fields(Scalars):
        default = f.default_factory() if f.default_factory is not MISSING else f.default
        if f.name == "prices":
            default = World(world.config).prices
        assert getattr(world, f.name) != default, f"busy_world leaves {f.name} at its default"


def assert_same_state(a: State, b: State) -> None:
    for name in set(vars(a)) - rebuilt_from_config(a):
        left, right = getattr(a, name), getattr(b, name)
        if name == "rng":
            assert left.bit_generator.state == right.bit_generator.state
        elif name in ("agents", "objects"):
            (arrays_l, meta_l), (arrays_r, meta_r) = left.export(), right.export()
            assert meta_l == meta_r and arrays_l.keys() == arrays_r.keys(), name
            for key in arrays_l:
                np.testing.assert_array_equal(arrays_l[key], arrays_r[key], err_msg=key)
            if name == "objects":
                assert left.active == right.active
        elif name == "parts":
            assert left.keys() == right.keys()
            for part in left:
                assert vars(left[part]) == vars(right[part]), part
        else:
            assert left == right, name
    assert state_hash(a) == state_hash(b)


def test_every_attribute_survives_export_restore_and_a_snapshot_file() -> None:
    world = busy_world()
    assert_same_state(world, restore_world(world.config, *export_state(world)))
    cfg: SimulationConfig = world.config
    from_file, _extra = decode_snapshot(encode_snapshot(world, cfg, {}), cfg)
    assert_same_state(world, from_file)


def test_rollback_restores_in_place_for_every_holder() -> None:
    world = busy_world()
    holder, queue = world, world.employment
    saved, before = save_state(world), state_hash(world)
    ops.perturb(world, "restore")
    victim = world.agent_id(int(world.agents.live_slots()[-1]))
    ops.kill(world, victim, world.tick)
    for tick in range(world.tick + 1, world.tick + 60):
        world.step(tick)
    assert state_hash(world) != before
    rollback(world, saved)
    assert holder is world and world.employment is queue  # the same objects, restored
    assert state_hash(world) == before and not world.power_on and victim in world.agents.slot_of
    twin = restore_world(world.config, *save_state(world))
    for tick in range(world.tick + 1, world.tick + 200):
        world.step(tick)
        twin.step(tick)
        assert state_hash(world) == state_hash(twin)


def test_adopt_state_puts_another_world_into_this_one() -> None:
    world, other = World(generate_town(8, seed=1)), busy_world()
    holder = world
    adopt_state(world, other)
    assert holder is world
    assert_same_state(world, other)


def test_a_value_missing_from_an_old_export_gets_its_default() -> None:
    world = busy_world()
    arrays, meta = save_state(world)
    del meta["next_job"], meta["social_events"], arrays["agent.counters"]
    restore_in_place(world, arrays, meta)
    assert world.next_job == 0 and world.social_events == []
    assert (world.agents.counters == 0).all()  # a column the old export lacks: its fill value


# -- a new system brings its own state and columns, persistence is not edited ---------------
@dataclass(eq=False)
class ProbeState(FieldState):
    steps: int = 0
    seen: dict[str, int] = field(default_factory=dict)
    last: Event | None = None  # typed events outside a log are hashed in their wire form
    log: list[Event] = log_field()


class Probe(BaseSystem):
    name = "probe"
    columns: dict[str, ColumnSpec] = {"probe_visits": (np.int32, (), 0)}

    def create_state(self, config: SimulationConfig) -> ProbeState:
        return ProbeState()

    def step(self, state: State, tick: int, events: list[Event]) -> None:
        part = state.parts[self.name]
        assert isinstance(part, ProbeState)
        part.steps += 1
        live = state.agents.live_slots()
        state.agents.cols["probe_visits"][live] += 1
        part.seen = {state.agent_id(int(s)): tick for s in live[:3]}
        if tick % 50 == 0:
            part.last = NightlyReset(tick, int(live.size))
            part.log.append(part.last)


def probe_town(cfg: SimulationConfig) -> State:
    state = State(cfg, (*scheduler.SYSTEMS, Probe()))
    for spec in cfg.agents:
        lifecycle.spawn(state, spec.id, spec.position, job=spec.job, home=spec.home,
                        needs=spec.needs, wallet=spec.wallet)
    return state


def test_a_new_systems_state_and_columns_are_persisted_without_touching_persistence() -> None:
    cfg = generate_town(16, seed=3)
    state = probe_town(cfg)
    assert list(state.agents.cols)[: len(AGENT_COLUMNS)] == list(AGENT_COLUMNS)  # hash order
    assert list(state.agents.cols)[-1] == "probe_visits"
    for tick in range(1, 201):
        scheduler.run(state, tick)
    arrays, meta = export_state(state)
    assert meta["probe"]["steps"] == 200 and len(meta["probe"]["log"]) == 4
    assert "agent.probe_visits" in arrays
    hash_meta: dict[str, Any] = state.parts["probe"].export(for_hash=True)
    assert hash_meta["log"] == 4  # a log is hashed by its length
    assert hash_meta["last"] == {"type": "nightly_reset", "tick": 200, "agents": 16}
    restored = probe_town(cfg.model_copy(update={"agents": []}))
    restore_in_place(restored, arrays, meta)
    assert vars(restored.parts["probe"]) == vars(state.parts["probe"])
    assert state_hash(restored) == state_hash(state)
    for tick in range(201, 260):
        scheduler.run(state, tick)
        scheduler.run(restored, tick)
        assert state_hash(restored) == state_hash(state)


def test_a_system_may_not_take_a_name_or_column_already_in_use() -> None:
    class Clash(Probe):
        columns: dict[str, ColumnSpec] = {"wallet": (np.float64, (), 0.0)}

    with pytest.raises(ValueError, match="redefines agent column 'wallet'"):
        State(generate_town(4), (*scheduler.SYSTEMS, Clash()))

    class Named(Probe):
        name = "tick"
        columns: dict[str, ColumnSpec] = {}

    with pytest.raises(ValueError, match="'tick' is already a name in the exported state"):
        State(generate_town(4), (*scheduler.SYSTEMS, Named()))
