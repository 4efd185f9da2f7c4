"""`townlet verify`, `townlet shard-key` and replay's key handling, through the real entry point."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from shared.audit.sink import AuditLog
from shared.trust.keys import parse_keyring, parse_shard_token
from shared.trust.signing import ResultSigner

REPO = Path(__file__).resolve().parents[2]
KEY = "3" * 64


def townlet(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items()
            if k not in ("TOWNLET_RESULT_KEY", "TOWNLET_SHARD_KEY")}
    return subprocess.run([sys.executable, "-m", "ops.cli", *args], cwd=REPO,
                          env={**base, **env}, capture_output=True, text=True, timeout=120,
                          check=False)


def signed_log(path: Path, n: int = 5) -> None:
    ring = parse_keyring(KEY, "K")
    signer = ResultSigner(ring.current.shard_key("town-a"))
    with AuditLog(path, fsync=False, chain_key=ring.current) as log:
        for i in range(n):
            log.append(signer.sign({"v": 1, "shard_id": "town-a", "cmd_id": f"c{i}",
                                    "name": "help", "status": "ok", "tick": i + 1,
                                    "issuer": "ops", "latency_ms": 0.0, "applied": True,
                                    "result": {}, "command": {"name": "help", "args": [],
                                                              "kwargs": {}, "mode": "viewer"}}))


def test_verify_says_what_it_checked_and_names_the_first_bad_line(tmp_path: Path) -> None:
    log = tmp_path / "commands.jsonl"
    signed_log(log)
    keyed = townlet("verify", str(log), TOWNLET_RESULT_KEY=KEY)
    assert keyed.returncode == 0 and "link and result signatures valid" in keyed.stdout
    keyless = townlet("verify", str(log))
    assert keyless.returncode == 0 and "signatures are NOT checked" in keyless.stderr
    other = townlet("verify", str(log), "--key-env", "MY_KEYS", MY_KEYS="9" * 64 + "," + KEY)
    assert other.returncode == 0, other.stdout  # the old key later in a keyring still verifies
    rows = log.read_bytes().split(b"\n")
    log.write_bytes(b"\n".join(rows[:2] + rows[3:]))
    broken = townlet("verify", str(log), TOWNLET_RESULT_KEY=KEY)
    assert broken.returncode == 1 and "line 3: does not follow" in broken.stdout
    short = townlet("verify", str(log), TOWNLET_RESULT_KEY="tiny")
    assert short.returncode == 2 and "shorter than 32" in short.stderr  # usage: bad key
    assert "tiny" not in short.stderr.replace("shorter", "")
    as_json = townlet("verify", str(log), "--json", TOWNLET_RESULT_KEY=KEY)
    report = json.loads(as_json.stdout)
    assert as_json.returncode == 1 and not report["ok"] and report["problem"]["line"] == 3


def test_shard_key_prints_a_key_for_that_shard_only(tmp_path: Path) -> None:
    done = townlet("shard-key", "--shard", "town-a", TOWNLET_RESULT_KEY=KEY)
    assert done.returncode == 0, done.stderr
    token = done.stdout.strip()
    assert parse_shard_token(token, "town-a", "T").kid == parse_keyring(KEY, "K").current.kid
    assert KEY not in done.stdout
    missing = townlet("shard-key", "--shard", "town-a")
    assert missing.returncode == 2 and "TOWNLET_RESULT_KEY is not set" in missing.stderr


def test_replay_says_loudly_when_it_cannot_verify(tmp_path: Path) -> None:
    log = tmp_path / "commands.jsonl"
    signed_log(log, n=2)
    args = ("replay", "--config", "configs/examples/poc_hybrid.yaml", "--shard", "town-a",
            "--ticks", "3", "--audit", str(log))
    keyless = townlet(*args)
    assert keyless.returncode == 0 and "NOT verified" in keyless.stderr
    keyed = townlet(*args, TOWNLET_RESULT_KEY=KEY)
    assert keyed.returncode == 0 and "warning" not in keyed.stderr, keyed.stderr
    wrong = townlet(*args, "--write-state", str(tmp_path / "s"), TOWNLET_RESULT_KEY="8" * 64)
    assert wrong.returncode == 1 and "2 audit line(s)" in wrong.stderr
    assert not (tmp_path / "s").exists()
