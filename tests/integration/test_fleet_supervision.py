"""`townlet up` supervises its children: one fleet per directory, exponential restart backoff
with a limit after which the fleet stops loudly, and children that die with their parent."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from shared.audit.sink import AuditLog
from tests.integration.test_cli_errors import log_events, run_bounded, workdir
from tests.procs import Harness, wait_until
from tests.simtools import EXAMPLE


def test_a_second_fleet_in_the_same_directory_is_refused_in_one_line(tmp_path: Path) -> None:
    cwd = workdir(tmp_path)
    first = subprocess.Popen([sys.executable, "-m", "ops.cli", "up", "--seconds", "30"],
                             cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             text=True, start_new_session=True)
    try:
        wait_until(lambda: (cwd / "state" / "fleet.lock").exists(), 20, "the first fleet")
        second = subprocess.run([sys.executable, "-m", "ops.cli", "up", "--seconds", "5"],
                                cwd=cwd, capture_output=True, text=True, timeout=30)
        assert second.returncode == 1
        assert second.stderr.splitlines() == [
            f"error: another `townlet up` (pid {first.pid}) is running in this directory "
            "(it holds state/fleet.lock); stop it first"]
    finally:
        os.killpg(first.pid, signal.SIGTERM)
        first.wait(30)


def fleet_file(harness: Harness, shard_ids: list[str]) -> Path:
    path = harness.cwd / "fleet.yaml"
    path.write_text(yaml.safe_dump({
        "state_root": str(harness.root / "state"),
        "audit_log": str(harness.root / "logs" / "commands.jsonl"),
        "shards": [{"id": s, "config": str(EXAMPLE), "tick_rate_hz": 20} for s in shard_ids]}))
    return path


@pytest.mark.rabbitmq
def test_a_child_that_keeps_dying_stops_the_fleet_after_backed_off_restarts(
        harness: Harness) -> None:
    fleet = fleet_file(harness, [harness.shard_id("sup")])
    audit_log = harness.root / "logs" / "commands.jsonl"
    audit_log.parent.mkdir(parents=True)
    with AuditLog(audit_log):  # the audit child cannot take the log: it exits 1 every time
        started = time.monotonic()
        done = run_bounded([sys.executable, "-m", "ops.cli", "up", "--fleet", str(fleet),
                            "--seconds", "60", "--max-restarts", "2"], harness.cwd, harness.env,
                           timeout=60)
    elapsed = time.monotonic() - started
    assert done.returncode == 1, done.stderr[-2000:]
    assert ("error: audit exited (code 1) 3 times in a row (limit --max-restarts 2): fleet "
            "stopped") in done.stderr
    delays = [e["restart_in_s"] for e in log_events(done.stderr, "child_exited_restarting")]
    assert delays == [1.0, 2.0]  # exponential
    assert elapsed < 30, f"{elapsed:.1f}s"
    assert "Traceback" not in done.stderr
    assert log_events(done.stderr, "shard_stopped")  # the healthy shard was stopped cleanly


def children_of(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry.name))
    return out


@pytest.mark.rabbitmq
def test_children_die_with_a_killed_parent(harness: Harness) -> None:
    shard_id = harness.shard_id("orphan")
    fleet = fleet_file(harness, [shard_id])
    log = harness.root / "up.log"
    with log.open("w") as out:
        parent = subprocess.Popen([sys.executable, "-m", "ops.cli", "up", "--fleet", str(fleet),
                                   "--seconds", "120"], cwd=harness.cwd, env=harness.env,
                                  stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_until(lambda: '"shard_started"' in log.read_text(), 30,
                   lambda: f"the shard to start:\n{log.read_text()[-2000:]}")
        children = children_of(parent.pid)
        assert len(children) == 2  # the shard and the audit consumer
        parent.kill()  # SIGKILL: no chance to stop them itself
        parent.wait(10)
        wait_until(lambda: not any(Path(f"/proc/{c}").exists() and
                                   "zombie" not in _state(c) for c in children), 30,
                   lambda: f"children {children} to exit:\n{log.read_text()[-2000:]}")
    finally:
        if parent.poll() is None:
            os.killpg(parent.pid, signal.SIGKILL)
        for child in children_of(parent.pid):
            os.kill(child, signal.SIGKILL)
    stopped = [json.loads(line) for line in log.read_text().splitlines()
               if '"shard_stopped"' in line]
    assert stopped and stopped[0]["shard_id"] == shard_id  # SIGTERM: a clean stop


def _state(pid: int) -> str:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return "zombie"
    return "zombie" if "State:\tZ" in status else "running"
