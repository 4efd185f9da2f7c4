"""The inbox: deliveries received from the shard's queue, waiting for their tick boundary.

docs/PROTOCOL.md, guarantee 1: at boundary T at most ``max_commands_per_tick`` deliveries are
applied, in queue order. Bodies are decoded on arrival. A repeat of a stored cmd_id is answered
at once (``EarlyAnswer``): between boundaries everything in the ledger is durable, so a
redelivery or an operator retry whose answer is the stored result applies nothing and need not
wait for a tick. Everything else, refusals included (they must be journaled first), waits.

The inbox applies commands through the console router and reports broker errors to
``BrokerTrouble``; what to publish it returns, never sends. A delivery's ``reply_to`` and
``correlation_id`` are checked on arrival (``intake.py``); the body's ``cmd_id`` is the only
idempotency key, ``message_id`` only addresses the error result of a body that cannot be
decoded (docs/PROTOCOL.md, "Messages").
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from shared import wire
from shared.broker.base import Broker, BrokerError, Delivery
from shared.console.envelope import ErrorCode, recover_name
from shared.console.results import ConsoleResult
from shared.console.router import ConsoleRouter
from shared.topology import Topology
from workers.shard.intake import Intake, check_reply, scrubbed
from workers.shard.records import Reply
from workers.shard.trouble import BrokerTrouble

MAX_POLL_WAIT_S = 0.5
DEAD_LETTER_MAX_BYTES = 16 * 1024  # what a shard's own dead letter keeps of a body


@dataclass(frozen=True, slots=True)
class EarlyAnswer:
    """A stored result answering ``delivery`` before the next boundary."""

    result: ConsoleResult
    reply: Reply
    delivery: Delivery


@dataclass
class Batch:
    """One boundary's share of the inbox, applied: what to journal, publish and ack."""

    deliveries: list[Delivery] = field(default_factory=list)  # every delivery taken (to ack)
    results: list[ConsoleResult] = field(default_factory=list)
    replies: list[Reply] = field(default_factory=list)
    dead: list[tuple[Delivery, str]] = field(default_factory=list)


class Inbox:
    def __init__(self, router: ConsoleRouter, trouble: BrokerTrouble, log: Any, *,
                 max_body_bytes: int, clock: Callable[[], float],
                 sleep: Callable[[float], None], topo: Topology | None = None) -> None:
        self.router = router
        self.trouble = trouble
        self.log = log
        self.max_body_bytes = max_body_bytes
        self.clock = clock
        self.sleep = sleep
        self.topo = topo or Topology()  # its namespace and commands exchange (intake.py)
        # (delivery, received, body, intake)
        self._pending: deque[tuple[Delivery, float, Any, Intake]] = deque()
        self.depth = 0  # waiting deliveries as of the last receive (health: queue_depth)

    def __len__(self) -> int:
        return len(self._pending)

    def drop(self) -> None:
        """Forget every waiting delivery (its connection died: the broker redelivers it)."""
        self._pending.clear()

    def gather(self, broker: Broker, timeout: float, *, room: int) -> tuple[int, list[EarlyAnswer]]:
        """Receive what the broker has, waiting up to ``timeout``: (how many, early answers).

        ``room`` is how many early answers may be made now (0 while a boundary is not yet
        durable: an answer must never outrun its journal record; or when the outbox is full).
        """
        received = 0
        early: list[EarlyAnswer] = []
        try:
            for delivery in broker.poll(timeout=min(timeout, MAX_POLL_WAIT_S)):
                answer = self._receive(delivery, self.clock(), room=room - len(early))
                if answer is not None:
                    early.append(answer)
                received += 1
        except BrokerError as exc:
            self.trouble.report(exc)
            self.sleep(min(timeout, MAX_POLL_WAIT_S))  # an unreachable broker fails at once
        self.depth = len(self._pending)
        return received, early

    def _receive(self, delivery: Delivery, received: float, *, room: int) -> EarlyAnswer | None:
        try:
            # Keys are the router's to check, so a bad key is answered under the cmd_id.
            body: Any = wire.decode(delivery.body, max_bytes=self.max_body_bytes,
                                    string_keys=False)
        except wire.WireError as exc:
            body = exc
        intake = check_reply(delivery, self.router.auth.secrets(), self.topo.namespace,
                             self.topo.commands_exchange)
        cmd_id = body.get("cmd_id") if isinstance(body, dict) else None
        if room <= 0 or intake.refusal is not None or not isinstance(cmd_id, str) \
                or cmd_id not in self.router.ledger:
            self._pending.append((delivery, received, body, intake))
            return None
        result = self.router.apply(body, tick=self.router.world.tick + 1, received_at=received,
                                   remember_refusal=False)
        if not result.applied:  # not the stored answer (a conflict, a bad token...): a
            self._pending.append((delivery, received, body, intake))  # refusal is journaled
            return None
        return EarlyAnswer(result, intake.reply, delivery)

    def take(self, tick: int, budget: int) -> Batch:
        """Apply waiting deliveries at boundary ``tick`` until ``budget`` commands ran.

        A redelivery answered from the ledger costs no budget: it applies nothing."""
        batch = Batch()
        applied = 0
        while self._pending and applied < budget:
            delivery, received, body, intake = self._pending.popleft()
            batch.deliveries.append(delivery)
            result: ConsoleResult | None
            if intake.refusal is not None:
                result, replayed = self._refuse(body, intake, tick, received), False
            else:
                result, replayed = self._apply(delivery, body, tick, received, batch.dead)
            if result is None:
                continue
            batch.results.append(result)
            batch.replies.append(intake.reply)
            applied += 0 if replayed else 1
        return batch

    def _apply(self, delivery: Delivery, payload: Any, tick: int, received: float,
               dead: list[tuple[Delivery, str]]) -> tuple[ConsoleResult | None, bool]:
        """The delivery's result (None: dead-lettered) and whether it was a stored replay."""
        router = self.router
        if isinstance(payload, wire.WireError):
            return self._undecodable(delivery, payload, tick, received, dead), False
        cmd_id = payload.get("cmd_id") if isinstance(payload, dict) else None
        replayed = isinstance(cmd_id, str) and cmd_id in router.ledger
        result = router.apply(payload, tick=tick, received_at=received)
        self.log.info("command", tick=tick, cmd_id=result.cmd_id, name=result.name,
                      status=result.status, error=result.code.value if result.code else None)
        return result, replayed

    def _undecodable(self, delivery: Delivery, exc: wire.WireError, tick: int, received: float,
                     dead: list[tuple[Delivery, str]]) -> ConsoleResult | None:
        """docs/PROTOCOL.md: answered when a cmd_id can be recovered (the message_id, else the
        body's as far as it can be read), otherwise dead-lettered with tokens scrubbed."""
        cmd_id = delivery.message_id or wire.peek_cmd_id(delivery.body, self.max_body_bytes)
        if cmd_id:  # an id that is not usable (reserved, too long) gets an assigned one
            return self.router.reject(cmd_id, ErrorCode.BAD_REQUEST, str(exc), tick=tick,
                                      received_at=received)
        dead.append((scrubbed(delivery, self.router.auth.secrets(), DEAD_LETTER_MAX_BYTES),
                     f"undecodable: {exc}"))
        self.log.warning("command_dead_lettered", reason=str(exc), tick=tick)
        return None

    def _refuse(self, body: Any, intake: Intake, tick: int, received: float) -> ConsoleResult:
        """A delivery whose reply_to or correlation_id is refused: a refusal, no reply."""
        assert intake.refusal is not None
        cmd_id = body.get("cmd_id") if isinstance(body, dict) else None
        result = self.router.reject(cmd_id if isinstance(cmd_id, str) else None,
                                    intake.refusal.code, intake.refusal.message, tick=tick,
                                    received_at=received, name=recover_name(body))
        self.log.info("command", tick=tick, cmd_id=result.cmd_id, name=result.name,
                      status=result.status, error=result.code.value if result.code else None)
        return result
