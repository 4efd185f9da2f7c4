"""Stall breaker for a lone occupant, and a policy that does not chase its own cooldown."""

from __future__ import annotations

from typing import Any

import pytest

from shared.config import DEFAULT_AFFORDANCES
from shared.sim import ops
from shared.sim.events import AffordanceFail, AffordanceFinish, AffordanceStart, AgentFaint
from shared.sim.persist import state_hash
from shared.sim.tables import ON_TIME
from shared.sim.world import World
from tests.simtools import of_type, run, tiny_config

FULL = {"hunger": 1.0, "hygiene": 1.0, "energy": 1.0}
# The documented decay rates (docs/SIMULATION.md, "Agents and needs").
DOC_DECAY = {"hunger": 0.01, "hygiene": 0.005, "energy": 0.008}


def lone_cook(**sections: Any) -> World:
    """One agent cooking alone on the stove (the fridge is empty), its shift at 100-200."""
    return World(tiny_config(
        agents=[{"id": "cook", "position": [2, 0], "needs": {**FULL, "hunger": 0.3}}],
        objects=[{"id": "fridge", "type": "fridge", "position": [1, 0], "stock": 0},
                 {"id": "stove", "type": "stove", "position": [2, 0]}],
        rewards={"decay_rates": {"hunger": 0.001, "hygiene": 0.0, "energy": 0.0}},
        **sections))


def test_lone_occupant_stalled_by_a_blackout_is_released_and_replans() -> None:
    world = lone_cook()
    cook, stove = world.require_agent("cook"), world.objects.slot_of["stove"]
    run(world, 4)
    assert world.agents.busy_obj[cook] == stove  # cooking since tick 1, progress at tick 4
    assert world.agents.wallet[cook] == pytest.approx(2.0 - 0.15)
    ops.perturb(world, "blackout")
    ghost = world.config.queue_fairness.ghost_step_after
    events = run(world, 4 + ghost - 1)
    assert not of_type(events, AffordanceFail)  # still inside the ghost window
    assert world.agents.busy_obj[cook] == stove
    events = run(world, 4 + ghost)  # no progress for ghost_step_after ticks: released
    fails = [(e.tick, e.agent_id, e.reason) for e in of_type(events, AffordanceFail)]
    assert fails[0] == (4 + ghost, "cook", "stalled")
    assert world.agents.busy_obj[cook] == -1
    assert world.objects.occupant[stove] == -1
    assert world.agents.wallet[cook] == pytest.approx(2.0)  # refunded: it never cooked
    # Free again, it re-plans: the policy sends it to its shift instead of waiting on the stove.
    run(world, 130)
    assert world.agents.shift_state[cook] == ON_TIME
    assert (world.agents.x[cook], world.agents.y[cook]) == (5, 5)
    assert world.agents.ids[cook] == "cook"


def test_lone_occupant_in_an_outage_is_not_frozen_on_the_shower() -> None:
    world = World(tiny_config(agents=[
        {"id": "dirty", "position": [0, 0], "needs": {**FULL, "hygiene": 0.2}}]))
    slot, shower = world.require_agent("dirty"), world.objects.slot_of["shower"]
    run(world, 5)
    assert world.agents.busy_obj[slot] == shower
    ops.perturb(world, "outage")
    events = run(world, 20)
    assert ("dirty", "stalled") in [(e.agent_id, e.reason)
                                    for e in of_type(events, AffordanceFail)]
    assert world.agents.busy_obj[slot] == -1
    assert world.objects.occupant[shower] == -1


def test_occupant_making_progress_is_never_released() -> None:
    # A lone sleeper through a blackout (the bed needs no power) and a lone cook whose blackout
    # ends inside the ghost window both keep their place and finish, with ghost_step_after 1.
    sleeper = World(tiny_config(
        agents=[{"id": "sleepy", "position": [0, 1], "needs": {**FULL, "energy": 0.2}}],
        queue_fairness={"ghost_step_after": 1}))
    run(sleeper, 3)
    ops.perturb(sleeper, "blackout")
    events = run(sleeper, 100)
    assert not of_type(events, AffordanceFail)
    assert [e.affordance for e in of_type(events, AffordanceFinish)] == ["rest_sleep"]

    world = lone_cook(queue_fairness={"ghost_step_after": 3})
    run(world, 4)
    ops.perturb(world, "blackout")
    run(world, 5)  # one tick without progress, fewer than ghost_step_after
    ops.perturb(world, "restore")
    events = run(world, 45)
    assert not of_type(events, AffordanceFail)
    finishes = of_type(events, AffordanceFinish)
    assert [(e.agent_id, e.affordance) for e in finishes] == [("cook", "cook_meal")]
    assert finishes[0].tick == 1 + 40 + 1  # started at 1, 40 ticks of work, 1 blocked tick


def cooldown_town(*extra_objects: dict[str, Any], decay: dict[str, float] | None = None,
                  **sections: Any) -> World:
    """The audit's repro: documented decay rates, a hungry agent on a stocked fridge, a stove."""
    return World(tiny_config(
        agents=[{"id": "a", "position": [1, 0], "needs": {**FULL, "hunger": 0.2},
                 "wallet": 10}],
        rewards={"decay_rates": decay or DOC_DECAY},
        objects=[{"id": "fridge", "type": "fridge", "position": [1, 0], "stock": 5},
                 {"id": "stove", "type": "stove", "position": [2, 0]}, *extra_objects],
        **sections))


def test_policy_does_not_target_an_object_cooling_down_for_the_agent() -> None:
    # The audit's repro at a slower hunger decay, so the agent outlives its fridge cooldown.
    world = cooldown_town(decay={"hunger": 0.005, "hygiene": 0.0, "energy": 0.0})
    a, fridge = world.require_agent("a"), world.objects.slot_of["fridge"]
    events = run(world, 16)
    assert [e.affordance for e in of_type(events, AffordanceFinish)] == ["eat_meal"]
    assert world.agents.cooldown_until[a, world.type_index["fridge"]] == 16 + 60
    hungry_while_cooling = False
    for tick in range(17, 76):
        events = world.step(tick)
        assert not of_type(events, AffordanceFail)
        assert not of_type(events, AffordanceStart)  # cooking would feed nobody: it waits
        if world.agents.needs[a, 0] < 0.4:
            hungry_while_cooling = True
            assert world.agents.target_obj[a] != fridge  # the fridge refuses it until tick 76
            assert world.agents.queued_obj[a] != fridge
            assert (world.agents.x[a], world.agents.y[a]) == (1, 0)  # waiting beside it
    assert hungry_while_cooling
    events = world.step(76)  # the cooldown ends: it queues and eats at once
    assert [e.affordance for e in of_type(events, AffordanceStart)] == ["eat_meal"]


def canteen_town() -> World:
    """The repro plus a second type that feeds, so there is somewhere else to eat during the
    fridge cooldown. Only hunger decays (at the documented rate) and the shift is late in the day:
    sleep and work would otherwise starve it whatever the queues do (a 60-tick sleep costs
    0.6 hunger; a worker leaves its shift only at hunger 0.15, too late to finish a meal)."""
    canteen = {"id": "eat_out", "object_type": "canteen", "duration": 15, "cost": 0.4,
               "effects": {"hunger": 0.4}, "serves": "hunger"}
    late_shift = {"grocer": {"start_tick": 1000, "end_tick": 1200, "wage_rate": 0.02,
                             "lateness_penalty": 0.1, "location": [5, 5]}}
    return cooldown_town({"id": "canteen", "type": "canteen", "position": [3, 0]},
                         decay={"hunger": 0.01, "hygiene": 0.0, "energy": 0.0},
                         jobs=late_shift,
                         affordances={"definitions": [*DEFAULT_AFFORDANCES, canteen]})


def test_agent_in_cooldown_eats_elsewhere_and_does_not_faint() -> None:
    world = canteen_town()
    a = world.require_agent("a")
    events = run(world, 300)  # the old policy stood at the cooling fridge and fainted at 57
    assert not of_type(events, AgentFaint)
    assert world.agents.ids[a] == "a"
    meals = [(e.tick, e.affordance) for e in of_type(events, AffordanceStart)]
    # The canteen during the fridge cooldown (not the stove, listed before it: cooking feeds
    # nobody), then back to the fridge the tick its cooldown ends.
    assert meals[:4] == [(1, "eat_meal"), (21, "eat_out"), (76, "eat_meal"), (101, "eat_out")]
    assert "cook_meal" not in {m for _t, m in meals}
    assert not of_type(events, AffordanceFail)


def test_cooldown_aware_policy_is_deterministic() -> None:
    hashes = set()
    for _ in range(2):
        world = canteen_town()
        run(world, 150)
        hashes.add(state_hash(world))
    assert len(hashes) == 1


def test_failed_start_still_backs_off_without_hopping_to_the_stove() -> None:
    # Too poor for the fridge: one failure, then it waits out the back-off at the fridge rather
    # than walking to the stove (which would feed nobody) or retrying every tick.
    world = cooldown_town(decay={"hunger": 0.001, "hygiene": 0.0, "energy": 0.0})
    a = world.require_agent("a")
    world.agents.wallet[a] = 0.1
    events = run(world, 60)
    fails = [(e.agent_id, e.affordance, e.reason)
             for e in of_type(events, AffordanceFail)]
    assert fails == [("a", "eat_meal", "insufficient_funds")]
    assert not of_type(events, AffordanceStart)
