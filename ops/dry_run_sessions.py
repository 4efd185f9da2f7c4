"""Where the dry run's commands go: a fresh in-process shard, or a live shard over the broker.

Both sessions offer the same few operations, so the checklist (``ops/dry_run.py``) is written
once. The in-process one is the seed script's own setup (docs/user/console-dry-run.md: the
example config with console auth enabled, ``enforce_job_loop``, 20 ticks primed, the trusted
router and a manual enqueue), shipped inside the package so a non-editable install has it.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

from ops.client import OperatorClient, build_command
from shared.broker.base import Broker
from shared.config import ConsoleAuthConfig, ConsoleAuthTokenConfig, load_config
from shared.console.handlers import ConsoleCommand, create_console_router
from shared.loop import SimulationLoop, policy_provider_name, telemetry_provider_name

SEED_CONFIG = Path("configs/examples/poc_hybrid.yaml")  # the seed's cwd-relative path
SEED_ADMIN_TOKEN = "admin-token"  # docs/user/console-dry-run.md's session tokens


class InProcessSession:
    """The seed's scenario: a new town in this process, commands through the trusted router."""

    live = False

    def __init__(self) -> None:
        config = load_config(SEED_CONFIG)
        config = config.model_copy(update={"console_auth": ConsoleAuthConfig(
            enabled=True, require_auth_for_viewer=False, tokens=[
                ConsoleAuthTokenConfig(token="viewer-token", role="viewer"),
                ConsoleAuthTokenConfig(token=SEED_ADMIN_TOKEN, role="admin")])})
        config.employment.enforce_job_loop = True
        self.loop = SimulationLoop(config)
        self.audit_path = Path(config.console.audit_path)
        self.router = create_console_router(
            self.loop.telemetry, self.loop.world, policy=self.loop.policy,
            policy_provider=policy_provider_name(self.loop),
            telemetry_provider=telemetry_provider_name(self.loop), config=config)
        for _ in range(20):  # Step 1: prime agents and advance the simulation
            self.loop.step()

    def command(self, name: str, *args: Any, admin: bool = False) -> dict[str, Any]:
        return self.router.dispatch(ConsoleCommand(name=name, args=args, kwargs={}))

    def enqueue(self, agent_id: str) -> dict[str, Any]:
        world = self.loop.world
        queued = world.employment.enqueue_exit(world, agent_id, world.tick)
        return {"status": "ok", "result": {"enqueued": queued}, "cmd_id": None}

    def latest_results(self) -> list[dict[str, Any]]:
        return self.loop.telemetry.latest_console_results()

    def force_chat(self, speaker: str, listener: str) -> dict[str, Any]:
        self.loop.telemetry.queue_console_command({
            "name": "force_chat", "mode": "admin", "cmd_id": f"chat-{uuid.uuid4().hex[:8]}",
            "auth": {"token": SEED_ADMIN_TOKEN},
            "kwargs": {"payload": {"speaker": speaker, "listener": listener,
                                   "quality": 0.75}}})
        self.loop.step()
        return self.loop.telemetry.latest_console_results()[-1]

    def audit_lines(self, cmd_id: str, timeout: float) -> list[dict[str, Any]]:
        return read_audit(self.audit_path)

    def close(self) -> None:
        pass


class LiveSession:
    """A live shard over the broker: every step is a console command, admin with the token."""

    live = True

    def __init__(self, broker: Broker, shard_id: str, token: str | None, audit_path: Path,
                 timeout: float, token_env: str) -> None:
        self.client = OperatorClient(broker)
        self.token_env = token_env  # named in messages, never the token itself
        self.shard_id = shard_id
        self.token = token
        self.audit_path = audit_path
        self.timeout = timeout
        self.run_id = uuid.uuid4().hex[:8]
        self._seq = 0
        self._latest: list[dict[str, Any]] = []

    def command(self, name: str, *args: Any, admin: bool = False,
                kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
        self._seq += 1
        payload = build_command(name, list(args), kwargs or {},
                                mode="admin" if admin else "viewer",
                                cmd_id=f"dry-run-{self.run_id}-{self._seq}", token=self.token)
        result = self.client.send(self.shard_id, payload, timeout=self.timeout)
        assert result is not None  # send waits
        return result

    def enqueue(self, agent_id: str) -> dict[str, Any]:
        return self.command("employment_exit", "enqueue", agent_id, admin=True)

    def latest_results(self) -> list[dict[str, Any]]:
        """The shard's latest console results, as a viewer sees them in telemetry_snapshot."""
        snapshot = self.command("telemetry_snapshot")
        return list((snapshot.get("result") or {}).get("console_results") or [])

    def force_chat(self, speaker: str, listener: str) -> dict[str, Any]:
        return self.command("force_chat", admin=True, kwargs={"payload": {
            "speaker": speaker, "listener": listener, "quality": 0.75}})

    def audit_lines(self, cmd_id: str, timeout: float) -> list[dict[str, Any]]:
        """The audit log's lines once one names ``cmd_id`` (the audit consumer writes it a
        moment after the result is published), or what is there after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            lines = read_audit(self.audit_path)
            if any(line.get("cmd_id") == cmd_id for line in lines) or \
                    time.monotonic() >= deadline:
                return lines
            time.sleep(0.1)

    def close(self) -> None:
        self.client.broker.close()


def read_audit(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            out.append(record)
    return out
