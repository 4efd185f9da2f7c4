"""On-call's last resort (ops/runbooks/shard-diverged.md): a shard whose state dir is lost is
rebuilt from its audit log with `townlet replay --write-state`, and resumes exactly where it was:
same state hash, same replay store (a retry is still answered from it, never re-applied)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from shared.audit.sink import AuditLog
from shared.broker import MemoryHub, open_broker
from shared.config import load_config
from tests.shardtools import TOPO, Recorder, WorkerThread, send
from tests.simtools import EXAMPLE, ROOT

TOKEN = "rebuild-admin-token"
TICKS = 30


def townlet(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ops.cli", *args], cwd=cwd, text=True,
                          capture_output=True, timeout=120, check=False)


def run_worker(state: Path, until: int, commands: list[dict[str, Any]] | None = None
               ) -> tuple[list[dict[str, Any]], dict[int, dict[str, Any]]]:
    """Queue ``commands``, run a worker on ``state`` up to tick ``until``: (results, ticks)."""
    hub = MemoryHub()
    client = open_broker("memory://", hub=hub)
    results = Recorder(open_broker("memory://", hub=hub), TOPO.results_exchange)
    telemetry = Recorder(open_broker("memory://", hub=hub), TOPO.telemetry_exchange)
    for command in commands or []:
        send(client, "s1", command.pop("name"), *command.pop("args"), **command)
    worker = WorkerThread(hub, load_config(EXAMPLE), "s1", state, tick_rate_hz=0,
                          until_tick=until)
    telemetry.pump(lambda b: any(t.get("tick") == until for t in b))
    worker.join()
    if commands:
        results.pump(lambda b: len(b) >= len(commands))
    ticks = {t["tick"]: t for t in telemetry.bodies() if t["kind"] != "health"}
    return results.bodies(), ticks


def admin(name: str, *args: Any, cmd_id: str, **kwargs: Any) -> dict[str, Any]:
    return {"name": name, "args": list(args), "mode": "admin", "token": TOKEN, "cmd_id": cmd_id,
            "kwargs": kwargs}


def test_a_lost_state_dir_is_rebuilt_from_the_audit_log(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOWNLET_ADMIN_TOKEN", TOKEN)  # the example config's admin token
    commands = [admin("setneed", "agent_1", "hunger", 0.2, cmd_id="x1"),
                admin("price", "meal_cost", 0.7, cmd_id="x2"),
                admin("force_chat", cmd_id="x3",
                      payload={"speaker": "agent_0", "listener": "agent_2", "quality": 0.9})]
    results, ticks = run_worker(tmp_path / "live", TICKS, commands)
    assert [r["status"] for r in results] == ["ok", "ok", "ok"]
    audit, captured = tmp_path / "commands.jsonl", tmp_path / "telemetry.jsonl"
    with AuditLog(audit) as log:  # what `townlet audit` would have written
        for result in results:
            log.append(result)
    captured.write_text("".join(json.dumps(t) + "\n" for t in ticks.values()))

    rebuilt = tmp_path / "rebuilt"
    done = townlet("replay", "--config", str(EXAMPLE), "--shard", "s1", "--ticks", str(TICKS),
                   "--audit", str(audit), "--telemetry", str(captured),
                   "--write-state", str(rebuilt), cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"checked {TICKS} ticks against telemetry: all match" in done.stdout
    assert f"resumes s1 at tick {TICKS}" in done.stdout

    # The rebuilt shard and the original one, each run 5 more ticks: the same town.
    _, original = run_worker(tmp_path / "live", TICKS + 5)
    _, resumed = run_worker(rebuilt, TICKS + 5)
    after = range(TICKS + 1, TICKS + 6)
    assert [resumed[t]["state_hash"] for t in after] == [original[t]["state_hash"] for t in after]
    assert min(resumed) == TICKS + 1  # it resumed, it did not start the town over

    # Its replay store came back too: a retry of x1 is answered, not applied a second time.
    hub = MemoryHub()
    worker = WorkerThread(hub, load_config(EXAMPLE), "s1", rebuilt, tick_rate_hz=50)
    try:
        retry = send(open_broker("memory://", hub=hub), "s1", "setneed", "agent_1", "hunger",
                     0.2, mode="admin", token=TOKEN, cmd_id="x1", wait=True)
    finally:
        worker.join()
    assert retry == results[0]

    again = townlet("replay", "--config", str(EXAMPLE), "--shard", "s1", "--ticks", "3",
                    "--audit", str(audit), "--write-state", str(rebuilt), cwd=ROOT)
    assert again.returncode == 1 and "already holds a checkpoint" in again.stderr
