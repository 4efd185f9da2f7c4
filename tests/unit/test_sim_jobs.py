"""Shifts: lateness, absence, wages, attendance, daily recurrence."""

from __future__ import annotations

import pytest

from shared.sim.events import (
    AgentRespawned,
    ExitPending,
    ExitProcessed,
    ShiftAbsent,
    ShiftLateStart,
)
from shared.sim.world import World
from tests.simtools import of_type, run, tiny_config


def test_late_arrival_pays_the_lateness_penalty_once_per_shift() -> None:
    cfg = tiny_config(behavior={"job_arrival_buffer": 0}, employment={"grace_ticks": 2})
    world = World(cfg)
    events = run(world, 200)
    late = of_type(events, ShiftLateStart)
    assert [e.agent_id for e in late] == ["alice"]
    slot = world.require_agent("alice")
    # 0.1 once when the shift turned late, plus 0.005 for the one late tick still off the tile.
    assert world.agents.penalties_paid[slot] == pytest.approx(0.1 + 0.005)
    assert world.agents.wages_earned[slot] == pytest.approx(0.02 * (200 - 104))
    assert not of_type(events, ShiftAbsent)


def test_shifts_recur_every_day() -> None:
    cfg = tiny_config(behavior={"job_arrival_buffer": 0}, employment={"grace_ticks": 2})
    world = World(cfg)
    events = run(world, 1440 + 200)
    assert [e.tick for e in of_type(events, ShiftLateStart)] == [103, 1440 + 103]
    assert world.agents.attendance_count[world.require_agent("alice")] == 2


def test_on_time_agent_is_paid_and_keeps_full_attendance() -> None:
    world = World(tiny_config())
    events = run(world, 201)
    slot = world.require_agent("alice")
    assert not of_type(events, ShiftLateStart)
    assert world.agents.penalties_paid[slot] == 0.0
    assert world.agents.wages_earned[slot] == pytest.approx(0.02 * 100)
    from shared.sim.jobs import attendance_ratio

    assert attendance_ratio(world, slot) == 1.0


def far_job_config(**employment: object) -> dict[str, object]:
    """A job too far to reach before the absent cutoff: the agent is absent every day."""
    return {
        "world": {"seed": 3, "ticks_per_day": 200, "grid_size": 100},
        "jobs": {"grocer": {"start_tick": 50, "end_tick": 150, "wage_rate": 0.02,
                            "lateness_penalty": 0.1, "location": [90, 90]}},
        "employment": {"enforce_job_loop": True, "respawn_delay_ticks": 5, **employment},
    }


def test_absent_agent_is_penalised_and_withheld_wages_accumulate() -> None:
    world = World(tiny_config(**far_job_config(enforce_job_loop=False)))
    events = run(world, 200)
    absent = of_type(events, ShiftAbsent)
    assert [(e.agent_id, e.tick) for e in absent] == [("alice", 80)]
    slot = world.require_agent("alice")
    assert world.agents.absences[slot].sum() == 1
    assert world.agents.wages_withheld[slot] > 0
    assert world.agents.wallet[slot] >= 0


def test_chronic_absentee_is_enqueued_after_three_absences_and_exits_under_the_cap() -> None:
    world = World(tiny_config(**far_job_config()))
    events = run(world, 600)
    pending = of_type(events, ExitPending)
    processed = of_type(events, ExitProcessed)
    assert [e.agent_id for e in pending] == ["alice"]
    assert pending[0].tick == 480  # third absence: day 2, tick 50 + 30
    assert [(e.agent_id, e.reason, e.tick) for e in processed] == [
        ("alice", "daily_cap", 480)]
    respawned = of_type(events, AgentRespawned)
    assert [e.agent_id for e in respawned] == ["alice#1"]
    slot = world.require_agent("alice#1")
    assert world.agents.wallet[slot] == 0.0
    assert world.agents.absences[slot].sum() == 0


@pytest.mark.parametrize("slack", [3, 5])
def test_an_agent_off_the_job_tile_for_more_than_the_slack_walks_out_absent(slack: int) -> None:
    """docs/SIMULATION.md, "Jobs and shifts": off the tile for *more than* absence_slack ticks in
    a row after arriving makes an agent absent: slack ticks away are forgiven, one more is not."""
    from shared.sim import ops

    cfg = tiny_config(employment={"absence_slack": slack})
    world = World(cfg)
    run(world, 120)  # alice is on the job tile (5, 5), on time
    slot = world.require_agent("alice")
    assert world.agents.arrived[slot] and world.agents.shift_state[slot] == 2  # ON_TIME
    ops.teleport(world, "alice", (5, 11), world.tick)  # 6 tiles away: 6 ticks to walk back
    events = run(world, 140)
    absent = of_type(events, ShiftAbsent)
    if slack >= 6:
        assert not absent
    else:
        assert [e.tick for e in absent] == [120 + slack + 1]
