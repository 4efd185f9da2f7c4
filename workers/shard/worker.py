"""The shard worker: one town, fed by its broker queue, durable across kills.

Per boundary T (docs/PROTOCOL.md, guarantees 1-4):
  1. take at most ``max_commands_per_tick`` deliveries from the inbox, in queue order, and apply
     them through the console router (bad bodies get an error result or a dead letter);
  2. run tick T unless paused;
  3. append the boundary (results, whether each ran, the state hash) to the journal and fsync;
  4. only then publish results, replies, telemetry and dead letters (confirmed), and ack.
A restarted worker restores the checkpoint, re-applies the journal (checking every state hash),
resends what it cannot prove was sent, and answers redelivered commands from stored results.

Step 4 goes through the outbox: while the broker is unreachable the town keeps ticking (each
boundary is durable in the journal already) and the outbox publishes the backlog in order once
the broker is back. Only a full outbox (``outbox_limit`` boundaries) makes the worker hold.

Only orchestration here: the parts (inbox, outbox, durability, recovery, meter) never call
each other or back up here; broker errors go to ``BrokerTrouble``, whose repairs we make."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from shared.broker.base import Broker, BrokerError
from shared.config import SimulationConfig
from shared.console.results import results_to_wire
from shared.logging import get_logger
from shared.loop import SimulationLoop
from shared.telemetry import Health
from shared.topology import Topology, declare_shard
from workers.shard.durability import Durability
from workers.shard.inbox import Inbox
from workers.shard.meter import WorkerMeter
from workers.shard.options import WorkerOptions
from workers.shard.outbox import Outbox, Outgoing
from workers.shard.outputs import Outputs
from workers.shard.records import BoundaryRecord
from workers.shard.recovery import recover
from workers.shard.statedir import StateDir
from workers.shard.trouble import BrokerTrouble

RETRY_BACKOFF = (0.1, 0.2, 0.5, 1.0, 2.0)
PAUSED_POLL_S = 0.05


class StopRequested(Exception):
    """Raised out of a retry loop when the worker is asked to stop."""


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
        self.log = get_logger("shard", shard_id=options.shard_id)
        self.state = StateDir(options.state_dir)
        self.loop = SimulationLoop(config, shard_id=options.shard_id, audit=False, clock=clock,
                                   health=self.health)
        self.loop.snapshot_dir = self.state.exports
        if options.tick_rate_hz is not None:
            self.loop.set_tick_rate(options.tick_rate_hz)
        errors = self.loop.errors
        self.outputs = Outputs(broker, self.topo, options.shard_id, options.signer, options.user_id)
        self.trouble = BrokerTrouble(errors, self.log, clock, unsent=lambda: len(self.outbox))
        self.inbox = Inbox(self.loop.router, self.trouble, self.log, clock=clock, sleep=sleep,
                           max_body_bytes=config.console.max_body_bytes, topo=self.topo)
        self.outbox = Outbox(broker, self.outputs, self.trouble, self.log)
        self.durability = Durability(self.state, errors, self.log, options.checkpoint_every)
        self.ticks_run = 0
        self.meter = WorkerMeter(clock)  # tick durations, results by code, liveness
        self._undurable = False  # a boundary's results are stored in memory but not journaled
        self._last_health = 0.0
        self._stop: threading.Event | None = None

    def health(self) -> Health:
        """The shard's health now: what ``health`` messages and ``telemetry_snapshot`` show."""
        stats = self.broker.stats  # reconnects the adapter handled itself count too
        return Health(tick_rate_hz=self.loop.tick_rate_hz, queue_depth=self.inbox.depth,
                      last_error=self.loop.errors.value or stats.last_error,
                      broker_reconnects=stats.reconnects, paused=self.loop.paused,
                      unsent_outputs=self.outbox.unsent)

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
            queue = self.topo.shard_queue(self.opts.shard_id)
            self.broker.consume(queue, prefetch)
            self.log.info("shard_started", tick=self.loop.tick, queue=queue)
            self._tick_forever(stop)
            if self.flush():
                self.durability.checkpoint(self.loop, self.config)
            else:  # the journal keeps them: the next start resends them
                self.log.warning("stopping_with_unsent_outputs", boundaries=len(self.outbox))
            self.log.info("shard_stopped", tick=self.loop.tick)
        except StopRequested:
            self.log.info("shard_stopped_during_retry", tick=self.loop.tick)
        finally:
            self.durability.close()
            self.state.unlock()

    def recover(self) -> None:
        """Rebuild the state from the state dir and queue what may not have been sent."""
        done = recover(self.loop, self.state, self.durability.open())
        self.durability.seq = done.last_seq
        if done.replayed or done.checkpoint_seq:
            self.log.info("recovered", tick=self.loop.tick, checkpoint_seq=done.checkpoint_seq,
                          replayed=done.replayed, resent=len(done.resend),
                          state_hash=self.loop.last_hash)
        for item in done.resend:
            record = item.record
            self.outbox.add(Outgoing(record.seq, list(record.results), list(record.replies),
                                     item.telemetry))
        self.flush()  # what the broker can't take now stays in the outbox, in order

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

    # -- one boundary -------------------------------------------------------------------
    def boundary(self) -> None:
        loop = self.loop
        tick = loop.world.tick + 1
        budget = self.config.console.max_commands_per_tick
        while len(self.inbox) < budget and self._gather(0.0):
            pass  # top up with what is ready now (early answers free prefetch slots)
        batch = self.inbox.take(tick, budget)
        stepped = not loop.paused
        if not stepped and not batch.deliveries:
            return  # paused and nothing arrived: nothing happened, nothing to record
        events, digest = self.meter.boundary(loop, tick, stepped, batch.results)
        record = BoundaryRecord(self.durability.next_seq(), tick, stepped, digest,
                                tuple(batch.results), tuple(batch.replies),
                                loop.router.ledger.auto_ids())
        self._make_durable(record)
        results = results_to_wire(batch.results)
        loop.telemetry.record_results(tick, results)
        telemetry = (loop.telemetry.tick_message(loop.world, digest, events, results)
                     if stepped else None)
        self.outbox.add(Outgoing(record.seq, batch.results, batch.replies, telemetry,
                                 batch.dead, batch.deliveries))
        if stepped:
            self.ticks_run += 1
            self.log.debug("tick", tick=tick, commands=len(results), state_hash=digest)
            self.durability.note_tick(tick)
        if self.flush() and self.durability.checkpoint_due:
            self.durability.checkpoint(loop, self.config)

    def _make_durable(self, record: BoundaryRecord) -> None:
        """Journal a boundary, holding (not crashing) while the disk refuses.

        Nothing about this boundary has left the worker yet, so waiting is safe; crashing is
        not: every restart would return the held deliveries to the queue and count them
        toward its delivery limit. The connection stays serviced while we wait.
        """
        self._undurable = True
        attempt = 0
        while not self.durability.try_append(record, attempt):
            if self._stop is not None and self._stop.is_set():
                raise StopRequested
            self._gather(RETRY_BACKOFF[min(attempt, len(RETRY_BACKOFF) - 1)])
            self._maybe_health()
            attempt += 1
        self._undurable = False

    # -- the broker side ----------------------------------------------------------------
    def _gather(self, timeout: float) -> int:
        """Receive what the broker has (waiting up to ``timeout``); returns how many."""
        # An answer must never outrun its journal record, and a full outbox takes no more.
        room = 0 if self._undurable else self.opts.outbox_limit - len(self.outbox)
        received, early = self.inbox.gather(self.broker, timeout, room=room)
        self.meter.gathered(self.clock(), early)
        for answer in early:
            self.outbox.add(Outgoing(None, [answer.result], [answer.reply],
                                     acks=[answer.delivery]))
        if early:
            self.flush()
        self._repair()
        return received

    def flush(self) -> bool:
        """Publish what waits in the outbox, oldest first; True when it is empty."""
        flushed = self.outbox.flush()
        self.durability.mark_sent(flushed.sent_seqs)
        self._repair()
        return flushed.empty

    def _repair(self) -> None:
        if not self.trouble.needs_repair:
            return
        repairs = self.trouble.take_repairs()
        if repairs.drop_inbox:
            self.inbox.drop()
        if repairs.redeclare:
            try:
                declare_shard(self.broker, self.topo, self.opts.shard_id)
            except BrokerError as exc:
                self.log.warning("redeclare_failed", error=str(exc))

    def _hold_for_broker(self) -> None:
        """The outbox is full: stop ticking until the broker takes the backlog."""
        self.log.warning("outbox_full_holding", boundaries=len(self.outbox))
        self._gather(0.0)  # keeps the connection (and its reconnects) going
        self.sleep(RETRY_BACKOFF[-1])
        self._maybe_health()

    def _maybe_health(self) -> None:
        now = self.clock()
        if now - self._last_health < self.opts.health_every_s:
            return
        self._last_health = now
        try:
            self.outputs.telemetry(self.loop.telemetry.health_message(self.loop.tick,
                                                                      self.health()))
        except BrokerError as exc:
            self.trouble.report(exc)
        self._repair()
