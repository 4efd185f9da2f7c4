"""Every exchange and queue townlet uses, with the arguments docs/PROTOCOL.md fixes for them.

Declaring is idempotent on both transports, so every process declares what it touches at
start-up instead of relying on some other process having run first. Arguments must never
change for an existing name: RabbitMQ refuses a redeclare with different arguments.

Under least privilege (ops/rabbitmq/definitions.json) a broker user may not declare what it
does not own (declaring needs the "configure" permission, which also allows deleting): the
shared topology is then created by the definitions file, and a declaration the broker refuses
(``AccessRefused``) is skipped here rather than failing the process.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from dataclasses import dataclass

from shared.broker.base import AccessRefused, Broker, ExchangeSpec, QueueSpec

_SHARD_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def validate_shard_id(shard_id: str) -> str:
    """Return ``shard_id`` if it is safe to use in queue names and routing keys."""
    if not isinstance(shard_id, str) or not _SHARD_ID.match(shard_id):
        raise ValueError(
            f"invalid shard id {shard_id!r}: use 1-64 characters from A-Z a-z 0-9 _ . -"
        )
    return shard_id


@dataclass(frozen=True)
class Topology:
    """Names and limits of the broker topology; the defaults are the documented ones."""

    commands_exchange: str = "townlet.commands"
    telemetry_exchange: str = "townlet.telemetry"
    results_exchange: str = "townlet.console.results"
    audit_queue: str = "townlet.audit"
    dead_exchange: str = "townlet.dead"
    dead_queue: str = "townlet.dead"
    shard_queue_prefix: str = "townlet.shard."
    # Every name above starts with it: a reply_to in it is refused (workers/shard/intake.py).
    namespace: str = "townlet."
    # A backstop against a message that kills its consumer every time, not a retry budget:
    # RabbitMQ counts every delivery a dying consumer held, so a crash-looping worker (or an
    # operator restarting the audit consumer) would otherwise dead-letter good messages.
    delivery_limit: int = 100
    dead_max_length: int = 10_000
    dead_max_bytes: int = 64 * 1024 * 1024

    def shard_queue(self, shard_id: str) -> str:
        return f"{self.shard_queue_prefix}{validate_shard_id(shard_id)}.commands"

    def commands_exchange_spec(self) -> ExchangeSpec:
        return ExchangeSpec(self.commands_exchange, "direct")

    def telemetry_exchange_spec(self) -> ExchangeSpec:
        return ExchangeSpec(self.telemetry_exchange, "fanout")

    def results_exchange_spec(self) -> ExchangeSpec:
        return ExchangeSpec(self.results_exchange, "fanout")

    def dead_exchange_spec(self) -> ExchangeSpec:
        return ExchangeSpec(self.dead_exchange, "fanout")

    def dead_queue_spec(self) -> QueueSpec:
        # No delivery limit and no dead-letter exchange: dead letters must never loop. Bounded
        # in count and bytes, oldest dropped first (docs/PROTOCOL.md, "Topology"): a flood of
        # bad input must never fill the broker's disk, and the newest letters say the most.
        return QueueSpec(
            self.dead_queue, quorum=True, bindings=((self.dead_exchange, ""),),
            max_length=self.dead_max_length, max_length_bytes=self.dead_max_bytes,
        )

    def audit_queue_spec(self) -> QueueSpec:
        # A result the audit consumer cannot process must not block the audit log forever,
        # so the audit queue gets the same poison-message limit as the shard inboxes.
        return QueueSpec(
            self.audit_queue,
            quorum=True,
            delivery_limit=self.delivery_limit,
            dead_letter_exchange=self.dead_exchange,
            bindings=((self.results_exchange, ""),),
        )

    def shard_queue_spec(self, shard_id: str) -> QueueSpec:
        # Single active consumer is what makes "one owner per shard" hold: a second worker
        # for the same shard is registered but idle until the first one's connection goes.
        return QueueSpec(
            self.shard_queue(shard_id),
            quorum=True,
            single_active_consumer=True,
            delivery_limit=self.delivery_limit,
            dead_letter_exchange=self.dead_exchange,
            bindings=((self.commands_exchange, shard_id),),
        )


def _ensure(declare: Callable[[], object]) -> None:
    """Declare, unless this broker user may not: then the definitions file owns it."""
    with contextlib.suppress(AccessRefused):
        declare()


def declare_common(broker: Broker, topo: Topology) -> None:
    """Declare what every process may publish to: commands and the dead-letter sink."""
    _ensure(lambda: broker.declare_exchange(topo.commands_exchange_spec()))
    _ensure(lambda: broker.declare_exchange(topo.dead_exchange_spec()))
    _ensure(lambda: broker.declare_queue(topo.dead_queue_spec()))


def declare_audit(broker: Broker, topo: Topology) -> None:
    """Declare the results exchange and the audit queue bound to it."""
    declare_common(broker, topo)
    _ensure(lambda: broker.declare_exchange(topo.results_exchange_spec()))
    _ensure(lambda: broker.declare_queue(topo.audit_queue_spec()))


def declare_shard(broker: Broker, topo: Topology, shard_id: str) -> None:
    """Declare everything a shard worker consumes from or publishes to."""
    validate_shard_id(shard_id)
    declare_audit(broker, topo)
    _ensure(lambda: broker.declare_exchange(topo.telemetry_exchange_spec()))
    _ensure(lambda: broker.declare_queue(topo.shard_queue_spec(shard_id)))


def declare_inbox(broker: Broker, topo: Topology, shard_id: str) -> None:
    """Declare one shard's inbox (an operator does, before publishing to a shard that may not
    have started yet), unless this user may not."""
    _ensure(lambda: broker.declare_queue(topo.shard_queue_spec(shard_id)))
