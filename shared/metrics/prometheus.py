"""Prometheus exposition of ``Metric`` values, and the health probe, on one HTTP port.

The only module that imports prometheus_client. ``/metrics`` is the text format (the
``collect`` function runs on every scrape, on the server's thread: it only reads counters);
``/healthz`` answers 200 or 503 with the probe's JSON (what `townlet probe` and the compose
healthchecks ask). The server runs on daemon threads and is closed by ``MetricsServer.close``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Iterator
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import ThreadingWSGIServer
from prometheus_client.registry import Collector

from shared.metrics import Collect, Histogram, Metric, Probe

Family = CounterMetricFamily | GaugeMetricFamily | HistogramMetricFamily


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass  # one access line per scrape would drown the process's own log


class _Collector(Collector):
    def __init__(self, collect: Collect) -> None:
        self._collect = collect

    def collect(self) -> Iterator[Family]:
        for metric in self._collect():
            yield _family(metric)


def _family(metric: Metric) -> Family:
    names = sorted({k for labels, _ in metric.samples for k in labels})
    family: Family
    if metric.kind == "histogram":
        family = HistogramMetricFamily(metric.name, metric.help, labels=names)
        for labels, value in metric.samples:
            assert isinstance(value, Histogram)
            family.add_metric([labels.get(n, "") for n in names], value.cumulative(),
                              value.sum)
        return family
    family = (CounterMetricFamily if metric.kind == "counter" else GaugeMetricFamily)(
        metric.name.removesuffix("_total") if metric.kind == "counter" else metric.name,
        metric.help, labels=names)
    for labels, value in metric.samples:
        family.add_metric([labels.get(n, "") for n in names], float(value))  # type: ignore[arg-type]
    return family


class MetricsServer:
    """``/metrics`` and ``/healthz`` on ``host:port`` until ``close``."""

    def __init__(self, port: int, collect: Collect, probe: Probe,
                 host: str = "0.0.0.0") -> None:  # noqa: S104 - a container's probe port
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Collector(collect))
        metrics_app = make_wsgi_app(registry)

        def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
            if environ.get("PATH_INFO") in ("/healthz", "/health"):
                healthy, details = probe()
                body = json.dumps({"healthy": healthy, **details}, default=str).encode()
                start_response("200 OK" if healthy else "503 Service Unavailable",
                               [("Content-Type", "application/json")])
                return [body]
            return metrics_app(environ, start_response)  # type: ignore[no-any-return]

        self._server = make_server(host, port, app, ThreadingWSGIServer, handler_class=_Quiet)
        self.port = self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics",
                                        daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
