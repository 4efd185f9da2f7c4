"""Typed events and their wire form: exactly the dicts telemetry, results and the audit log
carried before events were typed (same keys, values and key order), and back again."""

from __future__ import annotations

import json
from typing import Any

import pytest

from shared.scenarios import generate_town
from shared.sim.events import (
    KINDS,
    AffordanceFail,
    AffordanceFinish,
    AffordanceStart,
    AgentFaint,
    AgentRemoved,
    AgentRespawned,
    ChatFailure,
    ChatSuccess,
    Event,
    ExitDeferred,
    ExitPending,
    ExitProcessed,
    ExitQueueOverflow,
    NightlyReset,
    SharedMeal,
    ShiftAbsent,
    ShiftLateStart,
    event_from_wire,
    event_to_wire,
    events_to_wire,
)
from shared.sim.world import World
from tests.simtools import run

# (event, its wire dict as a key-ordered list of pairs)
WIRE: list[tuple[Event, list[tuple[str, Any]]]] = [
    (AgentFaint(3, "a"), [("type", "agent_faint"), ("tick", 3), ("agent_id", "a")]),
    (AgentRemoved(3, "a", "faint"),
     [("type", "agent_removed"), ("tick", 3), ("agent_id", "a"), ("reason", "faint")]),
    (AgentRespawned(13, "a#1", "a"),
     [("type", "agent_respawned"), ("tick", 13), ("agent_id", "a#1"), ("origin", "a")]),
    (NightlyReset(1440, 12), [("type", "nightly_reset"), ("tick", 1440), ("agents", 12)]),
    (ShiftLateStart(106, "a", "grocer"),
     [("type", "shift_late_start"), ("tick", 106), ("agent_id", "a"), ("job", "grocer")]),
    (ShiftAbsent(130, "a", "grocer"),
     [("type", "shift_absent"), ("tick", 130), ("agent_id", "a"), ("job", "grocer")]),
    (AffordanceStart(5, "a", "fridge", "eat_meal", 0.4),
     [("type", "affordance_start"), ("tick", 5), ("agent_id", "a"), ("object_id", "fridge"),
      ("affordance", "eat_meal"), ("cost", 0.4)]),
    (AffordanceFinish(9, "a", "fridge", "eat_meal"),
     [("type", "affordance_finish"), ("tick", 9), ("agent_id", "a"), ("object_id", "fridge"),
      ("affordance", "eat_meal")]),
    (AffordanceFail(9, "a", "stove", "cook_meal", "power_off"),
     [("type", "affordance_fail"), ("tick", 9), ("agent_id", "a"), ("object_id", "stove"),
      ("affordance", "cook_meal"), ("reason", "power_off")]),
    (ChatSuccess(7, "a", "b", 0.5),
     [("type", "chat_success"), ("tick", 7), ("speaker", "a"), ("listener", "b"),
      ("quality", 0.5)]),
    (ChatFailure(7, "a", "b", 0.5),
     [("type", "chat_failure"), ("tick", 7), ("speaker", "a"), ("listener", "b"),
      ("quality", 0.5)]),
    (SharedMeal(8, ("a", "b")), [("type", "shared_meal"), ("tick", 8), ("agents", ["a", "b"])]),
    (ExitPending(4, "a", 1),
     [("type", "employment_exit_pending"), ("tick", 4), ("agent_id", "a"), ("pending_count", 1)]),
    (ExitQueueOverflow(4, 9, 8),
     [("type", "employment_exit_queue_overflow"), ("tick", 4), ("pending_count", 9),
      ("queue_limit", 8)]),
    (ExitDeferred(4, "a"), [("type", "employment_exit_deferred"), ("tick", 4), ("agent_id", "a")]),
    (ExitProcessed("a", 5, "daily_cap", 1),
     [("type", "employment_exit_processed"), ("agent_id", "a"), ("tick", 5),
      ("reason", "daily_cap"), ("exits_today", 1)]),
]


def test_every_kind_has_a_pinned_wire_form() -> None:
    assert sorted(type(e).kind for e, _ in WIRE) == sorted(KINDS)


@pytest.mark.parametrize(("event", "pairs"), WIRE, ids=[type(e).kind for e, _ in WIRE])
def test_wire_dicts_keep_their_keys_values_and_order(event: Event,
                                                     pairs: list[tuple[str, Any]]) -> None:
    wire = event_to_wire(event)
    assert list(wire.items()) == pairs
    assert events_to_wire([event, event]) == [wire, wire]
    again = event_from_wire(json.loads(json.dumps(wire)))  # as a snapshot brings it back
    assert again == event and type(again) is type(event)


def test_events_are_frozen_values() -> None:
    event = AgentFaint(3, "a")
    with pytest.raises(AttributeError):
        event.tick = 4  # type: ignore[misc]
    assert event == AgentFaint(3, "a") and hash(event) == hash(AgentFaint(3, "a"))


@pytest.mark.parametrize(("data", "message"), [
    ({"type": "meteor", "tick": 1}, "unknown event type 'meteor'"),
    ({"tick": 1}, "unknown event type None"),
    ({"type": "agent_faint", "tick": 1}, "malformed agent_faint event"),
    ({"type": "shared_meal", "tick": 1, "agents": ["a"]}, "malformed shared_meal event"),
])
def test_a_bad_wire_dict_is_a_clear_error(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        event_from_wire(data)


def test_a_run_produces_only_typed_events_that_survive_the_wire() -> None:
    events = run(World(generate_town(60, seed=3)), 1500)
    kinds = {type(e) for e in events}
    assert {NightlyReset, ShiftLateStart, AffordanceStart, ChatSuccess, AgentFaint} <= kinds
    assert all(type(e).kind in KINDS for e in events)
    assert [event_from_wire(w) for w in events_to_wire(events)] == events
