"""A shard worker's metrics and health probe, read from the parts that own each value.

Composed by ``workers/shard/bootstrap.py`` when ``--metrics-port`` is given. Gauges come from
``ShardWorker.health()``; counters from the worker (ticks, results by status/code, tick
durations), the outbox (published), broker trouble (errors reported), the durability layer
(journal appends, fsync durations) and the broker adapter's ``stats`` (reconnects).
"""

from __future__ import annotations

from typing import Any

from shared.metrics import Collect, Metric, Probe
from workers.shard.worker import ShardWorker

STALLED_AFTER_S = 15.0  # no turn of the main loop for this long: the probe says unhealthy


def shard_collector(worker: ShardWorker) -> Collect:
    labels = {"shard": worker.opts.shard_id}

    def collect() -> list[Metric]:
        health = worker.health()
        journal = worker.durability.journal
        out = [
            Metric.one("townlet_ticks_total", "counter", "Ticks run by this process",
                       worker.ticks_run, labels),
            Metric.one("townlet_tick_seconds", "histogram", "Seconds per tick (simulation "
                       "step and state hash)", worker.meter.tick_seconds, labels),
            Metric("townlet_commands_total", "counter", "Console results answered, by status "
                   "and error code", [({**labels, "status": status, "code": code}, n)
                                      for (status, code), n in
                                      sorted(worker.meter.commands.counts.items())]),
            Metric.one("townlet_tick", "gauge", "The shard's current tick", worker.loop.tick,
                       labels),
            Metric.one("townlet_paused", "gauge", "1 while the shard is paused",
                       int(health.paused), labels),
            Metric.one("townlet_tick_rate_hz", "gauge", "Configured ticks per second",
                       health.tick_rate_hz, labels),
            Metric.one("townlet_inbox_depth", "gauge", "Commands received, waiting for a "
                       "boundary", health.queue_depth, labels),
            Metric.one("townlet_outbox_unsent", "gauge", "Durable outputs not yet published "
                       "(non-zero during a broker outage)", health.unsent_outputs, labels),
            Metric.one("townlet_outputs_published_total", "counter", "Outbox items published",
                       worker.outbox.published, labels),
            Metric.one("townlet_broker_reconnects_total", "counter", "Reconnects to the "
                       "broker", worker.broker.stats.reconnects, labels),
            Metric.one("townlet_broker_errors_total", "counter", "Broker errors met by the "
                       "worker's parts", worker.trouble.reported, labels),
            Metric.one("townlet_journal_appends_total", "counter", "Boundary records made "
                       "durable", worker.durability.appends, labels),
            Metric.one("townlet_journal_append_failures_total", "counter", "Journal appends "
                       "the disk refused", worker.durability.append_failures, labels),
        ]
        if journal is not None:
            out.append(Metric.one("townlet_journal_fsync_seconds", "histogram", "Seconds per "
                                  "journal fsync", journal.fsync_seconds, labels))
        return out

    return collect


def shard_probe(worker: ShardWorker) -> Probe:
    def probe() -> tuple[bool, dict[str, Any]]:
        idle = worker.clock() - worker.meter.beat
        health = worker.health()
        healthy = idle < STALLED_AFTER_S
        detail = (f"shard {worker.opts.shard_id} at tick {worker.loop.tick}" if healthy else
                  f"shard {worker.opts.shard_id}: main loop stalled for {idle:.0f}s")
        return healthy, {"detail": detail, "shard": worker.opts.shard_id,
                         "tick": worker.loop.tick, "paused": health.paused,
                         "unsent_outputs": health.unsent_outputs,
                         "seconds_since_loop_turn": round(idle, 3)}

    return probe
