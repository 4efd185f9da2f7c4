"""A full RabbitMQ restart under a running shard, on a private node (never the shared broker).

The node gets its own name, ports, mnesia and log dirs (all in tmp) and is stopped at the end.
The worker must ride out the outage: keep its state, reconnect (counted in health telemetry),
carry on ticking, and keep exactly-once answers for commands sent before the restart.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.topology import Topology
from tests.procs import Harness, Recorder, command, wait_until

pytestmark = pytest.mark.rabbitmq
TOPO = Topology()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrivateNode:
    """A RabbitMQ node of our own: `rabbitmq-server -detached` with every path in ``root``."""

    def __init__(self) -> None:
        self.name = f"townlet-test-{uuid.uuid4().hex[:8]}@localhost"
        self.port = free_port()
        # Not under pytest's tmp dir: that is private to root, and the server runs as rabbitmq.
        base = self.base = Path(tempfile.mkdtemp(prefix="townlet-rabbitmq-"))
        for sub in ("mnesia", "log"):
            (base / sub).mkdir()
        (base / "enabled_plugins").write_text("[].\n")
        (base / "rabbitmq.conf").write_text("")
        shutil.chown(base, "rabbitmq", "rabbitmq")
        for path in base.rglob("*"):
            shutil.chown(path, "rabbitmq", "rabbitmq")  # the server drops to this user
        self.env = {**os.environ, "RABBITMQ_NODENAME": self.name,
                    "RABBITMQ_NODE_PORT": str(self.port),
                    "RABBITMQ_DIST_PORT": str(free_port()),
                    "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
                    "RABBITMQ_LOG_BASE": str(base / "log"),
                    "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
                    "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq.conf")}
        self.url = f"amqp://guest:guest@127.0.0.1:{self.port}/%2F"

    def _accepting(self) -> bool:
        with socket.socket() as s:
            s.settimeout(0.5)
            return s.connect_ex(("127.0.0.1", self.port)) == 0

    def start(self) -> None:
        subprocess.run(["rabbitmq-server", "-detached"], env=self.env, check=True,
                       capture_output=True, timeout=30)
        wait_until(self._accepting, 60, f"private RabbitMQ node {self.name} to accept")

    def stop(self) -> None:
        subprocess.run(["rabbitmqctl", "-n", self.name, "stop"], env=self.env,
                       capture_output=True, timeout=60, check=False)
        wait_until(lambda: not self._accepting(), 30, f"{self.name} to stop")


@pytest.fixture()
def node() -> Iterator[PrivateNode]:
    if shutil.which("rabbitmq-server") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("rabbitmq-server is not installed: cannot run the broker restart test")
        pytest.skip("rabbitmq-server is not installed")
    private = PrivateNode()
    try:
        private.start()
        yield private
    finally:
        private.stop()
        shutil.rmtree(private.base, ignore_errors=True)


def test_shard_rides_out_a_broker_restart(node: PrivateNode, tmp_path: Path) -> None:
    harness = Harness(node.url, tmp_path / "h")
    try:
        shard_id = harness.shard_id("restart")
        worker = harness.shard(shard_id, harness.config("restart"), tick_rate=20).start()
        worker.wait_log("shard_started", 30)
        results = Recorder(node.url, TOPO.results_exchange, name="results-before")
        pub = harness.publisher()
        first = command("setneed", "agent_1", "energy", 0.3, cmd_id="before-restart",
                        token=None)
        first.update(mode="admin", auth={"token": _admin_token()})
        pub.send(shard_id, first)
        results.wait_for(lambda items: len(items) >= 1, 20, "the first result")
        before = results.bodies()[0]
        assert before["status"] == "ok", before
        results.close()
        pub.close()
        telemetry_before = Recorder(node.url, TOPO.telemetry_exchange, name="telemetry-before")
        telemetry_before.wait_for(lambda items: any(
            i.headers.get("kind") != "health" for i in items), 20, "telemetry before the stop")

        node.stop()
        down_at = time.monotonic()
        last_tick_before = max(int(i.headers["tick"]) for i in telemetry_before.captured()
                               if i.headers.get("kind") != "health")
        time.sleep(1.0)  # the worker now finds the broker gone
        assert worker.alive, worker.tail()
        node.start()
        outage_s = time.monotonic() - down_at

        after = Recorder(node.url, TOPO.results_exchange, name="results-after")
        telemetry = Recorder(node.url, TOPO.telemetry_exchange, name="telemetry-after")
        pub = harness.publisher()
        pub.send(shard_id, first)  # an operator retry across the restart: same answer
        pub.send(shard_id, command("help", cmd_id="after-restart"))
        after.wait_for(lambda items: {"before-restart", "after-restart"}
                       <= {i.data["cmd_id"] for i in items}, 60, "results after the restart")
        replayed = next(i.data for i in after.items() if i.data["cmd_id"] == "before-restart")
        assert replayed == before  # exactly once, byte for byte, across a broker restart
        answered = next(i.data for i in after.items() if i.data["cmd_id"] == "after-restart")
        # The town kept ticking while the broker was away (20 Hz; half of that, for noise).
        assert answered["tick"] - last_tick_before >= 0.5 * 20 * outage_s, (
            answered["tick"], last_tick_before, outage_s)

        telemetry.wait_for(lambda items: any(i.data.get("kind") == "health" and
                                             i.data["payload"]["health"]["broker_reconnects"]
                                             for i in items), 30, "health with a reconnect")
        ticks = [i.data["tick"] for i in telemetry.items() if i.data.get("kind") != "health"]
        assert ticks and min(ticks) > before["tick"]  # the same town carried on, no reset
        assert worker.alive
        # The outage is in the log as one townlet event each way, with the shard id and the
        # retry backoff, and none of pika's own records (a traceback per failed dial).
        lost, back = worker.events("broker_connection_lost"), worker.events("broker_reconnected")
        assert len(lost) == 1 and len(back) == 1, worker.tail(40)
        assert lost[0]["shard_id"] == back[0]["shard_id"] == shard_id
        assert "retry_in_s" in lost[0] and back[0]["outage_s"] > 0
        assert not [line for line in worker.output().splitlines() if "pika" in line]
        assert not worker.events("broker_trouble")  # not one line every few seconds either
        assert worker.terminate() == 0, worker.tail()
        after.close()
        telemetry.close()
    finally:
        harness.close()


def _admin_token() -> str:
    from tests.procs import ADMIN_TOKEN

    return ADMIN_TOKEN
