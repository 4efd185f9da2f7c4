"""Publishing on RabbitMQ: a ``Message`` as AMQP properties, sent on the confirm channel.

Today every publish waits for its own confirm (pika's blocking channel in confirm mode): a
nack or a return (unroutable with ``mandatory``) becomes ``PublishNotConfirmed``. A publish
interrupted by a connection loss is retried once on the new connection (``ManagedConnection.
call``), so it may be stored twice: consumers dedupe by id (docs/PROTOCOL.md guarantee 2).

Seam for batching: ``Publisher`` is the one place that turns messages into frames and waits
for confirms. A batch publish belongs here as a sibling of ``publish``: check and convert all
messages first (``check_headers``, ``properties``), then, inside one ``link.call``, send them
all on a channel with asynchronous confirms and wait until every delivery tag is confirmed,
raising ``PublishNotConfirmed`` naming the ones that were not; a retry after a connection loss
resends the whole batch, which the same dedupe-by-id makes safe.
"""

from __future__ import annotations

import pika
import pika.exceptions as pex
from pika.adapters.blocking_connection import BlockingChannel

from shared.broker.base import Message, PublishNotConfirmed, Unroutable, check_headers
from shared.broker.rabbitmq.connection import ManagedConnection


def properties(message: Message) -> pika.BasicProperties:
    """The AMQP properties carrying ``message``'s headers and ids."""
    return pika.BasicProperties(
        content_type=message.content_type,
        delivery_mode=2 if message.persistent else 1,
        headers=dict(message.headers) or None,
        message_id=message.message_id,
        correlation_id=message.correlation_id,
        reply_to=message.reply_to,
        user_id=message.user_id,
    )


def send_confirmed(
    channel: BlockingChannel, exchange: str, key: str, body: bytes, props: pika.BasicProperties,
    mandatory: bool = False,
) -> None:
    """Publish one message on a confirm-mode channel and wait for the broker's ack."""
    try:
        channel.basic_publish(exchange, key, body, props, mandatory=mandatory)
    except pex.UnroutableError:
        raise Unroutable(f"no queue is bound to {exchange!r} for routing key {key!r}: the "
                         "publish was returned") from None
    except pex.NackError as exc:
        raise PublishNotConfirmed(
            f"broker did not confirm publish to {exchange!r}/{key!r}: {type(exc).__name__}"
        ) from None


class Publisher:
    """Confirmed publishes over one managed connection."""

    def __init__(self, link: ManagedConnection) -> None:
        self._link = link

    def publish(self, exchange: str, routing_key: str, message: Message) -> None:
        check_headers(message.headers)  # before any I/O: a bad header is the caller's bug
        props = properties(message)
        body = bytes(message.body)
        self._link.call(lambda: send_confirmed(self._link.channel(), exchange, routing_key,
                                               body, props, message.mandatory))
