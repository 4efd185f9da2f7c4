"""``RabbitBroker``: the ``Broker`` protocol over RabbitMQ, composed of the modules beside it.

``connection`` keeps one live connection and redials it, ``declarations`` re-declares the
topology on every new connection, ``consumers`` runs one channel per consumed queue and
``publishing`` sends confirmed publishes. This class wires them together and keeps the counters.
"""

from __future__ import annotations

from collections.abc import Callable

from shared.broker.base import Delivery, ExchangeSpec, Message, QueueSpec, QueueStats
from shared.broker.rabbitmq.connection import (
    EventSink,
    ManagedConnection,
    connection_parameters,
)
from shared.broker.rabbitmq.consumers import ConsumerChannels
from shared.broker.rabbitmq.declarations import Declarations, declare_exchange, declare_queue
from shared.broker.rabbitmq.publishing import Publisher


class RabbitBroker:
    """A ``Broker`` backed by one RabbitMQ connection. Not thread-safe (pika isn't).

    Its keyword parameters are the options ``open_broker`` passes through
    (``shared/broker/transports.py`` lists them in the RabbitMQ row)."""

    def __init__(
        self,
        url: str,
        *,
        heartbeat: int = 30,
        connection_attempts: int = 1,
        socket_timeout: float = 5.0,
        blocked_connection_timeout: float = 60.0,
        reconnect_timeout: float = 30.0,
        backoff: tuple[float, float] = (0.2, 5.0),
        connection_name: str = "townlet",
        on_reconnect: Callable[[], None] | None = None,
        wait_for_broker: bool = True,
        on_event: EventSink | None = None,
    ) -> None:
        params = connection_parameters(
            url, heartbeat=heartbeat, connection_attempts=connection_attempts,
            socket_timeout=socket_timeout, blocked_connection_timeout=blocked_connection_timeout,
            connection_name=connection_name,
        )
        self._declared = Declarations()
        self._link = ManagedConnection(
            url, params, reconnect_timeout=reconnect_timeout, backoff=backoff,
            wait_for_broker=wait_for_broker, on_reconnect=on_reconnect,
            on_open=self._restore, on_drop=self._forget, on_event=on_event,
        )
        self._consumers = ConsumerChannels(self._link)
        self._publisher = Publisher(self._link)
        self.stats = self._link.stats  # reconnects and last error are the connection's
        self._link.connect(initial=True)

    # -- Broker protocol -----------------------------------------------------------------
    def declare_exchange(self, spec: ExchangeSpec) -> None:
        self._link.call(lambda: declare_exchange(self._link.channel(), spec))
        self._declared.add_exchange(spec)

    def declare_queue(self, spec: QueueSpec) -> str:
        name = self._link.call(lambda: declare_queue(self._link.channel(), spec))
        if not spec.exclusive:  # an exclusive queue dies with its connection: never redeclared
            self._declared.add_queue(spec)
        return name

    def publish(self, exchange: str, routing_key: str, message: Message) -> None:
        self._publisher.publish(exchange, routing_key, message)
        self.stats.published += 1

    def consume(self, queue: str, prefetch: int = 100) -> None:
        self._consumers.consume(queue, prefetch)

    def cancel(self, queue: str) -> None:
        self._consumers.cancel(queue)

    def poll(self, timeout: float = 0.0, max_messages: int | None = None) -> list[Delivery]:
        out = self._consumers.poll(timeout, max_messages)
        self.stats.delivered += len(out)
        return out

    def ack(self, delivery: Delivery) -> None:
        self._consumers.settle(delivery, lambda ch, tag: ch.basic_ack(tag))

    def nack(self, delivery: Delivery, requeue: bool = True) -> None:
        self._consumers.settle(delivery, lambda ch, tag: ch.basic_nack(tag, requeue=requeue))

    def queue_depth(self, queue: str) -> int:
        def passive() -> int:
            frame = self._link.channel().queue_declare(queue, passive=True)
            return int(frame.method.message_count)

        return self._link.call(passive)

    def queue_stats(self, queue: str) -> QueueStats:
        def passive() -> QueueStats:
            method = self._link.channel().queue_declare(queue, passive=True).method
            return QueueStats(int(method.message_count), int(method.consumer_count))

        return self._link.call(passive)

    def purge(self, queue: str) -> int:
        return self._link.call(
            lambda: int(self._link.channel().queue_purge(queue).method.message_count))

    def delete_queue(self, queue: str) -> None:
        self.cancel(queue)
        self._declared.forget_queue(queue)
        self._link.call(lambda: self._link.channel().queue_delete(queue))

    def delete_exchange(self, exchange: str) -> None:
        self._declared.forget_exchange(exchange)
        self._link.call(lambda: self._link.channel().exchange_delete(exchange))

    def close(self) -> None:
        if self._link.closed:
            return
        try:
            self._consumers.close_all()  # closes their channels: the broker requeues unacked
        finally:
            self._link.close()

    # -- hooks of the connection -----------------------------------------------------------
    def _restore(self) -> None:
        """A new connection: declare everything again, then restart the consumers."""
        self._declared.redeclare(self._link.channel())
        self._consumers.reattach()

    def _forget(self) -> None:
        self._consumers.forget_connection()
