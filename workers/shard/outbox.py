"""The outbox: durable outputs waiting to be published, in order, then acked.

Output commit (docs/PROTOCOL.md, guarantees 3 and 4): a boundary's results, replies, telemetry
and dead letters are published only after its journal record is durable, and the deliveries
they answer are acked only after every publish was confirmed. While the broker is unreachable
items wait here in order (the town keeps ticking); ``flush`` resumes where it stopped.

``flush`` returns what it finished (``Flushed``): the journal sequence numbers whose outputs
are now all out, for the worker to mark sent. The outbox never touches the journal or the
inbox, and reports broker errors to ``BrokerTrouble``.

Seams for later: ``Outgoing.steps`` is the one list of a boundary's publishes, so publishing
them as a pipeline (confirms awaited together, then one batch ack) changes ``_send`` only;
results are encoded (and so may be signed) in one place, ``Outputs``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from shared.broker.base import Broker, BrokerError, Delivery
from shared.console.results import ConsoleResult
from workers.shard.outputs import Outputs
from workers.shard.records import Reply
from workers.shard.trouble import BrokerTrouble

# A reply that fails this often is dropped: replies are a courtesy (the result itself is on the
# results exchange), and a bad reply_to (e.g. a forged direct reply-to name) can make RabbitMQ
# close the connection every time it is tried.
REPLY_ATTEMPTS = 2


@dataclass
class Outgoing:
    """One boundary's outputs (or one early answer), waiting to be published and acked."""

    seq: int | None  # the journal record they belong to; None for early answers
    results: list[ConsoleResult]
    replies: list[Reply]
    telemetry: dict[str, Any] | None = None
    dead: list[tuple[Delivery, str]] = field(default_factory=list)
    acks: list[Delivery] = field(default_factory=list)
    sent: int = 0  # publishes done so far: a retry resumes here instead of repeating them
    reply_failures: int = 0  # of the reply at ``sent``

    def steps(self, outputs: Outputs) -> list[tuple[bool, Callable[[], None]]]:
        """The item's publishes in order, each flagged whether it is a (best-effort) reply."""
        steps: list[tuple[bool, Callable[[], None]]] = []
        for result, (reply_to, corr) in zip(self.results, self.replies, strict=True):
            steps.append((False, partial(outputs.result, result, corr)))
            if reply_to:
                steps.append((True, partial(outputs.reply, result, reply_to, corr)))
        if self.telemetry is not None:
            steps.append((False, partial(outputs.telemetry, self.telemetry)))
        steps.extend((False, partial(outputs.dead_letter, delivery, reason))
                     for delivery, reason in self.dead)
        return steps


@dataclass(frozen=True, slots=True)
class Flushed:
    empty: bool  # everything is out
    sent_seqs: tuple[int, ...]  # journal records whose outputs went out in this flush


class Outbox:
    def __init__(self, broker: Broker, outputs: Outputs, trouble: BrokerTrouble,
                 log: Any) -> None:
        self.broker = broker
        self.outputs = outputs
        self.trouble = trouble
        self.log = log
        self._items: deque[Outgoing] = deque()
        self.unsent = 0  # items left after the last flush (health: unsent_outputs)
        self.published = 0  # items fully sent so far (a counter for metrics)

    def __len__(self) -> int:
        return len(self._items)

    def __bool__(self) -> bool:
        return bool(self._items)

    def __iter__(self) -> Iterator[Outgoing]:
        return iter(self._items)

    def add(self, item: Outgoing) -> None:
        self._items.append(item)

    def flush(self) -> Flushed:
        """Publish what waits, oldest first, acking each item once it is out.

        Each item remembers how far it got, so a failure never repeats a publish that the
        broker confirmed (the adapter may still store one twice when a connection dies
        mid-publish; consumers dedupe by (shard_id, cmd_id) and (shard_id, tick)).
        """
        sent: list[int] = []
        while self._items:
            item = self._items[0]
            if not self._send(item):
                self.unsent = len(self._items)
                return Flushed(False, tuple(sent))
            self._items.popleft()
            self.published += 1
            self._ack(item.acks)
            if item.seq is not None:
                sent.append(item.seq)
        self.unsent = 0
        return Flushed(True, tuple(sent))

    def _send(self, item: Outgoing) -> bool:
        """Publish the rest of ``item``; False when the broker refused (the item waits)."""
        steps = item.steps(self.outputs)
        while item.sent < len(steps):
            is_reply, publish = steps[item.sent]
            try:
                publish()
            except BrokerError as exc:
                self.trouble.report(exc)
                if is_reply:
                    item.reply_failures += 1
                if not is_reply or item.reply_failures < REPLY_ATTEMPTS:
                    return False
                self.log.warning("reply_dropped", error=str(exc), seq=item.seq)
            item.sent += 1
            item.reply_failures = 0
        return True

    def _ack(self, deliveries: list[Delivery]) -> None:
        try:
            for delivery in deliveries:
                self.broker.ack(delivery)
        except BrokerError as exc:  # unacked ones come back and are answered from the ledger
            self.trouble.report(exc)
