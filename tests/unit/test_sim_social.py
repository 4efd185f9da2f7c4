"""Relationships: symmetric ties, the six-tie bound, rivalry decay, chat, the ledger."""

from __future__ import annotations

import pytest

from shared.sim import lifecycle, social
from shared.sim.world import World
from tests.simtools import run, tiny_config

PEOPLE = [{"id": f"p{i}", "position": [6, 6]} for i in range(9)]


def test_chat_success_updates_both_sides_of_the_tie() -> None:
    world = World(tiny_config(agents=PEOPLE))
    a, b = world.require_agent("p0"), world.require_agent("p1")
    social.apply_chat(world, a, b, quality=0.5, success=True, tick=0)
    assert social.tie(world, a, b) == {"trust": 0.025, "familiarity": 0.05, "rivalry": 0.0}
    assert social.tie(world, b, a) == social.tie(world, a, b)
    social.apply_chat(world, a, b, quality=1.0, success=False, tick=0)
    assert social.tie(world, a, b)["rivalry"] == pytest.approx(0.05)
    assert social.tie(world, a, b)["familiarity"] == pytest.approx(0.0)


def test_at_most_six_ties_and_the_strongest_are_kept() -> None:
    world = World(tiny_config(agents=PEOPLE))
    hub = world.require_agent("p0")
    for i in range(1, 9):
        social.adjust_tie(world, hub, world.require_agent(f"p{i}"), trust=0.1 * i)
    ties = social.ties_of(world, hub)
    assert len(ties) == 6
    assert set(ties) == {f"p{i}" for i in range(3, 9)}


def test_rivalry_decays_each_tick_and_never_goes_negative() -> None:
    world = World(tiny_config(agents=PEOPLE[:2]))
    a, b = world.require_agent("p0"), world.require_agent("p1")
    social.adjust_tie(world, a, b, riv=0.05)
    run(world, 3)
    assert social.tie(world, a, b)["rivalry"] == pytest.approx(0.02)
    run(world, 10)
    assert social.tie(world, a, b)["rivalry"] == 0.0


def test_rivalry_ledger_makes_agents_avoid_each_other_and_evicts_when_faded() -> None:
    world = World(tiny_config(agents=PEOPLE[:2]))
    a, b = world.require_agent("p0"), world.require_agent("p1")
    for _ in range(5):
        social.record_conflict(world, a, b)
    assert social.avoids(world, a, b)
    run(world, 200)
    assert not social.avoids(world, a, b)
    assert world.agents.rival[a].max() == -1  # faded below 0.05 and evicted


def test_agents_on_the_same_tile_chat() -> None:
    world = World(tiny_config(agents=PEOPLE[:4], behavior={"chat_probability": 1.0}))
    events = run(world, 30)
    chats = [e for e in events if e.kind in ("chat_success", "chat_failure")]
    assert chats
    assert world.social_events[-1] == chats[-1]


def test_removed_agent_leaves_no_dangling_ties() -> None:
    world = World(tiny_config(agents=PEOPLE[:3]))
    a, b = world.require_agent("p0"), world.require_agent("p1")
    social.adjust_tie(world, a, b, trust=0.5)
    lifecycle.remove(world, "p1", 0, "killed", [])
    assert social.ties_of(world, a) == {}
    assert (world.agents.tie_partner[: world.agents.size] == b).sum() == 0
