"""The outbox on its own: in order, never a confirmed publish twice, and it says what went out.

Against the in-process broker, with a connection that refuses chosen publishes (as RabbitMQ in
fail-fast mode does while it is away).
"""

from __future__ import annotations

from typing import Any

import structlog

from shared.broker import MemoryHub, open_broker
from shared.broker.base import Broker, ConnectionLost, Message
from shared.console.results import ConsoleResult
from shared.telemetry import LastError
from tests.shardtools import TOPO, Recorder
from workers.shard.outbox import Outbox, Outgoing
from workers.shard.outputs import Outputs
from workers.shard.trouble import BrokerTrouble


class Refusing:
    """Refuses the publishes whose (1-based) numbers are in ``refuse``."""

    def __init__(self, inner: Broker, refuse: set[int]) -> None:
        self.inner, self.refuse, self.calls = inner, refuse, 0

    def publish(self, exchange: str, routing_key: str, message: Message) -> None:
        self.calls += 1
        if self.calls in self.refuse:
            raise ConnectionLost("broker away (test)")
        self.inner.publish(exchange, routing_key, message)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def result(cmd_id: str) -> ConsoleResult:
    return ConsoleResult.build(shard_id="s1", cmd_id=cmd_id, name="help", tick=1, issuer=None,
                               latency_ms=0, command={"name": "help"}, body={}, applied=True)


def test_a_refused_publish_is_resumed_not_repeated_and_the_sent_boundaries_are_reported(
        ) -> None:
    hub = MemoryHub()
    results = Recorder(open_broker("memory://", hub=hub), TOPO.results_exchange)
    broker = Refusing(open_broker("memory://", hub=hub), refuse={2})
    errors = LastError()
    trouble = BrokerTrouble(errors, structlog.get_logger(), lambda: 0.0, unsent=lambda: 0)
    outbox = Outbox(broker, Outputs(broker, TOPO, "s1"), trouble,  # type: ignore[arg-type]
                    structlog.get_logger())
    outbox.add(Outgoing(1, [result("a"), result("b")], [(None, None), (None, None)]))
    outbox.add(Outgoing(2, [result("c")], [(None, None)]))

    first = outbox.flush()
    assert (first.empty, first.sent_seqs, outbox.unsent) == (False, (), 2)
    assert errors.value is not None and "ConnectionLost" in errors.value
    assert trouble.take_repairs().drop_inbox  # a lost connection's deliveries are stale

    second = outbox.flush()
    assert (second.empty, second.sent_seqs, outbox.unsent, len(outbox)) == (True, (1, 2), 0, 0)
    results.pump(lambda bodies: len(bodies) >= 3)
    assert [r["cmd_id"] for r in results.bodies()] == ["a", "b", "c"]  # "a" was not resent
