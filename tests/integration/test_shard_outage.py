"""A broker outage under a running shard, in process: the town keeps ticking, nothing is lost.

``Outage`` wraps the worker's in-process broker and makes every call fail while it is "down",
as the RabbitMQ adapter does in fail-fast mode. (The same ride-through against a real RabbitMQ
node that is stopped and restarted is tests/integration/test_broker_restart.py.)
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from shared import wire
from shared.broker import MemoryHub, open_broker
from shared.broker.base import Broker, ConnectionLost, Delivery, Message
from tests.shardtools import TOPO, Recorder, WorkerThread, publish_raw, send
from tests.simtools import example_config


class Outage:
    """A broker connection that can be cut and restored by the test."""

    def __init__(self, inner: Broker) -> None:
        self.inner = inner
        self.down = threading.Event()

    def _check(self) -> None:
        if self.down.is_set():
            raise ConnectionLost("broker unreachable (test outage)")

    def publish(self, exchange: str, routing_key: str, message: Message) -> None:
        self._check()
        self.inner.publish(exchange, routing_key, message)

    def poll(self, timeout: float = 0.0, max_messages: int | None = None) -> list[Delivery]:
        self._check()
        return self.inner.poll(timeout, max_messages)

    def ack(self, delivery: Delivery) -> None:
        self._check()
        self.inner.ack(delivery)

    def __getattr__(self, name: str) -> Any:  # declare, consume, close, ...: pass through
        return getattr(self.inner, name)


def wait_for(condition: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def telemetry_ticks(recorder: Recorder) -> list[int]:
    return [t["tick"] for t in recorder.bodies() if t["kind"] != "health"]


def test_shard_ticks_through_an_outage_and_then_sends_everything_in_order(
        tmp_path: Path) -> None:
    hub = MemoryHub()
    client = open_broker("memory://", hub=hub)
    telemetry = Recorder(open_broker("memory://", hub=hub), TOPO.telemetry_exchange)
    results = Recorder(open_broker("memory://", hub=hub), TOPO.results_exchange)
    broker = Outage(open_broker("memory://", hub=hub))
    cfg = example_config()
    worker = WorkerThread(hub, cfg, "s1", tmp_path / "s1", broker=broker,  # type: ignore[arg-type]
                          tick_rate_hz=200, checkpoint_every=10)
    try:
        send(client, "s1", "agent_status", "agent_0", cmd_id="before", wait=True)
        broker.down.set()
        cut_at = worker.worker.loop.tick
        wait_for(lambda: worker.worker.loop.tick >= cut_at + 40)  # ticking with no broker
        assert len(worker.worker.outbox) >= 30
        assert worker.worker.health().last_error
        send(client, "s1", "agent_status", "agent_1", cmd_id="during")  # waits in the queue
        broker.down.clear()
        answer = send(client, "s1", "agent_status", "agent_2", cmd_id="after", wait=True)
        telemetry.pump(lambda _: len(telemetry_ticks(telemetry)) >= answer["tick"])
        results.pump(lambda b: {"before", "during", "after"} <= {r["cmd_id"] for r in b})
    finally:
        worker.join()
    ticks = telemetry_ticks(telemetry)
    assert ticks[:answer["tick"]] == list(range(1, answer["tick"] + 1))  # in order, no gap
    assert answer["tick"] > cut_at + 40
    assert [r["cmd_id"] for r in results.bodies()] == ["before", "during", "after"]


def test_a_worker_killed_during_an_outage_resends_its_backlog_after_restart(
        tmp_path: Path) -> None:
    hub = MemoryHub()
    telemetry = Recorder(open_broker("memory://", hub=hub), TOPO.telemetry_exchange)
    broker = Outage(open_broker("memory://", hub=hub))
    cfg = example_config()
    first = WorkerThread(hub, cfg, "s1", tmp_path / "s1", broker=broker,  # type: ignore[arg-type]
                         tick_rate_hz=0, checkpoint_every=10)
    wait_for(lambda: first.worker.loop.tick >= 5)
    broker.down.set()
    wait_for(lambda: first.worker.loop.tick >= 60)  # past several checkpoint ticks, unsent
    first.join()  # a stop with a backlog: no checkpoint may drop what the journal holds
    reached = first.worker.loop.tick
    assert first.worker.outbox, "expected unsent boundaries at the stop"
    survivor = WorkerThread(hub, cfg, "s1", tmp_path / "s1", until_tick=reached + 5)
    try:
        telemetry.pump(lambda _: reached + 5 in telemetry_ticks(telemetry))
    finally:
        survivor.join()
    ticks = telemetry_ticks(telemetry)
    assert sorted(set(ticks)) == list(range(1, reached + 6))  # nothing lost across the stop
    per_tick: dict[int, dict[str, Any]] = {}
    for body in telemetry.bodies():
        if body["kind"] != "health":  # a tick sent twice is sent identically
            assert per_tick.setdefault(body["tick"], body) == body


class PoisonReplies(Outage):
    """Publishing to a forged direct reply-to name makes RabbitMQ close the connection."""

    def publish(self, exchange: str, routing_key: str, message: Message) -> None:
        if exchange == "" and routing_key.startswith("amq.rabbitmq.reply-to"):
            raise ConnectionLost("541 INTERNAL_ERROR (test: forged reply-to)")
        super().publish(exchange, routing_key, message)


def test_a_reply_that_always_fails_is_dropped_and_nothing_else_stops(tmp_path: Path) -> None:
    hub = MemoryHub()
    client = open_broker("memory://", hub=hub)
    results = Recorder(open_broker("memory://", hub=hub), TOPO.results_exchange)
    broker = PoisonReplies(open_broker("memory://", hub=hub))
    worker = WorkerThread(hub, example_config(), "s1", tmp_path / "s1",
                          broker=broker, tick_rate_hz=100)  # type: ignore[arg-type]
    try:
        publish_raw(client, "s1", wire.encode({"v": 1, "name": "help", "cmd_id": "poison"}),
                    reply_to="amq.rabbitmq.reply-to.forged")
        after = send(client, "s1", "agent_status", "agent_1", cmd_id="after", wait=True)
        results.pump(lambda b: {"poison", "after"} <= {r["cmd_id"] for r in b})
        wait_for(lambda: not worker.worker.outbox)
    finally:
        worker.join()
    assert after["status"] == "ok"
    assert [r["cmd_id"] for r in results.bodies()] == ["poison", "after"]  # each exactly once


def test_a_deleted_exchange_is_declared_again_and_nothing_is_sent_twice(
        tmp_path: Path) -> None:
    hub = MemoryHub()
    client = open_broker("memory://", hub=hub)
    results = Recorder(open_broker("memory://", hub=hub), TOPO.results_exchange)
    worker = WorkerThread(hub, example_config(), "s1", tmp_path / "s1", tick_rate_hz=100)
    try:
        send(client, "s1", "help", cmd_id="before", wait=True)
        client.delete_exchange(TOPO.telemetry_exchange)  # an operator's mistake, mid-run
        answer = send(client, "s1", "agent_status", "agent_1", cmd_id="after", wait=True)
        tick = worker.worker.loop.tick
        wait_for(lambda: worker.worker.loop.tick > tick + 5 and not worker.worker.outbox)
        client.publish(TOPO.telemetry_exchange, "", Message(body=b"x"))  # exists again
        results.pump(lambda b: {"before", "after"} <= {r["cmd_id"] for r in b})
    finally:
        worker.join()
    assert answer["status"] == "ok"
    assert [r["cmd_id"] for r in results.bodies()] == ["before", "after"]  # no repeats
