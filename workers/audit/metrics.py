"""The audit consumer's metrics and health probe, read from its ``AuditStats`` and loop.

Composed by ``workers/audit/consumer.run_audit`` when ``--metrics-port`` is given.
``townlet_audit_lag_seconds`` is how long the consumer has not been caught up: 0 while its last
poll found less than a full batch, growing while full batches keep coming, the disk refuses
writes or the broker is away.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

from shared.metrics import Collect, Metric, Probe


class AuditConsumer(Protocol):
    """What is read of ``workers.audit.consumer.AuditConsumer`` (which composes this module,
    so it is not imported here)."""

    stats: Any  # AuditStats
    beat: float

    def lag_seconds(self) -> float: ...

STALLED_AFTER_S = 15.0


def audit_collector(consumer: AuditConsumer) -> Collect:
    def collect() -> list[Metric]:
        stats = consumer.stats
        return [
            Metric.one("townlet_audit_lines_total", "counter", "Audit lines appended",
                       stats.appended),
            Metric.one("townlet_audit_duplicates_total", "counter", "Results already in the "
                       "log (a resend or redelivery), acked without writing", stats.duplicates),
            Metric.one("townlet_audit_dead_lettered_total", "counter", "Undecodable results "
                       "sent to townlet.dead", stats.dead_lettered),
            Metric.one("townlet_audit_write_failures_total", "counter", "Appends the disk "
                       "refused (the batch is held and retried)", stats.write_failures),
            Metric.one("townlet_audit_broker_errors_total", "counter", "Broker errors met",
                       stats.broker_errors),
            Metric.one("townlet_audit_lag_seconds", "gauge", "Seconds the consumer has not "
                       "been caught up with the audit queue", consumer.lag_seconds()),
        ]

    return collect


def audit_probe(consumer: AuditConsumer) -> Probe:
    def probe() -> tuple[bool, dict[str, Any]]:
        idle = time.monotonic() - consumer.beat
        healthy = idle < STALLED_AFTER_S
        return healthy, {"detail": "audit consumer running" if healthy else
                         f"audit consumer loop stalled for {idle:.0f}s",
                         "lines": consumer.stats.appended,
                         "lag_seconds": round(consumer.lag_seconds(), 3)}

    return probe
