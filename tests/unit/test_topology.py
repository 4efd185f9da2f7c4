"""Topology names and arguments are exactly those PROTOCOL.md documents."""

from __future__ import annotations

import pytest

from shared.broker import MemoryBroker, MemoryHub
from shared.broker.base import Message, QueueSpec
from shared.broker.semantics import queue_arguments
from shared.topology import (
    Topology,
    declare_audit,
    declare_common,
    declare_shard,
    validate_shard_id,
)


def test_default_names_match_protocol() -> None:
    topo = Topology()
    assert topo.commands_exchange == "townlet.commands"
    assert topo.telemetry_exchange == "townlet.telemetry"
    assert topo.results_exchange == "townlet.console.results"
    assert topo.audit_queue == "townlet.audit"
    assert (topo.dead_exchange, topo.dead_queue) == ("townlet.dead", "townlet.dead")
    assert topo.shard_queue("s-1") == "townlet.shard.s-1.commands"
    assert topo.delivery_limit == 100


@pytest.mark.parametrize("bad", ["", "a" * 65, "has space", "slash/x", "star*", "é", "a#b"])
def test_invalid_shard_ids_rejected(bad: str) -> None:
    with pytest.raises(ValueError, match="invalid shard id"):
        validate_shard_id(bad)
    with pytest.raises(ValueError):
        Topology().shard_queue(bad)


@pytest.mark.parametrize("good", ["s1", "A_b.c-9", "x" * 64])
def test_valid_shard_ids(good: str) -> None:
    assert validate_shard_id(good) == good


def test_shard_queue_arguments() -> None:
    topo = Topology(delivery_limit=7)
    spec = topo.shard_queue_spec("s1")
    assert spec.bindings == (("townlet.commands", "s1"),)
    assert queue_arguments(spec) == {
        "x-queue-type": "quorum",
        "x-single-active-consumer": True,
        "x-delivery-limit": 7,
        "x-dead-letter-exchange": "townlet.dead",
    }
    assert spec.durable


def test_dead_queue_cannot_loop() -> None:
    spec = Topology().dead_queue_spec()
    assert spec.dead_letter_exchange is None and spec.delivery_limit is None
    assert spec.bindings == (("townlet.dead", ""),)


def test_queue_spec_rejects_arguments_rabbitmq_ignores() -> None:
    with pytest.raises(ValueError, match="quorum"):
        QueueSpec("q", delivery_limit=3)
    with pytest.raises(ValueError, match="durable"):
        QueueSpec("q", quorum=True, durable=False)


def test_declarations_are_idempotent_and_route() -> None:
    hub = MemoryHub()
    broker = MemoryBroker(hub)
    topo = Topology()
    for _ in range(2):
        declare_common(broker, topo)
        declare_audit(broker, topo)
        declare_shard(broker, topo, "s1")
        declare_shard(broker, topo, "s2")
    broker.publish(topo.commands_exchange, "s1", Message(b"cmd"))
    broker.publish(topo.results_exchange, "", Message(b"result"))
    broker.publish(topo.dead_exchange, "", Message(b"corpse"))
    assert broker.queue_depth(topo.shard_queue("s1")) == 1
    assert broker.queue_depth(topo.shard_queue("s2")) == 0
    assert broker.queue_depth(topo.audit_queue) == 1
    assert broker.queue_depth(topo.dead_queue) == 1


def test_declare_shard_validates_before_declaring() -> None:
    broker = MemoryBroker(MemoryHub())
    with pytest.raises(ValueError, match="invalid shard id"):
        declare_shard(broker, Topology(), "bad id")
    with pytest.raises(Exception, match="no queue"):
        broker.queue_depth("townlet.audit")  # nothing was declared
