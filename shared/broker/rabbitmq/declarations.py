"""Exchanges and queues a ``RabbitBroker`` declared, so every new connection declares them again.

After a broker restart or a failover the topology may be gone (or a non-durable part of it
is), and a consumer restarted before its queue exists would fail; so re-declaring comes first
on every new connection, before consumers restart and before the interrupted call is retried.
"""

from __future__ import annotations

from dataclasses import replace

from pika.adapters.blocking_connection import BlockingChannel

from shared.broker.base import ExchangeSpec, QueueSpec
from shared.broker.semantics import queue_arguments


def declare_exchange(channel: BlockingChannel, spec: ExchangeSpec) -> None:
    channel.exchange_declare(spec.name, spec.kind, durable=spec.durable)


def declare_queue(channel: BlockingChannel, spec: QueueSpec) -> str:
    args = queue_arguments(spec)
    frame = channel.queue_declare(spec.name, durable=spec.durable, exclusive=spec.exclusive,
                                  arguments=args or None)
    name = str(frame.method.queue) or spec.name
    for exchange, key in spec.bindings:
        channel.queue_bind(name, exchange, routing_key=key)
    return name


class Declarations:
    """What was declared through one broker object, in declaration order."""

    def __init__(self) -> None:
        self._exchanges: dict[str, ExchangeSpec] = {}
        self._queues: dict[str, QueueSpec] = {}

    def add_exchange(self, spec: ExchangeSpec) -> None:
        self._exchanges[spec.name] = spec

    def add_queue(self, spec: QueueSpec) -> None:
        """Remember ``spec``, keeping bindings from earlier declarations of the same queue."""
        known = self._queues.get(spec.name)
        bindings = dict.fromkeys((known.bindings if known else ()) + spec.bindings)
        self._queues[spec.name] = replace(spec, bindings=tuple(bindings))

    def forget_exchange(self, name: str) -> None:
        self._exchanges.pop(name, None)

    def forget_queue(self, name: str) -> None:
        self._queues.pop(name, None)

    def redeclare(self, channel: BlockingChannel) -> None:
        for exchange in self._exchanges.values():
            declare_exchange(channel, exchange)
        for queue in self._queues.values():
            declare_queue(channel, queue)
