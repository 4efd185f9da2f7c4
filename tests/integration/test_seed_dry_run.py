"""The user's console dry run (seed/console-dry-run.md): the script runs and every checklist
item holds, judged from what the script prints and the audit file it leaves behind."""

from __future__ import annotations

import ast
import json
import os
import runpy
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "console_dry_run.py"
AUDIT = Path("logs/console/commands.jsonl")
TOKENS = ("viewer-token", "admin-token")


def workdir(tmp_path: Path) -> Path:
    shutil.copytree(REPO / "configs", tmp_path / "configs")
    return tmp_path


def run_script(cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, str(SCRIPT)], cwd=cwd, env=env, text=True,
                          capture_output=True, timeout=120, check=False)


def sections(stdout: str) -> dict[str, list[str]]:
    """The script's output split at its '=== ... ===' headers ('' = before the first)."""
    out: dict[str, list[str]] = {"": []}
    current = ""
    for line in stdout.splitlines():
        if line.startswith("=== ") and line.endswith(" ==="):
            current = line.strip("= ")
            out[current] = []
        elif line.strip():
            out[current].append(line)
    return out


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    cwd = workdir(tmp_path_factory.mktemp("dry_run"))
    proc = run_script(cwd)
    assert proc.returncode == 0, proc.stderr
    parts = sections(proc.stdout)
    snapshot, review, approve, defer, status = (ast.literal_eval(x) for x in parts[""])
    return {
        "proc": proc, "cwd": cwd, "snapshot": snapshot, "review": review, "approve": approve,
        "defer": defer, "status": status,
        "latest": ast.literal_eval(parts["latest console_results"][0]),
        "audit_tail": json.loads(parts["console audit tail"][0]),
        "chat": ast.literal_eval(parts["force_chat agent_0->agent_1"][0]),
        "audit_lines": [json.loads(x) for x in (cwd / AUDIT).read_text().splitlines()],
    }


def test_every_dispatched_command_succeeded(dry_run: dict[str, Any]) -> None:
    for key in ("snapshot", "review", "approve", "defer", "status", "chat"):
        assert dry_run[key]["status"] == "ok", (key, dry_run[key].get("error"))


def test_telemetry_snapshot_has_employment_metrics_and_schema_version(
        dry_run: dict[str, Any]) -> None:
    snap = dry_run["snapshot"]["result"]
    assert snap["schema_version"] == "0.2.0" and snap["tick"] == 20
    assert set(snap["employment"]) >= {"pending", "pending_count", "exits_today",
                                       "daily_exit_cap", "queue_limit", "review_window"}


def test_review_shows_the_pending_entry(dry_run: dict[str, Any]) -> None:
    review = dry_run["review"]["result"]
    assert review["pending"] == ["agent_0"] and review["pending_count"] == 1


def test_approve_marks_a_manual_exit(dry_run: dict[str, Any]) -> None:
    approve = dry_run["approve"]["result"]
    assert approve["approved"] is True and approve["agent_id"] == "agent_0"
    assert approve["metrics"]["manual_approvals"] == ["agent_0"]
    assert approve["metrics"]["pending"] == ["agent_0"]


def test_defer_clears_the_queue_and_status_shows_zero_pending(dry_run: dict[str, Any]) -> None:
    defer = dry_run["defer"]["result"]
    assert defer["deferred"] is True and defer["agent_id"] == "agent_0"
    assert defer["metrics"]["pending"] == [] and defer["metrics"]["manual_approvals"] == []
    status = dry_run["status"]["result"]
    assert status["metrics"]["pending_count"] == 0 and status["pending_agents"] == []


def test_no_schema_warning(dry_run: dict[str, Any]) -> None:
    assert dry_run["snapshot"]["result"]["schema_warning"] is None
    assert dry_run["status"]["result"]["schema_warning"] is None


def test_latest_console_results_report_the_outcomes(dry_run: dict[str, Any]) -> None:
    printed = [dry_run[k] for k in ("snapshot", "review", "approve", "defer", "status")]
    assert dry_run["latest"] == printed
    assert {r["tick"] for r in dry_run["latest"]} == {20}


def test_audit_log_has_the_last_command(dry_run: dict[str, Any]) -> None:
    assert dry_run["audit_tail"]["cmd_id"] == dry_run["status"]["cmd_id"]  # at print time
    lines = dry_run["audit_lines"]
    assert lines[-1]["cmd_id"] == "chat-demo" == dry_run["chat"]["cmd_id"]
    # The line is the result plus the writer's hash chain link (checked by townlet verify).
    assert lines[-1].pop("chain")["seq"] == len(lines)
    assert lines[-1] == json.loads(json.dumps(dry_run["chat"]))
    assert [x["cmd_id"] for x in lines] == [r["cmd_id"] for r in dry_run["latest"]] + [
        "chat-demo"]


def test_a_second_run_in_the_same_directory_is_audited_too(tmp_path: Path) -> None:
    """Each run is a new town whose ids start over; its lines must not be taken for repeats."""
    cwd = workdir(tmp_path)
    assert run_script(cwd).returncode == 0
    first = (cwd / AUDIT).read_text().splitlines()
    again = run_script(cwd)
    assert again.returncode == 0, again.stderr
    lines = (cwd / AUDIT).read_text().splitlines()
    assert len(lines) == 2 * len(first) and lines[:len(first)] == first
    tail = json.loads(sections(again.stdout)["console audit tail"][0])
    assert tail == json.loads(lines[-2])  # this run's last dispatched command, not the first's


def test_force_chat_shows_updated_ties_for_both_agents(dry_run: dict[str, Any]) -> None:
    chat = dry_run["chat"]
    assert (chat["tick"], chat["issuer"], chat["command"]["mode"]) == (21, "admin#1", "admin")
    expected = {"trust": 0.0375, "familiarity": 0.075, "rivalry": 0.0}  # quality 0.75
    assert chat["result"]["speaker_tie"] == expected
    assert chat["result"]["listener_tie"] == expected


def test_no_token_in_output_or_audit(dry_run: dict[str, Any]) -> None:
    text = dry_run["proc"].stdout + dry_run["proc"].stderr + (dry_run["cwd"] / AUDIT).read_text()
    for token in TOKENS:
        assert token not in text


def test_in_process_run_leaves_the_world_as_the_checklist_says(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(workdir(tmp_path))
    scope = runpy.run_path(str(SCRIPT), run_name="__main__")
    capsys.readouterr()
    loop, world, router = scope["loop"], scope["world"], scope["router"]
    assert world.employment.metrics()["pending_count"] == 0
    loop.step()  # deferred, so the next lifecycle evaluation does not exit agent_0
    assert "agent_0" in world.agents.slot_of
    status = router.dispatch(scope["ConsoleCommand"](name="employment_status", args=(),
                                                     kwargs={}))
    assert status["result"]["metrics"]["pending_count"] == 0


def test_the_seeds_headless_check_runs_as_written(tmp_path: Path) -> None:
    """seed: `python scripts/run_simulation.py configs/examples/poc_hybrid.yaml --ticks 50`,
    telemetry muted by default, `--telemetry-path out.jsonl` captures it."""
    cwd = workdir(tmp_path)
    script = str(REPO / "scripts" / "run_simulation.py")
    config = "configs/examples/poc_hybrid.yaml"
    done = subprocess.run([sys.executable, script, config, "--ticks", "50"], cwd=cwd, text=True,
                          capture_output=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "Completed 50 ticks in" in done.stdout + done.stderr
    assert "state_hash" not in done.stdout  # muted
    subprocess.run([sys.executable, script, config, "--ticks", "5", "--telemetry-path",
                    "out.jsonl"], cwd=cwd, check=True, capture_output=True, timeout=120)
    ticks = [json.loads(line)["tick"] for line in (cwd / "out.jsonl").read_text().splitlines()]
    assert ticks == [1, 2, 3, 4, 5]


def test_townlet_dry_run_needs_nothing_outside_the_installed_packages(tmp_path: Path) -> None:
    """As from a non-editable install: only the packages (no scripts/, no repo on the path)
    and the project's configs/ in the working directory."""
    site = tmp_path / "site"
    for package in ("shared", "workers", "ops"):
        shutil.copytree(REPO / package, site / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    cwd = workdir(tmp_path / "project")
    env = {**os.environ, "PYTHONPATH": str(site)}
    where = subprocess.run([sys.executable, "-c", "import ops; print(ops.__file__)"], cwd=cwd,
                           env=env, capture_output=True, text=True, timeout=60, check=True)
    assert where.stdout.startswith(str(site))  # the copy, not the checkout
    done = subprocess.run([sys.executable, "-m", "ops.cli", "dry-run", "--json"], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    out = json.loads(done.stdout)
    assert out["passed"] == 8 and out["failed"] == 0
    assert (cwd / AUDIT).is_file()


def test_dry_run_while_an_audit_consumer_holds_the_log_says_so_in_one_line(
        tmp_path: Path) -> None:
    from shared.audit.sink import AuditLog

    cwd = workdir(tmp_path)
    (cwd / AUDIT.parent).mkdir(parents=True)
    with AuditLog(cwd / AUDIT):  # as `townlet audit` of a running fleet does
        done = subprocess.run([sys.executable, "-m", "ops.cli", "dry-run"], cwd=cwd,
                              env={**os.environ, "PYTHONPATH": str(REPO)}, text=True,
                              capture_output=True, timeout=120, check=False)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.splitlines() == [
        "error: logs/console/commands.jsonl is already open for writing (by a running "
        "`townlet audit`?): stop it, or run the checklist against a live shard: townlet "
        "dry-run --shard ID"]
