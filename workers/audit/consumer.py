"""The audit consumer: ``townlet.audit`` -> ``logs/console/commands.jsonl``.

Each poll is one batch: undecodable or id-less bodies go to the dead exchange (then acked, so a
poison message never blocks the log), good ones are appended with one fsync and acked only after
it, duplicates are acked without writing. Duplicates are normal: a shard re-sends a result after
a crash and the broker redelivers whatever was unacked when we died.

Before a result becomes a line it passes the gate (``gate.py``): with a result key configured,
only results signed by the shard they name are logged; the rest are kept aside, never logged.

When the disk refuses a write the batch is *held* (neither acked nor nacked) and retried with
backoff. Nacking would bump each message's delivery count, and the audit queue has a delivery
limit, so a few minutes of a full disk would dead-letter good results out of the audit log.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from shared import wire
from shared.audit.quarantine import Quarantine, quarantine_path
from shared.audit.records import AuditRecordError, EncodedLine, encode_line
from shared.audit.sink import AuditLog
from shared.broker import MemoryHub, open_broker, redact_url
from shared.broker.base import Broker, BrokerError, ConnectionLost, Delivery, Message
from shared.logging import Logger, event_sink, get_logger
from shared.metrics.prometheus import MetricsServer
from shared.topology import Topology, declare_audit
from shared.trust.env import UNVERIFIED_WARNING, keyring_from_env
from shared.trust.keys import Keyring
from workers.audit.gate import ResultGate
from workers.audit.metrics import audit_collector, audit_probe
from workers.process import process_name

MIN_BACKOFF = 0.05
MAX_BACKOFF = 5.0
_MAX_REASON = 500
# A dead letter keeps at most this much of a body: enough to inspect, never a 10 MB copy.
MAX_DEAD_BODY = 16 * 1024
# Headers the broker adds per delivery; a dead-lettered copy must not carry stale ones.
_BROKER_HEADERS = frozenset({"x-delivery-count"})


@dataclass
class AuditStats:
    appended: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    write_failures: int = 0
    broker_errors: int = 0
    refused: int = 0  # results that failed verification (kept aside, never logged)


@dataclass(frozen=True)
class _Accepted:
    delivery: Delivery
    line: EncodedLine


class AuditConsumer:
    """Drains the audit queue into an ``AuditLog``. Single-threaded, like its ``Broker``."""

    def __init__(
        self,
        broker: Broker,
        log: AuditLog,
        topo: Topology,
        *,
        max_body_bytes: int = 1_048_576,
        batch: int = 100,
        logger: Logger | None = None,
        broker_logs_outages: bool = False,
        gate: ResultGate | None = None,
    ) -> None:
        if batch < 1:
            raise ValueError("batch must be >= 1")
        self._broker = broker
        self._log = log
        self._topo = topo
        self._max_body_bytes = max_body_bytes
        self._batch = batch
        self._logger = logger if logger is not None else get_logger("audit.consumer")
        self._gate = gate if gate is not None else ResultGate(None, None, self._logger)
        self._started = False
        self._held: list[_Accepted] = []  # written-or-not batch awaiting a successful append
        self.backoff = 0.0  # how long run() waits before the next step; 0 while healthy
        self.stats = AuditStats()
        self.beat = time.monotonic()  # run()'s last turn: the health probe's liveness
        self.behind_since: float | None = None  # since when the queue may hold more than us
        self._in_outage = False  # broker errors are logged once per outage
        # The adapter already logs a lost connection (and its return) once: don't repeat it.
        self._quiet_on_lost = broker_logs_outages

    def start(self) -> None:
        """Declare the audit topology and subscribe; both are idempotent, so safe to repeat."""
        declare_audit(self._broker, self._topo)
        self._broker.consume(self._topo.audit_queue, prefetch=self._batch)
        self._started = True

    def step(self, timeout: float = 0.0) -> int:
        """Handle one batch; return how many deliveries were acked (0 if idle or held)."""
        if not self._started:
            self.start()
        # With a held batch, still poll (without waiting): it services heartbeats, and the
        # prefetch window keeps held + new within one batch.
        deliveries = self._broker.poll(0.0 if self._held else timeout, max_messages=self._batch)
        accepted = list(self._held)
        dead = 0
        for delivery in deliveries:
            item = self._accept(delivery)
            if item is None:
                dead += 1
            else:
                accepted.append(item)
        acked = dead + self._write(accepted)
        if not self._held:
            self.backoff = 0.0  # a full round without trouble: back to full speed
        self._note_progress(len(deliveries))
        return acked

    def _note_progress(self, received: int) -> None:
        """Lag bookkeeping and the end of an outage, after a step that reached the broker."""
        if self._held or received >= self._batch:  # a full batch: more may be waiting
            if self.behind_since is None:
                self.behind_since = time.monotonic()
        else:
            self.behind_since = None
        if self._in_outage:
            self._in_outage = False
            self._logger.info("audit_broker_recovered")

    def lag_seconds(self) -> float:
        """How long the consumer has not been caught up (0 when it is)."""
        return 0.0 if self.behind_since is None else time.monotonic() - self.behind_since

    def run(self, stop: threading.Event, idle_timeout: float = 0.5) -> None:
        """Step until ``stop`` is set; transport errors are logged and retried, never fatal."""
        try:
            while not stop.is_set():
                self.beat = time.monotonic()
                try:
                    self.step(idle_timeout)
                except BrokerError as exc:
                    self._on_broker_error(exc)
                if self.backoff:
                    stop.wait(self.backoff)
        finally:
            self._release_held()

    # -- one delivery -------------------------------------------------------------------------

    def _accept(self, delivery: Delivery) -> _Accepted | None:
        """Decode and encode one delivery, or dead-letter it (returning None)."""
        try:
            record = wire.decode(delivery.body, max_bytes=self._max_body_bytes)
            line = encode_line(record)
        except wire.WireError as exc:
            self._dead_letter(delivery, f"{exc.code}: {exc}")
            return None
        except AuditRecordError as exc:
            self._dead_letter(delivery, f"invalid_record: {exc}")
            return None
        except Exception as exc:  # a decoder bug must not stop the audit log either
            self._dead_letter(delivery, f"undecodable: {type(exc).__name__}: {exc}")
            return None
        if not self._admitted(record, delivery):
            return None
        return _Accepted(delivery, line)

    def _admitted(self, record: dict[str, object], delivery: Delivery) -> bool:
        """Verify before writing (``gate.py``); a refused result is set aside, then acked."""
        if self._gate.admit(record, delivery):
            return True
        self.stats.refused += 1
        self._broker.ack(delivery)
        return False

    def _dead_letter(self, delivery: Delivery, reason: str) -> None:
        """Park a poison delivery in the dead queue, then ack it; if parking fails, requeue."""
        reason = reason[:_MAX_REASON]
        try:
            self._publish_dead(delivery, reason)
        except ConnectionLost:
            raise  # the whole session is gone; the broker redelivers everything unacked
        except BrokerError as exc:
            # Not known to be stored: give it back. The audit queue's delivery limit
            # dead-letters it after a few rounds, so it cannot loop forever.
            self._broker.nack(delivery, requeue=True)
            self._logger.error("audit_dead_letter_failed", reason=reason, error=str(exc))
            return
        self._broker.ack(delivery)
        self.stats.dead_lettered += 1
        self._logger.warning(
            "audit_dead_lettered",
            reason=reason,
            message_id=delivery.message_id,
            redelivered=delivery.redelivered,
        )

    def _publish_dead(self, delivery: Delivery, reason: str) -> None:
        headers = {k: v for k, v in delivery.headers.items() if k not in _BROKER_HEADERS}
        headers["x-death-reason"] = reason
        headers["x-death-queue"] = delivery.queue
        body = delivery.body[:MAX_DEAD_BODY]
        if len(body) < len(delivery.body):
            headers["x-original-bytes"] = len(delivery.body)
        message = Message(
            body=body,
            headers=headers,
            message_id=delivery.message_id,
            correlation_id=delivery.correlation_id,
        )
        try:
            self._broker.publish(self._topo.dead_exchange, delivery.routing_key, message)
        except ValueError:  # headers the transport refuses: keep the body, drop theirs
            bare = Message(body=body, headers={"x-death-reason": reason})
            self._broker.publish(self._topo.dead_exchange, delivery.routing_key, bare)

    # -- a batch ------------------------------------------------------------------------------

    def _write(self, accepted: list[_Accepted]) -> int:
        if not accepted:
            return 0
        try:
            written = self._log.append_encoded([item.line for item in accepted])
        except OSError as exc:
            self._hold(accepted, exc)
            return 0
        self._held = []
        for item in accepted:  # only now is every line of the batch on disk
            self._broker.ack(item.delivery)
        new = sum(written)
        self.stats.appended += new
        self.stats.duplicates += len(written) - new
        self._logger.debug("audit_batch", acked=len(accepted), appended=new)
        return len(accepted)

    def _hold(self, accepted: list[_Accepted], exc: OSError) -> None:
        self._held = accepted
        self.stats.write_failures += 1
        self.backoff = _next_backoff(self.backoff)
        self._logger.error(
            "audit_write_failed", error=str(exc), held=len(accepted), retry_in_s=self.backoff
        )

    def _on_broker_error(self, exc: BrokerError) -> None:
        if isinstance(exc, ConnectionLost):
            # Deliveries of a lost session are stale (the broker requeued them): acking them
            # later would be a no-op, so forget them; redelivery plus dedupe does the rest.
            self._held = []
        self._started = False  # re-declare and re-subscribe on the next step
        self.stats.broker_errors += 1
        self.backoff = _next_backoff(self.backoff)
        if self.behind_since is None:
            self.behind_since = time.monotonic()  # results may be piling up meanwhile
        if self._in_outage or (self._quiet_on_lost and isinstance(exc, ConnectionLost)):
            return  # once per outage, not once per retry
        self._in_outage = True
        self._logger.warning(
            "audit_broker_error",
            error=str(exc),
            kind=type(exc).__name__,
            retry_in_s=self.backoff,
            max_backoff_s=MAX_BACKOFF,
        )

    def _release_held(self) -> None:
        held, self._held = self._held, []
        for item in held:
            try:
                self._broker.nack(item.delivery, requeue=True)
            except BrokerError:
                return  # the connection is gone, which returns them just as well


def _next_backoff(current: float) -> float:
    return min(MAX_BACKOFF, max(MIN_BACKOFF, current * 2))


def run_audit(
    broker_url: str,
    log_path: Path,
    stop: threading.Event,
    hub: MemoryHub | None = None,
    *,
    opener: Callable[..., Broker] | None = None,
    metrics_port: int | None = None,
) -> None:
    """Entry point for ``townlet audit``: consume results into ``log_path`` until ``stop``.

    The result keyring comes from ``TOWNLET_RESULT_KEY`` (TrustKeyError, a ValueError, when it
    is unusable: better to refuse to start than to log unverified results)."""
    logger = get_logger("audit", broker=redact_url(broker_url), path=str(log_path))
    adapter_logs = opener is None
    if opener is None:
        # One attempt per call (the loops here back off on ``stop``, so SIGTERM is honoured at
        # once); outages are logged once each by the adapter, under this process's name.
        opener = partial(open_broker, wait_for_broker=False, reconnect_timeout=0.0,
                         connection_name=process_name("audit"), on_event=event_sink(logger))
    keyring = keyring_from_env()
    if keyring is None:
        logger.warning("audit_results_unverified", warning=UNVERIFIED_WARNING)
    chain_key = keyring.current if keyring is not None else None
    with AuditLog(log_path, chain_key=chain_key) as log:  # first: a second audit fails fast
        broker = _connect(broker_url, hub, stop, opener, logger)
        if broker is None:
            return
        logger.info("audit_started", records=len(log), verified=keyring is not None,
                    kids=list(keyring.kids) if keyring is not None else [])
        consumer = AuditConsumer(broker, log, Topology(), logger=logger,
                                 broker_logs_outages=adapter_logs,
                                 gate=audit_gate(keyring, log_path, logger))
        server = None if metrics_port is None else MetricsServer(
            metrics_port, audit_collector(consumer), audit_probe(consumer))
        try:
            consumer.run(stop)
        finally:
            if server is not None:
                server.close()
            broker.close()
            logger.info("audit_stopped", chain_seq=log.head.seq, chain_head=log.head.hash,
                        refused=consumer.stats.refused)


def audit_gate(keyring: Keyring | None, log_path: Path, logger: Logger) -> ResultGate:
    """The gate of a consumer writing ``log_path``: refused results go beside it."""
    return ResultGate(keyring, Quarantine(quarantine_path(log_path)), logger)


def _connect(
    url: str,
    hub: MemoryHub | None,
    stop: threading.Event,
    opener: Callable[..., Broker],
    logger: Logger,
) -> Broker | None:
    """Open the broker, retrying while it is unreachable (logged once); None if stopped."""
    delay = 0.0
    while not stop.is_set():
        try:
            broker = opener(url, hub=hub)
        except BrokerError as exc:
            if delay == 0.0:
                logger.warning("audit_connect_failed", error=str(exc),
                               retry_in_s=MIN_BACKOFF, max_backoff_s=MAX_BACKOFF)
            delay = _next_backoff(delay)
            stop.wait(delay)
            continue
        if delay:
            logger.info("audit_connected")
        return broker
    return None
