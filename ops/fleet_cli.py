"""`townlet up` as the command line sees it: read and check everything, lock the directory,
run the fleet (``ops/fleet.py``), print one line per result and choose the exit code."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from ops.connect import broker_url, in_process_only
from ops.fleet_lock import FleetLock
from ops.output import result_line
from ops.vocabulary import CliError, Exit
from shared.broker import AMQP_URL_ENV
from shared.config import ConfigError, FleetConfig, environment_value

Command = tuple[str, dict[str, Any]]


def load_fleet_and_commands(fleet: Path, commands: Path | None,
                            ) -> tuple[FleetConfig, list[Command] | None]:
    """Everything `up` reads, checked before anything starts: a typo fails in one line here
    instead of in a worker thread or after the fleet has been running for a while."""
    from ops.commands_file import CommandsFileError, read_commands
    from shared.config import load_config, load_fleet

    try:
        spec = load_fleet(fleet)
        for shard in spec.shards:
            load_config(shard.config)
    except ConfigError as exc:
        raise CliError(str(exc)) from None
    if commands is None:
        return spec, None
    try:
        return spec, read_commands(commands, [s.id for s in spec.shards])
    except CommandsFileError as exc:
        raise CliError(str(exc)) from None


def _stop_after(seconds: float, stop: threading.Event) -> None:
    timer = threading.Timer(seconds, stop.set)
    timer.daemon = True  # a run that ends first (--ticks) must not wait for it
    timer.start()


def run_up(fleet: Path, broker: str | None, *, ticks: int | None, seconds: float | None,
           commands: Path | None, max_restarts: int, as_json: bool,
           logging: Callable[[], None]) -> int:
    """Run the fleet; returns the exit code (1: a command got no result or an error result,
    or the fleet stopped because a child kept dying)."""
    from ops import fleet as fleet_mod
    from ops.signals import install_stop_signals

    url = broker or environment_value(AMQP_URL_ENV)
    embedded = not url or in_process_only(url)
    if not embedded:
        url = broker_url(url)
    spec, items = load_fleet_and_commands(fleet, commands)
    with FleetLock(Path(spec.state_root)):
        logging()
        stop = threading.Event()
        install_stop_signals(stop)
        if embedded:
            if seconds is not None:
                _stop_after(seconds, stop)
            summary = fleet_mod.run_embedded(spec, stop, ticks=ticks, commands=items)
        else:
            summary = fleet_mod.run_processes(spec, str(url), stop, seconds, ticks=ticks,
                                              commands=items, max_restarts=max_restarts)
    return _report(summary, as_json)


def _report(summary: dict[str, Any], as_json: bool) -> int:
    failed = False
    for result in summary["results"]:
        typer.echo(json.dumps(result, sort_keys=True) if as_json else result_line(result))
        failed = failed or result.get("status") != "ok"
    for error in summary["errors"]:
        typer.echo(f"error: {error}", err=True)
    typer.echo(f"fleet stopped; audit log: {summary['audit_log']}", err=True)
    return int(Exit.ERROR) if failed or summary["errors"] else int(Exit.OK)
