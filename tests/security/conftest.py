"""A least-privilege fleet on the real broker, for the security suite (docs/THREAT_MODEL.md).

``secure`` (module scope): a private vhost and broker users made from ``ops.broker_users``
exactly as production gets them (rendered with password hashes and loaded with ``rabbitmqctl
import_definitions``, so the definitions format and the hashing are tested too), two shards
each logged in as its own user and holding only its derived key, and the audit consumer
holding the fleet key. Everything is removed afterwards: the users, the vhost, the processes.
Under ``CI=true`` a missing ``rabbitmqctl`` fails instead of skipping.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pika
import pytest
import yaml

from ops.broker_users import definitions, roles
from shared.broker import default_amqp_url
from shared.trust.keys import parse_keyring
from tests.procs import (
    ADMIN_TOKEN,
    TOPO,
    Harness,
    Proc,
    Recorder,
    connect,
    require_rabbitmq,
)


def rabbitmqctl(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["rabbitmqctl", "-q", *args], input=stdin, capture_output=True,
                          text=True, timeout=60, check=False)


def require_rabbitmqctl() -> None:
    if shutil.which("rabbitmqctl") is None or rabbitmqctl("status").returncode != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("the security suite needs rabbitmqctl on the local broker")
        pytest.skip("rabbitmqctl unavailable: cannot create broker users")


@dataclass
class SecureFleet:
    harness: Harness
    vhost: str
    prefix: str
    shards: tuple[str, str]
    passwords: dict[str, str]
    result_key: str
    config: Path
    audit_log: Path
    procs: dict[str, Proc] = field(default_factory=dict)

    def url(self, role: str, *, password: str | None = None) -> str:
        secret = self.passwords[role] if password is None else password
        return broker_url(self.prefix + role, secret, self.vhost)

    def user(self, role: str) -> str:
        return self.prefix + role

    def env(self, role: str, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in self.harness.env.items()
               if k not in ("TOWNLET_RESULT_KEY", "TOWNLET_SHARD_KEY")}
        env["TOWNLET_AMQP_URL"] = self.url(role)
        env.update(extra)
        return env

    def shard_key(self, shard_id: str) -> str:
        return parse_keyring(self.result_key, "K").current.shard_key(shard_id).token()

    def cli(self, role: str, *args: str, timeout: float = 60,
            **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "ops.cli", *args],
                              cwd=self.harness.cwd, env=self.env(role, **extra),
                              capture_output=True, text=True, timeout=timeout, check=False)

    def channel(self, role: str) -> Any:
        """A raw pika channel logged in as ``role`` (a hostile client uses nothing else)."""
        conn = connect(self.url(role))
        self.harness._closers.append(lambda: _close(conn))
        return conn.channel()

    def recorder(self, exchange: str | None, name: str) -> Recorder:
        return self.harness.recorder(exchange, name)


def broker_url(user: str, password: str, vhost: str) -> str:
    base = urlsplit(default_amqp_url())
    return (f"amqp://{quote(user, safe='')}:{quote(password, safe='')}@{base.hostname}:"
            f"{base.port or 5672}/{quote(vhost, safe='')}")


def _close(conn: pika.BlockingConnection) -> None:
    with contextlib.suppress(Exception):
        conn.close()


def _config(harness: Harness) -> Path:
    path = harness.config("secure")
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    raw["console_auth"]["require_auth_for_viewer"] = False  # anonymous viewers, as attacked
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return path


def _create(vhost: str, prefix: str, shards: tuple[str, str],
            passwords: dict[str, str]) -> None:
    doc = definitions(shards, vhost=vhost, prefix=prefix, password=passwords.get)
    done = rabbitmqctl("import_definitions", stdin=json.dumps(doc))  # read from stdin
    assert done.returncode == 0, f"import_definitions failed: {done.stderr}"


def _remove(vhost: str, prefix: str, shards: tuple[str, str]) -> None:
    for role in roles(shards):
        rabbitmqctl("delete_user", prefix + role)
    rabbitmqctl("delete_vhost", vhost)


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureFleet]:
    require_rabbitmq(default_amqp_url())
    require_rabbitmqctl()
    tag = uuid.uuid4().hex[:8]
    vhost, prefix = f"townlet-sec-{tag}", f"sec{tag}-"
    shards = (f"sa-{tag}", f"sb-{tag}")
    passwords = {role: uuid.uuid4().hex for role in roles(shards)}
    _create(vhost, prefix, shards, passwords)
    root = tmp_path_factory.mktemp("secure")
    harness = Harness(broker_url(prefix + "admin", passwords["admin"], vhost), root)
    fleet = SecureFleet(harness, vhost, prefix, shards, passwords,
                        result_key=uuid.uuid4().hex + uuid.uuid4().hex,
                        config=_config(harness), audit_log=root / "logs" / "commands.jsonl")
    try:
        _start(fleet)
        yield fleet
    finally:
        harness.close()
        _remove(vhost, prefix, shards)


def _start(fleet: SecureFleet) -> None:
    harness = fleet.harness
    for shard_id in fleet.shards:
        env = fleet.env(f"shard-{shard_id}", TOWNLET_SHARD_KEY=fleet.shard_key(shard_id))
        proc = Proc(f"shard-{shard_id}", [
            sys.executable, "-m", "ops.cli", "shard", "--shard", shard_id, "--config",
            str(fleet.config), "--state-dir", str(harness.root / "state" / shard_id),
            "--tick-rate", "50", "--checkpoint-every", "50"], harness.cwd, env,
            harness.root / f"shard-{shard_id}.log")
        harness.procs.append(proc)
        fleet.procs[shard_id] = proc.start()
    audit = Proc("audit", [sys.executable, "-m", "ops.cli", "audit", "--audit-log",
                           str(fleet.audit_log)], harness.cwd,
                 fleet.env("audit", TOWNLET_RESULT_KEY=fleet.result_key),
                 harness.root / "audit.log")
    harness.procs.append(audit)
    fleet.procs["audit"] = audit.start()
    for proc in fleet.procs.values():
        proc.wait_log("shard_started" if proc.name.startswith("shard") else "audit_started", 30)


ADMIN_AUTH = {"token": ADMIN_TOKEN}
__all__ = ["ADMIN_AUTH", "TOPO", "SecureFleet", "rabbitmqctl"]
