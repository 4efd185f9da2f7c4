"""The broker features the trust chain relies on, on every transport (docs/THREAT_MODEL.md):
server-named exclusive queues, queue length limits (drop-head) and the publisher's user_id."""

from __future__ import annotations

import pytest

from shared.broker.base import BrokerError, Message, QueueSpec
from shared.broker.redaction import url_user
from tests.contract.conftest import Brokers, collect, eventually


def test_an_exclusive_queue_is_named_by_the_broker_and_dies_with_its_connection(
        brokers: Brokers) -> None:
    owner, other = brokers.connect(), brokers.connect()
    exchange = brokers.exchange(owner, "x", "fanout")
    name = owner.declare_queue(QueueSpec("", durable=False, exclusive=True,
                                         bindings=((exchange, ""),)))
    assert name.startswith("amq.gen-")
    other.publish(exchange, "", Message(b"hello"))  # anyone may publish to it...
    owner.consume(name)
    assert [d.body for d in collect(owner, 1)] == [b"hello"]
    with pytest.raises(BrokerError):
        other.consume(name)  # ...but only its connection may read it
        collect(other, 1, timeout=0.5)
    owner.close()
    probe = brokers.connect()
    assert eventually(lambda: _gone(probe, name))


def _gone(broker: object, name: str) -> bool:
    try:
        broker.queue_depth(name)  # type: ignore[attr-defined]
    except BrokerError:
        return True
    return False


def test_a_bounded_queue_drops_its_oldest_messages(brokers: Brokers) -> None:
    broker = brokers.connect()
    exchange = brokers.exchange(broker, "x", "fanout")
    count = brokers.queue(broker, "count", quorum=True, max_length=3, bindings=((exchange, ""),))
    size = brokers.queue(broker, "bytes", quorum=True, max_length_bytes=250,
                         bindings=((exchange, ""),))
    for n in range(6):
        broker.publish(exchange, "", Message(bytes([n]) * 100))
    assert eventually(lambda: broker.queue_depth(count) == 3 and broker.queue_depth(size) == 2)
    broker.consume(count)
    assert [d.body[0] for d in collect(broker, 3)] == [3, 4, 5]  # drop-head: the newest kept


def test_the_publishers_user_id_reaches_the_consumer(brokers: Brokers) -> None:
    broker = brokers.connect()
    queue = brokers.queue(broker, "q")
    user = url_user(brokers.url)  # RabbitMQ accepts only the connection's own user
    broker.publish("", queue, Message(b"x", user_id=user))
    broker.consume(queue)
    [got] = collect(broker, 1)
    assert got.user_id == user
