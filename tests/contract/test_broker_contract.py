"""One contract, every transport: the in-memory broker must behave like RabbitMQ.

Every test runs twice (``[memory]`` and ``[rabbitmq]``). RabbitMQ is asynchronous, so tests
poll with a deadline instead of asserting on the first poll, and "nothing arrives" is checked
by polling for a short while.
"""

from __future__ import annotations

import threading
import time

import pytest

from shared.broker.base import (
    BrokerError,
    ExchangeSpec,
    Message,
    NotFound,
    QueueSpec,
    QueueStats,
    Unroutable,
)
from tests.contract.conftest import Brokers, collect, eventually

QUIET = 0.3  # how long "nothing else arrives" is observed


def test_bytes_and_properties_round_trip(brokers: Brokers) -> None:
    broker = brokers.connect()
    exchange = brokers.exchange(broker, "x")
    queue = brokers.queue(broker, "q", quorum=True, bindings=((exchange, "k"),))
    body = bytes(range(256)) * 4
    headers: dict[str, object] = {"shard_id": "s1", "tick": 7, "ok": True, "raw": b"\x00\xff"}
    broker.publish(exchange, "k", Message(
        body, headers=headers, message_id="m-1", correlation_id="c-1", reply_to="r.q"
    ))
    broker.consume(queue)
    [got] = collect(broker, 1)
    assert got.body == body and isinstance(got.body, bytes)
    assert got.headers == headers
    assert (got.message_id, got.correlation_id, got.reply_to) == ("m-1", "c-1", "r.q")
    assert (got.queue, got.exchange, got.routing_key) == (queue, exchange, "k")
    assert not got.redelivered and got.delivery_count == 0


def test_headers_that_rabbitmq_cannot_carry_are_rejected(brokers: Brokers) -> None:
    broker = brokers.connect()
    exchange = brokers.exchange(broker, "x")
    with pytest.raises(ValueError, match="unsupported type float"):
        broker.publish(exchange, "k", Message(b"x", headers={"latency": 1.5}))


def test_direct_routes_by_key_and_drops_unroutable(brokers: Brokers) -> None:
    broker = brokers.connect()
    exchange = brokers.exchange(broker, "x")
    qa = brokers.queue(broker, "a", bindings=((exchange, "a"),))
    qb = brokers.queue(broker, "b", bindings=((exchange, "b"),))
    broker.publish(exchange, "a", Message(b"for-a"))
    broker.publish(exchange, "nobody", Message(b"lost"))  # no mandatory flag: silently dropped
    assert eventually(lambda: broker.queue_depth(qa) == 1)
    assert broker.queue_depth(qb) == 0
    broker.consume(qa)
    assert [d.body for d in collect(broker, 1)] == [b"for-a"]


def test_default_exchange_routes_to_queue_by_name(brokers: Brokers) -> None:
    broker = brokers.connect()
    queue = brokers.queue(broker, "reply")
    broker.publish("", queue, Message(b"reply"))
    broker.consume(queue)
    assert [d.body for d in collect(broker, 1)] == [b"reply"]


def test_fanout_copies_to_every_bound_queue(brokers: Brokers) -> None:
    broker = brokers.connect()
    exchange = brokers.exchange(broker, "fan", kind="fanout")
    queues = [brokers.queue(broker, f"q{i}", bindings=((exchange, ""),)) for i in range(3)]
    broker.publish(exchange, "ignored", Message(b"copy"))
    for queue in queues:
        assert eventually(lambda q=queue: broker.queue_depth(q) == 1)  # type: ignore[misc]
    for queue in queues:
        broker.consume(queue)
    assert sorted(d.queue for d in collect(broker, 3)) == sorted(queues)


def test_ack_removes_the_message(brokers: Brokers) -> None:
    first = brokers.connect()
    queue = brokers.queue(first, "q", quorum=True)
    first.publish("", queue, Message(b"once"))
    first.consume(queue)
    [got] = collect(first, 1)
    first.ack(got)
    first.ack(got)  # a second ack of the same delivery is a no-op, not a channel error
    first.close()
    second = brokers.connect()
    second.consume(queue)
    assert second.poll(timeout=QUIET) == []
    assert second.queue_depth(queue) == 0


def test_nack_requeue_redelivers_same_body(brokers: Brokers) -> None:
    broker = brokers.connect()
    queue = brokers.queue(broker, "q", quorum=True)
    broker.publish("", queue, Message(b"again", headers={"k": "v"}))
    broker.consume(queue)
    [first] = collect(broker, 1)
    broker.nack(first, requeue=True)
    [second] = collect(broker, 1)
    assert second.body == b"again" and second.headers["k"] == "v"
    assert second.redelivered and second.delivery_count == 1
    assert second.headers["x-delivery-count"] == 1


def test_requeued_message_goes_back_to_the_head(brokers: Brokers) -> None:
    # RabbitMQ 3.10-3.13 quorum queues *without* a delivery limit requeue nacked messages at
    # the back; with one (as every townlet queue has) returns are served first.
    broker = brokers.connect()
    queue = brokers.queue(broker, "q", quorum=True, delivery_limit=5)
    for i in range(5):
        broker.publish("", queue, Message(b"%d" % i))
    broker.consume(queue, prefetch=3)
    first = collect(broker, 3)
    assert [d.body for d in first] == [b"0", b"1", b"2"]
    broker.nack(first[0])
    nxt = collect(broker, 1)
    assert [d.body for d in nxt] == [b"0"] and nxt[0].redelivered


def test_nack_without_requeue_dead_letters(brokers: Brokers) -> None:
    broker = brokers.connect()
    dlx = brokers.exchange(broker, "dlx", kind="fanout")
    dead = brokers.queue(broker, "dead", quorum=True, bindings=((dlx, ""),))
    queue = brokers.queue(broker, "q", quorum=True, dead_letter_exchange=dlx)
    broker.publish("", queue, Message(b"poison"))
    broker.consume(queue)
    [got] = collect(broker, 1)
    broker.nack(got, requeue=False)
    broker.consume(dead)
    [corpse] = collect(broker, 1)
    assert corpse.body == b"poison" and corpse.headers["x-first-death-reason"] == "rejected"


def test_delivery_limit_dead_letters_after_too_many_requeues(brokers: Brokers) -> None:
    broker = brokers.connect()
    dlx = brokers.exchange(broker, "dlx", kind="fanout")
    dead = brokers.queue(broker, "dead", quorum=True, bindings=((dlx, ""),))
    queue = brokers.queue(broker, "q", quorum=True, delivery_limit=2, dead_letter_exchange=dlx)
    broker.publish("", queue, Message(b"poison", headers={"cmd_id": "c1"}))
    broker.consume(queue)
    counts = []
    while got := collect(broker, 1, timeout=0.5):  # RabbitMQ: 1 delivery + `limit` requeues
        counts.append(got[0].delivery_count)
        broker.nack(got[0], requeue=True)
    assert counts == [0, 1, 2]
    broker.consume(dead)
    [corpse] = collect(broker, 1)
    assert corpse.body == b"poison" and corpse.headers["cmd_id"] == "c1"
    assert corpse.headers["x-first-death-reason"] == "delivery_limit"
    assert corpse.headers["x-first-death-queue"] == queue
    assert not corpse.redelivered and corpse.delivery_count == 0
    assert eventually(lambda: broker.queue_depth(queue) == 0)


def test_close_without_ack_redelivers_to_next_consumer(brokers: Brokers) -> None:
    first = brokers.connect()
    queue = brokers.queue(first, "q", quorum=True)
    first.publish("", queue, Message(b"work"))
    first.consume(queue)
    assert [d.body for d in collect(first, 1)] == [b"work"]
    first.close()
    second = brokers.connect()
    second.consume(queue)
    [again] = collect(second, 1)
    assert again.body == b"work" and again.redelivered and again.delivery_count == 1


def test_cancel_returns_unacked_and_stale_ack_is_ignored(brokers: Brokers) -> None:
    broker = brokers.connect()
    queue = brokers.queue(broker, "q", quorum=True)
    broker.publish("", queue, Message(b"work"))
    broker.consume(queue)
    [got] = collect(broker, 1)
    broker.cancel(queue)
    broker.ack(got)  # its consumer session ended: must not ack some other message
    broker.consume(queue)
    [again] = collect(broker, 1)
    assert again.body == b"work" and again.redelivered


@pytest.mark.parametrize("leave", ["close", "cancel"])
def test_single_active_consumer_hands_over_in_order(brokers: Brokers, leave: str) -> None:
    owner = brokers.connect()
    queue = brokers.queue(owner, "q", quorum=True, single_active_consumer=True, delivery_limit=5)
    for i in range(5):
        owner.publish("", queue, Message(b"%d" % i))
    owner.consume(queue, prefetch=2)
    standby = brokers.connect()
    standby.consume(queue, prefetch=10)
    first = collect(owner, 2)
    owner.ack(first[0])
    second = collect(owner, 1)
    assert [d.body for d in first + second] == [b"0", b"1", b"2"]  # 1 and 2 left unacked
    assert standby.poll(timeout=QUIET) == []
    if leave == "close":
        owner.close()
    else:
        owner.cancel(queue)
    rest = collect(standby, 4)
    assert [d.body for d in rest] == [b"1", b"2", b"3", b"4"]
    assert [d.redelivered for d in rest] == [True, True, False, False]
    if leave == "cancel":
        assert owner.poll(timeout=0.0) == []  # the cancelled session delivers nothing more


def test_fifo_order(brokers: Brokers) -> None:
    broker = brokers.connect()
    queue = brokers.queue(broker, "q", quorum=True)
    for i in range(30):
        broker.publish("", queue, Message(b"%d" % i))
    broker.consume(queue, prefetch=7)
    got = collect(broker, 30, settle=broker.ack)
    assert [d.body for d in got] == [b"%d" % i for i in range(30)]


def test_prefetch_limits_unacked_deliveries(brokers: Brokers) -> None:
    broker = brokers.connect()
    queue = brokers.queue(broker, "q", quorum=True)
    for i in range(5):
        broker.publish("", queue, Message(b"%d" % i))
    broker.consume(queue, prefetch=2)
    first = collect(broker, 2)
    assert [d.body for d in first] == [b"0", b"1"]
    assert broker.poll(timeout=QUIET) == []
    assert eventually(lambda: broker.queue_depth(queue) == 3)
    broker.ack(first[0])
    assert [d.body for d in collect(broker, 1)] == [b"2"]
    assert broker.poll(timeout=QUIET) == []


def test_queue_depth_and_purge(brokers: Brokers) -> None:
    broker = brokers.connect()
    queue = brokers.queue(broker, "q", quorum=True)
    assert broker.queue_depth(queue) == 0
    for _ in range(3):
        broker.publish("", queue, Message(b"x"))
    assert eventually(lambda: broker.queue_depth(queue) == 3)
    assert broker.purge(queue) == 3
    assert broker.queue_depth(queue) == 0


def test_redeclare_is_idempotent_and_conflicts_are_errors(brokers: Brokers) -> None:
    broker = brokers.connect()
    exchange = brokers.exchange(broker, "x")
    spec = QueueSpec(brokers.name("q"), quorum=True, single_active_consumer=True,
                     delivery_limit=3, bindings=((exchange, "k"),))
    brokers.queue(broker, "q", quorum=True, single_active_consumer=True, delivery_limit=3,
                  bindings=((exchange, "k"),))
    broker.declare_queue(spec)
    broker.declare_exchange(ExchangeSpec(exchange, "direct"))
    broker.publish(exchange, "k", Message(b"one copy"))
    assert eventually(lambda: broker.queue_depth(spec.name) == 1)
    with pytest.raises(BrokerError):
        broker.declare_queue(QueueSpec(spec.name, quorum=True, delivery_limit=9))
    with pytest.raises(BrokerError):
        broker.declare_exchange(ExchangeSpec(exchange, "fanout"))
    assert broker.queue_depth(spec.name) == 1  # the connection is still usable


def test_missing_exchange_or_queue_is_not_found(brokers: Brokers) -> None:
    broker = brokers.connect()
    with pytest.raises(NotFound):
        broker.publish(brokers.name("nope"), "k", Message(b"x"))
    with pytest.raises(NotFound):
        broker.queue_depth(brokers.name("nope"))
    with pytest.raises(NotFound):
        broker.consume(brokers.name("nope"))
    queue = brokers.queue(broker, "q")
    broker.publish("", queue, Message(b"still works"))
    broker.consume(queue)
    assert [d.body for d in collect(broker, 1)] == [b"still works"]


def test_closed_broker_refuses_work(brokers: Brokers) -> None:
    broker = brokers.connect()
    broker.close()
    broker.close()  # idempotent
    with pytest.raises(BrokerError):
        broker.poll()


def test_blocking_poll_wakes_when_another_thread_publishes(brokers: Brokers) -> None:
    consumer = brokers.connect()
    queue = brokers.queue(consumer, "q", quorum=True)
    consumer.consume(queue)
    publisher = brokers.connect()  # one connection per thread, as the Broker contract says
    timer = threading.Timer(0.2, lambda: publisher.publish("", queue, Message(b"wake")))
    started = time.monotonic()
    timer.start()
    try:
        got = consumer.poll(timeout=5.0)
    finally:
        timer.join()
    assert [d.body for d in got] == [b"wake"]
    assert time.monotonic() - started < 2.0


def test_a_mandatory_publish_nobody_takes_is_refused_and_one_that_routes_is_stored(
        brokers: Brokers) -> None:
    broker = brokers.connect()
    exchange = brokers.exchange(broker, "x")
    queue = brokers.queue(broker, "a", bindings=((exchange, "a"),))
    with pytest.raises(Unroutable, match="'nobody'"):
        broker.publish(exchange, "nobody", Message(b"typo", mandatory=True))
    broker.publish(exchange, "a", Message(b"kept", mandatory=True))
    assert eventually(lambda: broker.queue_depth(queue) == 1)
    broker.publish(exchange, "a", Message(b"after a refusal, the connection still works"))
    assert eventually(lambda: broker.queue_depth(queue) == 2)


def test_queue_stats_count_ready_messages_and_consumers(brokers: Brokers) -> None:
    broker, other = brokers.connect(), brokers.connect()
    queue = brokers.queue(broker, "q", quorum=True)
    assert broker.queue_stats(queue) == QueueStats(0, 0)
    broker.publish("", queue, Message(b"1"))
    broker.publish("", queue, Message(b"2"))
    assert eventually(lambda: broker.queue_stats(queue) == QueueStats(2, 0))
    other.consume(queue, prefetch=1)
    assert eventually(lambda: broker.queue_stats(queue) == QueueStats(1, 1))  # one in flight
    with pytest.raises(NotFound):
        broker.queue_stats(brokers.name("never-declared"))
    broker.publish("", queue, Message(b"still usable after a 404"))
