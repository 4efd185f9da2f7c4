"""Crash recovery, in process: kill a worker at each dangerous point and restart it.

A "kill" is an exception the worker does not handle, raised at a chosen point of a boundary;
the worker's broker connection then closes as a dead process's would (unacked deliveries go
back to the queue). The same commands are queued before a reference worker and a crashing one
start, so the recovered run must produce exactly the reference history: the same results at
the same ticks, the same state hash every tick, nothing lost, nothing applied twice.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from shared import wire
from shared.broker import MemoryHub, open_broker
from shared.config import ConsoleAuthConfig, ConsoleAuthTokenConfig, SimulationConfig
from tests.shardtools import TOPO, Recorder, WorkerThread, publish_raw, send
from tests.simtools import example_config
from workers.shard.journal import Journal

TOKEN = "recovery-admin-token"
TICKS = 24


class Killed(BaseException):
    """Stands in for SIGKILL: nothing in the worker catches it."""


def config() -> SimulationConfig:
    cfg = example_config()
    cfg.employment.enforce_job_loop = True
    cfg.console.max_commands_per_tick = 3
    cfg.console_auth = ConsoleAuthConfig(enabled=True, require_auth_for_viewer=False, tokens=[
        ConsoleAuthTokenConfig(token=TOKEN, role="admin", label="ops")])
    return cfg


def queue_commands(hub: MemoryHub) -> list[str]:
    client = open_broker("memory://", hub=hub)
    ids = []
    for i in range(18):
        cmd_id = f"c{i:02d}"
        if i % 3 == 0:
            send(client, "s1", "setneed", f"agent_{i % 8}", "hunger", 0.2 + i / 100,
                 mode="admin", token=TOKEN, cmd_id=cmd_id)
        elif i % 3 == 1:
            send(client, "s1", "force_chat", mode="admin", token=TOKEN, cmd_id=cmd_id,
                 kwargs={"payload": {"speaker": "agent_0", "listener": f"agent_{1 + i % 7}",
                                     "quality": 0.5}})
        else:
            send(client, "s1", "employment_status", cmd_id=cmd_id)
        ids.append(cmd_id)
    send(client, "s1", "setneed", "agent_3", "energy", 0.9, mode="admin", token=TOKEN,
         cmd_id="c01")  # an operator retry of c01's id with another command: conflict
    client.close()
    return ids


def run(state: Path, crash: Any = None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Run the queued commands through TICKS ticks, crashing (and restarting) if asked."""
    hub = MemoryHub()
    results = Recorder(open_broker("memory://", hub=hub), TOPO.results_exchange)
    telemetry = Recorder(open_broker("memory://", hub=hub), TOPO.telemetry_exchange)
    queue_commands(hub)
    if crash is not None:
        worker = WorkerThread(hub, config(), "s1", state, tick_rate_hz=0, checkpoint_every=5,
                              until_tick=TICKS)
        crash(worker.worker)
        worker.thread.join(30)
        assert isinstance(worker.error, Killed), worker.error
        worker.broker.close()
    survivor = WorkerThread(hub, config(), "s1", state, tick_rate_hz=0, checkpoint_every=5,
                            until_tick=TICKS)
    telemetry.pump(lambda b: any(t.get("tick") == TICKS for t in b))
    survivor.join()
    results.pump(lambda b: {"c17"} <= {r["cmd_id"] for r in b})
    return results.bodies(), [t for t in telemetry.bodies() if t["kind"] != "health"]


def nth_call_raises(obj: Any, name: str, n: int) -> None:
    """Make obj.name raise Killed on its n-th call (1-based)."""
    original = getattr(obj, name)
    calls = {"n": 0}

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == n:
            raise Killed(name)
        return original(*args, **kwargs)

    setattr(obj, name, wrapper)


CRASH_POINTS = {
    "after_journal_before_publish": lambda w: nth_call_raises(w.outputs, "result", 4),
    "after_results_before_telemetry": lambda w: nth_call_raises(w.outputs, "telemetry", 3),
    "after_publish_before_ack": lambda w: nth_call_raises(w.broker, "ack", 5),
    "mid_checkpoint": lambda w: nth_call_raises(w.durability, "write_checkpoint", 2),
    "after_checkpoint_before_journal_reset": lambda w: nth_call_raises(w.durability,
                                                                       "reset_journal", 2),
}


def strip_latency(result: dict[str, Any]) -> dict[str, Any]:
    """What must match across two runs: all but wall-clock fields (latency, send time)."""
    out = {k: v for k, v in result.items() if k != "latency_ms"}
    out["command"] = {k: v for k, v in result["command"].items() if k != "timestamp_ms"}
    return out


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Any], list[Any]]:
    return run(tmp_path_factory.mktemp("reference"))


@pytest.mark.parametrize("point", sorted(CRASH_POINTS))
def test_recovered_shard_reproduces_the_uncrashed_history(
        point: str, tmp_path: Path, reference: tuple[list[Any], list[Any]]) -> None:
    ref_results, ref_telemetry = reference
    results, telemetry = run(tmp_path / "s1", CRASH_POINTS[point])

    def key(r: dict[str, Any]) -> tuple[str, bool]:  # c01 also has its `conflict` answer
        return r["cmd_id"], (r.get("error") or {}).get("code") == "conflict"

    by_key: dict[tuple[str, bool], list[dict[str, Any]]] = {}
    for r in results:
        by_key.setdefault(key(r), []).append(r)
    ref_by_key = {key(r): r for r in ref_results}
    assert set(by_key) == set(ref_by_key)  # nothing lost, nothing extra
    assert ("c01", True) in by_key
    for k, copies in by_key.items():
        assert all(c == copies[0] for c in copies), f"{k} answered differently"
        assert strip_latency(copies[0]) == strip_latency(ref_by_key[k]), k

    per_tick: dict[int, dict[str, Any]] = {}
    for t in telemetry:
        if t["tick"] in per_tick:  # resent after the crash: must be identical
            assert t == per_tick[t["tick"]], f"telemetry for tick {t['tick']} changed"
        per_tick[t["tick"]] = t
    ref_hashes = {t["tick"]: t["state_hash"] for t in ref_telemetry}
    assert sorted(per_tick) == list(range(1, TICKS + 1))
    assert {k: v["state_hash"] for k, v in per_tick.items()} == ref_hashes


def test_auto_ids_never_name_two_answers_across_a_crash_while_paused(tmp_path: Path) -> None:
    """While paused every boundary has the same tick number; a restarted worker must carry on
    the auto-id sequence of that tick (from its journal), not start it again at 0."""
    hub = MemoryHub()
    client = open_broker("memory://", hub=hub)
    results = Recorder(open_broker("memory://", hub=hub), TOPO.results_exchange)
    help_without_id = wire.encode({"v": 1, "name": "help"})

    def help_answers() -> dict[str, dict[str, Any]]:  # distinct bodies, by canonical form
        return {json.dumps(r, sort_keys=True): r for r in results.bodies() if r["name"] == "help"}

    worker = WorkerThread(hub, config(), "s1", tmp_path / "s1", tick_rate_hz=0)
    send(client, "s1", "pause", mode="admin", token=TOKEN, cmd_id="p1", wait=True)
    publish_raw(client, "s1", help_without_id)
    results.pump(lambda _: len(help_answers()) == 1)
    nth_call_raises(worker.worker.outputs, "result", 1)  # the next answer, once journaled
    publish_raw(client, "s1", help_without_id)
    worker.thread.join(30)
    assert isinstance(worker.error, Killed), worker.error
    worker.broker.close()
    survivor = WorkerThread(hub, config(), "s1", tmp_path / "s1", tick_rate_hz=0)
    publish_raw(client, "s1", help_without_id)
    # the journaled answer (resent), the redelivered copy (no cmd_id: a new command), the third
    results.pump(lambda _: len(help_answers()) == 4)
    survivor.join()
    answers = list(help_answers().values())
    assert len({a["tick"] for a in answers}) == 1  # all at one paused boundary number
    assert len({a["cmd_id"] for a in answers}) == len(answers), sorted(
        a["cmd_id"] for a in answers)


def test_a_refused_retry_of_a_stored_id_is_journaled_before_it_is_answered(
        tmp_path: Path) -> None:
    """A retry of an applied cmd_id with another command is refused (conflict). That refusal
    must be durable before it is published: killed before the ack, the worker's successor
    gets the retry again and must answer it with the very same body."""
    hub = MemoryHub()
    client = open_broker("memory://", hub=hub)
    results = Recorder(open_broker("memory://", hub=hub), TOPO.results_exchange)
    worker = WorkerThread(hub, config(), "s1", tmp_path / "s1", tick_rate_hz=50)
    send(client, "s1", "setneed", "agent_1", "hunger", 0.3, mode="admin", token=TOKEN,
         cmd_id="x1", wait=True)
    nth_call_raises(worker.worker.broker, "ack", 1)  # dies acking the next delivery
    send(client, "s1", "setneed", "agent_1", "hunger", 0.9, mode="admin", token=TOKEN,
         cmd_id="x1")
    worker.thread.join(30)
    assert isinstance(worker.error, Killed), worker.error
    worker.broker.close()
    survivor = WorkerThread(hub, config(), "s1", tmp_path / "s1", tick_rate_hz=50)
    try:
        results.pump(lambda b: sum(r["status"] == "error" for r in b) >= 2)
    finally:
        survivor.join()
    conflicts = [r for r in results.bodies() if r["status"] == "error"]
    assert conflicts[0]["error"]["code"] == "conflict"
    assert all(c == conflicts[0] for c in conflicts), conflicts  # same tick, same body


def test_torn_journal_tail_is_repaired(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.bin")
    journal.append({"k": "b", "seq": 1})
    journal.append({"k": "b", "seq": 2})
    journal.close()
    with open(tmp_path / "journal.bin", "ab") as fh:
        fh.write(b"\x00\x00\x01\x00half a record")
    reopened = Journal(tmp_path / "journal.bin")
    assert [r["seq"] for r in reopened.records()] == [1, 2]
    reopened.append({"k": "b", "seq": 3})
    reopened.close()
    assert [r["seq"] for r in Journal(tmp_path / "journal.bin").records()] == [1, 2, 3]


def test_second_worker_waits_for_the_lock_then_takes_over(tmp_path: Path) -> None:
    hub = MemoryHub()
    client = open_broker("memory://", hub=hub)
    results = Recorder(open_broker("memory://", hub=hub), TOPO.results_exchange)
    first = WorkerThread(hub, config(), "s1", tmp_path / "s1", tick_rate_hz=50)
    send(client, "s1", "help", cmd_id="before", wait=True)
    second = WorkerThread(hub, config(), "s1", tmp_path / "s1", tick_rate_hz=50)
    assert second.worker.loop.tick == 0  # waiting on the lock, not ticking
    first.join()
    after = send(client, "s1", "help", cmd_id="after", wait=True)
    second.join()
    assert after["status"] == "ok" and after["tick"] > 1
    results.pump(lambda b: {"before", "after"} <= {r["cmd_id"] for r in b})
    assert second.worker.loop.tick > after["tick"] - 1  # resumed from the first one's state
