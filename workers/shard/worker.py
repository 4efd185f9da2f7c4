"""The shard worker: one town, fed by its broker queue, durable across kills.

Per boundary T (PROTOCOL guarantees 1-4):
  1. take at most ``max_commands_per_tick`` deliveries from the inbox, in queue order, and apply
     them through the console router (bad bodies get an error result or a dead letter);
  2. run tick T unless paused;
  3. append the boundary (results, whether each ran, the state hash) to the journal and fsync;
  4. only then publish results, replies, telemetry and dead letters (confirmed), and ack.
A restarted worker restores the checkpoint, re-applies the journal (checking every state hash),
resends what it cannot prove was sent, and answers redelivered commands from stored results.

Step 4 goes through an outbox: while the broker is unreachable the town keeps ticking (each
boundary is durable in the journal already) and the outbox publishes the backlog in order once
the broker is back. Only a full outbox (``outbox_limit`` boundaries) makes the worker hold.
A checkpoint waits for an empty outbox, because it drops the journal records a resend needs.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import structlog

from shared import wire
from shared.broker.base import Broker, BrokerError, ConnectionLost, Delivery, NotFound
from shared.config import SimulationConfig
from shared.loop import SimulationLoop
from shared.snapshot import write_atomic
from shared.topology import Topology, declare_shard
from workers.shard.journal import Journal
from workers.shard.outputs import Outputs
from workers.shard.recovery import checkpoint_data, recover
from workers.shard.statedir import StateDir

RETRY_BACKOFF = (0.1, 0.2, 0.5, 1.0, 2.0)
# A reply that fails this often is dropped: replies are a courtesy (the result itself is on the
# results exchange), and a bad reply_to (e.g. a forged direct reply-to name) can make RabbitMQ
# close the connection every time it is tried.
REPLY_ATTEMPTS = 2
PAUSED_POLL_S = 0.05
TROUBLE_LOG_EVERY_S = 5.0


class Divergence(RuntimeError):
    """Replaying the journal produced a different state hash: never tick on suspect state."""


class StopRequested(Exception):
    """Raised out of a retry loop when the worker is asked to stop."""


@dataclass
class Outgoing:
    """One boundary's outputs (or one early answer), waiting to be published and acked."""

    seq: int | None  # the journal record they belong to; None for early answers
    results: list[dict[str, Any]]
    replies: list[list[str | None]]
    telemetry: dict[str, Any] | None = None
    dead: list[tuple[Delivery, str]] = field(default_factory=list)
    acks: list[Delivery] = field(default_factory=list)
    sent: int = 0  # publishes done so far: a retry resumes here instead of repeating them
    reply_failures: int = 0  # of the reply at ``sent``


@dataclass
class WorkerOptions:
    shard_id: str
    state_dir: Path
    tick_rate_hz: float | None = None  # None: keep the shard's own (console-settable) rate
    checkpoint_every: int = 200
    health_every_s: float = 1.0
    # Unacked deliveries held at once; None = the per-tick budget. Kept small on purpose: every
    # delivery held when a worker dies counts toward the queue's delivery limit.
    prefetch: int | None = None
    max_ticks: int | None = None  # stop after this process has run this many ticks
    # Boundaries kept unsent while the broker is unreachable before the worker stops ticking.
    outbox_limit: int = 10_000
    until_tick: int | None = None  # stop once the town reaches this tick (counts recovered ones)


class ShardWorker:
    def __init__(self, config: SimulationConfig, broker: Broker, options: WorkerOptions, *,
                 topo: Topology | None = None, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.config = config
        self.broker = broker
        self.opts = options
        self.topo = topo or Topology()
        self.clock = clock
        self.sleep = sleep
        self.state = StateDir(options.state_dir)
        self.loop = SimulationLoop(config, shard_id=options.shard_id, audit=False, clock=clock)
        self.loop.snapshot_dir = self.state.exports
        if options.tick_rate_hz is not None:
            self.loop.set_tick_rate(options.tick_rate_hz)
        self.outputs = Outputs(broker, self.topo, options.shard_id)
        self.inbox: deque[tuple[Delivery, float, Any]] = deque()  # (delivery, received, body)
        self.outbox: deque[Outgoing] = deque()
        self._checkpoint_due = False
        self._undurable = False  # a boundary's results are stored in memory but not journaled
        self.journal: Journal | None = None
        self.seq = 0
        self.ticks_run = 0
        self.log = structlog.get_logger("townlet.shard").bind(shard_id=options.shard_id)
        self._last_health = 0.0
        self._trouble_logged_at = -TROUBLE_LOG_EVERY_S
        self._stop: threading.Event | None = None

    # -- lifecycle ------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        """Own the shard and tick until ``stop`` (a threading.Event) is set."""
        self._stop = stop
        if not self.state.try_lock():
            self.log.info("shard_owned_elsewhere_waiting", state_dir=str(self.state.root))
            if not self.state.wait_for_lock(stop):
                return
        try:
            declare_shard(self.broker, self.topo, self.opts.shard_id)
            self.recover()
            prefetch = self.opts.prefetch or self.config.console.max_commands_per_tick
            self.broker.consume(self.topo.shard_queue(self.opts.shard_id), prefetch)
            self.log.info("shard_started", tick=self.loop.tick, queue=self.topo.shard_queue(
                self.opts.shard_id))
            self._tick_forever(stop)
            if self.flush():
                self.checkpoint()
            else:  # the journal keeps them: the next start resends them
                self.log.warning("stopping_with_unsent_outputs", boundaries=len(self.outbox))
            self.log.info("shard_stopped", tick=self.loop.tick)
        except StopRequested:
            self.log.info("shard_stopped_during_retry", tick=self.loop.tick)
        finally:
            if self.journal is not None:
                self.journal.close()
            self.state.unlock()

    def _tick_forever(self, stop: threading.Event) -> None:
        deadline = self.clock()
        while not stop.is_set():
            if self.opts.max_ticks is not None and self.ticks_run >= self.opts.max_ticks:
                return
            if self.opts.until_tick is not None and self.loop.world.tick >= self.opts.until_tick:
                return
            self._gather(max(0.0, deadline - self.clock()))
            if self.clock() < deadline:
                continue
            if not self.flush() and len(self.outbox) >= self.opts.outbox_limit:
                self._hold_for_broker()
                continue
            self.boundary()
            rate = self.loop.tick_rate_hz
            if self.loop.paused:  # only commands can change anything: wait for them
                deadline = self.clock() + PAUSED_POLL_S
            elif rate > 0:
                deadline = max(deadline + 1.0 / rate, self.clock())
            else:
                deadline = self.clock()
            self._maybe_health()

    def _gather(self, timeout: float) -> int:
        """Receive what the broker has (waiting up to ``timeout``); returns how many."""
        received = 0
        try:
            for delivery in self.broker.poll(timeout=min(timeout, 0.5)):
                self._receive(delivery, self.clock())
                received += 1
        except BrokerError as exc:
            self._connection_trouble(exc)
            self.sleep(min(timeout, 0.5))  # an unreachable broker fails at once: don't spin
        self.loop.telemetry.health["queue_depth"] = len(self.inbox)
        return received

    def _receive(self, delivery: Delivery, received: float) -> None:
        """Decode now; answer a repeat of a stored cmd_id at once.

        Between boundaries everything in the replay store is durable, so a redelivery or an
        operator retry whose answer is the stored result can be answered and acked without
        waiting for a tick: it applies nothing. Everything else, refusals included (they must
        be journaled first), waits for the next boundary.
        """
        try:
            # Keys are the router's to check, so a bad key is answered under the cmd_id.
            body: Any = wire.decode(delivery.body, max_bytes=self.config.console.max_body_bytes,
                                    string_keys=False)
        except wire.WireError as exc:
            body = exc
        cmd_id = body.get("cmd_id") if isinstance(body, dict) else None
        stored = isinstance(cmd_id, str) and cmd_id in self.loop.telemetry.cmd_store
        # An answer must never outrun its journal record, and a full outbox takes no more.
        if not stored or self._undurable or len(self.outbox) >= self.opts.outbox_limit:
            self.inbox.append((delivery, received, body))
            return
        result = self.loop.router.apply(body, tick=self.loop.world.tick + 1, received_at=received,
                                        remember_refusal=False)
        if not result.get("applied"):  # not the stored answer (a conflict, a bad token...): a
            self.inbox.append((delivery, received, body))  # refusal is journaled at a boundary
            return
        self.outbox.append(Outgoing(None, [result], [[delivery.reply_to, delivery.correlation_id]],
                                    acks=[delivery]))
        self.flush()

    def _connection_trouble(self, exc: Exception) -> None:
        """Note a broker error, and repair what it says is broken.

        Deliveries from a dead connection can't be acked (the broker redelivers them), so the
        inbox is dropped on ``ConnectionLost`` only: after a channel-level error the consumer
        is intact and its deliveries must still be answered. ``NotFound`` means something was
        deleted under us (an exchange or queue): declare the topology again.
        """
        if isinstance(exc, ConnectionLost):
            self.inbox.clear()
        elif isinstance(exc, NotFound):
            self._redeclare()
        self.loop.telemetry.health["last_error"] = f"{type(exc).__name__}: {exc}"
        self.loop.telemetry.health["broker_reconnects"] = getattr(
            getattr(self.broker, "stats", None), "reconnects", 0)
        now = self.clock()
        if now - self._trouble_logged_at >= TROUBLE_LOG_EVERY_S:  # not one line per tick
            self._trouble_logged_at = now
            self.log.warning("broker_trouble", error=str(exc), unsent_outputs=len(self.outbox))

    def _redeclare(self) -> None:
        try:
            declare_shard(self.broker, self.topo, self.opts.shard_id)
        except BrokerError as exc:
            self.log.warning("redeclare_failed", error=str(exc))

    # -- one boundary -------------------------------------------------------------------
    def boundary(self) -> None:
        loop = self.loop
        tick = loop.world.tick + 1
        budget = self.config.console.max_commands_per_tick
        while len(self.inbox) < budget and self._gather(0.0):
            pass  # top up with what is ready now (early answers free prefetch slots)
        batch: list[Delivery] = []
        results: list[dict[str, Any]] = []
        replies: list[list[str | None]] = []
        dead: list[tuple[Delivery, str]] = []
        applied = 0
        while self.inbox and applied < budget:
            delivery, received, body = self.inbox.popleft()
            batch.append(delivery)
            result, replayed = self._apply_delivery(delivery, body, tick, received, dead)
            if result is None:
                continue
            results.append(result)
            replies.append([delivery.reply_to, delivery.correlation_id])
            applied += 0 if replayed else 1  # a redelivery answered from the store is free
        stepped = not loop.paused
        if not stepped and not batch:
            return  # paused and nothing arrived: nothing happened, nothing to record
        events, digest = loop.advance(tick) if stepped else ([], loop.last_hash)
        self.seq += 1
        self._undurable = True
        self._make_durable({"k": "b", "seq": self.seq, "boundary": tick, "stepped": stepped,
                            "hash": digest, "results": results, "replies": replies,
                            "auto_ids": loop.telemetry.export_auto_ids()})
        self._undurable = False
        loop.telemetry.record_results(tick, results)
        telemetry = (loop.telemetry.tick_message(loop.world, digest, events, results)
                     if stepped else None)
        self.outbox.append(Outgoing(self.seq, results, replies, telemetry, dead, batch))
        if stepped:
            self.ticks_run += 1
            self.log.debug("tick", tick=tick, commands=len(results), state_hash=digest)
            if tick % self.opts.checkpoint_every == 0:
                self._checkpoint_due = True
        if self.flush() and self._checkpoint_due:
            self._checkpoint_due = False
            self.checkpoint()

    def _apply_delivery(self, delivery: Delivery, payload: Any, tick: int, received: float,
                        dead: list[tuple[Delivery, str]]) -> tuple[dict[str, Any] | None, bool]:
        """The delivery's result (None: dead-lettered) and whether it was a stored replay."""
        router = self.loop.router
        if isinstance(payload, wire.WireError):
            exc = payload
            if delivery.message_id:  # PROTOCOL: answer when a cmd_id can be recovered
                return router.reject(delivery.message_id, "bad_request", str(exc),
                                     tick=tick, received_at=received), False
            dead.append((delivery, f"undecodable: {exc}"))
            self.log.warning("command_dead_lettered", reason=str(exc), tick=tick)
            return None, False
        if isinstance(payload, dict) and "cmd_id" not in payload and delivery.message_id:
            payload["cmd_id"] = delivery.message_id  # PROTOCOL: message_id may carry cmd_id
        cmd_id = payload.get("cmd_id") if isinstance(payload, dict) else None
        replayed = isinstance(cmd_id, str) and cmd_id in self.loop.telemetry.cmd_store
        result = router.apply(payload, tick=tick, received_at=received)
        self.log.info("command", tick=tick, cmd_id=result.get("cmd_id"), name=result.get("name"),
                      status=result.get("status"),
                      error=(result.get("error") or {}).get("code"))
        return result, replayed

    # -- output commit --------------------------------------------------------------------
    def flush(self) -> bool:
        """Publish what waits in the outbox, oldest first; True when it is empty.

        Each item remembers how far it got, so a failure never repeats a publish that the
        broker confirmed (the adapter may still store one twice when a connection dies
        mid-publish; consumers dedupe by (shard_id, cmd_id) and (shard_id, tick)).
        """
        while self.outbox:
            item = self.outbox[0]
            steps = self._publishes(item)
            while item.sent < len(steps):
                is_reply, publish = steps[item.sent]
                try:
                    publish()
                except BrokerError as exc:
                    self._connection_trouble(exc)
                    if is_reply:
                        item.reply_failures += 1
                    if not is_reply or item.reply_failures < REPLY_ATTEMPTS:
                        self.loop.telemetry.health["unsent_outputs"] = len(self.outbox)
                        return False
                    self.log.warning("reply_dropped", error=str(exc), seq=item.seq)
                item.sent += 1
                item.reply_failures = 0
            self.outbox.popleft()
            self._ack(item.acks)
            if item.seq is not None:
                self._mark_sent(item.seq)
        self.loop.telemetry.health["unsent_outputs"] = 0
        return True

    def _publishes(self, item: Outgoing) -> list[tuple[bool, Callable[[], None]]]:
        """An item's publishes in order, each flagged whether it is a (best-effort) reply."""
        steps: list[tuple[bool, Callable[[], None]]] = []
        for result, (reply_to, corr) in zip(item.results, item.replies, strict=True):
            steps.append((False, partial(self.outputs.result, result, corr)))
            if reply_to:
                steps.append((True, partial(self.outputs.reply, result, reply_to, corr)))
        if item.telemetry is not None:
            steps.append((False, partial(self.outputs.telemetry, item.telemetry)))
        steps.extend((False, partial(self.outputs.dead_letter, delivery, reason))
                     for delivery, reason in item.dead)
        return steps

    def _hold_for_broker(self) -> None:
        """The outbox is full: stop ticking until the broker takes the backlog."""
        self.log.warning("outbox_full_holding", boundaries=len(self.outbox))
        self._gather(0.0)  # keeps the connection (and its reconnects) going
        self.sleep(RETRY_BACKOFF[-1])
        self._maybe_health()

    def _ack(self, deliveries: list[Delivery]) -> None:
        try:
            for delivery in deliveries:
                self.broker.ack(delivery)
        except BrokerError as exc:  # unacked ones come back and are answered from the store
            self._connection_trouble(exc)

    def _maybe_health(self) -> None:
        now = self.clock()
        if now - self._last_health < self.opts.health_every_s:
            return
        self._last_health = now
        health = self.loop.telemetry.health
        stats = getattr(self.broker, "stats", None)  # reconnects the adapter handled itself
        if stats is not None:
            health["broker_reconnects"] = stats.reconnects
            health["last_error"] = health["last_error"] or stats.last_error
        try:
            self.outputs.telemetry(self.loop.telemetry.health_message(self.loop.tick))
        except BrokerError as exc:
            self._connection_trouble(exc)

    # -- durability -----------------------------------------------------------------------
    def _make_durable(self, record: dict[str, Any]) -> None:
        """Append and fsync a boundary record, holding (not crashing) while the disk refuses.

        Nothing about this boundary has left the worker yet, so waiting is safe; crashing is
        not: every restart would return the held deliveries to the queue and count them
        toward its delivery limit. The connection stays serviced while we wait.
        """
        assert self.journal is not None
        attempt = 0
        while True:
            try:
                self.journal.append(record)
                return
            except OSError as exc:
                self.loop.telemetry.health["last_error"] = f"journal: {exc.strerror or exc}"
                self.log.error("journal_write_failed", error=str(exc), seq=record["seq"],
                               attempt=attempt)
                if self._stop is not None and self._stop.is_set():
                    raise StopRequested from exc
                self._gather(RETRY_BACKOFF[min(attempt, len(RETRY_BACKOFF) - 1)])
                self._maybe_health()
                attempt += 1

    def _mark_sent(self, seq: int) -> None:
        """Note that a boundary's outputs (and all before it) are out; best effort: losing the
        mark only means a resend."""
        assert self.journal is not None
        try:
            self.journal.append({"k": "out", "seq": seq}, durable=False)
        except OSError as exc:
            self.log.warning("journal_mark_failed", error=str(exc), seq=seq)

    def checkpoint(self) -> None:
        """Snapshot the complete state, then drop the journal records it covers."""
        try:
            self.write_checkpoint(checkpoint_data(self.loop, self.config, self.seq))
        except OSError as exc:  # the journal still holds everything: keep it, try next time
            self.log.error("checkpoint_failed", error=str(exc), tick=self.loop.tick)
            return
        self.reset_journal()
        self.log.info("checkpoint", tick=self.loop.tick, seq=self.seq)

    def write_checkpoint(self, data: bytes) -> None:
        write_atomic(self.state.snapshot_path, data)  # a crash here leaves the old one intact

    def reset_journal(self) -> None:
        # A crash before this leaves records the checkpoint already covers; recovery skips
        # them by sequence number.
        if self.journal is not None:
            self.journal.reset()

    def recover(self) -> None:
        self.journal = Journal(self.state.journal_path)
        self.seq = recover(self)
