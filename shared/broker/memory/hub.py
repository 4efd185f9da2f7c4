"""``MemoryHub``, the in-process broker "server": exchanges, queues, connections, one lock.

One hub is shared by every ``MemoryBroker`` of the process (embedded mode runs workers as
threads), so all hub state sits behind one lock and a condition wakes pollers. Queue semantics
live in ``queue.py``, routing in ``routing.py``; this module declares, moves messages between
them and dead-letters.
"""

from __future__ import annotations

import copy
import itertools
import threading
import uuid
from collections import deque
from dataclasses import replace
from typing import Literal

from shared.broker.base import (
    BrokerError,
    Delivery,
    ExchangeSpec,
    Message,
    NotFound,
    QueueSpec,
    QueueStats,
    Unroutable,
    check_headers,
)
from shared.broker.memory.queue import Connection, Consumer, MemoryQueue, Stored
from shared.broker.memory.routing import MemoryExchange
from shared.broker.semantics import dead_letter_headers

Outcome = Literal["ack", "requeue", "reject"]


def _same_queue_args(a: QueueSpec, b: QueueSpec) -> bool:
    return replace(a, bindings=()) == replace(b, bindings=())


class MemoryHub:
    """The in-process broker server. Thread-safe; share one per process (or per test)."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._exchanges: dict[str, MemoryExchange] = {}
        self._queues: dict[str, MemoryQueue] = {}
        self._conns: dict[int, Connection] = {}
        self._seq = itertools.count(1)
        self._ids = itertools.count(1)  # connection ids and consumer epochs

    # -- connections ---------------------------------------------------------------------
    def connect(self) -> int:
        with self._cond:
            conn = Connection(next(self._ids))
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
            for name in [n for n, q in self._queues.items() if q.owner == conn_id]:
                self._delete_locked(name)  # exclusive queues die with their connection
            self._cond.notify_all()

    # -- topology ------------------------------------------------------------------------
    def declare_exchange(self, spec: ExchangeSpec) -> None:
        if not spec.name:
            raise ValueError("the default exchange cannot be declared")
        with self._cond:
            existing = self._exchanges.get(spec.name)
            if existing is None:
                self._exchanges[spec.name] = MemoryExchange(spec)
            elif existing.spec != spec:
                raise BrokerError(f"exchange {spec.name!r} exists with different arguments")

    def declare_queue(self, spec: QueueSpec, owner: int | None = None) -> str:
        """Declare and bind; an exclusive queue belongs to connection ``owner`` (and an empty
        name is chosen here, as RabbitMQ does). Returns the queue's name."""
        name = spec.name or f"amq.gen-{uuid.uuid4().hex}"
        spec = replace(spec, name=name)
        with self._cond:
            existing = self._queues.get(name)
            if existing is None:
                self._queues[name] = MemoryQueue(spec, owner=owner if spec.exclusive else None)
            elif not _same_queue_args(existing.spec, spec):
                raise BrokerError(f"queue {name!r} exists with different arguments")
            elif existing.owner is not None and existing.owner != owner:
                raise BrokerError(f"queue {name!r} is exclusive to another connection")
            for exchange, key in spec.bindings:
                self._exchange(exchange).bind(name, key)
        return name

    def delete_queue(self, queue: str) -> None:
        with self._cond:
            self._delete_locked(queue)

    def delete_exchange(self, exchange: str) -> None:
        with self._cond:
            self._exchanges.pop(exchange, None)

    # -- messages ------------------------------------------------------------------------
    def publish(self, exchange: str, routing_key: str, message: Message) -> None:
        check_headers(message.headers)
        with self._cond:
            queues = self._route(exchange, routing_key)
            if message.mandatory and not queues:
                raise Unroutable(f"no queue is bound to {exchange!r} for routing key "
                                 f"{routing_key!r}: the publish was returned")
            for queue in queues:
                self._enqueue(self._queues[queue], message, exchange, routing_key)
            self._cond.notify_all()

    def queue_depth(self, queue: str) -> int:
        with self._cond:
            return len(self._queue(queue).ready)

    def queue_stats(self, queue: str) -> QueueStats:
        with self._cond:
            q = self._queue(queue)
            return QueueStats(len(q.ready), len(q.consumers))

    def purge(self, queue: str) -> int:
        with self._cond:
            return self._queue(queue).purge()

    # -- consuming -----------------------------------------------------------------------
    def consume(self, conn_id: int, queue: str, prefetch: int) -> None:
        with self._cond:
            conn = self._conn(conn_id)
            q = self._queue(queue)
            if q.owner is not None and q.owner != conn_id:
                raise BrokerError(f"queue {queue!r} is exclusive to another connection")
            if queue in conn.consumers:
                return  # already consuming: idempotent, like the rabbit transport
            consumer = Consumer(conn, next(self._ids), queue, prefetch)
            conn.consumers[queue] = consumer
            q.consumers.append(consumer)
            q.dispatch()

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

    def settle(self, conn_id: int, delivery: Delivery, outcome: Outcome) -> None:
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
            q.dispatch()
            self._cond.notify_all()

    # -- internals (caller holds the lock) -----------------------------------------------
    def _conn(self, conn_id: int) -> Connection:
        conn = self._conns.get(conn_id)
        if conn is None:
            raise BrokerError("connection is closed")
        return conn

    def _queue(self, queue: str) -> MemoryQueue:
        q = self._queues.get(queue)
        if q is None:
            raise NotFound(f"no queue {queue!r}")
        return q

    def _exchange(self, exchange: str) -> MemoryExchange:
        ex = self._exchanges.get(exchange)
        if ex is None:
            raise NotFound(f"no exchange {exchange!r}")
        return ex

    def _route(self, exchange: str, routing_key: str) -> list[str]:
        if exchange == "":
            return [routing_key] if routing_key in self._queues else []
        return self._exchange(exchange).route(routing_key)

    def _enqueue(self, q: MemoryQueue, message: Message, exchange: str, routing_key: str) -> None:
        own = replace(message, body=bytes(message.body), headers=copy.deepcopy(message.headers))
        q.push(Stored(next(self._seq), own, exchange, routing_key))
        q.dispatch()

    def _delete_locked(self, queue: str) -> None:
        q = self._queues.pop(queue, None)
        if q is None:
            return
        for exchange in self._exchanges.values():
            exchange.unbind_queue(queue)
        for consumer in q.consumers:
            # Deliveries already handed out stay with the client; acks become no-ops.
            consumer.conn.consumers.pop(queue, None)

    def _cancel_locked(self, conn: Connection, queue: str) -> None:
        consumer = conn.consumers.pop(queue, None)
        if consumer is None:
            return
        conn.buffer = deque(d for d in conn.buffer if d.epoch != consumer.epoch)
        q = self._queues.get(queue)
        if q is None:
            return
        q.remove_consumer(consumer)
        for stored in consumer.unacked.values():  # tag order == delivery order
            self._return(q, stored)
        q.dispatch()

    def _return(self, q: MemoryQueue, stored: Stored) -> None:
        if not q.requeue(stored):
            self._dead_letter(q, stored, "delivery_limit")

    def _dead_letter(self, q: MemoryQueue, stored: Stored, reason: str) -> None:
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
