"""The operator's console against live shards on RabbitMQ: status that tells the truth, `send`
that never invents a queue, capture + replay + bisect, the dry run against a live shard,
Prometheus metrics and the health probe."""

from __future__ import annotations

import json
import time
import urllib.request

import pytest

from shared.broker import NotFound, open_broker
from shared.topology import Topology
from tests.integration.test_cli import townlet
from tests.procs import ADMIN_TOKEN, Harness, Proc, free_port, wait_audited

pytestmark = pytest.mark.rabbitmq
TOPO = Topology()


def started(proc: Proc) -> Proc:
    proc.start().wait_log("shard_started" if "shard" in proc.name else "audit_started", 20)
    return proc


def status(harness: Harness, *args: str) -> tuple[int, dict]:
    done = townlet("status", "--json", *args, cwd=harness.cwd, env=harness.env)
    return done.returncode, json.loads(done.stdout)


def test_status_tells_ticking_paused_stale_and_unknown_apart(harness: Harness) -> None:
    ids = {k: harness.shard_id(k) for k in ("ticking", "paused", "dead")}
    never = harness.shard_id("never")
    procs = {k: started(harness.shard(s, harness.config(k), tick_rate=20))
             for k, s in ids.items()}
    started(harness.audit(harness.root / "audit.jsonl"))
    env = {**harness.env, "TOWNLET_CONSOLE_TOKEN": ADMIN_TOKEN}
    paused = townlet("send", ids["paused"], "pause", "--mode", "admin", "--cmd-id", "p-1",
                     cwd=harness.cwd, env=env)
    assert paused.returncode == 0, paused.stderr
    procs["dead"].kill()  # kill -9: its inbox stays, nobody consumes it

    # A command for the dead shard stays queued; waiting for its result times out: exit 3.
    begun = time.monotonic()
    late = townlet("send", ids["dead"], "employment_status", "--timeout", "1", cwd=harness.cwd,
                   env=harness.env)
    assert late.returncode == 3, late.stderr
    assert late.stderr.startswith("error: no result for cli-") and "stays queued" in late.stderr
    assert time.monotonic() - begun < 5

    args = [a for s in [*ids.values(), never] for a in ("--shard", s)]
    code, report = status(harness, *args)
    states = {k: report["shards"][s]["state"] for k, s in ids.items()}
    assert states == {"ticking": "ticking", "paused": "paused", "dead": "stale"}, report
    assert report["shards"][never]["state"] == "unknown"
    assert report["shards"][ids["dead"]]["consumers"] == 0
    assert report["shards"][ids["ticking"]]["rate_hz"] > 5
    assert report["audit"]["alive"] is True
    assert code == 1 and set(report["problems"]) == {f"{ids['dead']} is stale",
                                                     f"{never} is unknown"}

    begun = time.monotonic()
    code, report = status(harness, "--shard", ids["ticking"], "--shard", ids["paused"])
    assert code == 0 and report["healthy"] is True, report
    assert time.monotonic() - begun < 4  # stops listening once both were seen
    # Without --shard or a fleet file, shards are discovered from their telemetry.
    code, report = status(harness, "--listen", "1.5")
    assert {ids["ticking"], ids["paused"]} <= set(report["shards"])


def test_send_to_a_shard_with_no_queue_fails_at_once_and_declares_nothing(
        harness: Harness) -> None:
    begun = time.monotonic()
    done = townlet("send", "nosuch-shard", "employment_status", cwd=harness.cwd,
                   env=harness.env)
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip() == ("error: shard 'nosuch-shard' has no command queue: it has "
                                   "never run on this broker (a typo?); see `townlet status`")
    assert time.monotonic() - begun < 5
    broker = open_broker(harness.url)
    try:
        with pytest.raises(NotFound):
            broker.queue_stats(TOPO.shard_queue("nosuch-shard"))
    finally:
        broker.close()


def test_tail_save_feeds_replay_and_bisect_finds_the_first_differing_tick(
        harness: Harness) -> None:
    shard_id = harness.shard_id("capture")
    config = harness.config("capture")
    audit_log = harness.root / "audit.jsonl"
    started(harness.audit(audit_log))
    started(harness.shard(shard_id, config, tick_rate=50))
    env = {**harness.env, "TOWNLET_CONSOLE_TOKEN": ADMIN_TOKEN}
    captured = harness.cwd / "captured.jsonl"
    tail = harness._proc("tail", ["tail", "--shard", shard_id, "--save", str(captured),
                                  "--seconds", "4"]).start()
    time.sleep(1)
    sent = [json.loads(townlet("send", shard_id, "setneed", f"agent_{i}", "hunger", "0.3",
                               "--mode", "admin", "--cmd-id", f"cap-{i}", "--json",
                               cwd=harness.cwd, env=env).stdout) for i in range(3)]
    assert tail.wait(20) == 0
    wait_audited(audit_log, sent)
    printed = tail.output().splitlines()
    assert printed and all(line.startswith(f"{shard_id} tick=") for line in printed[1:])

    args = ["replay", "--config", str(config), "--shard", shard_id, "--audit-log",
            str(audit_log), "--telemetry", str(captured)]
    done = townlet(*args, cwd=harness.cwd, env=harness.env)  # --ticks: the capture's last
    assert done.returncode == 0, done.stdout + done.stderr
    assert "all match" in done.stdout
    done = townlet(*args, "--bisect", cwd=harness.cwd, env=harness.env)
    assert done.returncode == 0 and "all match" in done.stdout, done.stdout

    lines = [json.loads(line) for line in captured.read_text().splitlines()]
    bad = lines[len(lines) // 2]
    bad["state_hash"] = "0" * 32
    captured.write_text("".join(json.dumps(m) + "\n" for m in lines))
    done = townlet(*args, "--bisect", "--json", cwd=harness.cwd, env=harness.env)
    assert done.returncode == 1, done.stdout + done.stderr
    out = json.loads(done.stdout)
    assert out["first_differing_tick"] == bad["tick"] == out["tick"]  # stopped right there
    assert out["last_matching_tick"] == bad["tick"] - 1


def test_dry_run_against_a_live_shard_passes_every_checklist_item(harness: Harness) -> None:
    shard_id = harness.shard_id("dry")
    audit_log = harness.root / "audit.jsonl"
    started(harness.audit(audit_log))
    started(harness.shard(shard_id, harness.config("dry"), tick_rate=20))
    env = {**harness.env, "TOWNLET_CONSOLE_TOKEN": ADMIN_TOKEN}
    done = townlet("dry-run", "--shard", shard_id, "--audit-log", str(audit_log), "--json",
                   cwd=harness.cwd, env=env, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    out = json.loads(done.stdout)
    assert out["passed"] == 8 and out["failed"] == 0, out
    assert ADMIN_TOKEN not in done.stdout + done.stderr
    code, report = status(harness, "--shard", shard_id)
    assert report["shards"][shard_id]["state"] == "ticking"  # resumed after the dry run

    human = townlet("dry-run", "--shard", shard_id, "--audit-log", str(audit_log),
                    cwd=harness.cwd, env=env, timeout=120)
    assert human.returncode == 0, human.stdout
    assert human.stdout.count("PASS  ") == 8 and "8/8 checklist items passed" in human.stdout
    # The audit log lives elsewhere: that item fails with its evidence, and the run exits 1.
    elsewhere = townlet("dry-run", "--shard", shard_id, "--audit-log", "nope.jsonl",
                        "--timeout", "2", cwd=harness.cwd, env=env, timeout=120)
    assert elsewhere.returncode == 1
    assert "FAIL  logs/console/commands.jsonl appended" in elsewhere.stdout
    assert "nope.jsonl not found or empty" in elsewhere.stdout


REQUIRED_METRICS = ("townlet_ticks_total", "townlet_tick_seconds_bucket",
                    "townlet_commands_total", "townlet_inbox_depth", "townlet_outbox_unsent",
                    "townlet_broker_reconnects_total", "townlet_journal_fsync_seconds_bucket")


def scrape(port: int, path: str = "/metrics") -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
        return str(response.read().decode())


def test_shard_and_audit_serve_metrics_and_a_health_probe(harness: Harness) -> None:
    shard_id = harness.shard_id("metrics")
    shard_port, audit_port = free_port(), free_port()
    started(harness.audit(harness.root / "audit.jsonl", extra=("--metrics-port",
                                                               str(audit_port))))
    started(harness.shard(shard_id, harness.config("metrics"), tick_rate=50,
                          extra=("--metrics-port", str(shard_port))))
    env = {**harness.env, "TOWNLET_CONSOLE_TOKEN": ADMIN_TOKEN}
    townlet("send", shard_id, "employment_status", cwd=harness.cwd, env=env)
    townlet("send", shard_id, "nosuch", cwd=harness.cwd, env=env)
    text = scrape(shard_port)
    for name in REQUIRED_METRICS:
        assert f"{name}{{" in text, name
    assert f'townlet_commands_total{{code="",shard="{shard_id}",status="ok"}} 1.0' in text
    assert (f'townlet_commands_total{{code="unsupported",shard="{shard_id}",status="error"}} '
            "1.0") in text
    ticks = [line for line in text.splitlines() if line.startswith("townlet_ticks_total{")]
    assert float(ticks[0].rsplit(" ", 1)[1]) > 0
    audit = scrape(audit_port)
    assert "townlet_audit_lines_total " in audit and "townlet_audit_lag_seconds " in audit
    for port in (shard_port, audit_port):
        probe = townlet("probe", "--port", str(port), "--json", cwd=harness.cwd)
        assert probe.returncode == 0 and json.loads(probe.stdout)["healthy"] is True
    nobody = townlet("probe", "--port", str(free_port()), cwd=harness.cwd)
    assert nobody.returncode == 4 and nobody.stdout.startswith("unhealthy: no answer")
