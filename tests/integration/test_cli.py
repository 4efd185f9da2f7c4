"""The operator's CLI as a user runs it: `townlet run`, and `send`/`tail`/`status` on RabbitMQ."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.procs import ADMIN_TOKEN, VIEWER_TOKEN, Harness
from tests.simtools import EXAMPLE_SNAPSHOT_EVERY, ROOT


def townlet(*args: str, cwd: Path, env: dict[str, str] | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ops.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)


def test_run_prints_completion_and_mirrors_one_telemetry_line_per_tick(tmp_path: Path) -> None:
    config = str(ROOT / "configs" / "examples" / "poc_hybrid.yaml")
    done = townlet("run", config, "--ticks", "50", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Completed 50 ticks in" in done.stdout + done.stderr
    out = tmp_path / "out.jsonl"
    townlet("run", config, "--ticks", "30", "--telemetry-path", str(out), cwd=tmp_path)
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [m["tick"] for m in lines] == list(range(1, 31))
    assert lines[0]["kind"] == "snapshot" and {m["kind"] for m in lines[1:]} == {"diff"}
    assert not (tmp_path / "logs").exists()  # nothing to audit in a headless run


def test_run_reports_a_bad_config_in_one_line_and_exits_1(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("employment:\n  grace_ticks: -3\n")
    done = townlet("run", str(bad), cwd=tmp_path)
    assert done.returncode == 1
    assert "employment.grace_ticks" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.rabbitmq
def test_send_tail_and_status_against_a_running_shard(harness: Harness) -> None:
    shard_id = harness.shard_id("cli")
    shard = harness.shard(shard_id, harness.config("cli"), tick_rate=50).start()
    shard.wait_log("shard_started", 20)
    env = {**harness.env, "TOWNLET_CONSOLE_TOKEN": ADMIN_TOKEN}

    sent = townlet("send", shard_id, "setneed", "agent_2", "hunger", "0.25", "--mode", "admin",
                   "--cmd-id", "cli-setneed-1", "--json", cwd=harness.cwd, env=env)
    assert sent.returncode == 0, sent.stderr
    result = json.loads(sent.stdout)
    assert result["status"] == "ok" and result["result"]["value"] == 0.25
    assert ADMIN_TOKEN not in sent.stdout + sent.stderr
    # Without --json: one line, and a repeat of the cmd_id says it got the stored result.
    again = townlet("send", shard_id, "setneed", "agent_2", "hunger", "0.25", "--mode", "admin",
                    "--cmd-id", "cli-setneed-1", cwd=harness.cwd, env=env)
    assert again.returncode == 0, again.stderr
    line, = again.stdout.splitlines()
    assert line.startswith(f"ok {shard_id} setneed tick={result['tick']} ")
    assert line.endswith("(replay: stored result of an earlier send of cli-setneed-1)")

    viewer_env = {**harness.env, "TOWNLET_CONSOLE_TOKEN": VIEWER_TOKEN}
    refused = townlet("send", shard_id, "kill", "agent_2", "--mode", "admin", "--cmd-id",
                      "cli-kill-1", cwd=harness.cwd, env=viewer_env)
    assert refused.returncode == 1
    assert refused.stdout.startswith(f"error {shard_id} kill tick=") and " forbidden: " in \
        refused.stdout

    tail = townlet("tail", "--shard", shard_id, "--kind", "diff", "--count", "3", "--json",
                   cwd=harness.cwd, env=harness.env)
    assert tail.returncode == 0, tail.stderr
    messages = [json.loads(line) for line in tail.stdout.splitlines()]
    assert len(messages) == 3 and all(m["kind"] == "diff" for m in messages)
    # Consecutive ticks, except that a full snapshot (ticks 1, 1+N, ...) is not a diff.
    first = messages[0]["tick"]
    diff_ticks = [t for t in range(first, first + 4) if (t - 1) % EXAMPLE_SNAPSHOT_EVERY != 0]
    assert [m["tick"] for m in messages] == diff_ticks[:3]

    status = townlet("status", "--shard", shard_id, "--json", "--listen", "2",
                     cwd=harness.cwd, env=harness.env)
    # No audit consumer runs yet: results are not audited, and status says so (exit 1).
    assert status.returncode == 1, status.stderr
    assert json.loads(status.stdout)["problems"] == [
        "no audit consumer on townlet.audit: results are not being audited"]
    harness.audit(harness.root / "audit.jsonl").start().wait_log("audit_started")
    status = townlet("status", "--shard", shard_id, "--json", "--listen", "2",
                     cwd=harness.cwd, env=harness.env)
    assert status.returncode == 0, status.stdout
    report = json.loads(status.stdout)["shards"][shard_id]
    assert report["inbox_depth"] == 0 and report["tick"] >= messages[-1]["tick"]
    assert report["health"]["paused"] is False
    assert report["state"] == "ticking" and report["consumers"] == 1

    readable = townlet("tail", "--shard", shard_id, "--count", "2", cwd=harness.cwd,
                       env=harness.env)
    assert readable.returncode == 0, readable.stderr
    assert all(line.startswith(f"{shard_id} tick=") for line in readable.stdout.splitlines())
