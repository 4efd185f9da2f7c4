"""Helpers for shard worker tests: a worker on a thread, a client, a telemetry recorder."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ops.client import OperatorClient, build_command
from shared import wire
from shared.broker import MemoryHub, open_broker
from shared.broker.base import Broker, Message, QueueSpec
from shared.config import SimulationConfig
from shared.topology import Topology, declare_shard
from workers.shard.options import WorkerOptions
from workers.shard.worker import ShardWorker

TOPO = Topology()


class WorkerThread:
    """A shard worker running on its own thread and broker connection."""

    def __init__(self, hub: MemoryHub, config: SimulationConfig, shard_id: str, state: Path,
                 broker: Broker | None = None, **options: Any) -> None:
        self.broker = broker or open_broker("memory://", hub=hub)
        self.stop = threading.Event()
        self.worker = ShardWorker(config, self.broker, WorkerOptions(
            shard_id=shard_id, state_dir=state, **options))
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.worker.run(self.stop)
        except BaseException as exc:  # surfaced by join()
            self.error = exc

    def join(self, timeout: float = 30.0) -> None:
        self.stop.set()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "worker did not stop"
        self.broker.close()
        if self.error is not None:
            raise self.error


class Recorder:
    """Collects every message of a fanout exchange on a private queue."""

    def __init__(self, broker: Broker, exchange: str) -> None:
        self.broker = broker
        self.queue = f"rec.{exchange}.{time.monotonic_ns()}"
        specs = {s.name: s for s in (TOPO.results_exchange_spec(), TOPO.telemetry_exchange_spec(),
                                     TOPO.dead_exchange_spec())}
        broker.declare_exchange(specs[exchange])
        broker.declare_queue(QueueSpec(self.queue, durable=False, bindings=((exchange, ""),)))
        broker.consume(self.queue, prefetch=10_000)
        self.items: list[tuple[dict[str, object], dict[str, Any]]] = []

    def pump(self, until: Callable[[list[dict[str, Any]]], bool], timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not until(self.bodies()):
            assert time.monotonic() < deadline, "timed out waiting for messages"
            for d in self.broker.poll(timeout=0.1):
                self.broker.ack(d)
                self.items.append((dict(d.headers), wire.decode(d.body)))

    def bodies(self) -> list[dict[str, Any]]:
        return [body for _, body in self.items]


def publish_raw(broker: Broker, shard_id: str, body: bytes, **props: Any) -> None:
    declare_shard(broker, TOPO, shard_id)
    broker.publish(TOPO.commands_exchange, shard_id, Message(body=body, **props))


def send(broker: Broker, shard_id: str, name: str, *args: Any, wait: bool = False,
         **fields: Any) -> dict[str, Any]:
    kwargs = fields.pop("kwargs", {})
    payload = build_command(name, list(args), kwargs, **fields)
    client = OperatorClient(broker, TOPO)
    # The tests own these shards and send before the worker starts: declare the inbox as
    # `townlet up` does for its fleet (`send` itself never declares one).
    client.declare_inboxes([shard_id])
    result = client.send(shard_id, payload, wait=wait, timeout=20)
    return result if result is not None else payload
