"""Reservation queues and affordances: costs, contention, stall rotation, failures."""

from __future__ import annotations

import pytest

from shared.sim.events import (
    AffordanceFail,
    AffordanceFinish,
    AffordanceStart,
    AgentFaint,
    AgentRespawned,
    NightlyReset,
)
from shared.sim.world import World
from tests.simtools import of_type, run, tiny_config

FULL = {"hunger": 1.0, "hygiene": 1.0, "energy": 1.0}


def test_meal_is_charged_exactly_once() -> None:
    world = World(tiny_config(agents=[
        {"id": "alice", "position": [1, 0], "needs": {**FULL, "hunger": 0.3}, "wallet": 1.0}]))
    events = run(world, 30)
    starts = of_type(events, AffordanceStart)
    assert [(e.affordance, e.cost) for e in starts] == [("eat_meal", 0.4)]
    assert len(of_type(events, AffordanceFinish)) == 1
    slot = world.require_agent("alice")
    assert world.agents.wallet[slot] == pytest.approx(0.6)
    assert world.objects.stock[world.objects.slot_of["fridge"]] == 2  # example stock 3, one eaten
    assert world.agents.counters[slot, 0] == 1


def test_long_affordance_finishes_under_contention() -> None:
    tired = {**FULL, "energy": 0.2}
    agents = [{"id": f"s{i}", "position": [0, 1], "needs": tired} for i in range(3)]
    world = World(tiny_config(agents=agents, queue_fairness={"ghost_step_after": 3}))
    events = run(world, 200)
    finishes = of_type(events, AffordanceFinish)
    assert [e.agent_id for e in finishes] == ["s0", "s1", "s2"]  # FIFO, each 60 ticks
    starts = {e.agent_id: e.tick for e in of_type(events, AffordanceStart)}
    for e in finishes:
        assert e.tick - starts[e.agent_id] == 60
    assert not [e for e in of_type(events, AffordanceFail) if e.reason == "stalled"]


def test_blackout_stalls_cooking_and_the_stall_breaker_rotates_only_the_stuck() -> None:
    hungry = {**FULL, "hunger": 0.2}
    agents = [{"id": f"c{i}", "position": [2, 0], "needs": hungry} for i in range(2)]
    cfg = tiny_config(agents=agents, objects=[
        {"id": "fridge", "type": "fridge", "position": [2, 0], "stock": 0},
        {"id": "stove", "type": "stove", "position": [2, 0]},
    ])
    world = World(cfg)
    run(world, 3)  # c0 starts cooking (and pays), c1 queues behind it
    c0 = world.require_agent("c0")
    assert world.agents.wallet[c0] == pytest.approx(2.0 - 0.15)
    world.power_on = False
    events = run(world, 12)
    fails = [(e.agent_id, e.reason) for e in of_type(events, AffordanceFail)]
    assert fails[0] == ("c0", "stalled")  # no progress for ghost_step_after ticks, c1 waiting
    assert ("c1", "power_off") in fails  # c1 got its turn and could not start
    assert world.agents.wallet[c0] == pytest.approx(2.0)  # refunded: it never cooked
    world.power_on = True
    events = run(world, 250)
    cooks = [e.agent_id for e in of_type(events, AffordanceFinish)
             if e.affordance == "cook_meal"]
    assert set(cooks) == {"c0", "c1"}


def test_insufficient_funds_fails_without_charging() -> None:
    world = World(tiny_config(agents=[
        {"id": "poor", "position": [1, 0], "needs": {**FULL, "hunger": 0.3}, "wallet": 0.1}]))
    events = run(world, 5)
    fails = of_type(events, AffordanceFail)
    assert [(e.reason, e.affordance) for e in fails] == [("insufficient_funds", "eat_meal")]
    assert world.agents.wallet[world.require_agent("poor")] == pytest.approx(0.1)
    assert len(of_type(run(world, 30), AffordanceFail)) == 0  # backs off, no event spam


def test_cooking_restocks_the_linked_fridge() -> None:
    chef = {"id": "chef", "position": [2, 0], "needs": {**FULL, "hunger": 0.35}}
    cfg = tiny_config(agents=[chef],
                      objects=[{"id": "fridge", "type": "fridge", "position": [1, 0], "stock": 0},
                               {"id": "stove", "type": "stove", "position": [2, 0]}])
    world = World(cfg)
    fridge = world.objects.slot_of["fridge"]
    for tick in range(1, 60):
        finished = of_type(world.step(tick), AffordanceFinish)
        if finished:
            assert [e.affordance for e in finished] == ["cook_meal"]
            assert world.objects.stock[fridge] == 1
            return
    pytest.fail("cooking never finished")


def test_nightly_reset_sends_free_agents_home_and_floors_needs() -> None:
    world = World(tiny_config(agents=[
        {"id": "nomad", "position": [6, 6], "home": [0, 0], "needs": {**FULL, "hygiene": 0.45}}],
        world={"seed": 1, "ticks_per_day": 50, "grid_size": 12}, jobs={}))
    events = run(world, 50)
    assert len(of_type(events, NightlyReset)) == 1
    slot = world.require_agent("nomad")
    assert (world.agents.x[slot], world.agents.y[slot]) == (0, 0)
    assert world.agents.needs[slot].min() >= 0.5


def test_fainting_removes_and_respawns() -> None:
    world = World(tiny_config(agents=[
        {"id": "weak", "position": [9, 9], "needs": {**FULL, "hunger": 0.0305}}],
        employment={"respawn_delay_ticks": 2}))
    events = run(world, 4)
    assert [e.agent_id for e in of_type(events, AgentFaint)] == ["weak"]
    assert [e.agent_id for e in of_type(events, AgentRespawned)] == ["weak#1"]
