"""Exchanges of the in-memory broker: their bindings and which queues a routing key reaches.

Fanout copies to every bound queue, direct matches the key exactly, topic uses AMQP's ``*``/``#``
(``shared.broker.semantics.topic_matches``, the same function the contract tests pin). The
default exchange ``""`` is not a ``MemoryExchange``: the hub routes it to the queue named by
the key.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from shared.broker.base import ExchangeSpec
from shared.broker.semantics import topic_matches


@dataclass
class MemoryExchange:
    spec: ExchangeSpec
    bindings: dict[tuple[str, str], None] = field(default_factory=dict)  # ordered set

    def bind(self, queue: str, key: str) -> None:
        self.bindings[(queue, key)] = None

    def unbind_queue(self, queue: str) -> None:
        for binding in [b for b in self.bindings if b[0] == queue]:
            del self.bindings[binding]

    def route(self, routing_key: str) -> list[str]:
        """Names of the queues ``routing_key`` reaches, once each, in binding order."""
        kind = self.spec.kind
        matched: dict[str, None] = {}  # one copy per queue even if bound twice
        for queue, key in self.bindings:
            if (
                kind == "fanout"
                or (kind == "direct" and key == routing_key)
                or (kind == "topic" and topic_matches(key, routing_key))
            ):
                matched[queue] = None
        return list(matched)
