"""`townlet up`: run a whole fleet (shard workers + audit consumer) locally.

Embedded (no broker configured): every worker is a thread on one in-memory broker, through the
same worker and consumer code as production. With a broker URL: each worker and the audit
consumer is its own process (`townlet shard` / `townlet audit`, as docker-compose.yml runs them),
supervised here (``ops/supervise.py``: restarts with exponential backoff and a limit, children
that die with their parent). With ``--ticks`` each
shard stops after that many ticks (``townlet shard --ticks``) and the fleet stops once all
have; ``--commands`` are sent through the broker and their results collected, in both modes.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ops.supervise import Supervisor
from shared.broker import BrokerError, MemoryHub, open_broker
from shared.broker.base import Broker
from shared.config import FleetConfig
from shared.logging import get_logger
from shared.topology import Topology
from workers.audit.consumer import run_audit
from workers.shard.bootstrap import run_shard

log = get_logger("fleet")
RESULT_TIMEOUT_S = 30.0  # give up on the commands file when no result came for this long
RESULT_GRACE_S = 2.0  # after the shards stopped: results already published are still in flight
AUDIT_DRAIN_S = 10.0
Command = tuple[str, dict[str, Any]]  # (shard id, payload): see ops/commands_file.py


class CommandSender:
    """Sends a commands file on its own thread and connection while the fleet runs.

    A thread, so the fleet keeps being supervised (and stops at --ticks) while results are
    awaited; its own connection, because a broker connection is not thread-safe.
    """

    def __init__(self, connect: Callable[[], Broker], commands: list[Command],
                 shard_ids: list[str]) -> None:
        self._connect = connect
        self.commands = commands
        self.shard_ids = shard_ids  # the fleet's own: their inboxes may be declared here
        self.results: dict[int, dict[str, Any]] = {}
        self.error: str | None = None
        self._cancel = threading.Event()
        self._thread = threading.Thread(target=self._run, name="commands", daemon=True)

    def start(self) -> CommandSender:
        self._thread.start()
        return self

    def _run(self) -> None:
        from ops.client import OperatorClient

        try:
            broker = self._connect()
        except (BrokerError, ValueError) as exc:
            self.error = f"cannot send the commands: {exc}"
            return
        try:
            client = OperatorClient(broker)
            # The fleet's shards may not have declared their inboxes yet; `send` never
            # declares one, but these are ours (the commands file names only fleet shards).
            client.declare_inboxes(self.shard_ids)
            self.results = client.send_all(
                self.commands, idle_timeout=RESULT_TIMEOUT_S, cancel=self._cancel)
        except (BrokerError, ValueError) as exc:
            self.error = f"sending the commands failed: {exc}"
        finally:
            broker.close()

    def finish(self, grace: float) -> None:
        """Wait ``grace`` seconds for results still due, then stop waiting."""
        self._thread.join(grace)
        self._cancel.set()
        self._thread.join(RESULT_TIMEOUT_S)

    def report(self) -> tuple[list[dict[str, Any]], list[str]]:
        """(results in file order, one error line per command that got none)."""
        errors = [self.error] if self.error else []
        for index, (shard_id, payload) in enumerate(self.commands):
            if index not in self.results and not self.error:
                errors.append(f"no result for command {payload['cmd_id']} (shard {shard_id}): "
                              "the shard stopped first (see --ticks/--seconds) or did not "
                              f"answer within {RESULT_TIMEOUT_S:.0f}s")
        return [self.results[i] for i in sorted(self.results)], errors


def _summary(fleet: FleetConfig, sender: CommandSender | None) -> dict[str, Any]:
    results, errors = sender.report() if sender else ([], [])
    return {"results": results, "errors": errors, "audit_log": fleet.audit_log}


def run_embedded(fleet: FleetConfig, stop: threading.Event, *, ticks: int | None,
                 commands: list[Command] | None = None) -> dict[str, Any]:
    """Run the fleet as threads on one MemoryHub; returns results and errors of ``commands``."""
    hub = MemoryHub()
    shard_stop = threading.Event()
    audit_stop = threading.Event()
    audit = threading.Thread(target=run_audit, name="audit", daemon=True,
                             args=("memory://", Path(fleet.audit_log), audit_stop, hub))
    shard_threads = [threading.Thread(
        target=run_shard, name=f"shard-{shard.id}", daemon=True,
        args=(shard.id, Path(shard.config), "memory://", Path(fleet.state_root) / shard.id,
              shard_stop),
        kwargs={"tick_rate_hz": shard.tick_rate_hz, "hub": hub, "max_ticks": ticks,
                "checkpoint_every": fleet.checkpoint_every}) for shard in fleet.shards]
    for thread in [audit, *shard_threads]:
        thread.start()
    sender = None
    if commands:
        sender = CommandSender(lambda: open_broker("memory://", hub=hub), commands,
                               [s.id for s in fleet.shards]).start()
    while any(t.is_alive() for t in shard_threads) and not stop.is_set():
        time.sleep(0.1)
    if sender is not None:
        sender.finish(RESULT_GRACE_S)
    shard_stop.set()
    for thread in shard_threads:
        thread.join(timeout=30)
    broker = open_broker("memory://", hub=hub)
    try:
        _wait_audit_queue_empty(broker)
    finally:
        broker.close()
        audit_stop.set()
    audit.join(timeout=30)
    return _summary(fleet, sender)


def _wait_audit_queue_empty(broker: Broker, timeout: float = AUDIT_DRAIN_S) -> None:
    """Let the audit consumer write every result before it is stopped."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and broker.queue_depth(Topology().audit_queue) > 0:
        time.sleep(0.05)
    time.sleep(0.3)  # the consumer's last batch: fsync then ack


def child_commands(fleet: FleetConfig, max_ticks: int | None = None) -> dict[str, list[str]]:
    """The process command lines of a fleet (the same as docker-compose.yml's services).

    No broker URL in argv: children read TOWNLET_AMQP_URL, so credentials never show in `ps`.
    """
    base = [sys.executable, "-m", "ops.cli"]
    procs = {"audit": [*base, "audit", "--audit-log", fleet.audit_log]}
    limit = [] if max_ticks is None else ["--ticks", str(max_ticks)]
    for shard in fleet.shards:
        procs[f"shard-{shard.id}"] = [
            *base, "shard", "--shard", shard.id, "--config", shard.config,
            "--state-dir", str(Path(fleet.state_root) / shard.id),
            "--tick-rate", f"{shard.tick_rate_hz:g}",
            "--checkpoint-every", str(fleet.checkpoint_every), *limit]
    return procs


def run_processes(fleet: FleetConfig, broker_url: str, stop: threading.Event,
                  seconds: float | None = None, *, ticks: int | None = None,
                  commands: list[Command] | None = None,
                  max_restarts: int = 5) -> dict[str, Any]:
    """Supervise one process per worker until ``stop``, ``seconds``, (with ``ticks``) every
    shard has run its ticks, or a child exceeded ``max_restarts``; then SIGTERM what is left.
    Returns as ``run_embedded``."""
    env = {**os.environ, "TOWNLET_AMQP_URL": broker_url}
    supervisor = Supervisor(child_commands(fleet, max_ticks=ticks), env,
                            max_restarts=max_restarts)
    supervisor.start_all()
    sender = None
    if commands:
        shard_ids = [s.id for s in fleet.shards]
        sender = CommandSender(lambda: open_broker(broker_url), commands, shard_ids).start()
    deadline = None if seconds is None else time.monotonic() + seconds
    try:
        _supervise(supervisor, stop, deadline, finite=ticks is not None)
        if sender is not None:
            sender.finish(0.0 if supervisor.failure else RESULT_GRACE_S)
        if ticks is not None and not stop.is_set() and not supervisor.failure:
            _drain_remote_audit(broker_url)
    finally:
        supervisor.terminate_all()
    summary = _summary(fleet, sender)
    if supervisor.failure:
        summary["errors"].insert(0, supervisor.failure)
    return summary


def _supervise(supervisor: Supervisor, stop: threading.Event, deadline: float | None, *,
               finite: bool) -> None:
    while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
        supervisor.check(finite=finite)
        if supervisor.failure:
            return
        if finite and set(supervisor.running()) <= {"audit"}:
            return
        stop.wait(0.2)


def _drain_remote_audit(broker_url: str) -> None:
    """The audit process writes every result of this run before it is stopped."""
    try:
        broker = open_broker(broker_url, reconnect_timeout=2.0)
    except BrokerError as exc:  # the results stay queued: the next audit consumer writes them
        log.warning("audit_drain_skipped", error=str(exc))
        return
    try:
        _wait_audit_queue_empty(broker)
    except BrokerError as exc:
        log.warning("audit_drain_skipped", error=str(exc))
    finally:
        broker.close()
