"""Hole 1 (issue 9): forged results must never become history, nor pre-empt a real one.

The attacker here holds broker credentials that may publish to the results exchange (a shard
user: the least a forger needs under least privilege) but not the fleet key; each attack is a
raw pika publish, as a hostile client would make it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pika
import pytest

from shared.trust.keys import parse_keyring
from shared.trust.signing import ResultSigner
from tests.procs import ADMIN_TOKEN, pack, read_jsonl, wait_until
from tests.security.conftest import TOPO, SecureFleet

pytestmark = pytest.mark.rabbitmq


def forged(shard_id: str, cmd_id: str, **extra: Any) -> dict[str, Any]:
    """A result as a shard would publish it: `kill agent_6`, applied, issuer "ops"."""
    return {"v": 1, "shard_id": shard_id, "cmd_id": cmd_id, "name": "kill", "status": "ok",
            "tick": 3, "issuer": "ops", "latency_ms": 0.1, "applied": True,
            "result": {"agent_id": "agent_6"}, "command": {
                "name": "kill", "args": ["agent_6"], "kwargs": {}, "mode": "admin",
                "cmd_id": cmd_id, "issuer": "ops"}, **extra}


def publish_result(fleet: SecureFleet, role: str, body: dict[str, Any]) -> None:
    channel = fleet.channel(role)
    channel.confirm_delivery()
    channel.basic_publish(TOPO.results_exchange, "", pack(body), pika.BasicProperties(
        delivery_mode=2, message_id=body["cmd_id"], user_id=fleet.user(role),
        headers={"shard_id": body["shard_id"], "cmd_id": body["cmd_id"], "status": "ok"}))


def audited(fleet: SecureFleet, shard_id: str) -> list[dict[str, Any]]:
    return [r for r in read_jsonl(fleet.audit_log) if r.get("shard_id") == shard_id]


def quarantined(fleet: SecureFleet) -> list[dict[str, Any]]:
    return read_jsonl(fleet.audit_log.with_name("commands.quarantine.jsonl"))


def test_forged_results_never_become_audit_lines_nor_take_the_real_ones_key(
        secure: SecureFleet) -> None:
    a, b = secure.shards
    cmd_id = f"kill-{uuid.uuid4().hex[:8]}"
    wrong_key = ResultSigner(parse_keyring("w" * 40, "K").current.shard_key(a))
    b_key = ResultSigner(parse_keyring(secure.result_key, "K").current.shard_key(b))
    attacks = {
        "unsigned": forged(a, cmd_id),
        "unknown_key": wrong_key.sign(forged(a, cmd_id)),
        # shard b's own key, signing a result that names shard a
        "bad_signature": {**forged(a, cmd_id), "sig": b_key.signature(forged(b, cmd_id))},
    }
    for body in attacks.values():
        publish_result(secure, f"shard-{b}", body)
    wait_until(lambda: {q["verdict"] for q in quarantined(secure)
                        if (q.get("record") or {}).get("cmd_id") == cmd_id} == set(attacks),
               20, "the three forgeries in quarantine")
    assert not [r for r in audited(secure, a) if r["cmd_id"] == cmd_id]
    # The real command with the same cmd_id comes later: it is applied and audited.
    real = {"v": 1, "cmd_id": cmd_id, "name": "agent_status", "args": ["agent_6"],
            "auth": {"token": ADMIN_TOKEN}}
    secure.channel("operator").basic_publish(TOPO.commands_exchange, a, pack(real))
    wait_until(lambda: [r for r in audited(secure, a) if r["cmd_id"] == cmd_id], 20,
               "the real result's audit line")
    line = next(r for r in audited(secure, a) if r["cmd_id"] == cmd_id)
    assert line["name"] == "agent_status" and line["issuer"] == "ops-admin"
    sources = {q["source"] for q in quarantined(secure)}
    assert secure.user(f"shard-{b}") in sources  # who, as the broker vouched for it
    logged = secure.procs["audit"].events("audit_result_refused")
    assert len([e for e in logged if e["source"] == secure.user(f"shard-{b}")]) == 1


def test_replay_uses_verified_lines_only_and_verify_names_a_planted_line(
        secure: SecureFleet, tmp_path: Path) -> None:
    """A line planted in the file itself (not through the consumer) is named by `townlet
    verify`, skipped by `townlet replay`, and never written into a rebuilt state dir."""
    a = secure.shards[0]
    log = tmp_path / "commands.jsonl"
    log.write_bytes(secure.audit_log.read_bytes())
    with log.open("ab") as handle:
        handle.write((json.dumps(forged(a, "planted")) + "\n").encode())
    planted = len(log.read_bytes().split(b"\n")) - 1
    key_env = {"TOWNLET_RESULT_KEY": secure.result_key}
    done = run("verify", str(log), env=key_env)
    assert done.returncode == 1 and f"line {planted}: has no chain link" in done.stdout
    assert run("verify", str(secure.audit_log), env=key_env).returncode == 0
    state = tmp_path / "rebuilt"
    done = run("replay", "--config", str(secure.config), "--shard", a, "--ticks", "5",
               "--audit", str(log), "--write-state", str(state), env=key_env)
    assert done.returncode == 1 and "1 audit line(s)" in done.stderr, done.stderr
    assert not (state / "snapshot.tlsnap").exists() and not any(state.glob("*"))


def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run([sys.executable, "-m", "ops.cli", *args], capture_output=True,
                          text=True, timeout=120, check=False, env={**os.environ, **env})
