"""What a shard worker measures about itself, for its metrics and health probe.

The worker owns one ``WorkerMeter`` and reports into it at two points (each boundary, each
gather); ``workers/shard/metrics.py`` reads it. Kept out of ``worker.py`` so that stays pure
orchestration.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from shared.console.results import ConsoleResult
from shared.loop import SimulationLoop
from shared.metrics import CommandCounts, Histogram


class WorkerMeter:
    def __init__(self, clock: Callable[[], float]) -> None:
        self.tick_seconds = Histogram()  # loop.advance per tick (townlet_tick_seconds)
        self.commands = CommandCounts()  # results answered, by status and error code
        self.beat = clock()  # the main loop's last turn: the health probe's liveness

    def boundary(self, loop: SimulationLoop, tick: int, stepped: bool,
                 results: Iterable[ConsoleResult]) -> tuple[list[dict[str, Any]], str]:
        """Count the boundary's results and run (and time) its tick if it steps."""
        self.commands.add(results)
        if not stepped:
            return [], loop.last_hash
        started = time.perf_counter()
        events, digest = loop.advance(tick)
        self.tick_seconds.observe(time.perf_counter() - started)
        return events, digest

    def gathered(self, now: float, early: Sequence[Any]) -> None:
        """A turn of the loop (the worker is alive), with the early answers it produced."""
        self.beat = now
        if early:  # usually empty: several gathers a tick, so allocate nothing then
            self.commands.add([answer.result for answer in early])
