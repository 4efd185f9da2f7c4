"""Everything a shard sends: results (and replies), telemetry, health, dead letters.

Every publish waits for the broker's confirm (the adapters raise otherwise), so when these
functions return the message is stored by the broker and the deliveries it answers may be acked.
``_message`` is the one place a result becomes bytes (docs/PROTOCOL.md, "Messages"), so it is
where results are signed (``signed_body``; docs/PROTOCOL.md, "Signatures"). Every message
carries the AMQP ``user_id`` of the shard's broker user, which RabbitMQ checks against the
connection's login (docs/THREAT_MODEL.md).
"""

from __future__ import annotations

from typing import Any

from shared import wire
from shared.broker.base import Broker, Delivery, Message
from shared.console.results import ConsoleResult
from shared.topology import Topology
from shared.trust.signing import ResultSigner


class Outputs:
    def __init__(self, broker: Broker, topo: Topology, shard_id: str,
                 signer: ResultSigner | None = None, user_id: str | None = None) -> None:
        self.broker = broker
        self.topo = topo
        self.shard_id = shard_id
        self.signer = signer
        self.user_id = user_id
        self._last: tuple[ConsoleResult, dict[str, Any]] | None = None

    def result(self, result: ConsoleResult, correlation_id: str | None = None) -> None:
        self.broker.publish(self.topo.results_exchange, "", self._message(result, correlation_id))

    def reply(self, result: ConsoleResult, reply_to: str,
              correlation_id: str | None = None) -> None:
        """docs/PROTOCOL.md: reply_to + correlation_id are honoured as well (the same
        message)."""
        self.broker.publish("", reply_to, self._message(result, correlation_id))

    def _message(self, result: ConsoleResult, correlation_id: str | None) -> Message:
        headers: dict[str, object] = {"shard_id": self.shard_id, "cmd_id": result.cmd_id,
                                      "status": result.status}
        return Message(body=wire.encode(self.signed_body(result)), headers=headers,
                       persistent=True, message_id=result.cmd_id, correlation_id=correlation_id,
                       user_id=self.user_id)

    def signed_body(self, result: ConsoleResult) -> dict[str, Any]:
        """The result's wire form with its signature (unsigned when no key is configured).
        A result and its reply are published one after the other: signed once for both."""
        if self._last is not None and self._last[0] is result:
            return self._last[1]
        body = result.to_wire()
        if self.signer is not None:
            body = self.signer.sign(body)
        self._last = (result, body)
        return body

    def telemetry(self, body: dict[str, Any]) -> None:
        message = Message(body=wire.encode({"v": wire.PROTOCOL_VERSION, **body}),
                          headers={"shard_id": self.shard_id, "tick": int(body["tick"]),
                                   "kind": str(body["kind"])},
                          persistent=False, user_id=self.user_id)
        self.broker.publish(self.topo.telemetry_exchange, "", message)

    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        headers = dict(delivery.headers)
        headers.update({"x-death-reason": reason, "x-original-queue": delivery.queue,
                        "x-shard-id": self.shard_id})
        message = Message(body=delivery.body, headers=headers, persistent=True,
                          content_type="application/octet-stream",
                          message_id=delivery.message_id, user_id=self.user_id)
        self.broker.publish(self.topo.dead_exchange, "", message)
