"""The in-process broker: a real broker with RabbitMQ quorum-queue semantics, no network.

``MemoryHub`` is the "server" (exchanges, queues, bindings); one hub is shared by every
``MemoryBroker`` connection in the process (embedded mode runs workers as threads), so all hub
state sits behind one lock, and a condition wakes pollers. There is no module-level state:
whoever composes the process creates the hub and hands it to the brokers.

Semantics chosen to match RabbitMQ 3.10+ quorum queues (the contract tests check both):

* Bodies are copied bytes; headers are deep-copied. Fanout copies to every bound queue, direct
  routes by key, the default exchange ``""`` routes to the queue named by the key, topic uses
  ``*``/``#``. Unroutable messages are dropped (no ``mandatory``).
* Messages are pushed to consumers as soon as they have prefetch capacity, so queue depth
  counts only messages not yet handed to any consumer (like ``message_count`` in AMQP).
* A returned message (nack with requeue, cancel, connection close) goes back to its original
  position: the ready list is ordered by enqueue sequence, so returns land before anything
  published after them. RabbitMQ quorum queues with a delivery limit serve returns first (in
  return order), which is the same order whenever messages come back in delivery order, as
  they do on cancel/close. Caveat: RabbitMQ 3.10-3.13 quorum queues *without* a delivery
  limit put nacked messages at the back; townlet never nacks on such queues.
* Each return increments the delivery count and sets ``redelivered``; when the count exceeds
  the queue's delivery limit the message is dead-lettered (reason ``delivery_limit``); a nack
  without requeue dead-letters with reason ``rejected``. Dead-lettered copies carry ``x-death``
  and ``x-first-death-*`` headers like RabbitMQ's.
* Single active consumer: only the first registered consumer receives; when it goes, its
  unacked messages are returned first and the next consumer takes over.
"""

from __future__ import annotations

import copy
import heapq
import itertools
import threading
from collections import deque
from dataclasses import dataclass, field, replace

from shared.broker.base import (
    BrokerError,
    BrokerStats,
    Delivery,
    ExchangeSpec,
    Message,
    NotFound,
    QueueSpec,
    check_headers,
)
from shared.broker.semantics import dead_letter_headers, topic_matches


@dataclass
class _Stored:
    """One message as held by one queue (each queue gets its own copy)."""

    seq: int
    message: Message
    exchange: str
    routing_key: str
    delivery_count: int = 0
    redelivered: bool = False


@dataclass
class _Consumer:
    conn_id: int
    epoch: int
    queue: str
    prefetch: int
    unacked: dict[int, _Stored] = field(default_factory=dict)  # tag -> message, in order

    def has_capacity(self) -> bool:
        return self.prefetch <= 0 or len(self.unacked) < self.prefetch


@dataclass
class _Queue:
    spec: QueueSpec
    ready: list[tuple[int, _Stored]] = field(default_factory=list)  # heap keyed by seq
    consumers: list[_Consumer] = field(default_factory=list)  # registration order
    next_rr: int = 0


@dataclass
class _Exchange:
    spec: ExchangeSpec
    bindings: dict[tuple[str, str], None] = field(default_factory=dict)  # ordered set


@dataclass
class _Connection:
    conn_id: int
    buffer: deque[Delivery] = field(default_factory=deque)
    consumers: dict[str, _Consumer] = field(default_factory=dict)
    next_tag: int = 1


def _same_queue_args(a: QueueSpec, b: QueueSpec) -> bool:
    return replace(a, bindings=()) == replace(b, bindings=())


class MemoryHub:
    """The in-process broker server. Thread-safe; share one per process (or per test)."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._exchanges: dict[str, _Exchange] = {}
        self._queues: dict[str, _Queue] = {}
        self._conns: dict[int, _Connection] = {}
        self._seq = itertools.count(1)
        self._ids = itertools.count(1)  # connection ids and consumer epochs

    # -- connections ---------------------------------------------------------------------
    def connect(self) -> int:
        with self._cond:
            conn = _Connection(next(self._ids))
            self._conns[conn.conn_id] = conn
            return conn.conn_id

    def disconnect(self, conn_id: int) -> None:
        """Drop a connection: its consumers go and its unacked messages are returned."""
        with self._cond:
            conn = self._conns.pop(conn_id, None)
            if conn is None:
                return
            for queue in list(conn.consumers):
                self._cancel_locked(conn, queue)
            self._cond.notify_all()

    # -- topology ------------------------------------------------------------------------
    def declare_exchange(self, spec: ExchangeSpec) -> None:
        if not spec.name:
            raise ValueError("the default exchange cannot be declared")
        with self._cond:
            existing = self._exchanges.get(spec.name)
            if existing is None:
                self._exchanges[spec.name] = _Exchange(spec)
            elif existing.spec != spec:
                raise BrokerError(f"exchange {spec.name!r} exists with different arguments")

    def declare_queue(self, spec: QueueSpec) -> None:
        with self._cond:
            existing = self._queues.get(spec.name)
            if existing is None:
                self._queues[spec.name] = _Queue(spec)
            elif not _same_queue_args(existing.spec, spec):
                raise BrokerError(f"queue {spec.name!r} exists with different arguments")
            for exchange, key in spec.bindings:
                self._exchange(exchange).bindings[(spec.name, key)] = None

    def delete_queue(self, queue: str) -> None:
        with self._cond:
            q = self._queues.pop(queue, None)
            if q is None:
                return
            for exchange in self._exchanges.values():
                for binding in [b for b in exchange.bindings if b[0] == queue]:
                    del exchange.bindings[binding]
            for consumer in q.consumers:
                # Deliveries already handed out stay with the client; acks become no-ops.
                self._conns[consumer.conn_id].consumers.pop(queue, None)

    def delete_exchange(self, exchange: str) -> None:
        with self._cond:
            self._exchanges.pop(exchange, None)

    # -- messages ------------------------------------------------------------------------
    def publish(self, exchange: str, routing_key: str, message: Message) -> None:
        check_headers(message.headers)
        with self._cond:
            for queue in self._route(exchange, routing_key):
                self._enqueue(self._queues[queue], message, exchange, routing_key)
            self._cond.notify_all()

    def queue_depth(self, queue: str) -> int:
        with self._cond:
            return len(self._queue(queue).ready)

    def purge(self, queue: str) -> int:
        with self._cond:
            q = self._queue(queue)
            count = len(q.ready)
            q.ready.clear()
            return count

    # -- consuming -----------------------------------------------------------------------
    def consume(self, conn_id: int, queue: str, prefetch: int) -> None:
        with self._cond:
            conn = self._conn(conn_id)
            q = self._queue(queue)
            if queue in conn.consumers:
                return  # already consuming: idempotent, like the rabbit transport
            consumer = _Consumer(conn_id, next(self._ids), queue, prefetch)
            conn.consumers[queue] = consumer
            q.consumers.append(consumer)
            self._dispatch(q)

    def cancel(self, conn_id: int, queue: str) -> None:
        with self._cond:
            self._cancel_locked(self._conn(conn_id), queue)
            self._cond.notify_all()

    def poll(self, conn_id: int, timeout: float, max_messages: int | None) -> list[Delivery]:
        with self._cond:
            conn = self._conn(conn_id)
            if timeout > 0:
                self._cond.wait_for(lambda: bool(conn.buffer) or conn_id not in self._conns,
                                    timeout)
            out: list[Delivery] = []
            while conn.buffer and (max_messages is None or len(out) < max_messages):
                out.append(conn.buffer.popleft())
            return out

    def settle(self, conn_id: int, delivery: Delivery, outcome: str) -> None:
        """Ack (``ack``), return (``requeue``) or reject (``reject``) one delivery."""
        with self._cond:
            conn = self._conn(conn_id)
            consumer = conn.consumers.get(delivery.queue)
            if consumer is None or consumer.epoch != delivery.epoch:
                return  # stale: its consumer session ended and the message went back already
            stored = consumer.unacked.pop(delivery.delivery_tag, None)
            if stored is None:
                return  # already settled
            q = self._queues[delivery.queue]
            if outcome == "requeue":
                self._return(q, stored)
            elif outcome == "reject":
                self._dead_letter(q, stored, "rejected")
            self._dispatch(q)
            self._cond.notify_all()

    # -- internals (caller holds the lock) -----------------------------------------------
    def _conn(self, conn_id: int) -> _Connection:
        conn = self._conns.get(conn_id)
        if conn is None:
            raise BrokerError("connection is closed")
        return conn

    def _queue(self, queue: str) -> _Queue:
        q = self._queues.get(queue)
        if q is None:
            raise NotFound(f"no queue {queue!r}")
        return q

    def _exchange(self, exchange: str) -> _Exchange:
        ex = self._exchanges.get(exchange)
        if ex is None:
            raise NotFound(f"no exchange {exchange!r}")
        return ex

    def _route(self, exchange: str, routing_key: str) -> list[str]:
        if exchange == "":
            return [routing_key] if routing_key in self._queues else []
        ex = self._exchange(exchange)
        kind = ex.spec.kind
        matched: dict[str, None] = {}  # one copy per queue even if bound twice
        for queue, key in ex.bindings:
            if (
                kind == "fanout"
                or (kind == "direct" and key == routing_key)
                or (kind == "topic" and topic_matches(key, routing_key))
            ):
                matched[queue] = None
        return list(matched)

    def _enqueue(self, q: _Queue, message: Message, exchange: str, routing_key: str) -> None:
        own = replace(message, body=bytes(message.body), headers=copy.deepcopy(message.headers))
        stored = _Stored(next(self._seq), own, exchange, routing_key)
        heapq.heappush(q.ready, (stored.seq, stored))
        self._dispatch(q)

    def _dispatch(self, q: _Queue) -> None:
        while q.ready:
            consumer = self._pick_consumer(q)
            if consumer is None:
                return
            _, stored = heapq.heappop(q.ready)
            conn = self._conns[consumer.conn_id]
            tag = conn.next_tag
            conn.next_tag += 1
            consumer.unacked[tag] = stored
            conn.buffer.append(self._delivery(q, consumer, tag, stored))

    def _pick_consumer(self, q: _Queue) -> _Consumer | None:
        if not q.consumers:
            return None
        if q.spec.single_active_consumer:
            active = q.consumers[0]
            return active if active.has_capacity() else None
        count = len(q.consumers)
        for offset in range(count):  # round robin among consumers with capacity
            consumer = q.consumers[(q.next_rr + offset) % count]
            if consumer.has_capacity():
                q.next_rr = (q.next_rr + offset + 1) % count
                return consumer
        return None

    @staticmethod
    def _delivery(q: _Queue, consumer: _Consumer, tag: int, stored: _Stored) -> Delivery:
        msg = stored.message
        headers = copy.deepcopy(msg.headers)
        if stored.delivery_count:
            headers["x-delivery-count"] = stored.delivery_count  # as RabbitMQ adds it
        return Delivery(
            queue=q.spec.name,
            delivery_tag=tag,
            body=bytes(msg.body),
            headers=headers,
            redelivered=stored.redelivered,
            routing_key=stored.routing_key,
            exchange=stored.exchange,
            message_id=msg.message_id,
            correlation_id=msg.correlation_id,
            reply_to=msg.reply_to,
            delivery_count=stored.delivery_count,
            epoch=consumer.epoch,
        )

    def _cancel_locked(self, conn: _Connection, queue: str) -> None:
        consumer = conn.consumers.pop(queue, None)
        if consumer is None:
            return
        conn.buffer = deque(d for d in conn.buffer if d.epoch != consumer.epoch)
        q = self._queues.get(queue)
        if q is None:
            return
        q.consumers.remove(consumer)
        q.next_rr = 0
        for stored in consumer.unacked.values():  # tag order == delivery order
            self._return(q, stored)
        self._dispatch(q)

    def _return(self, q: _Queue, stored: _Stored) -> None:
        stored.delivery_count += 1
        stored.redelivered = True
        limit = q.spec.delivery_limit
        if limit is not None and stored.delivery_count > limit:
            self._dead_letter(q, stored, "delivery_limit")
        else:
            heapq.heappush(q.ready, (stored.seq, stored))

    def _dead_letter(self, q: _Queue, stored: _Stored, reason: str) -> None:
        dlx = q.spec.dead_letter_exchange
        if dlx is None or dlx not in self._exchanges:
            return  # RabbitMQ drops it too
        msg = stored.message
        headers = dead_letter_headers(
            msg.headers, q.spec.name, reason, stored.exchange, stored.routing_key
        )
        dead = replace(msg, headers=headers)
        for queue in self._route(dlx, stored.routing_key):
            self._enqueue(self._queues[queue], dead, dlx, stored.routing_key)


class MemoryBroker:
    """One connection to a ``MemoryHub``; implements the ``Broker`` protocol."""

    def __init__(self, hub: MemoryHub) -> None:
        self._hub = hub
        self._conn_id = hub.connect()
        self._closed = False
        self.stats = BrokerStats()

    def declare_exchange(self, spec: ExchangeSpec) -> None:
        self._check_open()
        self._hub.declare_exchange(spec)

    def declare_queue(self, spec: QueueSpec) -> None:
        self._check_open()
        self._hub.declare_queue(spec)

    def publish(self, exchange: str, routing_key: str, message: Message) -> None:
        self._check_open()
        self._hub.publish(exchange, routing_key, message)
        self.stats.published += 1

    def consume(self, queue: str, prefetch: int = 100) -> None:
        self._check_open()
        self._hub.consume(self._conn_id, queue, prefetch)

    def cancel(self, queue: str) -> None:
        self._check_open()
        self._hub.cancel(self._conn_id, queue)

    def poll(self, timeout: float = 0.0, max_messages: int | None = None) -> list[Delivery]:
        self._check_open()
        out = self._hub.poll(self._conn_id, timeout, max_messages)
        self.stats.delivered += len(out)
        return out

    def ack(self, delivery: Delivery) -> None:
        self._check_open()
        self._hub.settle(self._conn_id, delivery, "ack")

    def nack(self, delivery: Delivery, requeue: bool = True) -> None:
        self._check_open()
        self._hub.settle(self._conn_id, delivery, "requeue" if requeue else "reject")

    def queue_depth(self, queue: str) -> int:
        self._check_open()
        return self._hub.queue_depth(queue)

    def purge(self, queue: str) -> int:
        self._check_open()
        return self._hub.purge(queue)

    def delete_queue(self, queue: str) -> None:
        self._check_open()
        self._hub.delete_queue(queue)

    def delete_exchange(self, exchange: str) -> None:
        self._check_open()
        self._hub.delete_exchange(exchange)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._hub.disconnect(self._conn_id)

    def _check_open(self) -> None:
        if self._closed:
            raise BrokerError("broker connection is closed")
