"""Consumer channels of a ``RabbitBroker``: one channel per consumed queue, and their deliveries.

A separate channel per consumer makes ``cancel`` a channel close, which is the only way
RabbitMQ returns unacked messages *atomically* before a single-active-consumer hand-over, and it
makes prefetch exactly per consumer. Every consumer session gets a fresh ``epoch``, stamped on
its deliveries: a delivery from a session that ended (cancelled, channel died, connection lost)
is dropped from the buffer, and settling it later is a silent no-op instead of acking whatever
message now has its tag.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pika.exceptions as pex
from pika.adapters.blocking_connection import BlockingChannel

from shared.broker.base import Delivery
from shared.broker.rabbitmq.connection import LOST, ManagedConnection
from shared.broker.semantics import plain_headers

Settle = Callable[[BlockingChannel, int], Any]


@dataclass
class _Consumer:
    queue: str
    prefetch: int
    epoch: int = 0  # 0: no live session (no delivery carries epoch 0 from this transport)
    channel: BlockingChannel | None = None
    tags: set[int] = field(default_factory=set)  # unsettled delivery tags on ``channel``
    broker_cancelled: bool = False


class ConsumerChannels:
    """The consumers of one connection, restarted whenever their channel or connection dies."""

    def __init__(self, link: ManagedConnection) -> None:
        self._link = link
        self._consumers: dict[str, _Consumer] = {}
        self._buffer: deque[Delivery] = deque()
        self._next_epoch = 1

    def consume(self, queue: str, prefetch: int) -> None:
        if queue in self._consumers:
            return  # already consuming: idempotent
        consumer = _Consumer(queue, prefetch)
        self._link.call(lambda: self._start(consumer))
        self._consumers[queue] = consumer

    def cancel(self, queue: str) -> None:
        self._link.check_open()
        consumer = self._consumers.pop(queue, None)
        if consumer is None:
            return
        self._discard_buffered(consumer)
        consumer.epoch = 0  # late events from the closing channel are ignored
        self._close_bare(consumer.channel)  # the broker returns its unacked ones

    def poll(self, timeout: float, max_messages: int | None) -> list[Delivery]:
        """Service the connection until a delivery is buffered or ``timeout`` passed."""
        self._link.check_open()
        deadline = time.monotonic() + max(timeout, 0.0)
        while True:
            self._link.ensure_connected()
            assert self._link.connection is not None
            remaining = 0.0 if self._buffer else max(deadline - time.monotonic(), 0.0)
            try:
                self._link.connection.process_data_events(time_limit=remaining)
                self.revive()
            except (pex.AMQPChannelError, *LOST) as exc:
                self._link.on_failure(exc)  # a dead channel is revived on the next round
            if self._buffer or time.monotonic() >= deadline:
                break
        count = len(self._buffer) if max_messages is None else min(max_messages, len(self._buffer))
        return [self._buffer.popleft() for _ in range(count)]

    def settle(self, delivery: Delivery, op: Settle) -> None:
        self._link.check_open()
        consumer = self._consumers.get(delivery.queue)
        tag = delivery.delivery_tag
        if consumer is None or consumer.epoch != delivery.epoch or tag not in consumer.tags:
            return  # stale: its channel is gone and the broker has requeued the message
        consumer.tags.discard(tag)
        assert consumer.channel is not None
        try:
            op(consumer.channel, tag)
        except (pex.AMQPChannelError, *LOST) as exc:
            self._link.on_failure(exc)  # the broker requeues it; poll() reconnects/revives

    def close_all(self) -> None:
        """End every session (the broker returns their unacked messages) and forget them."""
        if self._link.is_open:
            for consumer in self._consumers.values():
                consumer.epoch = 0
                self._close_bare(consumer.channel)
        self._consumers.clear()

    # -- hooks of the connection -----------------------------------------------------------
    def reattach(self) -> None:
        """On a new connection: every consumer gets a new channel."""
        for consumer in list(self._consumers.values()):
            consumer.channel = None
        self.revive()

    def forget_connection(self) -> None:
        """The connection is gone: its buffered deliveries and unsettled tags are void."""
        self._buffer.clear()
        for consumer in self._consumers.values():
            consumer.channel, consumer.tags = None, set()
            consumer.epoch = 0

    def revive(self) -> None:
        """Restart consumers whose channel died or that the broker cancelled."""
        for queue, consumer in list(self._consumers.items()):
            channel = consumer.channel
            if channel is not None and channel.is_open and not consumer.broker_cancelled:
                continue
            self._close_graceful(channel)
            self._discard_buffered(consumer)
            try:
                self._start(consumer)
            except pex.ChannelClosedByBroker as exc:
                self._link.note_error(exc)
                if exc.reply_code == 404:
                    del self._consumers[queue]  # its queue is gone: nothing to consume

    # -- one session -------------------------------------------------------------------------
    def _start(self, consumer: _Consumer) -> None:
        assert self._link.connection is not None
        channel = self._link.connection.channel()
        epoch, self._next_epoch = self._next_epoch, self._next_epoch + 1
        consumer.epoch, consumer.channel = epoch, channel
        consumer.tags, consumer.broker_cancelled = set(), False
        try:
            channel.basic_qos(prefetch_count=max(consumer.prefetch, 0))
            channel.add_on_cancel_callback(lambda _frame: self._mark_cancelled(consumer))
            channel.basic_consume(consumer.queue, self._receiver(consumer, epoch), auto_ack=False)
        except pex.AMQPChannelError:
            consumer.channel = None
            self._close_graceful(channel)
            raise

    def _receiver(self, consumer: _Consumer, epoch: int) -> Callable[..., None]:
        def on_message(_ch: BlockingChannel, method: Any, props: Any, body: bytes) -> None:
            if consumer.epoch != epoch:
                return  # a late event from a channel we already replaced
            headers = plain_headers(props.headers or {})
            consumer.tags.add(method.delivery_tag)
            self._buffer.append(Delivery(
                queue=consumer.queue,
                delivery_tag=method.delivery_tag,
                body=bytes(body),
                headers=headers,
                redelivered=bool(method.redelivered),
                routing_key=method.routing_key or "",
                exchange=method.exchange or "",
                message_id=props.message_id,
                correlation_id=props.correlation_id,
                reply_to=props.reply_to,
                delivery_count=int(headers.get("x-delivery-count", 0) or 0),
                epoch=epoch,
                user_id=props.user_id,
            ))

        return on_message

    def _mark_cancelled(self, consumer: _Consumer) -> None:
        consumer.broker_cancelled = True  # queue deleted or its leader moved

    def _discard_buffered(self, consumer: _Consumer) -> None:
        self._buffer = deque(d for d in self._buffer if d.epoch != consumer.epoch)

    def _close_bare(self, channel: BlockingChannel | None) -> None:
        """Close a consumer channel *without* sending basic.cancel first.

        pika's ``BlockingChannel.close`` cancels consumers before closing. On a
        single-active-consumer queue that cancel activates the standby consumer *before* the
        close returns our unacked messages, so the standby gets later messages first (measured
        on RabbitMQ 3.10). A bare channel close makes the broker return the unacked messages and
        switch consumers in one step, preserving queue order across the hand-over.
        """
        conn = self._link.connection
        if channel is None or not channel.is_open or conn is None:
            return
        try:
            impl = channel._impl
            impl._cancelled.update(impl._consumers)  # pika skips basic.cancel for these
            impl.close()
            deadline = time.monotonic() + 5.0
            while not impl.is_closed and time.monotonic() < deadline:
                conn.process_data_events(time_limit=0.05)
            channel._cleanup()
        except AttributeError:  # pika internals changed: fall back to the graceful close
            self._close_graceful(channel)
        except (pex.AMQPError, OSError) as exc:
            self._link.on_failure(exc)

    def _close_graceful(self, channel: BlockingChannel | None) -> None:
        if channel is None or not channel.is_open:
            return
        try:
            channel.close()
        except (pex.AMQPError, OSError) as exc:
            self._link.note_error(exc)
