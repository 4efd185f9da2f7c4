"""End to end on a real RabbitMQ: `townlet shard` and `townlet audit` as separate processes.

Commands go in over raw pika exactly as PROTOCOL.md describes them (msgpack body, message_id,
reply_to/correlation_id); results, replies, telemetry and dead letters are read back from the
broker and the audit log from disk, the way an operator's tooling would see them.
"""

from __future__ import annotations

import copy
import re
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from tests.procs import (
    ADMIN_LABEL,
    ADMIN_TOKEN,
    TOPO,
    VIEWER_LABEL,
    VIEWER_TOKEN,
    Captured,
    Harness,
    Proc,
    Recorder,
    admin,
    audit_key,
    audit_records,
    command,
    differing_answers,
    last_tick,
    pack,
    results_of,
    ticks_of,
    unsigned,
    verify_audit,
    wait_audited,
    wait_until,
    write_telemetry_jsonl,
)
from tests.simtools import EXAMPLE_SNAPSHOT_EVERY

pytestmark = pytest.mark.rabbitmq

HASH = re.compile(r"^[0-9a-f]{32}$")
RESULT_KEYS = {"v", "shard_id", "cmd_id", "name", "status", "tick", "issuer", "latency_ms",
               "applied", "command", "sig"}  # sig: the harness runs with a result key


# -- helpers --------------------------------------------------------------------------------
def start_shard(proc: Proc, timeout: float = 20.0) -> Proc:
    proc.start()
    proc.wait_log("shard_started", timeout)
    return proc


def by_cmd(items: list[Captured]) -> dict[str, list[Captured]]:
    out: dict[str, list[Captured]] = defaultdict(list)
    for item in items:
        out[str(item.data["cmd_id"])].append(item)
    return out


def wait_results(results: Recorder, shard_id: str, cmd_ids: list[str],
                 timeout: float = 20.0) -> dict[str, Captured]:
    """The first result of each cmd_id (waiting until every one has arrived)."""
    def missing() -> list[str]:
        seen = {item.data["cmd_id"] for item in results_of(results, shard_id)}
        return [c for c in cmd_ids if c not in seen]

    wait_until(lambda: not missing(), timeout, lambda: f"results of {missing()} on {shard_id}")
    return {cmd_id: items[0] for cmd_id, items in by_cmd(results_of(results, shard_id)).items()}


def assert_one_body_per_cmd(items: list[Captured]) -> None:
    differing = differing_answers(items)
    assert not differing, f"cmd_ids answered with different bodies: {differing}"


def assert_telemetry_stream(ticks: list[Captured], shard_id: str) -> None:
    """Headers, envelope, snapshot first then diffs, consecutive ticks, a hash on every one."""
    assert ticks, f"no telemetry from {shard_id}"
    for item in ticks:
        body, headers = item.data, item.headers
        assert headers["shard_id"] == shard_id == body["shard_id"]
        assert headers["tick"] == body["tick"] and isinstance(headers["tick"], int)
        assert headers["kind"] == body["kind"]
        assert body["v"] == 1 and body["schema_version"] == "0.2.0"
        assert HASH.match(body["state_hash"]), body["state_hash"]
        expected = "snapshot" if (body["tick"] - 1) % EXAMPLE_SNAPSHOT_EVERY == 0 else "diff"
        assert body["kind"] == expected, (body["tick"], body["kind"])
        assert {"events", "console_results"} <= set(body["payload"])
    numbers = [item.data["tick"] for item in ticks]
    assert numbers == list(range(1, len(numbers) + 1)), f"ticks not consecutive: {numbers}"
    assert "employment" in ticks[0].data["payload"]


def rebuild_views(ticks: list[Captured]) -> dict[int, dict[str, Any]]:
    """What a telemetry consumer reconstructs: the full views at every tick from snapshot+diffs
    (a later snapshot must have the same sections as the reconstruction)."""
    state: dict[str, Any] | None = None
    out: dict[int, dict[str, Any]] = {}
    for item in ticks:
        body = item.data
        payload = {k: v for k, v in body["payload"].items()
                   if k not in ("events", "console_results")}
        if body["kind"] == "snapshot":
            if state is not None:
                assert set(state) == set(payload), (body["tick"], set(state) ^ set(payload))
            state = copy.deepcopy(payload)
        else:
            assert state is not None, "a diff before any snapshot"
            for key, value in payload["set"].items():
                top, _, sub = key.partition(".")
                if sub:
                    state.setdefault(top, {})[sub] = value
                else:
                    state[top] = value
            for key in payload["unset"]:
                top, _, sub = key.partition(".")
                if sub:
                    state[top].pop(sub, None)
                else:
                    state.pop(top, None)
        out[body["tick"]] = copy.deepcopy(state)
    return out


def replay_ok(harness: Harness, config: Path, shard_id: str, telemetry: Recorder,
              audit_log: Path) -> None:
    """Guarantee 7: `townlet replay` of the audit log reproduces every live state_hash."""
    captured = harness.root / f"telemetry-{shard_id}.jsonl"
    ticks = write_telemetry_jsonl(telemetry, shard_id, captured)
    done = harness.replay(config, shard_id, max(ticks), audit_log, captured)
    assert done.returncode == 0, f"replay of {shard_id} failed:\n{done.stdout}\n{done.stderr}"
    assert f"checked {len(ticks)} ticks against telemetry: all match" in done.stdout, done.stdout


# -- tests ------------------------------------------------------------------------------------
def test_two_shards_answer_commands_stream_telemetry_and_feed_the_audit_log(
        harness: Harness) -> None:
    harness.purge_audit_queue()
    audit_log = harness.root / "logs" / "commands.jsonl"
    audit = harness.audit(audit_log).start()
    results = harness.recorder(TOPO.results_exchange, "results")
    telemetry = harness.recorder(TOPO.telemetry_exchange, "telemetry")
    replies = harness.recorder(None, "replies")
    config = harness.config("e2e")
    a, b = harness.shard_id("e2e-a"), harness.shard_id("e2e-b")
    shard_a = start_shard(harness.shard(a, config, tick_rate=50))
    shard_b = start_shard(harness.shard(b, config, tick_rate=50))
    audit.wait_log("audit_started")
    pub = harness.publisher()
    telemetry.wait_for(lambda _: last_tick(telemetry, a) >= 3 and last_tick(telemetry, b) >= 3,
                       15, "telemetry from both shards")

    before = last_tick(telemetry, a)
    chat = admin("force_chat", cmd_id="chat-1",
                 payload={"speaker": "agent_0", "listener": "agent_1", "quality": 0.5})
    sent_a = [
        (command("employment_status", cmd_id="status-1"), "corr-status"),
        (chat, "corr-chat"),
        (admin("setneed", "agent_1", "hunger", 0.25, cmd_id="need-1"), None),
        (admin("price", "meal_cost", 0.55, cmd_id="price-1"), None),
        (admin("set_rel", "agent_2", "agent_3", 0.5, 0.2, 0.1, cmd_id="rel-1"), None),
        (command("agent_status", "agent_1", cmd_id="look-1"), "corr-look"),
        (admin("price", "shower_cost", 0.3, cmd_id="same-id"), None),
    ]
    for payload, corr in sent_a:
        pub.send(a, payload, reply_to=replies.queue if corr else None, correlation_id=corr)
    pub.send(b, admin("price", "meal_cost", 0.9, cmd_id="price-b"))
    pub.send(b, admin("price", "shower_cost", 0.1, cmd_id="same-id"))
    pub.send(b, command("employment_status", cmd_id="status-b"))
    order = [p["cmd_id"] for p, _ in sent_a]
    got_a = wait_results(results, a, order)
    got_b = wait_results(results, b, ["price-b", "same-id", "status-b"])

    # An operator retry with the same cmd_id (and a fresh reply queue) gets the same answer.
    pub.send(a, chat, reply_to=replies.queue, correlation_id="corr-chat-retry")
    # A viewer command without cmd_id is given one by the shard.
    pub.send(a, command("help", cmd_id=None), message_id=None)
    results.wait_for(lambda _: len(by_cmd(results_of(results, a))["chat-1"]) == 2
                     and any(str(r.data["cmd_id"]).startswith(f"auto-{a}-")
                             for r in results_of(results, a)), 20, "retry and auto-id results")
    replies.wait_for(lambda items: len(items) == 4, 20, "4 replies")

    # Every field of one result, as the operator receives it.
    first = got_a["chat-1"]
    body = first.data
    assert RESULT_KEYS | {"result"} == set(body), sorted(body)
    assert body["v"] == 1 and body["shard_id"] == a and body["cmd_id"] == "chat-1"
    assert body["name"] == "force_chat" and body["status"] == "ok" and body["applied"] is True
    assert body["issuer"] == ADMIN_LABEL
    assert isinstance(body["tick"], int) and body["tick"] > before
    assert isinstance(body["latency_ms"], float) and 0 <= body["latency_ms"] < 10_000
    assert body["result"]["speaker"] == "agent_0" and body["result"]["listener"] == "agent_1"
    assert body["result"]["speaker_tie"]["trust"] > 0
    echo = {k: v for k, v in body["command"].items() if k != "timestamp_ms"}
    assert echo == {"name": "force_chat", "args": [], "mode": "admin", "cmd_id": "chat-1",
                    "issuer": ADMIN_LABEL, "kwargs": {"payload": {
                        "speaker": "agent_0", "listener": "agent_1", "quality": 0.5}}}
    assert "auth" not in body["command"]
    assert first.headers == {"shard_id": a, "cmd_id": "chat-1", "status": "ok"}
    assert first.message_id == "chat-1"

    # Queue order: one channel's commands are applied in publish order, at tick boundaries
    # after they were sent.
    applied_order = [item.data["cmd_id"] for item in results_of(results, a)][:len(order)]
    assert applied_order == order
    ticks_in_order = [got_a[c].data["tick"] for c in order]
    assert ticks_in_order == sorted(ticks_in_order) and ticks_in_order[0] > before
    for cmd_id in order:
        result = got_a[cmd_id].data
        assert result["status"] == "ok", result
        expected_issuer = ADMIN_LABEL if result["command"]["mode"] == "admin" else VIEWER_LABEL
        assert result["issuer"] == expected_issuer
    if got_a["look-1"].data["tick"] == got_a["need-1"].data["tick"]:
        # Same boundary, no tick in between: the later command sees exactly the earlier effect.
        assert got_a["look-1"].data["result"]["needs"]["hunger"] == 0.25
    assert got_a["status-1"].data["result"]["schema_version"] == "0.2.0"

    # reply_to + correlation_id: the same result body, the caller's correlation id.
    by_corr = {item.correlation_id: item for item in replies.items()}
    assert set(by_corr) == {"corr-status", "corr-chat", "corr-look", "corr-chat-retry"}
    assert by_corr["corr-chat"].body == first.body
    assert by_corr["corr-chat-retry"].body == first.body  # exactly once: replayed verbatim
    assert by_corr["corr-look"].body == got_a["look-1"].body
    assert by_corr["corr-chat"].headers == first.headers
    auto = [r.data for r in results_of(results, a) if str(r.data["cmd_id"]).startswith("auto-")]
    assert auto[0]["status"] == "ok" and auto[0]["name"] == "help"
    assert auto[0]["cmd_id"] == f"auto-{a}-{auto[0]['tick']}-0"

    # Shards are isolated: each answered only what was routed to it; same cmd_id, two shards.
    assert {r.data["cmd_id"] for r in results_of(results, b)} == {"price-b", "same-id",
                                                                    "status-b"}
    assert got_a["same-id"].data["result"]["price"] == 0.3
    assert got_b["same-id"].data["result"]["price"] == 0.1
    assert_one_body_per_cmd(results_of(results, a) + results_of(results, b))

    # Telemetry: both streams well formed; the result's tick is the boundary it was applied
    # at (it is in that tick's console_results); state changes show up in the views.
    telemetry.wait_for(lambda _: last_tick(telemetry, a) >= EXAMPLE_SNAPSHOT_EVERY + 2, 20,
                       "a second telemetry snapshot")
    for shard_id in (a, b):
        assert_telemetry_stream(ticks_of(telemetry, shard_id), shard_id)
    ticks_a = {item.data["tick"]: item.data for item in ticks_of(telemetry, a)}
    for cmd_id in order:
        result = got_a[cmd_id].data
        assert unsigned(result) in ticks_a[result["tick"]]["payload"]["console_results"], cmd_id
    views_a = rebuild_views(ticks_of(telemetry, a))
    views_b = rebuild_views(ticks_of(telemetry, b))
    price_tick = got_a["price-1"].data["tick"]
    assert views_a[price_tick]["world"]["prices"]["meal_cost"] == 0.55
    assert views_a[price_tick - 1]["world"]["prices"]["meal_cost"] == 0.4
    assert views_b[max(views_b)]["world"]["prices"]["meal_cost"] == 0.9
    for item in telemetry.items() + results.items() + replies.items():
        assert ADMIN_TOKEN.encode() not in item.body and VIEWER_TOKEN.encode() not in item.body

    # The audit log: one line per applied (shard_id, cmd_id), each the published result.
    everything = [r.data for r in results_of(results, a) + results_of(results, b)]
    wait_audited(audit_log, everything)
    assert audit.terminate() == 0
    lines = audit_records(audit_log, {a, b})
    keys = [audit_key(line) for line in lines]
    assert len(keys) == len(set(keys)), "duplicate audit lines"
    assert set(keys) == {audit_key(r) for r in everything}
    published = {audit_key(r): r for r in everything}
    for line in lines:
        assert line == published[audit_key(line)]
    text = audit_log.read_text(encoding="utf-8")
    assert ADMIN_TOKEN not in text and VIEWER_TOKEN not in text
    assert "link and result signatures valid" in verify_audit(audit_log, harness.env)

    # Guarantee 7, for both shards; and the workers stop cleanly.
    for shard_id in (a, b):
        replay_ok(harness, config, shard_id, telemetry, audit_log)
    assert shard_a.terminate() == 0 and shard_b.terminate() == 0
    for proc in (shard_a, shard_b, audit):
        log = proc.output(all_runs=True)
        assert ADMIN_TOKEN not in log and VIEWER_TOKEN not in log and "Traceback" not in log


def test_bad_deliveries_get_error_results_or_dead_letters_and_the_shard_keeps_ticking(
        harness: Harness) -> None:
    results = harness.recorder(TOPO.results_exchange, "results")
    telemetry = harness.recorder(TOPO.telemetry_exchange, "telemetry")
    dead = harness.recorder(TOPO.dead_exchange, "dead")
    config = harness.config("bad", max_body_bytes=1024)
    shard_id = harness.shard_id("e2e-bad")
    shard = start_shard(harness.shard(shard_id, config, tick_rate=50))
    pub = harness.publisher()
    telemetry.wait_for(lambda _: last_tick(telemetry, shard_id) >= 2, 15, "first ticks")

    garbage, huge = b"\xc1\xc1 definitely not msgpack", pack(
        command("help", "x" * 4000, cmd_id="big-1"))
    pub.send(shard_id, garbage, message_id="garbled-1")
    pub.send(shard_id, garbage + b" anonymous", message_id=None)
    pub.send(shard_id, pack({"v": 1, "cmd_id": "x"}) + b"trailing", message_id="trailing-1")
    pub.send(shard_id, huge, message_id="big-1")
    pub.send(shard_id, huge + b"", message_id=None)  # oversized, no way to answer
    pub.send(shard_id, b"\x93\x01\x02\x03", message_id="list-1")  # msgpack, but not a map
    pub.send(shard_id, {"v": 1, "cmd_id": "noname-1", "args": []})
    pub.send(shard_id, {**command("agent_status", cmd_id="types-1"), "args": "agent_1"})
    pub.send(shard_id, command("no_such_command", cmd_id="unknown-1"))
    pub.send(shard_id, command("kill", "agent_2", cmd_id="badtoken-1", mode="admin",
                               token="not-the-token-zz9"))
    pub.send(shard_id, command("kill", "agent_2", cmd_id="viewer-kill-1", mode="admin"))
    pub.send(shard_id, command("kill", "agent_2", cmd_id=None, mode="admin", token=ADMIN_TOKEN),
             message_id=None)
    sent_at_tick = last_tick(telemetry, shard_id)
    pub.send(shard_id, command("agent_status", "agent_2", cmd_id="alive-1"))

    expected = {"garbled-1": "bad_request", "trailing-1": "bad_request", "big-1": "bad_request",
                "list-1": "bad_request", "noname-1": "usage", "types-1": "usage",
                "unknown-1": "unsupported", "badtoken-1": "unauthorized",
                "viewer-kill-1": "forbidden"}
    got = wait_results(results, shard_id, [*expected, "alive-1"])
    for cmd_id, code in expected.items():
        result = got[cmd_id].data
        assert set(result) == RESULT_KEYS | {"error"}, sorted(result)
        assert set(result["error"]) <= {"code", "message", "details"}
        assert result["status"] == "error" and result["applied"] is False, result
        assert result["error"]["code"] == code, (cmd_id, result["error"])
        assert got[cmd_id].headers == {"shard_id": shard_id, "cmd_id": cmd_id,
                                       "status": "error"}
    usage = [r.data for r in results_of(results, shard_id)
             if r.data["name"] == "kill" and r.data["cmd_id"].startswith("auto-")]
    assert [u["error"]["code"] for u in usage] == ["usage"]  # admin command without cmd_id
    assert "limit" in got["big-1"].data["error"]["message"]
    assert got["badtoken-1"].data["issuer"] != ADMIN_LABEL
    # The good command behind all of them is served promptly, and agent_2 was not killed.
    alive = got["alive-1"].data
    assert alive["status"] == "ok" and alive["result"]["agent_id"] == "agent_2"
    assert alive["tick"] <= sent_at_tick + 25, (alive["tick"], sent_at_tick)

    # The two bodies without a message_id are parked on townlet.dead as sent, but for the
    # console token, which a dead letter never keeps (issue 9: it is replaced by ***).
    dead.wait_for(lambda items: len([d for d in items
                                     if d.headers.get("x-shard-id") == shard_id]) == 2,
                  15, "2 dead letters")
    parked = [d for d in dead.items() if d.headers.get("x-shard-id") == shard_id]
    scrubbed_huge = huge.replace(VIEWER_TOKEN.encode(), b"***")
    assert scrubbed_huge != huge
    assert sorted(d.body for d in parked) == sorted([garbage + b" anonymous", scrubbed_huge])
    for item in parked:
        assert str(item.headers["x-death-reason"]).startswith("undecodable")
        assert item.headers["x-original-queue"] == TOPO.shard_queue(shard_id)

    # Nothing is stuck in the inbox, the shard kept ticking, tokens appear nowhere.
    wait_until(lambda: pub.inbox_depth(shard_id) == 0, 10, "an empty inbox")
    mark = last_tick(telemetry, shard_id)
    telemetry.wait_for(lambda _: last_tick(telemetry, shard_id) >= mark + 20, 10,
                       "20 more ticks")
    assert_telemetry_stream(ticks_of(telemetry, shard_id), shard_id)
    gaps = [b.received - a.received for a, b in zip(ticks_of(telemetry, shard_id),
                                                    ticks_of(telemetry, shard_id)[1:],
                                                    strict=False)]
    assert max(gaps) < 1.0, f"telemetry stalled for {max(gaps):.2f}s"
    assert shard.alive
    everything = b"".join(i.body for i in results.items()) + shard.output().encode()
    assert b"not-the-token-zz9" not in everything and ADMIN_TOKEN.encode() not in everything
    assert "Traceback" not in shard.output()
    assert shard.terminate() == 0



def test_sigterm_stops_cleanly_and_a_restart_continues_where_it_stopped(
        harness: Harness) -> None:
    results = harness.recorder(TOPO.results_exchange, "results")
    telemetry = harness.recorder(TOPO.telemetry_exchange, "telemetry")
    config = harness.config("term")
    shard_id = harness.shard_id("e2e-term")
    state = harness.root / "state" / shard_id
    proc = harness.shard(shard_id, config, state_dir=state, tick_rate=50,
                         checkpoint_every=1000)
    start_shard(proc)
    pub = harness.publisher()
    setneed = admin("setneed", "agent_3", "energy", 0.2, cmd_id="need-1")
    pub.send(shard_id, setneed)
    first = wait_results(results, shard_id, ["need-1"])["need-1"]
    telemetry.wait_for(lambda _: last_tick(telemetry, shard_id) >= first.data["tick"] + 5, 10,
                       "ticks after the command")

    started = time.monotonic()
    assert proc.terminate(timeout=10) == 0, proc.tail()
    assert time.monotonic() - started < 5
    stopped = proc.events("shard_stopped")
    assert stopped, proc.tail()
    stop_tick = stopped[-1]["tick"]
    assert (state / "checkpoint.tlsnap").stat().st_size > 0
    assert (state / "journal.bin").stat().st_size == 0  # everything is in the checkpoint
    time.sleep(0.3)  # anything still in flight from the old process
    assert last_tick(telemetry, shard_id) == stop_tick  # it ticked nothing it didn't publish

    start_shard(proc)  # same state dir: the lock was released
    recovered = proc.events("recovered")
    assert recovered and recovered[-1]["tick"] == stop_tick
    assert recovered[-1]["replayed"] == 0 and recovered[-1]["resent"] == 0
    pub.send(shard_id, setneed)  # a retry after the restart: answered from the checkpoint
    telemetry.wait_for(lambda _: last_tick(telemetry, shard_id) >= stop_tick + 5, 10,
                       "ticks after the restart")
    results.wait_for(lambda items: len(items) == 2, 10, "the retried result")
    assert_one_body_per_cmd(results_of(results, shard_id))
    assert_telemetry_stream(ticks_of(telemetry, shard_id), shard_id)  # no gap, no repeat
    assert proc.terminate() == 0


def test_one_owner_per_shard_and_takeover_after_sigkill(harness: Harness) -> None:
    results = harness.recorder(TOPO.results_exchange, "results")
    telemetry = harness.recorder(TOPO.telemetry_exchange, "telemetry")
    config = harness.config("owner")
    shard_id = harness.shard_id("e2e-owner")
    state = harness.root / "state" / shard_id
    first = harness.shard(shard_id, config, state_dir=state, tick_rate=50, checkpoint_every=20,
                          name="owner-1")
    second = harness.shard(shard_id, config, state_dir=state, tick_rate=50,
                           checkpoint_every=20, name="owner-2")
    start_shard(first)
    second.start()
    second.wait_log("shard_owned_elsewhere_waiting")
    pub = harness.publisher()

    sent: list[dict[str, Any]] = []

    def send(n: int) -> None:
        payload = admin("setneed", f"agent_{n % 8}", "hygiene", round(0.3 + n / 1000, 3),
                        cmd_id=f"own-{n}") if n % 2 else command(
            "agent_status", f"agent_{n % 8}", cmd_id=f"own-{n}")
        pub.send(shard_id, payload)
        sent.append(payload)

    for n in range(20):
        send(n)
        time.sleep(0.02)
    wait_results(results, shard_id, [p["cmd_id"] for p in sent])
    time.sleep(0.5)
    assert second.alive and not second.events("shard_started"), second.tail()
    assert not second.events("command"), "the standby worker applied commands"
    assert {e["cmd_id"] for e in first.events("command")} >= {p["cmd_id"] for p in sent}

    # Kill the owner while commands keep coming; the standby takes over within seconds.
    for n in range(20, 30):
        send(n)
    killed_at = time.monotonic()
    first.kill()
    for n in range(30, 60):
        send(n)
        time.sleep(0.01)
    took = second.wait_log("shard_started", timeout=10) - (killed_at - second.started_at)
    assert took < 5, f"takeover took {took:.1f}s"
    for payload in sent[::7]:  # operator retries of earlier commands
        pub.send(shard_id, payload)
    wait_results(results, shard_id, [p["cmd_id"] for p in sent], timeout=20)
    retried = {p["cmd_id"] for p in sent[::7]}
    results.wait_for(lambda items: all(len(by_cmd(results_of(results, shard_id))[c]) >= 2
                                       for c in retried), 20, "answers to the retries")
    after_kill = last_tick(telemetry, shard_id)
    telemetry.wait_for(lambda _: last_tick(telemetry, shard_id) >= after_kill + 10, 10,
                       "ticks from the new owner")

    assert_one_body_per_cmd(results_of(results, shard_id))
    ticks = ticks_of(telemetry, shard_id)
    per_tick: dict[int, set[bytes]] = defaultdict(set)
    for item in ticks:
        per_tick[item.data["tick"]].add(item.body)
    assert all(len(bodies) == 1 for bodies in per_tick.values()), \
        [t for t, bodies in per_tick.items() if len(bodies) > 1]
    assert sorted(per_tick) == list(range(1, max(per_tick) + 1))
    applied = [r.data for r in results_of(results, shard_id) if r.data["applied"]]
    assert {r["cmd_id"] for r in applied} == {p["cmd_id"] for p in sent}
    assert second.terminate() == 0
