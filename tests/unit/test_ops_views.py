"""What the operator reads: one-line results and telemetry, shard states, metric values."""

from __future__ import annotations

from ops.observe import ShardSeen
from ops.output import is_replay, result_line, telemetry_line
from ops.status import problems_of, shard_state
from shared.broker.base import QueueStats
from shared.metrics import CommandCounts, Histogram


def ok_result(**extra: object) -> dict:
    return {"shard_id": "town-a", "name": "employment_status", "status": "ok", "tick": 123,
            "latency_ms": 4.21, "cmd_id": "c1", "command": {"timestamp_ms": 1000}, **extra}


def test_result_lines() -> None:
    assert result_line(ok_result()) == "ok town-a employment_status tick=123 4.2 ms"
    error = ok_result(status="error", name="kill",
                      error={"code": "forbidden", "message": "role viewer may not run kill"})
    assert result_line(error) == ("error town-a kill tick=123 forbidden: role viewer may not "
                                  "run kill")


def test_a_stored_answer_to_an_earlier_send_says_it_is_a_replay() -> None:
    assert not is_replay(ok_result(), {"timestamp_ms": 1000})
    assert is_replay(ok_result(), {"timestamp_ms": 2000})
    assert result_line(ok_result(), {"timestamp_ms": 2000}).endswith(
        "(replay: stored result of an earlier send of c1)")


def test_telemetry_lines_put_identity_first() -> None:
    diff = {"shard_id": "a", "tick": 9, "kind": "diff", "state_hash": "0123456789abcdef",
            "payload": {"set": {"world.x": 1, "needs.y": 2}, "events": [{}], "console_results": []}}
    assert telemetry_line(diff) == "a tick=9 diff hash=0123456789ab events=1 results=0 changed=2"
    health = {"shard_id": "a", "tick": 9, "kind": "health", "payload": {"health": {
        "tick_rate_hz": 10.0, "queue_depth": 3, "paused": True, "unsent_outputs": 0,
        "broker_reconnects": 1, "last_error": None}}}
    assert telemetry_line(health) == ("a tick=9 health rate=10.0Hz inbox=3 paused=yes unsent=0 "
                                      "reconnects=1 last_error=-")


def seen(tick_at: float = 0.0, health_at: float = 0.0, paused: bool = False) -> ShardSeen:
    s = ShardSeen("a")
    if tick_at:
        s.note({"kind": "diff", "tick": 5, "state_hash": "h", "payload": {}}, tick_at)
    if health_at:
        s.note({"kind": "health", "tick": 5, "payload": {"health": {"paused": paused}}},
               health_at)
    return s


def test_shard_states() -> None:
    inbox = QueueStats(0, 1)
    assert shard_state(seen(tick_at=99.5), inbox, now=100.0, window=2.0) == "ticking"
    assert shard_state(seen(health_at=99.5, paused=True), inbox, 100.0, 2.0) == "paused"
    assert shard_state(seen(health_at=99.5), inbox, 100.0, 2.0) == "stale"  # alive, no tick
    assert shard_state(seen(tick_at=90.0), inbox, 100.0, 2.0) == "stale"
    assert shard_state(None, QueueStats(4, 0), 100.0, 2.0) == "stale"  # died: inbox remains
    assert shard_state(None, None, 100.0, 2.0) == "unknown"  # never existed


def test_problems() -> None:
    report = {"shards": {"a": {"state": "ticking", "consumers": 0},
                         "b": {"state": "paused", "consumers": 1}},
              "audit": {"alive": False}, "dead_letters": 2}
    assert problems_of(report) == [
        "a ticks but nobody consumes its inbox",
        "no audit consumer on townlet.audit: results are not being audited",
        "2 dead letter(s) waiting in townlet.dead"]


def test_histogram_and_command_counts() -> None:
    h = Histogram((0.1, 1.0))
    for value in (0.05, 0.1, 0.5, 3.0):
        h.observe(value)
    assert h.cumulative() == [("0.1", 2), ("1.0", 3), ("+Inf", 4)]
    assert (h.count, round(h.sum, 2)) == (4, 3.65)

    class Code:
        value = "forbidden"

    class Error:
        code = Code()

    class Result:
        def __init__(self, error: object) -> None:
            self.error = error

    counts = CommandCounts()
    counts.add([Result(None), Result(None), Result(Error())])
    assert counts.counts == {("ok", ""): 2, ("error", "forbidden"): 1}
