"""Rules an audit found broken (docs/SIMULATION.md, "The employment exit queue",
"Relationships", "Jobs and shifts"): defer sticks, the six-tie cap keeps the strongest
symmetrically, coworker effects obey features.relationships, and job windows lie in the day."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shared.config import ConfigError, load_config
from shared.scenarios import generate_town
from shared.sim import ops, social
from shared.sim.events import ExitDeferred, ExitPending, ShiftAbsent, ShiftLateStart
from shared.sim.persist import export_state, restore_world, state_hash
from shared.sim.world import World
from tests.simtools import EXAMPLE, of_type, run, tiny_config

FULL = {"hunger": 1, "hygiene": 1, "energy": 1}
STILL = {"decay_rates": {"hunger": 0, "hygiene": 0, "energy": 0}}


# -- 1. defer holds until the agent is absent again ------------------------------------------
def chronic_world() -> tuple[World, int]:
    """a0 has 3 absences this week (the default max_absent_shifts); today's exit cap is used up,
    so an enqueued agent stays pending instead of exiting."""
    world = World(tiny_config(
        agents=[{"id": "a0", "position": [3, 3], "needs": FULL},
                {"id": "a1", "position": [3, 3], "needs": FULL}],
        rewards=STILL, employment={"enforce_job_loop": True, "daily_exit_cap": 1}))
    slot = world.require_agent("a0")
    world.agents.absences[slot, :3] = 1
    world.employment.exits_today = 1
    run(world, 1)
    assert world.employment.metrics()["pending"] == ["a0"]
    return world, slot


def pending(world: World) -> list[str]:
    return list(world.employment.metrics()["pending"])


def test_a_deferred_chronic_absentee_is_not_requeued_without_a_new_absence() -> None:
    world, slot = chronic_world()
    world.employment.defer(world, "a0")
    events = run(world, 50)
    assert pending(world) == []
    assert not world.agents.exit_pending[slot]
    assert not of_type(events, ExitPending)
    assert [e.agent_id for e in of_type(events, ExitDeferred)] == ["a0"]


def test_a_new_absence_after_the_defer_requeues_the_agent() -> None:
    world, slot = chronic_world()
    world.employment.defer(world, "a0")
    run(world, 5)
    world.agents.absences[slot, 3] = 1  # absent again: 4 in the last 7 days
    events = run(world, 6)
    assert pending(world) == ["a0"] and world.agents.exit_pending[slot]
    assert [e.agent_id for e in of_type(events, ExitPending)] == ["a0"]


def test_an_old_absence_rolling_off_lowers_the_bar_for_the_next_one() -> None:
    world, slot = chronic_world()
    world.agents.absences[slot, 3] = 1  # 4 absences when the operator defers
    world.employment.defer(world, "a0")
    run(world, 3)
    world.agents.absences[slot, 0] = 0  # an old one leaves the week: 3, still chronic
    run(world, 5)
    assert pending(world) == []
    world.agents.absences[slot, 0] = 1  # a new one: 4 again, which is more than 3
    run(world, 6)
    assert pending(world) == ["a0"]


def test_the_deferral_ends_once_absences_drop_below_the_threshold() -> None:
    world, slot = chronic_world()
    world.employment.defer(world, "a0")
    world.agents.absences[slot] = 0
    run(world, 3)
    assert world.employment.deferred == {}
    world.agents.absences[slot, :3] = 1  # chronic again from scratch
    run(world, 4)
    assert pending(world) == ["a0"]


def test_deferral_survives_a_snapshot_round_trip_and_is_in_the_state_hash() -> None:
    world, _ = chronic_world()
    twin, _ = chronic_world()
    world.employment.defer(world, "a0")
    twin.employment.defer(twin, "a0")
    twin.employment.deferred.clear()  # same state except the deferral record
    assert state_hash(world) != state_hash(twin)
    arrays, meta = export_state(world)
    restored = restore_world(world.config, arrays, meta)
    assert restored.employment.deferred == world.employment.deferred == {"a0": 3}
    assert state_hash(restored) == state_hash(world)
    for tick in range(2, 30):
        world.step(tick)
        restored.step(tick)
        assert state_hash(restored) == state_hash(world)
    assert pending(restored) == []


def test_operator_enqueue_after_defer_still_works() -> None:
    world, _ = chronic_world()
    world.employment.defer(world, "a0")
    assert world.employment.enqueue_exit(world, "a0", 2)
    assert world.employment.deferred == {}
    run(world, 3)
    assert pending(world) == ["a0"]


# -- 2. the six-tie cap keeps the strongest, on both sides ------------------------------------
def crowd(n: int = 14) -> World:
    return World(tiny_config(agents=[{"id": f"a{i}", "position": [3, 3]} for i in range(n)]))


def assert_symmetric_and_bounded(world: World) -> None:
    ag = world.agents
    for a in ag.live_slots().tolist():
        partners = [int(b) for b in ag.tie_partner[a] if b >= 0]
        assert len(partners) == len(set(partners)) <= 6
        for b in partners:
            assert social.tie(world, b, a) == social.tie(world, a, b)
            assert a in ag.tie_partner[b]


def test_a_weaker_newcomer_does_not_displace_a_full_row_of_strong_ties() -> None:
    world = crowd(8)
    for i in range(1, 7):
        ops.set_relationship(world, "a0", f"a{i}", 0.5, 0.5, 0.0)
    ops.force_chat(world, "a0", "a7", 0.1, 1)
    a0, a7 = world.require_agent("a0"), world.require_agent("a7")
    assert set(social.ties_of(world, a0)) == {f"a{i}" for i in range(1, 7)}
    assert social.ties_of(world, a7) == {}  # not created on one side only either
    assert_symmetric_and_bounded(world)


def test_a_stronger_newcomer_evicts_the_weakest_tie_on_both_sides() -> None:
    world = crowd(8)
    for i in range(1, 7):
        ops.set_relationship(world, "a0", f"a{i}", 0.1 * i, 0.1, 0.0)
    ops.set_relationship(world, "a0", "a7", 0.9, 0.9, 0.0)
    a0, a1 = world.require_agent("a0"), world.require_agent("a1")
    assert set(social.ties_of(world, a0)) == {f"a{i}" for i in range(2, 8)}
    assert social.ties_of(world, a1) == {}  # the evicted partner lost its side too
    assert_symmetric_and_bounded(world)


def test_no_tie_when_the_other_side_is_full_of_stronger_ties() -> None:
    world = crowd(9)
    for i in range(1, 7):
        ops.set_relationship(world, "a7", f"a{i}", 0.9, 0.9, 0.0)
    ops.set_relationship(world, "a0", "a7", 0.3, 0.3, 0.0)  # a0 has room, a7 has not
    a0, a7 = world.require_agent("a0"), world.require_agent("a7")
    assert social.ties_of(world, a0) == {}
    assert "a0" not in social.ties_of(world, a7)
    assert_symmetric_and_bounded(world)


def test_equal_strength_does_not_displace() -> None:
    world = crowd(8)
    for i in range(1, 7):
        ops.set_relationship(world, "a0", f"a{i}", 0.2, 0.2, 0.0)
    ops.set_relationship(world, "a0", "a7", 0.2, 0.2, 0.0)
    assert "a7" not in social.ties_of(world, world.require_agent("a0"))
    assert_symmetric_and_bounded(world)


def test_random_tie_traffic_keeps_ties_symmetric_and_bounded() -> None:
    world = crowd(14)
    rng = np.random.default_rng(5)
    for _ in range(600):
        a, b = (int(x) for x in rng.choice(14, size=2, replace=False))
        trust, fam, riv = rng.uniform(-0.3, 0.3), rng.uniform(-0.3, 0.3), rng.uniform(0, 0.2)
        if rng.random() < 0.7:
            social.adjust_tie(world, a, b, trust=trust, fam=fam, riv=riv)
        else:
            social.set_tie(world, a, b, trust, fam, riv)
        assert_symmetric_and_bounded(world)


# -- 3. coworker effects are relationship changes ---------------------------------------------
def coworker_events(relationships: bool) -> tuple[World, list[dict[str, Any]]]:
    """a and b share the job at (5, 5); a is kept away from it (late, then absent)."""
    world = World(tiny_config(
        agents=[{"id": "a", "position": [5, 5], "needs": FULL},
                {"id": "b", "position": [5, 5], "needs": FULL}],
        rewards=STILL, features={"relationships": relationships, "chat": False,
                                 "coworker_effects": True}))
    events: list[dict[str, Any]] = []
    for tick in range(1, 201):
        if 95 <= tick <= 140:
            ops.teleport(world, "a", (0, 0), tick)
        events.extend(world.step(tick))
    return world, events


def test_coworker_effects_leave_ties_alone_when_relationships_are_off() -> None:
    world, events = coworker_events(relationships=False)
    assert of_type(events, ShiftLateStart) and of_type(events, ShiftAbsent)
    for agent_id in ("a", "b"):
        assert social.ties_of(world, world.require_agent(agent_id)) == {}


def test_coworker_effects_still_apply_when_relationships_are_on() -> None:
    world, events = coworker_events(relationships=True)
    assert of_type(events, ShiftLateStart) and of_type(events, ShiftAbsent)
    assert "b" in social.ties_of(world, world.require_agent("a"))


# -- 4. job windows must lie inside the day ---------------------------------------------------
def night_job(start: int, end: int, **world: Any) -> dict[str, Any]:
    return {"agents": [{"id": "a", "position": [5, 5], "job": "night"}],
            "jobs": {"night": {"start_tick": start, "end_tick": end, "wage_rate": 0.02,
                               "location": [5, 5]}},
            **({"world": {"seed": 7, "ticks_per_day": 1440, "grid_size": 12, **world}}
               if world else {})}


@pytest.mark.parametrize(("start", "end", "bad_keys"), [
    (1300, 1440, ["jobs.night.end_tick"]),
    (1400, 1500, ["jobs.night.end_tick"]),
    (1500, 1600, ["jobs.night.start_tick", "jobs.night.end_tick"]),
])
def test_job_windows_outside_the_day_are_refused(start: int, end: int,
                                                  bad_keys: list[str]) -> None:
    with pytest.raises(ConfigError) as err:
        tiny_config(**night_job(start, end))
    message = str(err.value)
    for key in bad_keys:
        assert f"{key}: " in message
    assert "world.ticks_per_day (1440)" in message


def test_the_window_is_checked_against_the_configured_day_length() -> None:
    with pytest.raises(ConfigError, match=r"jobs\.night\.end_tick: .*\(300\)"):
        tiny_config(**night_job(100, 300, ticks_per_day=300))
    cfg = tiny_config(**night_job(100, 299, ticks_per_day=300))
    assert cfg.jobs["night"].end_tick == 299


def test_a_window_ending_on_the_last_tick_of_the_day_works() -> None:
    world = World(tiny_config(**night_job(1300, 1439)))
    slot = world.require_agent("a")
    run(world, 1440)
    assert int(world.agents.attendance_count[slot]) == 1


def test_bad_window_in_a_yaml_file_names_the_key(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("jobs:\n  late: {start_tick: 1000, end_tick: 2000, wage_rate: 1, "
                    "location: [0, 0]}\n")
    with pytest.raises(ConfigError, match=r"jobs\.late\.end_tick: 2000 is not inside the day"):
        load_config(path)


def test_shipped_and_generated_configs_still_load() -> None:
    cfg = load_config(EXAMPLE)
    assert all(j.end_tick < cfg.world.ticks_per_day for j in cfg.jobs.values())
    town = generate_town(200, base=cfg)
    assert len(town.agents) == 200 and town.jobs
