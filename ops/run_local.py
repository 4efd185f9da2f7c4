"""`townlet run`: one shard headless, in-process, with optional telemetry mirroring."""

from __future__ import annotations

import json
import os
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import IO

import typer

from shared.config import ConfigError, load_config
from shared.loop import SimulationLoop

PROGRESS_MIN_TICKS = 500  # below this a progress bar is only noise


def run_headless(config_path: Path, ticks: int, seed: int | None, stream: bool,
                 telemetry_path: Path | None, *, as_json: bool = False) -> None:
    try:
        config = load_config(config_path)
        if seed is not None:
            config.world.seed = seed
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    loop = SimulationLoop(config, audit=False)  # no console input here: nothing to audit
    with ExitStack() as stack:
        sink: IO[str] | None = None
        if telemetry_path is not None:
            sink = stack.enter_context(_open_sink(telemetry_path))
        elif stream:
            sink = sys.stdout
        started = time.perf_counter()
        try:
            _tick_all(loop, ticks, sink)
        except BrokenPipeError:  # `townlet run ... --stream-telemetry | head`: reader is gone
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silence the exit-time flush
            return
        except Exception as exc:  # a simulation fault: report it, exit non-zero
            typer.echo(f"error: simulation fault at tick {loop.tick + 1}: "
                       f"{type(exc).__name__}: {exc}", err=True)
            raise typer.Exit(1) from None
        elapsed = time.perf_counter() - started
    rate = ticks / elapsed if elapsed > 0 else float("inf")
    if as_json:  # on stderr when stdout carries the telemetry stream
        typer.echo(json.dumps({"ticks": ticks, "seconds": round(elapsed, 3),
                               "ticks_per_sec": round(rate, 1), "tick": loop.tick,
                               "state_hash": loop.last_hash}), err=sink is sys.stdout)
        return
    typer.echo(f"Completed {ticks} ticks in {elapsed:.2f}s ({rate:.1f} ticks/sec)",
               err=sink is sys.stdout)


def _open_sink(path: Path) -> IO[str]:
    """The telemetry file, opened before the first tick so a bad path fails at once."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return path.open("w", encoding="utf-8")
    except OSError as exc:
        typer.echo(f"error: cannot write telemetry to {path}: {exc.strerror or exc}", err=True)
        raise typer.Exit(1) from None


def _tick_all(loop: SimulationLoop, ticks: int, sink: IO[str] | None) -> None:
    show_bar = sys.stderr.isatty() and ticks >= PROGRESS_MIN_TICKS
    with typer.progressbar(length=ticks, label="ticking", file=sys.stderr,
                           hidden=not show_bar) as bar:
        for _ in range(ticks):
            artifacts = loop.step(collect=False)
            if sink is not None:
                message = loop.telemetry.tick_message(
                    loop.world, artifacts.state_hash, artifacts.events, artifacts.console_results)
                sink.write(json.dumps(message, separators=(",", ":")) + "\n")
            bar.update(1)
