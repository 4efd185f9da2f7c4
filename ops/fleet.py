"""`townlet up`: run a whole fleet (shard workers + audit consumer) locally.

Embedded (no broker configured): every worker is a thread on one in-memory broker, through the
same worker and consumer code as production. With a broker URL: each worker and the audit
consumer is its own process (`townlet shard` / `townlet audit`, as docker-compose.yml runs them),
supervised here: a child that dies is restarted after a short backoff.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import structlog

from shared.broker import MemoryHub, open_broker
from shared.config import FleetConfig
from shared.topology import Topology
from workers.audit.consumer import run_audit
from workers.shard.bootstrap import run_shard

log = structlog.get_logger("townlet.fleet")
RESTART_BACKOFF_S = 1.0


def run_embedded(fleet: FleetConfig, stop: threading.Event, *, ticks: int | None,
                 commands: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Run the fleet as threads on one MemoryHub; returns a per-shard summary."""
    hub = MemoryHub()
    shard_stop = threading.Event()
    audit_stop = threading.Event()
    threads = [threading.Thread(target=run_audit, name="audit", daemon=True,
                                args=("memory://", Path(fleet.audit_log), audit_stop, hub))]
    for shard in fleet.shards:
        threads.append(threading.Thread(
            target=run_shard, name=f"shard-{shard.id}", daemon=True,
            args=(shard.id, Path(shard.config), "memory://",
                  Path(fleet.state_root) / shard.id, shard_stop),
            kwargs={"tick_rate_hz": shard.tick_rate_hz, "hub": hub, "max_ticks": ticks,
                    "checkpoint_every": fleet.checkpoint_every}))
    for thread in threads:
        thread.start()
    results = _send_embedded(hub, commands or [])
    shard_threads = threads[1:]
    while any(t.is_alive() for t in shard_threads) and not stop.is_set():
        time.sleep(0.1)
    shard_stop.set()
    for thread in shard_threads:
        thread.join(timeout=30)
    _drain_audit(hub, audit_stop)
    threads[0].join(timeout=30)
    return {"results": results, "audit_log": fleet.audit_log}


def _send_embedded(hub: MemoryHub, commands: list[dict[str, Any]]) -> list[dict[str, Any]]:
    from ops.client import OperatorClient

    if not commands:
        return []
    client = OperatorClient(open_broker("memory://", hub=hub))
    out = []
    for item in commands:
        payload = {k: v for k, v in item.items() if k != "shard"}
        result = client.send(str(item["shard"]), payload, timeout=30.0)
        if result is not None:
            out.append(result)
    return out


def _drain_audit(hub: MemoryHub, audit_stop: threading.Event, timeout: float = 10.0) -> None:
    """Let the audit consumer write every result before stopping it."""
    broker = open_broker("memory://", hub=hub)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and broker.queue_depth(Topology().audit_queue) > 0:
            time.sleep(0.05)
        time.sleep(0.3)  # the consumer's last batch: fsync then ack
    finally:
        broker.close()
        audit_stop.set()


def child_commands(fleet: FleetConfig) -> dict[str, list[str]]:
    """The process command lines of a fleet (the same as docker-compose.yml's services).

    No broker URL in argv: children read TOWNLET_AMQP_URL, so credentials never show in `ps`.
    """
    base = [sys.executable, "-m", "ops.cli"]
    procs = {"audit": [*base, "audit", "--log", fleet.audit_log]}
    for shard in fleet.shards:
        procs[f"shard-{shard.id}"] = [
            *base, "shard", "--shard-id", shard.id, "--config", shard.config,
            "--state-dir", str(Path(fleet.state_root) / shard.id),
            "--tick-rate", str(shard.tick_rate_hz),
            "--checkpoint-every", str(fleet.checkpoint_every)]
    return procs


def run_processes(fleet: FleetConfig, broker_url: str, stop: threading.Event,
                  seconds: float | None = None) -> None:
    """Supervise one process per worker until ``stop`` (or ``seconds``) then SIGTERM them."""
    argvs = child_commands(fleet)
    env = {**os.environ, "TOWNLET_AMQP_URL": broker_url}
    children = {name: subprocess.Popen(argv, env=env) for name, argv in argvs.items()}
    deadline = None if seconds is None else time.monotonic() + seconds
    try:
        while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
            for name, proc in list(children.items()):
                if proc.poll() is not None:
                    log.warning("child_exited_restarting", child=name, code=proc.returncode)
                    time.sleep(RESTART_BACKOFF_S)
                    children[name] = subprocess.Popen(argvs[name], env=env)
            stop.wait(0.5)
    finally:
        for proc in children.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in children.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
