"""RabbitMQ-only behaviour: reconnecting after the broker drops us, and credential hygiene."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest

from shared.broker import (
    MemoryBroker,
    MemoryHub,
    default_amqp_url,
    open_broker,
    redact_url,
    scrub_secrets,
)
from shared.broker.base import ConnectionLost, Message, QueueSpec
from shared.broker.rabbitmq import RabbitBroker
from tests.contract.conftest import collect


def _close_from_server(connection_name: str) -> None:
    """Make RabbitMQ itself drop the connection, as a broker restart or network cut would."""
    listing = subprocess.run(
        ["rabbitmqctl", "-q", "list_connections", "--no-table-headers", "pid", "client_properties"],
        capture_output=True, text=True, timeout=20, check=True,
    ).stdout
    pids = [line.split("\t", 1)[0] for line in listing.splitlines()
            if f'{{"connection_name","{connection_name}"}}' in line]
    assert pids, f"connection {connection_name!r} not listed by rabbitmqctl"
    for pid in pids:
        subprocess.run(["rabbitmqctl", "-q", "close_connection", pid, "contract test"],
                       capture_output=True, timeout=20, check=True)


def _drop_socket(broker: RabbitBroker) -> None:
    """Cut the TCP stream under pika, as a network failure would (the fd stays valid)."""
    sock = broker._link.connection._impl._transport._sock  # type: ignore[union-attr]
    sock.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def rabbit(amqp_url: str) -> Iterator[tuple[RabbitBroker, str, list[int]]]:
    name = f"test-recovery-{uuid.uuid4().hex[:8]}"
    reconnects: list[int] = []
    broker = RabbitBroker(amqp_url, connection_name=name, reconnect_timeout=10,
                          on_reconnect=lambda: reconnects.append(1))
    queue = f"test.{name}.q"
    broker.declare_queue(QueueSpec(queue, quorum=True, single_active_consumer=True))
    yield broker, name, reconnects
    broker.close()
    admin = RabbitBroker(amqp_url)
    admin.delete_queue(queue)
    admin.close()


@pytest.mark.rabbitmq
def test_recovers_after_broker_closes_connection(
    rabbit: tuple[RabbitBroker, str, list[int]],
) -> None:
    broker, name, reconnects = rabbit
    queue = f"test.{name}.q"
    broker.publish("", queue, Message(b"before"))
    broker.consume(queue, prefetch=5)
    [held] = collect(broker, 1)  # received on the connection that is about to die

    if shutil.which("rabbitmqctl"):
        _close_from_server(name)
    else:
        _drop_socket(broker)
    time.sleep(0.2)

    broker.publish("", queue, Message(b"after"))  # reconnects, re-declares, retries
    got = collect(broker, 2)
    broker.ack(held)  # stale: from the dead connection; must be a silent no-op
    assert [d.body for d in got] == [b"before", b"after"]
    assert got[0].redelivered and got[0].epoch != held.epoch
    for delivery in got:
        broker.ack(delivery)
    assert broker.stats.reconnects >= 1 and reconnects
    assert broker.stats.last_error and "guest" not in broker.stats.last_error
    assert broker.poll(timeout=0.2) == []
    assert broker.queue_depth(queue) == 0


@pytest.mark.rabbitmq
def test_poll_recovers_after_socket_drop(
    rabbit: tuple[RabbitBroker, str, list[int]],
) -> None:
    broker, name, _ = rabbit
    queue = f"test.{name}.q"
    broker.consume(queue)
    _drop_socket(broker)
    assert broker.poll(timeout=0.2) == []  # notices the loss, reconnects, re-consumes
    broker.publish("", queue, Message(b"after"))
    [got] = collect(broker, 1)
    broker.ack(got)
    assert got.body == b"after" and broker.stats.reconnects >= 1


def test_unreachable_broker_raises_without_leaking_credentials() -> None:
    url = "amqp://townlet:s3cr3t-pw@127.0.0.1:1/%2F"
    with pytest.raises(ConnectionLost) as info:
        RabbitBroker(url, reconnect_timeout=0, socket_timeout=1)
    assert "s3cr3t-pw" not in str(info.value) and "townlet:" not in str(info.value)


@pytest.mark.rabbitmq
def test_bad_credentials_fail_fast_without_leaking_them(amqp_url: str) -> None:
    host = amqp_url.split("@", 1)[-1]
    started = time.monotonic()
    with pytest.raises(ConnectionLost, match="ACCESS_REFUSED") as info:
        RabbitBroker(f"amqp://nobody:wr0ng-pw@{host}", reconnect_timeout=30)
    assert time.monotonic() - started < 5
    assert "wr0ng-pw" not in str(info.value) and "nobody" not in str(info.value)


def test_redact_url_and_scrub() -> None:
    url = "amqp://user:p%40ss@example.com:5672/%2F?heartbeat=5"
    assert redact_url(url) == "amqp://***@example.com:5672/%2F?heartbeat=5"
    assert redact_url("memory://") == "memory://"
    assert "p@ss" not in scrub_secrets(f"failed {url} with p@ss and p%40ss", url)


def test_open_broker_selects_transport_by_scheme(monkeypatch: pytest.MonkeyPatch) -> None:
    assert isinstance(open_broker("memory://", hub=MemoryHub()), MemoryBroker)
    with pytest.raises(ValueError, match="MemoryHub"):
        open_broker("memory://")
    with pytest.raises(ValueError, match="'redis'"):
        open_broker("redis://u:pw@host/0")
    monkeypatch.setenv("TOWNLET_AMQP_URL", "amqp://x@y/%2F")
    assert default_amqp_url() == "amqp://x@y/%2F"
    monkeypatch.delenv("TOWNLET_AMQP_URL")
    assert default_amqp_url().startswith("amqp://")
