"""Chaos on a real RabbitMQ: SIGKILL the shard worker (or the audit consumer) over and over while
commands flow, then prove guarantees 2, 3, 4, 5 and 7 from what left the processes.

The kill schedule comes from a seeded RNG (``TOWNLET_CHAOS_SEED``, printed on failure); the
timing of a real broker and real processes is not reproducible, the schedule is. ``--chaos-long``
multiplies the kills by ten.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.procs import (
    ADMIN_TOKEN,
    TOPO,
    VIEWER_TOKEN,
    Captured,
    Harness,
    Proc,
    Publisher,
    Recorder,
    admin,
    audit_key,
    audit_records,
    command,
    differing_answers,
    last_tick,
    results_of,
    ticks_of,
    unsigned,
    verify_audit,
    wait_audited,
    wait_until,
    write_telemetry_jsonl,
)

pytestmark = [pytest.mark.rabbitmq, pytest.mark.chaos]

SEED = int(os.environ.get("TOWNLET_CHAOS_SEED", "7"))
AGENTS = [f"agent_{i}" for i in range(8)]
NEEDS = ("hunger", "hygiene", "energy")


def kill_count(request: pytest.FixtureRequest, default: int) -> int:
    return default * 10 if request.config.getoption("--chaos-long") else default


# -- the operator's side ------------------------------------------------------------------------
def random_command(rng: random.Random, n: int) -> dict[str, Any]:
    """Mostly world-changing admin commands, some viewer queries, a few refusals."""
    cmd_id = f"c{n:05d}-{rng.getrandbits(32):08x}"
    a, b = rng.sample(AGENTS, 2)
    roll = rng.random()
    if roll < 0.17:
        return admin("force_chat", a, b, round(rng.uniform(0.1, 1.0), 3), cmd_id=cmd_id)
    if roll < 0.37:
        return admin("setneed", a, rng.choice(NEEDS), round(rng.uniform(0.3, 1.0), 3),
                     cmd_id=cmd_id)
    if roll < 0.47:
        key = rng.choice(("meal_cost", "ingredients_cost", "shower_cost"))
        return admin("price", key, round(rng.uniform(0.05, 0.8), 3), cmd_id=cmd_id)
    if roll < 0.62:
        return admin("set_rel", a, b, round(rng.uniform(-1, 1), 3), round(rng.uniform(-1, 1), 3),
                     round(rng.uniform(0, 1), 3), cmd_id=cmd_id)
    if roll < 0.97:
        name, args = rng.choice([("agent_status", [a]), ("employment_status", []),
                                 ("relationship_summary", [a]), ("social_events", [])])
        return command(name, *args, cmd_id=cmd_id)
    if roll < 0.985:  # refused: unknown token
        return command("kill", a, cmd_id=cmd_id, mode="admin", token="wrong-token-c0ffee")
    return command("kill", a, cmd_id=cmd_id, mode="admin", token=VIEWER_TOKEN)  # forbidden


@dataclass
class Operator:
    """Publishes random commands (confirmed) on its own connection/thread until stopped; some
    are published again later with the same cmd_id, as an operator retrying would."""

    url: str
    shard_id: str
    rng: random.Random
    rate_hz: float
    burst: int = 1
    retry_p: float = 0.08
    max_commands: int = 100_000
    sent: dict[str, dict[str, Any]] = field(default_factory=dict)
    retries: int = 0
    error: BaseException | None = None

    def __post_init__(self) -> None:
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="operator", daemon=True)

    def start(self) -> Operator:
        self.thread.start()
        return self

    def _run(self) -> None:
        try:
            pub = Publisher(self.url)
            try:
                pub.ensure_inbox(self.shard_id)
                self._loop(pub)
            finally:
                pub.close()
        except BaseException as exc:  # surfaced by finish()
            self.error = exc

    def _loop(self, pub: Publisher) -> None:
        n = 0
        while not self.stop.is_set() and n < self.max_commands:
            for _ in range(self.burst):
                payload = random_command(self.rng, n)
                n += 1
                pub.send(self.shard_id, payload)
                self.sent[payload["cmd_id"]] = payload
                if self.rng.random() < self.retry_p:
                    earlier = self.sent[self.rng.choice(list(self.sent))]
                    pub.send(self.shard_id, earlier)
                    self.retries += 1
            self.stop.wait(self.rng.expovariate(self.rate_hz / self.burst))

    def finish(self, timeout: float = 30.0) -> dict[str, dict[str, Any]]:
        self.stop.set()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the publisher thread hung"
        if self.error is not None:
            raise AssertionError(f"publishing failed: {self.error!r}")
        return self.sent


# -- checks -------------------------------------------------------------------------------------
def wait_all_answered(results: Recorder, dead: Recorder, shard_id: str, cmd_ids: set[str],
                      inbox_depth: Callable[[], int], timeout: float) -> None:
    """Guarantee 3: every confirmed command gets a result (diagnose the ones that don't)."""
    def missing() -> set[str]:
        return cmd_ids - {str(r.data["cmd_id"]) for r in results_of(results, shard_id)}

    try:
        wait_until(lambda: not missing(), timeout, "results", interval=0.1)
    except AssertionError:
        lost = sorted(missing())
        parked = {str(d.message_id): {k: v for k, v in d.headers.items()
                                      if k.startswith(("x-first-death", "x-death-reason",
                                                       "x-delivery"))}
                  for d in dead.items() if d.message_id in missing()}
        raise AssertionError(
            f"{len(lost)} of {len(cmd_ids)} commands never answered, e.g. {lost[:10]}; "
            f"dead-lettered: {parked or 'none'}; inbox depth now {inbox_depth()}") from None


def assert_exactly_once(answers: list[Captured], context: Callable[[], str]) -> None:
    """Guarantee 2: every result published for a command is byte-identical.

    That holds for refusals too (bad token, wrong role): a refused command redelivered or
    retried unchanged gets its first answer again (``RefusalMemo``), never an effect."""
    differing = differing_answers(answers)
    assert not differing, f"commands answered with different bodies: {differing}\n{context()}"
    applied = {a.data["cmd_id"] for a in answers if a.data["applied"]}
    refused = {a.data["cmd_id"] for a in answers if not a.data["applied"]}
    assert not applied & refused, f"commands both refused and applied: {sorted(applied & refused)}"


def assert_telemetry_consistent(ticks: list[Captured]) -> None:
    """Guarantee 4: a tick is published identically however often it is resent; no tick is
    skipped; each tick has one state_hash."""
    per_tick: dict[int, set[bytes]] = defaultdict(set)
    hashes: dict[int, set[str]] = defaultdict(set)
    for item in ticks:
        assert item.headers["tick"] == item.data["tick"]
        assert item.data.get("state_hash"), item.data
        per_tick[item.data["tick"]].add(item.body)
        hashes[item.data["tick"]].add(item.data["state_hash"])
    split = {t: sorted(h) for t, h in hashes.items() if len(h) > 1}
    assert not split, f"ticks with more than one state_hash: {split}"
    changed = sorted(t for t, bodies in per_tick.items() if len(bodies) > 1)
    assert not changed, f"ticks re-sent with a different body: {changed[:20]}"
    gaps = sorted(set(range(1, max(per_tick) + 1)) - set(per_tick))
    assert not gaps, f"ticks never published: {gaps[:20]}"
    first = min(ticks, key=lambda i: i.data["tick"])
    assert first.data["tick"] == 1 and first.data["kind"] == "snapshot"


def assert_results_match_telemetry(results: list[Captured], ticks: list[Captured]) -> None:
    """A result's tick is the boundary it was applied at: it is in that tick's telemetry."""
    by_tick = {item.data["tick"]: item.data["payload"]["console_results"] for item in ticks}
    for item in results:
        result = item.data
        assert unsigned(result) in by_tick[result["tick"]], (result["cmd_id"], result["tick"])


def assert_audit_exact(path: Path, shard_id: str, answers: list[Captured],
                       env: dict[str, str]) -> None:
    """Guarantee 5: one whole line per applied command (and per distinct refusal), no tokens;
    every line signed by its shard, and the hash chain intact (`townlet verify`)."""
    data = path.read_bytes()
    assert data.endswith(b"\n"), f"torn last line: {data[-200:]!r}"
    torn = []
    for number, raw in enumerate(data.split(b"\n")[:-1], 1):
        try:
            json.loads(raw)
        except ValueError:
            torn.append((number, raw[:120]))
    assert not torn, f"{len(torn)} torn/unreadable lines, e.g. {torn[:3]}"
    lines = audit_records(path, {shard_id})
    keys = Counter(audit_key(line) for line in lines)
    twice = [k for k, n in keys.items() if n > 1]
    assert not twice, f"{len(twice)} commands logged more than once, e.g. {twice[:5]}"
    expected = {audit_key(r.data): r.data for r in answers}
    assert set(keys) == set(expected), (
        f"missing from the log: {sorted(set(expected) - set(keys))[:10]}; "
        f"unexpected: {sorted(set(keys) - set(expected))[:10]}")
    for line in lines:  # the line is the published result, byte for byte
        assert line == expected[audit_key(line)], line["cmd_id"]
    assert ADMIN_TOKEN.encode() not in data and VIEWER_TOKEN.encode() not in data
    assert b"wrong-token-c0ffee" not in data
    assert all("sig" in line for line in lines), "an unsigned result was logged"
    assert "link and result signatures valid" in verify_audit(path, env)


def assert_replay_matches(harness: Harness, config: Path, shard_id: str, telemetry: Recorder,
                          audit_log: Path) -> None:
    """Guarantee 7: `townlet replay` of the audit log reproduces every live state_hash."""
    captured = harness.root / "telemetry.jsonl"
    ticks = write_telemetry_jsonl(telemetry, shard_id, captured)
    done = harness.replay(config, shard_id, max(ticks), audit_log, captured)
    assert done.returncode == 0 and \
        f"checked {len(ticks)} ticks against telemetry: all match" in done.stdout, \
        f"replay disagrees with the live shard:\n{done.stdout}\n{done.stderr[-3000:]}"


def chaos_context(seed: int, kills: int, procs: list[Proc]) -> str:
    tails = "\n".join(f"--- {p.name}:\n{p.tail(10)}" for p in procs)
    return f"seed={seed} kills={kills}\n{tails}"


# -- the tests ----------------------------------------------------------------------------------
def test_shard_worker_sigkilled_at_random_loses_nothing_and_applies_everything_once(
        harness: Harness, request: pytest.FixtureRequest) -> None:
    kills = kill_count(request, 20)
    rng = random.Random(SEED)
    harness.purge_audit_queue()
    results = harness.recorder(TOPO.results_exchange, "results")
    telemetry = harness.recorder(TOPO.telemetry_exchange, "telemetry")
    dead = harness.recorder(TOPO.dead_exchange, "dead")
    config = harness.config("chaos")
    shard_id = harness.shard_id("chaos")
    audit_log = harness.root / "logs" / "commands.jsonl"
    audit = harness.audit(audit_log).start()
    worker = harness.shard(shard_id, config, tick_rate=100, checkpoint_every=25)
    operator = Operator(harness.url, shard_id, random.Random(SEED + 1), rate_hz=40).start()
    context = lambda: chaos_context(SEED, kills, [worker, audit])  # noqa: E731

    recovered: list[dict[str, Any]] = []
    for _ in range(kills):
        worker.start()
        if rng.random() < 0.2:  # mid start-up: recovery, resend, (re)subscribe
            worker.wait_log("shard_booting", 20)
            time.sleep(rng.uniform(0.0, 0.08))
        else:
            worker.wait_log("shard_started", 20)
            time.sleep(rng.uniform(0.02, 0.7))
        assert worker.alive, f"the worker died on its own:\n{context()}"
        recovered += worker.events("recovered")
        worker.kill()

    sent = operator.finish()
    worker.start()
    worker.wait_log("shard_started", 20)
    probe = harness.publisher()
    wait_all_answered(results, dead, shard_id, set(sent),
                      lambda: probe.inbox_depth(shard_id), timeout=60)
    answers = results_of(results, shard_id)
    final = max(r.data["tick"] for r in answers)
    telemetry.wait_for(lambda _: last_tick(telemetry, shard_id) >= final + 3, 20,
                       "telemetry past the last command")
    assert worker.terminate() == 0, context()
    wait_audited(audit_log, [r.data for r in answers], timeout=30)
    assert audit.terminate() == 0, context()

    # Exactly once: one body per command, however often it was delivered or retried.
    assert_exactly_once(answers, context)
    unexpected = {str(r.data["cmd_id"]) for r in answers} - set(sent)
    assert not unexpected, f"results for commands nobody sent: {sorted(unexpected)[:10]}"
    ticks = ticks_of(telemetry, shard_id)
    assert_telemetry_consistent(ticks)
    assert_results_match_telemetry(answers, ticks)
    assert_audit_exact(audit_log, shard_id, answers, harness.env)
    assert_replay_matches(harness, config, shard_id, telemetry, audit_log)
    # The crashes really exercised recovery: journal records were re-applied after kills.
    assert len(recovered) >= kills // 2 and sum(r["replayed"] for r in recovered) > 0, recovered
    print(f"seed={SEED} kills={kills} commands={len(sent)} retries={operator.retries} "
          f"results={len(answers)} ticks={max(t.data['tick'] for t in ticks)} "
          f"telemetry={len(ticks)} journal-replayed={sum(r['replayed'] for r in recovered)} "
          f"boundaries-resent={sum(r['resent'] for r in recovered)}")


def test_audit_consumer_sigkilled_repeatedly_logs_every_result_exactly_once(
        harness: Harness, request: pytest.FixtureRequest) -> None:
    kills = kill_count(request, 12)
    rng = random.Random(SEED + 2)
    harness.purge_audit_queue()
    results = harness.recorder(TOPO.results_exchange, "results")
    telemetry = harness.recorder(TOPO.telemetry_exchange, "telemetry")
    dead = harness.recorder(TOPO.dead_exchange, "dead")
    config = harness.config("audit-chaos")
    shard_id = harness.shard_id("audit-chaos")
    audit_log = harness.root / "logs" / "commands.jsonl"
    audit = harness.audit(audit_log)
    worker = harness.shard(shard_id, config, tick_rate=100, checkpoint_every=50).start()
    worker.wait_log("shard_started", 20)
    operator = Operator(harness.url, shard_id, random.Random(SEED + 3), rate_hz=300,
                        burst=10).start()
    context = lambda: chaos_context(SEED, kills, [worker, audit])  # noqa: E731

    torn_tails = 0  # kills that left a partial last line (the next start must repair it)
    for _ in range(kills):
        audit.start()
        if rng.random() < 0.2:
            time.sleep(rng.uniform(0.3, 0.8))  # maybe still opening the log
        else:
            audit.wait_log("audit_started", 20)
            time.sleep(rng.uniform(0.05, 0.6))
        assert audit.alive, f"the audit consumer died on its own:\n{context()}"
        audit.kill()
        tail = audit_log.read_bytes()[-1:] if audit_log.exists() else b"\n"
        torn_tails += tail not in (b"", b"\n")
    sent = operator.finish()

    audit.start()
    audit.wait_log("audit_started", 20)  # a SIGTERM before Python has even started kills it
    probe = harness.publisher()
    wait_all_answered(results, dead, shard_id, set(sent),
                      lambda: probe.inbox_depth(shard_id), timeout=30)
    answers = results_of(results, shard_id)
    try:
        wait_audited(audit_log, [r.data for r in answers], timeout=30)
    except AssertionError as exc:
        parked = [d.headers.get("x-first-death-reason") for d in dead.items()
                  if d.headers.get("shard_id") == shard_id]
        raise AssertionError(f"{exc}; results dead-lettered from the audit queue: "
                             f"{Counter(parked)}\n{context()}") from None
    assert audit.terminate() == 0, context()
    assert worker.terminate() == 0, context()

    assert_exactly_once(answers, context)
    assert_audit_exact(audit_log, shard_id, answers, harness.env)
    assert_replay_matches(harness, config, shard_id, telemetry, audit_log)
    print(f"seed={SEED} audit kills={kills} commands={len(sent)} results={len(answers)} "
          f"torn-tails-after-kill={torn_tails}")


class DeadLettered(AssertionError):
    """Good messages were dead-lettered by the delivery limit (the known bug above)."""


def settle(results: Recorder, dead: Recorder, shard_id: str, wanted: set[str],
           done: Callable[[], set[str]], timeout: float = 20.0) -> list[str]:
    """Wait until every wanted cmd_id is done or dead-lettered; the dead-lettered ones."""
    def parked() -> set[str]:
        return {str(d.data.get("cmd_id") if isinstance(d.data, dict) else d.message_id)
                for d in dead.items()
                if d.message_id in wanted or (isinstance(d.data, dict)
                                              and d.data.get("shard_id") == shard_id)}

    wait_until(lambda: wanted <= done() | parked(), timeout,
               lambda: f"{len(wanted - done() - parked())} commands neither done nor dead")
    return sorted(parked() & wanted)


def test_a_shard_restarted_repeatedly_on_a_full_disk_loses_no_queued_command(
        harness: Harness) -> None:
    """The state disk is full: the worker holds at its first journal append (nothing was
    published or acked) instead of crashing, and an impatient operator SIGKILLs and restarts it
    six times. Once the disk has room again every queued command must still be answered."""
    results = harness.recorder(TOPO.results_exchange, "results")
    dead = harness.recorder(TOPO.dead_exchange, "dead")
    config = harness.config("diskfull")
    shard_id = harness.shard_id("diskfull")
    pub = harness.publisher()
    pub.ensure_inbox(shard_id)
    wanted = {f"q{n:03d}" for n in range(150)}
    for cmd_id in sorted(wanted):
        pub.send(shard_id, command("help", cmd_id=cmd_id))
    worker = harness.shard(shard_id, config, tick_rate=10, checkpoint_every=1000)
    for _ in range(6):
        worker.start(max_file_bytes=8192)
        worker.wait_log("journal_write_failed", 20)
        assert worker.alive, worker.tail()  # holding, not crash-looping
        worker.kill()
    worker.start()  # room on the disk again
    worker.wait_log("shard_started", 20)
    lost = settle(results, dead, shard_id, wanted,
                  lambda: {str(r.data["cmd_id"]) for r in results_of(results, shard_id)})
    if lost:
        raise DeadLettered(f"{len(lost)} of {len(wanted)} commands dead-lettered unapplied: "
                           f"{lost[:5]}")


def test_restarting_the_audit_consumer_during_a_full_disk_loses_no_audit_line(
        harness: Harness) -> None:
    """While the audit disk is full the consumer holds its batch (by design, so the delivery
    limit is not hit); an operator restarting it meanwhile must not cost audit lines."""
    harness.purge_audit_queue()
    results = harness.recorder(TOPO.results_exchange, "results")
    dead = harness.recorder(TOPO.dead_exchange, "dead")
    config = harness.config("auditfull")
    shard_id = harness.shard_id("auditfull")
    worker = harness.shard(shard_id, config, tick_rate=100).start()
    worker.wait_log("shard_started", 20)
    pub = harness.publisher()
    wanted = {f"q{n:03d}" for n in range(150)}
    for cmd_id in sorted(wanted):
        pub.send(shard_id, command("help", cmd_id=cmd_id))
    wait_until(lambda: len(results_of(results, shard_id)) >= len(wanted), 20, "results")
    audit_log = harness.root / "logs" / "commands.jsonl"
    audit = harness.audit(audit_log)
    for _ in range(6):
        audit.start(max_file_bytes=16384)
        audit.wait_log("audit_write_failed", 20)
        audit.kill()
    audit.start()  # room on the disk again
    lost = settle(results, dead, shard_id, wanted,
                  lambda: {str(r["cmd_id"]) for r in audit_records(audit_log, {shard_id})})
    if lost:
        raise DeadLettered(f"{len(lost)} of {len(wanted)} results dead-lettered, never "
                           f"audited: {lost[:5]}")

