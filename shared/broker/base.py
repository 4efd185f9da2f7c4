"""The broker contract every transport implements.

Two implementations exist: ``memory://`` (in-process, real semantics) and ``amqp://``
(RabbitMQ through pika). Production code only ever sees this interface; one contract test
suite runs against both so the embedded default behaves like the real broker.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol

ExchangeKind = Literal["direct", "fanout", "topic"]


class BrokerError(Exception):
    """A transport failure (connection lost, channel closed, publish not confirmed)."""


class ConnectionLost(BrokerError):
    """The connection to the broker went away; the caller may reconnect and retry."""


class PublishNotConfirmed(BrokerError):
    """The broker nacked or returned a publish; the message is not known to be stored."""


class Unroutable(PublishNotConfirmed):
    """A ``mandatory`` publish that no queue is bound to take (the broker returned it)."""


class NotFound(BrokerError):
    """The exchange or queue named in an operation does not exist (AMQP 404)."""


class AccessRefused(BrokerError):
    """The broker user may not do this (AMQP 403): see ops/rabbitmq/definitions.json."""


# Header value types that survive the trip through RabbitMQ (pika) unchanged. Floats are
# missing on purpose: pika cannot encode them in AMQP tables.
_HEADER_SCALARS = (str, int, bool, bytes, datetime)


def check_headers(headers: Mapping[str, object]) -> None:
    """Raise ValueError for header keys/values that would not round-trip through RabbitMQ."""
    for key, value in headers.items():
        if not isinstance(key, str):
            raise ValueError(f"header keys must be str, got {type(key).__name__}")
        _check_header_value(key, value)


def _check_header_value(key: str, value: object) -> None:
    if value is None or isinstance(value, _HEADER_SCALARS):
        return
    if isinstance(value, list | tuple):
        for item in value:
            _check_header_value(key, item)
    elif isinstance(value, Mapping):
        check_headers(value)
    else:
        raise ValueError(f"header {key!r} has unsupported type {type(value).__name__}")


@dataclass(frozen=True)
class QueueSpec:
    """Everything needed to declare a queue idempotently."""

    name: str
    durable: bool = True
    quorum: bool = False
    single_active_consumer: bool = False
    delivery_limit: int | None = None
    dead_letter_exchange: str | None = None
    bindings: tuple[tuple[str, str], ...] = ()  # (exchange, routing_key)
    # Delete the queue after this long unused (x-expires): private reply/tail queues of a
    # client that died. The memory broker dies with its process, so it can ignore this.
    expires_ms: int | None = None
    # Owned by the declaring connection and deleted with it; with an empty ``name`` the broker
    # names it (``amq.gen-...``; ``declare_queue`` returns the name): private reply and tail
    # queues, outside the project's namespace (docs/PROTOCOL.md, "Topology").
    exclusive: bool = False
    # x-max-length / x-max-length-bytes: past either, the oldest ready messages are dropped
    # (RabbitMQ's default overflow, drop-head), so a flood can never fill the broker's disk.
    max_length: int | None = None
    max_length_bytes: int | None = None

    def __post_init__(self) -> None:
        # RabbitMQ only honours these arguments on durable quorum queues; refusing the
        # combination here keeps the in-memory broker from promising what RabbitMQ won't do.
        if not self.name and not self.exclusive:
            raise ValueError("queue name must not be empty (only an exclusive queue is named "
                             "by the broker)")
        if self.exclusive and (self.quorum or self.durable):
            raise ValueError(f"exclusive queue {self.name!r} must be non-durable, not quorum")
        if self.quorum and not self.durable:
            raise ValueError(f"quorum queue {self.name!r} must be durable")
        if self.delivery_limit is not None and not self.quorum:
            raise ValueError(f"delivery_limit on {self.name!r} needs quorum=True")
        if self.delivery_limit is not None and self.delivery_limit < 0:
            raise ValueError(f"delivery_limit on {self.name!r} must be >= 0")


@dataclass(frozen=True)
class ExchangeSpec:
    name: str
    kind: ExchangeKind
    durable: bool = True


@dataclass(frozen=True)
class Message:
    """An outgoing message: the body is always bytes (the wire format is msgpack)."""

    body: bytes
    headers: dict[str, object] = field(default_factory=dict)
    persistent: bool = True
    content_type: str = "application/msgpack"
    message_id: str | None = None
    correlation_id: str | None = None
    reply_to: str | None = None
    # Refuse (``Unroutable``) instead of silently dropping when no queue is bound for it.
    mandatory: bool = False
    # The AMQP user_id property: RabbitMQ refuses a publish whose user_id is not the
    # connection's user, so a consumer can trust it names the publisher (docs/THREAT_MODEL.md).
    user_id: str | None = None


@dataclass(frozen=True)
class Delivery:
    """A message handed to a consumer; ack or nack it through the broker that gave it."""

    queue: str
    delivery_tag: int
    body: bytes
    headers: dict[str, object]
    redelivered: bool
    routing_key: str = ""
    exchange: str = ""
    message_id: str | None = None
    correlation_id: str | None = None
    reply_to: str | None = None
    delivery_count: int = 0  # how many earlier deliveries of this message ended in a requeue
    # Which consumer session (channel) produced this delivery. Tags restart per session, so an
    # ack for a delivery from a finished session (cancelled, closed, lost connection) is
    # recognised as stale and ignored instead of acking some other message.
    epoch: int = 0
    user_id: str | None = None  # the publisher, as the broker validated it (Message.user_id)


@dataclass
class BrokerStats:
    """Counters a transport exposes for status pages; never holds credentials."""

    reconnects: int = 0
    last_error: str | None = None
    published: int = 0
    delivered: int = 0


@dataclass(frozen=True)
class QueueStats:
    """What a passive declare tells about a queue: ready messages and attached consumers."""

    messages: int
    consumers: int


class Broker(Protocol):
    """A connection to one broker. Not thread-safe: one broker object per thread."""

    stats: BrokerStats  # reconnects, last error (credential-free), publish/delivery counts

    def declare_exchange(self, spec: ExchangeSpec) -> None: ...

    def declare_queue(self, spec: QueueSpec) -> str:
        """Declare (idempotently) and bind; returns the queue's name (the broker's choice for
        an exclusive queue declared with an empty name)."""
        ...

    def publish(self, exchange: str, routing_key: str, message: Message) -> None:
        """Publish and wait for the broker's confirm; raise PublishNotConfirmed otherwise."""
        ...

    def consume(self, queue: str, prefetch: int = 100) -> None:
        """Start consuming ``queue``; deliveries are then returned by ``poll``."""
        ...

    def cancel(self, queue: str) -> None:
        """Stop consuming ``queue``; unacked deliveries go back to the queue."""
        ...

    def poll(self, timeout: float = 0.0, max_messages: int | None = None) -> list[Delivery]:
        """Return deliveries received so far, waiting at most ``timeout`` seconds for one.

        Also services the connection (heartbeats), so a ticking worker calls it every tick.
        """
        ...

    def ack(self, delivery: Delivery) -> None:
        """Settle ``delivery``; a no-op if it is stale (its session ended, already settled)."""
        ...

    def nack(self, delivery: Delivery, requeue: bool = True) -> None:
        """Return (``requeue``) or reject (dead-letter / drop) ``delivery``; stale is a no-op."""
        ...

    def queue_depth(self, queue: str) -> int:
        """Messages ready in ``queue`` (not counting unacked ones)."""
        ...

    def queue_stats(self, queue: str) -> QueueStats:
        """Ready messages and consumers of ``queue``; ``NotFound`` if it does not exist."""
        ...

    def purge(self, queue: str) -> int: ...

    def delete_queue(self, queue: str) -> None: ...

    def delete_exchange(self, exchange: str) -> None: ...

    def close(self) -> None: ...
