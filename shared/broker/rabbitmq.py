"""RabbitMQ transport over pika's BlockingConnection. The only module that imports pika.

Design choices (see also the contract tests, which run the same suite against memory://):

* One publishing channel in confirm mode (every publish waits for the broker's ack), plus one
  channel per consumed queue. A separate channel per consumer makes ``cancel`` a channel close,
  which is the only way RabbitMQ returns unacked messages *atomically* before a
  single-active-consumer hand-over, and it makes prefetch exactly per consumer.
* pika exceptions are translated here: connection problems become ``ConnectionLost`` (after
  reconnect attempts), a 404 becomes ``NotFound``, a nack/return becomes
  ``PublishNotConfirmed``. Error text is scrubbed of credentials.
* Reconnect: when the connection drops, the next call reconnects with capped exponential
  backoff, re-declares every exchange/queue declared through this object and restarts every
  consumer. With ``wait_for_broker=False`` (the shard worker, which keeps ticking through an
  outage) a call makes at most one attempt, none before the backoff delay has passed, and
  raises ``ConnectionLost`` at once if the broker is still away. Deliveries from the dead
  connection are discarded (the broker redelivers them); acking one later is a silent no-op
  thanks to ``Delivery.epoch``. A publish interrupted by a connection loss is retried once on
  the new connection, so it may be stored twice: consumers dedupe by id (PROTOCOL.md
  guarantee 2).
"""

from __future__ import annotations

import contextlib
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import pika
import pika.exceptions as pex
from pika.adapters.blocking_connection import BlockingChannel, BlockingConnection

from shared.broker import redact_url, scrub_secrets
from shared.broker.base import (
    BrokerError,
    BrokerStats,
    ConnectionLost,
    Delivery,
    ExchangeSpec,
    Message,
    NotFound,
    PublishNotConfirmed,
    QueueSpec,
    check_headers,
)
from shared.broker.semantics import plain_headers, queue_arguments

T = TypeVar("T")

# Errors after which the connection (not just one channel) must be considered gone.
_LOST = (pex.AMQPConnectionError, pex.ChannelWrongStateError, OSError)
_AUTH = (pex.AuthenticationError, pex.ProbableAuthenticationError, pex.ProbableAccessDeniedError)


@dataclass
class _Consumer:
    queue: str
    prefetch: int
    epoch: int = 0
    channel: BlockingChannel | None = None
    tags: set[int] = field(default_factory=set)  # unsettled delivery tags on ``channel``
    broker_cancelled: bool = False


class RabbitBroker:
    """A ``Broker`` backed by one RabbitMQ connection. Not thread-safe (pika isn't)."""

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
    ) -> None:
        self._url = url
        self._params = pika.URLParameters(url)
        self._params.heartbeat = heartbeat
        self._params.connection_attempts = connection_attempts
        self._params.socket_timeout = socket_timeout
        self._params.blocked_connection_timeout = blocked_connection_timeout
        self._params.client_properties = {"connection_name": connection_name}
        self._reconnect_timeout = reconnect_timeout
        self._backoff = backoff
        self._on_reconnect = on_reconnect
        self._wait_for_broker = wait_for_broker
        self._retry_delay = backoff[0]
        self._next_attempt = 0.0  # monotonic time before which a fail-fast call won't redial
        self.stats = BrokerStats()
        self._exchanges: dict[str, ExchangeSpec] = {}
        self._queues: dict[str, QueueSpec] = {}
        self._consumers: dict[str, _Consumer] = {}
        self._buffer: deque[Delivery] = deque()
        self._next_epoch = 1
        self._conn: BlockingConnection | None = None
        self._pub: BlockingChannel | None = None
        self._closed = False
        self._connect(initial=True)

    # -- Broker protocol -----------------------------------------------------------------
    def declare_exchange(self, spec: ExchangeSpec) -> None:
        self._call(lambda: self._declare_exchange(spec))
        self._exchanges[spec.name] = spec

    def declare_queue(self, spec: QueueSpec) -> None:
        self._call(lambda: self._declare_queue(spec))
        known = self._queues.get(spec.name)
        bindings = dict.fromkeys((known.bindings if known else ()) + spec.bindings)
        self._queues[spec.name] = replace(spec, bindings=tuple(bindings))

    def publish(self, exchange: str, routing_key: str, message: Message) -> None:
        check_headers(message.headers)
        props = pika.BasicProperties(
            content_type=message.content_type,
            delivery_mode=2 if message.persistent else 1,
            headers=dict(message.headers) or None,
            message_id=message.message_id,
            correlation_id=message.correlation_id,
            reply_to=message.reply_to,
        )
        self._call(lambda: self._publish(exchange, routing_key, bytes(message.body), props))
        self.stats.published += 1

    def consume(self, queue: str, prefetch: int = 100) -> None:
        if queue in self._consumers:
            return  # already consuming: idempotent
        consumer = _Consumer(queue, prefetch)
        self._call(lambda: self._start_consumer(consumer))
        self._consumers[queue] = consumer

    def cancel(self, queue: str) -> None:
        self._check_open()
        consumer = self._consumers.pop(queue, None)
        if consumer is None:
            return
        self._buffer = deque(d for d in self._buffer if d.epoch != consumer.epoch)
        consumer.epoch = 0  # late events from the closing channel are ignored
        self._close_consumer_channel(consumer.channel)  # the broker returns its unacked ones

    def poll(self, timeout: float = 0.0, max_messages: int | None = None) -> list[Delivery]:
        self._check_open()
        deadline = time.monotonic() + max(timeout, 0.0)
        while True:
            self._ensure_connected()
            assert self._conn is not None
            remaining = 0.0 if self._buffer else max(deadline - time.monotonic(), 0.0)
            try:
                self._conn.process_data_events(time_limit=remaining)
                self._revive_consumers()
            except (pex.AMQPChannelError, *_LOST) as exc:
                self._on_failure(exc)  # a dead channel is revived on the next round
            if self._buffer or time.monotonic() >= deadline:
                break
        count = len(self._buffer) if max_messages is None else min(max_messages, len(self._buffer))
        out = [self._buffer.popleft() for _ in range(count)]
        self.stats.delivered += len(out)
        return out

    def ack(self, delivery: Delivery) -> None:
        self._settle(delivery, lambda ch, tag: ch.basic_ack(tag))

    def nack(self, delivery: Delivery, requeue: bool = True) -> None:
        self._settle(delivery, lambda ch, tag: ch.basic_nack(tag, requeue=requeue))

    def queue_depth(self, queue: str) -> int:
        def passive() -> int:
            frame = self._channel().queue_declare(queue, passive=True)
            return int(frame.method.message_count)

        return self._call(passive)

    def purge(self, queue: str) -> int:
        def purge() -> int:
            return int(self._channel().queue_purge(queue).method.message_count)

        return self._call(purge)

    def delete_queue(self, queue: str) -> None:
        self.cancel(queue)
        self._queues.pop(queue, None)
        self._call(lambda: self._channel().queue_delete(queue))

    def delete_exchange(self, exchange: str) -> None:
        self._exchanges.pop(exchange, None)
        self._call(lambda: self._channel().exchange_delete(exchange))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._conn is not None and self._conn.is_open:
            for consumer in self._consumers.values():
                consumer.epoch = 0
                self._close_consumer_channel(consumer.channel)
        self._consumers.clear()
        self._drop_connection()

    # -- operations on the live connection ------------------------------------------------
    def _channel(self) -> BlockingChannel:
        if self._pub is None or not self._pub.is_open:
            assert self._conn is not None
            self._pub = self._conn.channel()
            self._pub.confirm_delivery()
        return self._pub

    def _declare_exchange(self, spec: ExchangeSpec) -> None:
        self._channel().exchange_declare(spec.name, spec.kind, durable=spec.durable)

    def _declare_queue(self, spec: QueueSpec) -> None:
        args = queue_arguments(spec)
        self._channel().queue_declare(spec.name, durable=spec.durable, arguments=args or None)
        for exchange, key in spec.bindings:
            self._channel().queue_bind(spec.name, exchange, routing_key=key)

    def _publish(self, exchange: str, key: str, body: bytes, props: Any) -> None:
        try:
            self._channel().basic_publish(exchange, key, body, props)
        except (pex.UnroutableError, pex.NackError) as exc:
            raise PublishNotConfirmed(
                f"broker did not confirm publish to {exchange!r}/{key!r}: {type(exc).__name__}"
            ) from None

    def _start_consumer(self, consumer: _Consumer) -> None:
        assert self._conn is not None
        channel = self._conn.channel()
        epoch, self._next_epoch = self._next_epoch, self._next_epoch + 1
        consumer.epoch, consumer.channel = epoch, channel
        consumer.tags, consumer.broker_cancelled = set(), False
        try:
            channel.basic_qos(prefetch_count=max(consumer.prefetch, 0))
            channel.add_on_cancel_callback(lambda _frame: self._mark_cancelled(consumer))
            channel.basic_consume(consumer.queue, self._receiver(consumer, epoch), auto_ack=False)
        except pex.AMQPChannelError:
            consumer.channel = None
            self._close_channel(channel)
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
            ))

        return on_message

    def _mark_cancelled(self, consumer: _Consumer) -> None:
        consumer.broker_cancelled = True  # queue deleted or its leader moved

    def _revive_consumers(self) -> None:
        """Restart consumers whose channel died or that the broker cancelled."""
        for queue, consumer in list(self._consumers.items()):
            channel = consumer.channel
            if channel is not None and channel.is_open and not consumer.broker_cancelled:
                continue
            self._close_channel(channel)
            self._buffer = deque(d for d in self._buffer if d.epoch != consumer.epoch)
            try:
                self._start_consumer(consumer)
            except pex.ChannelClosedByBroker as exc:
                self._note_error(exc)
                if exc.reply_code == 404:
                    del self._consumers[queue]  # its queue is gone: nothing to consume

    def _settle(self, delivery: Delivery, op: Callable[[BlockingChannel, int], Any]) -> None:
        self._check_open()
        consumer = self._consumers.get(delivery.queue)
        tag = delivery.delivery_tag
        if consumer is None or consumer.epoch != delivery.epoch or tag not in consumer.tags:
            return  # stale: its channel is gone and the broker has requeued the message
        consumer.tags.discard(tag)
        assert consumer.channel is not None
        try:
            op(consumer.channel, tag)
        except (pex.AMQPChannelError, *_LOST) as exc:
            self._on_failure(exc)  # the broker requeues it; poll() reconnects/revives

    # -- connection management -----------------------------------------------------------
    def _call(self, op: Callable[[], T]) -> T:
        """Run ``op`` on a live connection, reconnecting and retrying once if it drops."""
        self._check_open()
        for _attempt in range(2):
            self._ensure_connected()
            try:
                return op()
            except pex.ChannelClosedByBroker as exc:
                self._note_error(exc)  # _channel() reopens the publishing channel if needed
                if exc.reply_code == 404:
                    raise NotFound(self._scrub(exc.reply_text)) from None
                raise BrokerError(self._scrub(f"{exc.reply_code} {exc.reply_text}")) from None
            except _LOST as exc:
                self._on_failure(exc)
        raise ConnectionLost(f"connection to {redact_url(self._url)} lost twice in one call")

    def _ensure_connected(self) -> None:
        self._check_open()
        if self._conn is None or not self._conn.is_open:
            self._connect(initial=False)

    def _connect(self, *, initial: bool) -> None:
        if not initial and not self._wait_for_broker:
            self._redial_once()
            return
        self._drop_connection()
        deadline = time.monotonic() + self._reconnect_timeout
        delay = self._backoff[0]
        while True:
            try:
                self._open()
                break
            except (*_LOST, pex.AMQPError) as exc:
                self._note_error(exc)
                self._drop_connection()
                # Bad credentials at start-up are a configuration error, not an outage.
                if time.monotonic() + delay > deadline or (initial and isinstance(exc, _AUTH)):
                    raise ConnectionLost(
                        f"cannot connect to {redact_url(self._url)}: {self.stats.last_error}"
                    ) from None
                time.sleep(delay)
                delay = min(delay * 2, self._backoff[1])
        if not initial:
            self.stats.reconnects += 1
            if self._on_reconnect is not None:
                self._on_reconnect()

    def _redial_once(self) -> None:
        """One reconnect attempt if the backoff allows it; ``ConnectionLost`` if none succeeds."""
        self._drop_connection()
        now = time.monotonic()
        if now < self._next_attempt:
            raise ConnectionLost(f"{redact_url(self._url)} unreachable: {self.stats.last_error}")
        try:
            self._open()
        except (*_LOST, pex.AMQPError) as exc:
            self._note_error(exc)
            self._drop_connection()
            self._next_attempt = now + self._retry_delay
            self._retry_delay = min(self._retry_delay * 2, self._backoff[1])
            raise ConnectionLost(
                f"cannot reconnect to {redact_url(self._url)}: {self.stats.last_error}") from None
        self._retry_delay, self._next_attempt = self._backoff[0], 0.0
        self.stats.reconnects += 1
        if self._on_reconnect is not None:
            self._on_reconnect()

    def _open(self) -> None:
        self._conn = BlockingConnection(self._params)
        self._channel()
        for exchange in self._exchanges.values():
            self._declare_exchange(exchange)
        for queue in self._queues.values():
            self._declare_queue(queue)
        for consumer in list(self._consumers.values()):
            consumer.channel = None
        self._revive_consumers()

    def _on_failure(self, exc: BaseException) -> None:
        """Record ``exc``; if the connection itself is gone, forget it (its deliveries are void).

        A failure confined to one channel leaves the connection alone: the publishing channel
        is reopened lazily by ``_channel`` and consumer channels by ``_revive_consumers``.
        """
        self._note_error(exc)
        if self._conn is None or not self._conn.is_open:
            self._drop_connection()

    def _drop_connection(self) -> None:
        conn, self._conn, self._pub = self._conn, None, None
        self._buffer.clear()
        for consumer in self._consumers.values():
            consumer.channel, consumer.tags = None, set()
            consumer.epoch = 0  # no delivery carries epoch 0 from this transport
        if conn is not None and conn.is_open:
            # Closing a half-broken connection can fail in any way; it is being discarded.
            with contextlib.suppress(Exception):
                conn.close()

    def _close_consumer_channel(self, channel: BlockingChannel | None) -> None:
        """Close a consumer channel *without* sending basic.cancel first.

        pika's ``BlockingChannel.close`` cancels consumers before closing. On a
        single-active-consumer queue that cancel activates the standby consumer *before* the
        close returns our unacked messages, so the standby gets later messages first (measured
        on RabbitMQ 3.10). A bare channel close makes the broker return the unacked messages and
        switch consumers in one step, preserving queue order across the hand-over.
        """
        if channel is None or not channel.is_open or self._conn is None:
            return
        try:
            impl = channel._impl
            impl._cancelled.update(impl._consumers)  # pika skips basic.cancel for these
            impl.close()
            deadline = time.monotonic() + 5.0
            while not impl.is_closed and time.monotonic() < deadline:
                self._conn.process_data_events(time_limit=0.05)
            channel._cleanup()
        except AttributeError:  # pika internals changed: fall back to the graceful close
            self._close_channel(channel)
        except (pex.AMQPError, OSError) as exc:
            self._on_failure(exc)

    def _close_channel(self, channel: BlockingChannel | None) -> None:
        if channel is None or not channel.is_open:
            return
        try:
            channel.close()
        except (pex.AMQPError, OSError) as exc:
            self._note_error(exc)

    def _note_error(self, exc: BaseException) -> None:
        self.stats.last_error = self._scrub(repr(exc))  # pika's str() is often empty

    def _scrub(self, text: str) -> str:
        return scrub_secrets(text, self._url)

    def _check_open(self) -> None:
        if self._closed:
            raise BrokerError("broker connection is closed")
