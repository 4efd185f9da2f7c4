"""The operator's side of the wire: send commands and wait for results, tail telemetry.

Replies come back through a private reply queue (PROTOCOL: ``reply_to`` and ``correlation_id``
are honoured): exclusive and named by the broker (``amq.gen-...``), because shards refuse a
``reply_to`` in the project's own namespace (docs/PROTOCOL.md, "Bad input") and a read-only
broker user may create only such queues (ops/rabbitmq/definitions.json). Commands are published
``mandatory`` and the client never declares a shard's inbox: a command for a shard that has no
queue (a typo, a shard that never ran) is returned at once (``Unroutable``) instead of creating
a durable queue that keeps it forever. ``townlet up`` declares the inboxes of its own fleet
first (``declare_inboxes``).
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

from shared import wire
from shared.broker.base import AccessRefused, Broker, Message, QueueSpec, Unroutable
from shared.topology import Topology, declare_shard, validate_shard_id


class ResultTimeout(TimeoutError):
    """No result arrived in time (the command is still queued and will be applied)."""


def private_queue_spec(bindings: tuple[tuple[str, str], ...] = ()) -> QueueSpec:
    """An exclusive, broker-named queue (docstring above)."""
    return QueueSpec("", durable=False, exclusive=True, bindings=bindings)


def new_cmd_id() -> str:
    return f"cli-{uuid.uuid4().hex}"


def build_command(name: str, args: list[Any], kwargs: dict[str, Any], *, mode: str = "viewer",
                  cmd_id: str | None = None, token: str | None = None,
                  issuer: str | None = None) -> dict[str, Any]:
    payload: dict[str, Any] = {"v": wire.PROTOCOL_VERSION, "cmd_id": cmd_id or new_cmd_id(),
                               "name": name, "args": args, "kwargs": kwargs, "mode": mode,
                               "timestamp_ms": int(time.time() * 1000)}
    if token:
        payload["auth"] = {"token": token}
    if issuer:
        payload["issuer"] = issuer
    return payload


class OperatorClient:
    def __init__(self, broker: Broker, topo: Topology | None = None) -> None:
        self.broker = broker
        self.topo = topo or Topology()

    def _private_queue(self, bindings: tuple[tuple[str, str], ...] = ()) -> str:
        """A queue only this connection can read, deleted with it (so never abandoned)."""
        return self.broker.declare_queue(private_queue_spec(bindings))

    def declare_inboxes(self, shard_ids: list[str]) -> None:
        """Declare these shards' inboxes (only for shards this caller runs: `townlet up`)."""
        for shard_id in shard_ids:
            declare_shard(self.broker, self.topo, shard_id)

    def publish_command(self, shard_id: str, payload: dict[str, Any],
                        reply_to: str | None = None, correlation_id: str | None = None) -> None:
        validate_shard_id(shard_id)
        # An operator may lack the configure permission (ops/rabbitmq/definitions.json): the
        # exchange then exists already, declared by the shards.
        with contextlib.suppress(AccessRefused):
            self.broker.declare_exchange(self.topo.commands_exchange_spec())
        cmd_id = str(payload["cmd_id"])
        try:
            self.broker.publish(self.topo.commands_exchange, shard_id, Message(
                body=wire.encode(payload), message_id=cmd_id,
                correlation_id=correlation_id or cmd_id, reply_to=reply_to, persistent=True,
                mandatory=True))
        except Unroutable:
            raise Unroutable(f"shard {shard_id!r} has no command queue: it has never run on "
                             "this broker (a typo?); see `townlet status`") from None

    def send(self, shard_id: str, payload: dict[str, Any], *, wait: bool = True,
             timeout: float = 10.0) -> dict[str, Any] | None:
        """Publish (confirmed) and, with ``wait``, return the shard's result envelope."""
        if not wait:
            self.publish_command(shard_id, payload)
            return None
        queue = self._private_queue()
        try:
            self.broker.consume(queue, prefetch=10)
            self.publish_command(shard_id, payload, reply_to=queue)
            return self._await(str(payload["cmd_id"]), timeout)
        finally:
            self.broker.cancel(queue)
            self.broker.delete_queue(queue)

    def send_all(self, commands: list[tuple[str, dict[str, Any]]], *, idle_timeout: float = 30.0,
                 cancel: threading.Event | None = None) -> dict[int, dict[str, Any]]:
        """Publish every command, then collect results: {index in ``commands``: result}.

        All are published before any wait, so a shard finds them queued at its first
        boundaries (a short ``townlet up --ticks`` run would otherwise stop before the later
        ones are even sent). Replies are matched by index, not cmd_id, as a file may repeat a
        cmd_id on purpose (an idempotent retry). Collecting stops when every result is in,
        when none has come for ``idle_timeout`` seconds, or when ``cancel`` is set; a missing
        index got no result.
        """
        queue = self._private_queue()
        results: dict[int, dict[str, Any]] = {}
        try:
            self.broker.consume(queue, prefetch=200)
            for index, (shard_id, payload) in enumerate(commands):
                self.publish_command(shard_id, payload, reply_to=queue, correlation_id=str(index))
            idle_until = time.monotonic() + idle_timeout
            while len(results) < len(commands) and time.monotonic() < idle_until:
                if cancel is not None and cancel.is_set():
                    break
                for delivery in self.broker.poll(timeout=0.2):
                    self.broker.ack(delivery)
                    tag = delivery.correlation_id or ""
                    index = int(tag) if tag.isdigit() else -1
                    if 0 <= index < len(commands) and index not in results:
                        results[index] = wire.decode(delivery.body)
                        idle_until = time.monotonic() + idle_timeout
        finally:
            self.broker.cancel(queue)
            self.broker.delete_queue(queue)
        return results

    def _await(self, cmd_id: str, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            for delivery in self.broker.poll(timeout=min(left, 0.5)):
                self.broker.ack(delivery)
                if delivery.correlation_id == cmd_id:
                    return wire.decode(delivery.body)
        raise ResultTimeout(f"no result for {cmd_id} within {timeout:.1f}s "
                            "(the command stays queued and will still be applied)")

    def stream(self, exchange: str, *, seconds: float | None = None,
               count: int | None = None) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
        """Yield (headers, body) from a fanout exchange until ``count`` or ``seconds``."""
        queue = self._private_queue(bindings=((exchange, ""),))
        seen = 0
        deadline = None if seconds is None else time.monotonic() + seconds
        try:
            self.broker.consume(queue, prefetch=200)
            while (count is None or seen < count) and (
                    deadline is None or time.monotonic() < deadline):
                for delivery in self.broker.poll(timeout=0.2):
                    self.broker.ack(delivery)
                    try:
                        body = wire.decode(delivery.body)
                    except wire.WireError:
                        continue
                    seen += 1
                    yield dict(delivery.headers), body
                    if count is not None and seen >= count:
                        return
        finally:
            self.broker.cancel(queue)
            self.broker.delete_queue(queue)
