"""The employment exit queue: enqueue, approve, defer, lifecycle with the daily cap."""

from __future__ import annotations

import pytest

from shared.sim.employment import EmploymentError
from shared.sim.events import ExitDeferred, ExitPending, ExitProcessed, ExitQueueOverflow
from shared.sim.world import UnknownAgent, World
from tests.simtools import of_type, run, tiny_config

AGENTS = [{"id": f"a{i}", "position": [3, 3]} for i in range(4)]


def world_with(cap: int, enforce: bool = True) -> World:
    return World(tiny_config(agents=AGENTS, employment={
        "enforce_job_loop": enforce, "daily_exit_cap": cap, "respawn_delay_ticks": 3}))


def test_enqueue_once_marks_exit_pending_and_overflow_still_queues() -> None:
    world = World(tiny_config(agents=AGENTS, employment={"exit_queue_limit": 2}))
    q = world.employment
    assert q.enqueue_exit(world, "a0", 0) is True
    assert q.enqueue_exit(world, "a0", 0) is False
    for name in ("a1", "a2"):
        q.enqueue_exit(world, name, 0)
    assert q.metrics()["pending"] == ["a0", "a1", "a2"]
    assert world.agents.exit_pending[world.require_agent("a0")]
    events = run(world, 1)  # events raised between ticks are emitted with the next tick
    assert len(of_type(events, ExitQueueOverflow)) == 1
    assert len(of_type(events, ExitPending)) == 3


def test_unknown_agent_is_refused() -> None:
    world = world_with(cap=2)
    with pytest.raises(UnknownAgent):
        world.employment.enqueue_exit(world, "nobody", 0)


def test_daily_cap_holds_the_rest_and_approve_bypasses_it() -> None:
    world = world_with(cap=1)
    q = world.employment
    q.enqueue_exit(world, "a0", 0)
    q.enqueue_exit(world, "a1", 0)
    events = run(world, 2)
    assert [e.agent_id for e in of_type(events, ExitProcessed)] == ["a0"]
    assert q.metrics()["pending"] == ["a1"] and q.exits_today == 1
    q.approve(world, "a1")
    events = run(world, 3)
    processed = of_type(events, ExitProcessed)
    assert [(e.agent_id, e.reason) for e in processed] == [("a1", "manual_approve")]
    assert q.exits_today == 2 and q.metrics()["pending_count"] == 0


def test_defer_clears_queue_manual_set_and_exit_pending() -> None:
    world = world_with(cap=0, enforce=False)
    q = world.employment
    q.enqueue_exit(world, "a2", 0)
    q.approve(world, "a2")
    q.defer(world, "a2")
    assert q.metrics()["pending"] == [] and q.metrics()["manual_approvals"] == []
    assert not world.agents.exit_pending[world.require_agent("a2")]
    with pytest.raises(EmploymentError):
        q.defer(world, "a2")
    events = run(world, 5)
    assert not of_type(events, ExitProcessed)
    assert len(of_type(events, ExitDeferred)) == 1


def test_waiting_past_the_review_window_exits_as_auto_review() -> None:
    world = World(tiny_config(agents=AGENTS, employment={
        "enforce_job_loop": True, "daily_exit_cap": 1, "exit_review_window": 20}))
    q = world.employment
    for name in ("a0", "a1", "a2"):
        q.enqueue_exit(world, name, 0)
    events = run(world, 25)
    reasons = [(e.agent_id, e.reason) for e in of_type(events, ExitProcessed)]
    assert reasons[0] == ("a0", "daily_cap")
    assert ("a1", "daily_cap") in reasons  # the day counter reset after the review window
    assert ("a2", "auto_review") in reasons


def test_exited_agents_respawn_with_numbered_ids() -> None:
    world = world_with(cap=0)
    world.employment.enqueue_exit(world, "a3", 0)
    run(world, 1)
    assert "a3" not in world.agents.slot_of
    run(world, 4)
    slot = world.require_agent("a3#1")
    assert world.agents.needs[slot].tolist() == [0.5, 0.5, 0.5]
    world.employment.enqueue_exit(world, "a3#1", world.tick)
    run(world, 10)
    assert "a3#2" in world.agents.slot_of  # numbered by origin, not nested "a3#1#1"
