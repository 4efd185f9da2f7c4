"""The broker is away: every client command fails within its --timeout in one line (exit 4), and
long-running processes report one townlet event per outage, with their shard id, instead of
pika's own records; their connections are named per role and shard."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.test_cli import townlet
from tests.procs import Harness, wait_until

DEAD = "amqp://guest:guest@127.0.0.1:1/%2F"  # nothing listens on port 1
CLIENT_COMMANDS = [
    ["send", "town-a", "employment_status"],
    ["tail", "--count", "1"],
    ["status"],
    ["top", "--once"],
    ["dry-run", "--shard", "town-a"],
]


def pika_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if "pika" in line]


@pytest.mark.parametrize("args", CLIENT_COMMANDS, ids=lambda a: a[0])
def test_client_commands_fail_within_their_timeout_with_exit_4(tmp_path: Path,
                                                               args: list[str]) -> None:
    env = {**os.environ, "TOWNLET_CONSOLE_TOKEN": "t"}
    started = time.monotonic()
    done = townlet(*args, "--broker", DEAD, "--timeout", "1", cwd=tmp_path, env=env, timeout=30)
    elapsed = time.monotonic() - started
    assert done.returncode == 4, (done.stdout, done.stderr)
    assert elapsed < 1 + 3, f"took {elapsed:.1f}s"  # the timeout plus interpreter start-up
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: broker unreachable at amqp://***@"), \
        done.stderr
    assert "guest" not in done.stderr and not pika_lines(done.stderr)


def test_the_audit_consumer_logs_an_outage_once_and_stops_at_once_on_sigterm(
        tmp_path: Path) -> None:
    env = {**os.environ, "TOWNLET_AMQP_URL": DEAD, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "ops.cli", "audit", "--audit-log",
                             str(tmp_path / "audit.jsonl")], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        time.sleep(4)  # several retries' worth (backoff 0.05 s doubling to 5 s)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert time.monotonic() - started < 2, "SIGTERM not honoured promptly"
    assert proc.returncode == 0, out
    events = [json.loads(line)["event"] for line in out.splitlines() if line.startswith("{")]
    assert events.count("audit_connect_failed") == 1, out
    assert not pika_lines(out), out


def named_connections(prefix: str) -> dict[str, str]:
    """{connection name: pid} of the connections whose client-given name starts ``prefix``
    (RabbitMQ 3.10's rabbitmqctl shows it in client_properties)."""
    listing = subprocess.run(
        ["rabbitmqctl", "-q", "list_connections", "--no-table-headers", "pid",
         "client_properties"], capture_output=True, text=True, timeout=30, check=True).stdout
    out = {}
    for line in listing.splitlines():
        pid, _, props = line.partition("\t")
        marker = '{"connection_name","'
        if marker in props:
            name = props.split(marker, 1)[1].split('"', 1)[0]
            if name.startswith(prefix):
                out[name] = pid
    return out


def close_connections(prefix: str) -> None:
    for pid in named_connections(prefix).values():
        subprocess.run(["rabbitmqctl", "-q", "close_connection", pid, "test: forced close"],
                       capture_output=True, timeout=30, check=True)


@pytest.mark.rabbitmq
def test_a_forced_close_is_one_townlet_event_with_the_shard_id(harness: Harness) -> None:
    shard_id = harness.shard_id("named")
    shard = harness.shard(shard_id, harness.config("named"), tick_rate=20).start()
    shard.wait_log("shard_started", 20)
    name = f"townlet shard {shard_id} @"
    wait_until(lambda: bool(named_connections(name)), 10, "the shard's named connection")
    assert list(named_connections(name))[0].endswith(f":{shard.pid}")  # host:pid of the shard
    close_connections(name)
    shard.wait_log("broker_reconnected", 20)
    lost = shard.events("broker_connection_lost")
    assert len(lost) == 1 and lost[0]["shard_id"] == shard_id, shard.tail()
    assert "retry_in_s" in lost[0] and "CONNECTION_FORCED" in lost[0]["error"]
    back = shard.events("broker_reconnected")
    assert len(back) == 1 and back[0]["shard_id"] == shard_id
    assert not pika_lines(shard.output()), shard.tail()


@pytest.mark.rabbitmq
def test_the_audit_consumer_reports_a_forced_close_once_too(harness: Harness) -> None:
    audit = harness.audit(harness.root / "audit.jsonl").start()
    audit.wait_log("audit_started", 20)
    name = "townlet audit @"
    wait_until(lambda: any(n.endswith(f":{audit.pid}") for n in named_connections(name)), 10,
               "the audit consumer's named connection")
    for conn, pid in named_connections(name).items():
        if conn.endswith(f":{audit.pid}"):
            subprocess.run(["rabbitmqctl", "-q", "close_connection", pid, "test"],
                           capture_output=True, timeout=30, check=True)
    audit.wait_log("broker_reconnected", 20)
    events = [e for e in ("broker_connection_lost", "broker_reconnected", "audit_broker_error")
              for _ in audit.events(e)]
    assert events == ["broker_connection_lost", "broker_reconnected"], audit.tail()
    assert not pika_lines(audit.output())
