"""A user mistake at the CLI gets one clear `error:` line and a non-zero exit, never a traceback;
and `townlet up --ticks/--commands` work on RabbitMQ too (they were silently ignored there)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.test_cli import townlet
from tests.procs import Harness
from tests.simtools import EXAMPLE, ROOT

MEMORY_ERROR = "memory:// is the embedded broker and exists only inside one process"


def assert_clean_error(done: subprocess.CompletedProcess[str], code: int, *texts: str) -> None:
    assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr + done.stdout, done.stderr
    error_lines = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert error_lines, done.stderr
    for text in texts:
        assert text in error_lines[0], error_lines[0]


def workdir(tmp_path: Path) -> Path:
    """A project-like directory: the fleet file and shard configs at their relative paths."""
    (tmp_path / "configs").symlink_to(ROOT / "configs", target_is_directory=True)
    return tmp_path


# -- 2. up --commands: the whole file is checked before anything starts ----------------------
@pytest.mark.parametrize(("lines", "expected"), [
    (['{"shard": "town-a", "name": "employment_status"}', '{"name": "employment_status"}'],
     ["line 2", 'missing "shard"']),
    (['{"shard": "town-z", "name": "employment_status"}'],
     ["line 1", "shard 'town-z' is not in the fleet", "town-a, town-b"]),
    (['', '{"shard": "town-a", "name": '], ["line 2", "not valid JSON"]),
    (['{"shard": "town-a"}'], ["line 1", 'missing "name"']),
    (['["town-a", "employment_status"]'], ["line 1", "expected a JSON object"]),
    (['{"shard": "town-a", "name": "x", "kwags": {}}'], ["line 1", "unknown key(s) ['kwags']"]),
    (['{"shard": "town-a", "name": "x", "args": "agent_0"}'], ["line 1", '"args" must be a list']),
])
@pytest.mark.parametrize("broker", ["memory://", "amqp://guest:guest@127.0.0.1:1/%2F"])
def test_up_rejects_a_bad_commands_file_before_starting_anything(
        tmp_path: Path, lines: list[str], expected: list[str], broker: str) -> None:
    cwd = workdir(tmp_path)
    (cwd / "cmds.jsonl").write_text("\n".join(lines) + "\n")
    started = time.monotonic()
    # Port 1 has no broker: the file must be rejected before any connection is tried.
    done = townlet("up", "--broker", broker, "--ticks", "5", "--commands", "cmds.jsonl",
                   cwd=cwd, timeout=30)
    assert_clean_error(done, 1, "cmds.jsonl", *expected)
    assert time.monotonic() - started < 15  # not the 30 s wait for a result that never comes
    assert not (cwd / "state").exists() and not (cwd / "logs").exists()


def test_up_reports_a_missing_commands_file(tmp_path: Path) -> None:
    done = townlet("up", "--ticks", "5", "--commands", "nope.jsonl", cwd=workdir(tmp_path))
    assert_clean_error(done, 1, "cannot read commands file nope.jsonl")


def test_up_embedded_sends_the_commands_and_stops_at_ticks(tmp_path: Path) -> None:
    cwd = workdir(tmp_path)
    (cwd / "cmds.jsonl").write_text(
        '{"shard": "town-a", "name": "employment_status", "cmd_id": "demo-1"}\n'
        '{"shard": "town-b", "name": "employment_status"}\n')  # cmd_id generated, as `send`
    done = townlet("up", "--ticks", "10", "--commands", "cmds.jsonl", "--json", cwd=cwd,
                   timeout=60)
    assert done.returncode == 0, done.stderr
    results = [json.loads(line) for line in done.stdout.splitlines()]
    assert [(r["shard_id"], r["status"]) for r in results] == [("town-a", "ok"), ("town-b", "ok")]
    assert results[0]["cmd_id"] == "demo-1"
    assert "Traceback" not in done.stderr


def test_up_exits_1_when_a_command_got_an_error_result(tmp_path: Path) -> None:
    cwd = workdir(tmp_path)
    (cwd / "cmds.jsonl").write_text(
        '{"shard": "town-a", "name": "employment_status", "cmd_id": "fine"}\n'
        '{"shard": "town-a", "name": "kill", "args": ["agent_1"], "mode": "admin", '
        '"cmd_id": "no-token"}\n')
    done = townlet("up", "--ticks", "10", "--commands", "cmds.jsonl", cwd=cwd, timeout=60)
    assert done.returncode == 1, done.stderr
    assert done.stdout.splitlines() == [
        "ok town-a employment_status tick=1 " + done.stdout.splitlines()[0].rsplit(" ", 2)[1]
        + " ms", "error town-a kill tick=1 unauthorized: admin mode requires a console token"]


# -- 1. up on RabbitMQ: --ticks and --commands in the process fleet -------------------------
def run_bounded(argv: list[str], cwd: Path, env: dict[str, str],
                timeout: float) -> subprocess.CompletedProcess[str]:
    """Run `townlet up` in its own process group: on a timeout its children die with it."""
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"townlet up did not stop within {timeout}s:\n{err[-3000:]}")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def log_events(stderr: str, event: str) -> list[dict[str, Any]]:
    out = []
    for line in stderr.splitlines():
        if line.startswith("{") and f'"{event}"' in line:
            record = json.loads(line)
            if record.get("event") == event:
                out.append(record)
    return out


@pytest.mark.rabbitmq
def test_up_on_rabbitmq_sends_commands_and_stops_every_shard_at_ticks(harness: Harness) -> None:
    harness.purge_audit_queue()
    shard_ids = [harness.shard_id("up-a"), harness.shard_id("up-b")]
    audit_log = harness.root / "logs" / "commands.jsonl"
    fleet = harness.cwd / "fleet.yaml"
    fleet.write_text(yaml.safe_dump({
        "state_root": str(harness.root / "state"), "audit_log": str(audit_log),
        "shards": [{"id": s, "config": str(EXAMPLE), "tick_rate_hz": 50} for s in shard_ids]}))
    commands = harness.cwd / "cmds.jsonl"
    commands.write_text(
        json.dumps({"shard": shard_ids[0], "name": "employment_status", "cmd_id": "up-1"}) + "\n"
        + json.dumps({"shard": shard_ids[1], "name": "telemetry_snapshot"}) + "\n")

    started = time.monotonic()
    # --seconds is only a safety net: the run must end by itself once both shards ran 25 ticks.
    done = run_bounded([sys.executable, "-m", "ops.cli", "up", "--fleet", str(fleet), "--ticks",
                        "25", "--commands", str(commands), "--seconds", "40", "--json"],
                       harness.cwd, harness.env, timeout=45)
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert elapsed < 30, f"took {elapsed:.1f}s: stopped by --seconds, not by --ticks"

    results = [json.loads(line) for line in done.stdout.splitlines()]
    assert [(r["shard_id"], r["status"]) for r in results] == [(s, "ok") for s in shard_ids]
    assert results[0]["cmd_id"] == "up-1"
    stopped = {r["shard_id"]: r["tick"] for r in log_events(done.stderr, "shard_stopped")}
    assert stopped == {s: 25 for s in shard_ids}
    # The audit consumer was let to write the results before it was stopped.
    audited = {(r["shard_id"], r["cmd_id"]) for r in map(json.loads, audit_log.read_text()
                                                           .splitlines())}
    assert {(r["shard_id"], r["cmd_id"]) for r in results} <= audited


# -- 3. dry-run outside the project root --------------------------------------------------
def test_dry_run_outside_the_project_root_says_where_to_run_it(tmp_path: Path) -> None:
    done = townlet("dry-run", cwd=tmp_path)
    assert_clean_error(done, 1, "configs/examples/poc_hybrid.yaml not found",
                       "run `townlet dry-run` from the project root")


# -- 4. memory:// outside `townlet up` --------------------------------------------------------
@pytest.mark.parametrize("args", [
    ["audit", "--log", "audit.jsonl"],
    ["shard", "--shard-id", "a", "--config", str(EXAMPLE)],
    ["send", "a", "employment_status"],
    ["status", "--shard", "a"],
    ["tail", "--count", "1"],
])
def test_memory_broker_outside_up_is_a_usage_error(tmp_path: Path, args: list[str]) -> None:
    done = townlet(*args, "--broker", "memory://", cwd=tmp_path, timeout=30)
    assert_clean_error(done, 2, MEMORY_ERROR, "`townlet up`", "amqp://")
    assert not (tmp_path / "state").exists() and not (tmp_path / "audit.jsonl").exists()


def test_memory_broker_from_the_environment_is_refused_too(tmp_path: Path) -> None:
    env = {**os.environ, "TOWNLET_AMQP_URL": "memory://"}
    done = townlet("status", "--shard", "a", cwd=tmp_path, env=env, timeout=30)
    assert_clean_error(done, 2, MEMORY_ERROR)


def test_broker_help_says_where_memory_applies(tmp_path: Path) -> None:
    env = {**os.environ, "COLUMNS": "400"}  # one help line per option, nothing wrapped
    done = townlet("status", "--help", cwd=tmp_path, env=env)
    assert done.returncode == 0
    assert "memory://, the embedded broker, exists only inside `townlet up`" in done.stdout


# -- 5. run / replay files -------------------------------------------------------------------
@pytest.mark.parametrize("target", ["/proc/x/out.jsonl", "a-file/out.jsonl"])
def test_run_with_an_unwritable_telemetry_path_fails_cleanly(tmp_path: Path, target: str) -> None:
    (tmp_path / "a-file").write_text("not a directory\n")
    done = townlet("run", str(EXAMPLE), "--ticks", "5", "--telemetry-path", target,
                   cwd=tmp_path)
    assert_clean_error(done, 1, f"cannot write telemetry to {target}")


def test_replay_with_a_missing_telemetry_file_fails_cleanly(tmp_path: Path) -> None:
    (tmp_path / "audit.jsonl").write_text("")
    done = townlet("replay", "--config", str(EXAMPLE), "--shard", "town-a", "--ticks", "5",
                   "--audit", "audit.jsonl", "--telemetry", "nope.jsonl", cwd=tmp_path)
    assert_clean_error(done, 1, "telemetry file not found: nope.jsonl")
    assert "replayed" not in done.stdout  # checked before the replay, not after it


def test_replay_with_a_missing_audit_log_is_an_error_not_no_commands(tmp_path: Path) -> None:
    done = townlet("replay", "--config", str(EXAMPLE), "--shard", "town-a", "--ticks", "5",
                   "--audit", "nope.jsonl", cwd=tmp_path)
    assert_clean_error(done, 1, "audit log not found: nope.jsonl")
    # An empty log is the way to say "this shard never received a command".
    (tmp_path / "empty.jsonl").write_text("")
    done = townlet("replay", "--config", str(EXAMPLE), "--shard", "town-a", "--ticks", "5",
                   "--audit", "empty.jsonl", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "replayed 5 ticks of town-a" in done.stdout


def test_replay_names_the_bad_line_of_a_telemetry_file(tmp_path: Path) -> None:
    (tmp_path / "audit.jsonl").write_text("")
    (tmp_path / "tel.jsonl").write_text('{"tick": 1, "state_hash": "ab"}\n{oops\n')
    done = townlet("replay", "--config", str(EXAMPLE), "--shard", "town-a", "--ticks", "5",
                   "--audit", "audit.jsonl", "--telemetry", "tel.jsonl", cwd=tmp_path)
    assert_clean_error(done, 1, "tel.jsonl line 2: not valid JSON")
