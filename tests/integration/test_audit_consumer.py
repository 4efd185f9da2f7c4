"""The audit consumer against the in-memory broker: once per key, ack after fsync, poison parked."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from shared import wire
from shared.audit.sink import AuditLog
from shared.broker import MemoryBroker, MemoryHub
from shared.broker.base import Broker, ConnectionLost, Delivery, Message
from shared.topology import Topology, declare_audit
from workers.audit.consumer import AuditConsumer, run_audit

TOPO = Topology()


def result(cmd: str, shard: str = "s1", **extra: Any) -> dict[str, Any]:
    return {
        "v": 1,
        "shard_id": shard,
        "cmd_id": cmd,
        "name": "noop",
        "status": "ok",
        "tick": 3,
        "command": {"name": "noop", "cmd_id": cmd},
        **extra,
    }


def publish(broker: Broker, body: bytes, **headers: object) -> None:
    broker.publish(TOPO.results_exchange, "", Message(body=body, headers=dict(headers)))


def publish_result(broker: Broker, record: dict[str, Any]) -> None:
    publish(broker, wire.encode(record), shard_id=record["shard_id"], cmd_id=record["cmd_id"])


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def drain(consumer: AuditConsumer, steps: int = 10) -> None:
    for _ in range(steps):
        consumer.step(0.0)


def settled(hub: MemoryHub, queue: str) -> bool:
    """True if nothing in ``queue`` is ready or unacked. Unacked deliveries return to the queue
    when their connection closes, so a fresh connection's depth check sees both."""
    probe = MemoryBroker(hub)
    try:
        return probe.queue_depth(queue) == 0
    finally:
        probe.close()


@pytest.fixture
def hub() -> MemoryHub:
    hub = MemoryHub()
    setup = MemoryBroker(hub)
    declare_audit(setup, TOPO)
    setup.close()
    return hub


@pytest.fixture
def producer(hub: MemoryHub) -> Iterator[MemoryBroker]:
    broker = MemoryBroker(hub)
    yield broker
    broker.close()


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    return tmp_path / "logs" / "console" / "commands.jsonl"


@pytest.fixture
def consumer_factory(
    hub: MemoryHub, log_path: Path
) -> Iterator[Callable[..., tuple[AuditConsumer, MemoryBroker, AuditLog]]]:
    opened: list[tuple[MemoryBroker, AuditLog]] = []

    def make(**kw: Any) -> tuple[AuditConsumer, MemoryBroker, AuditLog]:
        broker, log = MemoryBroker(hub), AuditLog(log_path, fsync=False)
        opened.append((broker, log))
        return AuditConsumer(broker, log, TOPO, **kw), broker, log

    yield make
    for broker, log in opened:
        broker.close()
        log.close()


def dead_letters(hub: MemoryHub) -> list[Delivery]:
    broker = MemoryBroker(hub)
    broker.consume(TOPO.dead_queue)
    got = broker.poll(0.0)
    for delivery in got:
        broker.ack(delivery)
    broker.close()
    return got


def test_result_delivered_twice_is_logged_once(
    hub: MemoryHub, producer: MemoryBroker, consumer_factory: Any, log_path: Path
) -> None:
    consumer, broker, _ = consumer_factory()
    publish_result(producer, result("c1", token="leaked"))
    publish_result(producer, result("c1"))  # a shard re-sending after a crash
    publish_result(producer, result("c2"))
    drain(consumer)
    broker.close()
    assert [(r["shard_id"], r["cmd_id"]) for r in lines(log_path)] == [("s1", "c1"), ("s1", "c2")]
    assert "leaked" not in log_path.read_text()
    assert settled(hub, TOPO.audit_queue)
    assert (consumer.stats.appended, consumer.stats.duplicates) == (2, 1)


class AckCrash(BaseException):
    """The consumer process dying between the fsync and the acks."""


def test_restart_after_crash_before_ack_dedupes(
    hub: MemoryHub, producer: MemoryBroker, consumer_factory: Any, log_path: Path
) -> None:
    first, first_broker, first_log = consumer_factory()

    def die(delivery: Delivery) -> None:
        raise AckCrash

    first_broker.ack = die  # type: ignore[method-assign]
    for i in range(5):
        publish_result(producer, result(f"c{i}"))
    with pytest.raises(AckCrash):
        first.step(0.0)
    assert len(lines(log_path)) == 5, "written before acking"
    first_broker.close()  # the broker requeues the five unacked results
    first_log.close()

    second, second_broker, _ = consumer_factory()
    drain(second)
    assert second.stats.duplicates == 5 and second.stats.appended == 0
    assert len(lines(log_path)) == 5
    second_broker.close()
    assert settled(hub, TOPO.audit_queue)


def test_garbage_goes_to_dead_queue_and_good_records_still_land(
    hub: MemoryHub, producer: MemoryBroker, consumer_factory: Any, log_path: Path
) -> None:
    consumer, broker, _ = consumer_factory(max_body_bytes=2000)
    garbage = {
        b"\xc1 not msgpack": "bad_request",
        wire.encode({"shard_id": "s1"}): "invalid_record",  # no cmd_id
        wire.encode({"shard_id": "s1", "cmd_id": 7}): "invalid_record",  # not a string
        wire.encode(result("big", pad="x" * 5000)): "bad_request",  # over the size limit
        b"": "bad_request",
    }
    for body in garbage:
        publish(producer, body, shard_id="s1", note="kept")
    publish_result(producer, result("good"))
    drain(consumer)
    broker.close()
    assert [r["cmd_id"] for r in lines(log_path)] == ["good"]
    assert settled(hub, TOPO.audit_queue)
    dead = dead_letters(hub)
    assert [d.body for d in dead] == list(garbage)
    for delivery, code in zip(dead, garbage.values(), strict=True):
        assert str(delivery.headers["x-death-reason"]).startswith(code)
        assert delivery.headers["note"] == "kept"


def test_acked_only_after_the_write_and_held_while_the_disk_is_full(
    hub: MemoryHub,
    producer: MemoryBroker,
    consumer_factory: Any,
    log_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    consumer, broker, _ = consumer_factory()
    acked: list[int] = []
    real_ack = broker.ack

    def recording_ack(delivery: Delivery) -> None:
        assert lines(log_path), "acked before the line was written"
        acked.append(delivery.delivery_tag)
        real_ack(delivery)

    broker.ack = recording_ack  # type: ignore[method-assign]
    real_write = os.write

    def disk_full(fd: int, data: Any) -> int:
        raise OSError(28, "No space left on device")

    publish_result(producer, result("c1"))
    monkeypatch.setattr(os, "write", disk_full)
    for _ in range(TOPO.delivery_limit + 3):  # more failures than the queue's delivery limit
        assert consumer.step(0.0) == 0
    assert consumer.backoff > 0 and acked == []
    monkeypatch.setattr(os, "write", real_write)
    publish_result(producer, result("c2"))
    assert consumer.step(0.0) == 2
    assert consumer.backoff == 0
    assert [r["cmd_id"] for r in lines(log_path)] == ["c1", "c2"]
    assert dead_letters(hub) == [], "a full disk must not dead-letter good results"


class FlakyBroker:
    """A MemoryBroker whose poll loses the connection the first ``failures`` times."""

    def __init__(self, inner: MemoryBroker, failures: int) -> None:
        self.inner, self.failures = inner, failures

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def poll(self, timeout: float = 0.0, max_messages: int | None = None) -> list[Delivery]:
        if self.failures:
            self.failures -= 1
            raise ConnectionLost("socket closed")
        return self.inner.poll(timeout, max_messages)


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.005)


def test_run_survives_connection_loss_and_stops_on_request(
    hub: MemoryHub, producer: MemoryBroker, log_path: Path
) -> None:
    inner = MemoryBroker(hub)
    flaky = FlakyBroker(inner, failures=2)
    with AuditLog(log_path, fsync=False) as log:
        consumer = AuditConsumer(flaky, log, TOPO)  # type: ignore[arg-type]
        stop = threading.Event()
        thread = threading.Thread(target=consumer.run, args=(stop, 0.01))
        thread.start()
        try:
            publish_result(producer, result("c1"))
            wait_for(lambda: ("s1", "c1") in log)
        finally:
            stop.set()
            thread.join(timeout=5)
        assert not thread.is_alive()
        assert consumer.stats.broker_errors == 2
    inner.close()


def test_run_audit_with_memory_broker(
    hub: MemoryHub, producer: MemoryBroker, log_path: Path
) -> None:
    stop = threading.Event()
    thread = threading.Thread(target=run_audit, args=("memory://", log_path, stop, hub))
    thread.start()
    try:
        publish_result(producer, result("c1"))
        wait_for(lambda: len(lines(log_path)) == 1)
    finally:
        stop.set()
        thread.join(timeout=5)
    assert not thread.is_alive()
    assert settled(hub, TOPO.audit_queue)
    AuditLog(log_path).close()  # the lock was released


def test_run_audit_retries_an_unreachable_broker(hub: MemoryHub, log_path: Path) -> None:
    stop = threading.Event()
    attempts: list[str] = []

    def opener(url: str, hub: MemoryHub | None = None) -> Broker:
        attempts.append(url)
        if len(attempts) < 3:
            raise ConnectionLost("connection refused")
        stop.set()  # connected: end the run right away
        return MemoryBroker(hub) if hub is not None else pytest.fail("hub expected")

    run_audit("amqp://u:p@nowhere/", log_path, stop, hub, opener=opener)
    assert len(attempts) == 3
