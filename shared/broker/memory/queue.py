"""One queue of the in-memory broker: ready messages in order, its consumers, who gets what.

The hub holds the lock; nothing here locks. Semantics (see ``shared/broker/memory/__init__.py``):
the ready list is a heap keyed by enqueue sequence, so a returned message lands before anything
published after it; a consumer with prefetch capacity gets messages pushed at once; single
active consumer serves only the first registered consumer, otherwise round robin.
"""

from __future__ import annotations

import copy
import heapq
from collections import deque
from dataclasses import dataclass, field

from shared.broker.base import Delivery, Message, QueueSpec


@dataclass
class Stored:
    """One message as held by one queue (each queue gets its own copy)."""

    seq: int
    message: Message
    exchange: str
    routing_key: str
    delivery_count: int = 0
    redelivered: bool = False


@dataclass
class Connection:
    """One client connection: its consumers (one per queue) and deliveries not yet polled."""

    conn_id: int
    buffer: deque[Delivery] = field(default_factory=deque)
    consumers: dict[str, Consumer] = field(default_factory=dict)
    next_tag: int = 1  # delivery tags are per connection, as AMQP's are per channel


@dataclass(eq=False)  # compared by identity: each is one consumer session
class Consumer:
    conn: Connection
    epoch: int
    queue: str
    prefetch: int
    unacked: dict[int, Stored] = field(default_factory=dict)  # tag -> message, in order

    def has_capacity(self) -> bool:
        return self.prefetch <= 0 or len(self.unacked) < self.prefetch

    def take(self, stored: Stored) -> None:
        """Hand ``stored`` to this consumer: it is unacked until settled, polled from the buffer."""
        conn = self.conn
        tag = conn.next_tag
        conn.next_tag += 1
        self.unacked[tag] = stored
        conn.buffer.append(_delivery(self, tag, stored))


@dataclass
class MemoryQueue:
    spec: QueueSpec
    ready: list[tuple[int, Stored]] = field(default_factory=list)  # heap keyed by seq
    consumers: list[Consumer] = field(default_factory=list)  # registration order
    next_rr: int = 0
    owner: int | None = None  # the connection an exclusive queue belongs to
    ready_bytes: int = 0  # body bytes of the ready messages (x-max-length-bytes)

    def push(self, stored: Stored) -> None:
        heapq.heappush(self.ready, (stored.seq, stored))
        self.ready_bytes += len(stored.message.body)
        self._limit()

    def _limit(self) -> None:
        """Drop the oldest ready messages past x-max-length / x-max-length-bytes (drop-head,
        RabbitMQ's default overflow)."""
        limit, limit_bytes = self.spec.max_length, self.spec.max_length_bytes
        while self.ready and ((limit is not None and len(self.ready) > limit) or
                              (limit_bytes is not None and self.ready_bytes > limit_bytes)):
            self._pop()

    def _pop(self) -> Stored:
        _, stored = heapq.heappop(self.ready)
        self.ready_bytes -= len(stored.message.body)
        return stored

    def purge(self) -> int:
        count = len(self.ready)
        self.ready.clear()
        self.ready_bytes = 0
        return count

    def remove_consumer(self, consumer: Consumer) -> None:
        self.consumers.remove(consumer)
        self.next_rr = 0

    def requeue(self, stored: Stored) -> bool:
        """Count a return and put ``stored`` back; False if that exceeds the delivery limit
        (the caller dead-letters it instead)."""
        stored.delivery_count += 1
        stored.redelivered = True
        limit = self.spec.delivery_limit
        if limit is not None and stored.delivery_count > limit:
            return False
        self.push(stored)
        return True

    def dispatch(self) -> None:
        """Push ready messages, oldest first, to consumers with prefetch capacity."""
        while self.ready:
            consumer = self._pick_consumer()
            if consumer is None:
                return
            consumer.take(self._pop())

    def _pick_consumer(self) -> Consumer | None:
        if not self.consumers:
            return None
        if self.spec.single_active_consumer:
            active = self.consumers[0]
            return active if active.has_capacity() else None
        count = len(self.consumers)
        for offset in range(count):  # round robin among consumers with capacity
            consumer = self.consumers[(self.next_rr + offset) % count]
            if consumer.has_capacity():
                self.next_rr = (self.next_rr + offset + 1) % count
                return consumer
        return None


def _delivery(consumer: Consumer, tag: int, stored: Stored) -> Delivery:
    msg = stored.message
    headers = copy.deepcopy(msg.headers)
    if stored.delivery_count:
        headers["x-delivery-count"] = stored.delivery_count  # as RabbitMQ adds it
    return Delivery(
        queue=consumer.queue,
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
        user_id=msg.user_id,
    )
