"""Composition root of one shard worker process (`townlet shard`)."""

from __future__ import annotations

import threading
from pathlib import Path

from shared.broker import MemoryHub, open_broker, redact_url, url_user
from shared.config import load_config
from shared.logging import event_sink, get_logger
from shared.metrics.prometheus import MetricsServer
from shared.trust.env import UNSIGNED_WARNING, shard_signer
from workers.process import process_name
from workers.shard.metrics import shard_collector, shard_probe
from workers.shard.options import WorkerOptions
from workers.shard.worker import ShardWorker


def run_shard(shard_id: str, config_path: Path, broker_url: str, state_dir: Path,
              stop: threading.Event, *, tick_rate_hz: float | None = None,
              hub: MemoryHub | None = None, max_ticks: int | None = None,
              checkpoint_every: int = 200, metrics_port: int | None = None,
              connection_name: str | None = None) -> None:
    config = load_config(config_path)
    log = get_logger("shard", shard_id=shard_id)
    signer = shard_signer(shard_id)  # TrustKeyError (a ValueError) before anything starts
    if signer is None:
        log.warning("results_unsigned", warning=UNSIGNED_WARNING)
    # Fail fast while the broker is away: the worker keeps ticking and queues its outputs.
    # Each outage is logged once, with the shard id, by the adapter (not pika's records).
    broker = open_broker(broker_url, hub=hub, wait_for_broker=False,
                         connection_name=connection_name or process_name("shard", shard_id),
                         on_event=event_sink(log))
    log.info("shard_booting", broker=redact_url(broker_url), config=str(config_path),
             state_dir=str(state_dir), signed=signer is not None,
             kid=signer.kid if signer is not None else None)
    options = WorkerOptions(shard_id=shard_id, state_dir=state_dir, tick_rate_hz=tick_rate_hz,
                            max_ticks=max_ticks, checkpoint_every=checkpoint_every,
                            signer=signer, user_id=url_user(broker_url))
    server = None
    try:
        worker = ShardWorker(config, broker, options)
        if metrics_port is not None:
            server = _serve_metrics(worker, metrics_port)
            log.info("metrics_serving", port=server.port)
        worker.run(stop)
    finally:
        if server is not None:
            server.close()
        broker.close()


def _serve_metrics(worker: ShardWorker, port: int) -> MetricsServer:
    return MetricsServer(port, shard_collector(worker), shard_probe(worker))

