"""``MemoryBroker``: one client connection to a ``MemoryHub``, implementing ``Broker``.

A thin facade: every call checks the connection is open and forwards to the hub, which does
the work under its lock. The hub never loses a connection, so ``stats.reconnects`` stays 0.
"""

from __future__ import annotations

from shared.broker.base import (
    BrokerError,
    BrokerStats,
    Delivery,
    ExchangeSpec,
    Message,
    QueueSpec,
    QueueStats,
)
from shared.broker.memory.hub import MemoryHub


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

    def declare_queue(self, spec: QueueSpec) -> str:
        self._check_open()
        return self._hub.declare_queue(spec, owner=self._conn_id)

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

    def queue_stats(self, queue: str) -> QueueStats:
        self._check_open()
        return self._hub.queue_stats(queue)

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
