"""Metrics as plain values: what a process's parts own, read by an exporter on demand.

docs/ARCHITECTURE.md, "A metric": values come from their owners (the worker's counters, its
``health()``, ``broker.stats``, the audit consumer's ``AuditStats``), never from a second
bookkeeping. The owners keep counters as ints and durations in a ``Histogram`` (a few adds per
observation, no lock: each is written by one thread); a process's entry point composes a
``collect`` function returning ``Metric`` values, and ``shared.metrics.prometheus`` (the only
module importing prometheus_client) serves them with a health probe.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

MetricKind = Literal["counter", "gauge", "histogram"]
# Seconds: a tick or an fsync takes from tens of microseconds to (on a bad disk) seconds.
DURATION_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                    0.25, 0.5, 1.0, 2.5, 5.0)


class Histogram:
    """Cumulative-ready bucket counts, a sum and a count; ``observe`` is cheap."""

    __slots__ = ("buckets", "counts", "count", "sum")

    def __init__(self, buckets: tuple[float, ...] = DURATION_BUCKETS) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)  # the last one is +Inf
        self.count = 0
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.buckets, value)] += 1
        self.count += 1
        self.sum += value

    def cumulative(self) -> list[tuple[str, int]]:
        """(upper bound, observations <= it) per bucket, ending with "+Inf"."""
        out, running = [], 0
        for bound, n in zip((*map(repr, self.buckets), "+Inf"), self.counts, strict=True):
            running += n
            out.append((bound, running))
        return out


class CommandCounts:
    """Console results answered, by (status, error code); code "" for ok."""

    __slots__ = ("counts",)

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str], int] = {}

    def add(self, results: Iterable[Any]) -> None:
        """Count results (anything with ``ok`` and ``error.code``, as ``ConsoleResult``)."""
        for result in results:
            error = getattr(result, "error", None)
            key = ("ok", "") if error is None else ("error", str(error.code.value))
            self.counts[key] = self.counts.get(key, 0) + 1


Value = float | Histogram


@dataclass(frozen=True)
class Metric:
    """One metric family at one moment: name, kind, help and its labelled samples."""

    name: str
    kind: MetricKind
    help: str
    samples: list[tuple[dict[str, str], Value]] = field(default_factory=list)

    @classmethod
    def one(cls, name: str, kind: MetricKind, help: str, value: Value,
            labels: dict[str, str] | None = None) -> Metric:
        return cls(name, kind, help, [(labels or {}, value)])


Collect = Callable[[], list[Metric]]
# (healthy, details shown as JSON by /healthz): the process's own liveness judgement.
Probe = Callable[[], tuple[bool, dict[str, Any]]]
