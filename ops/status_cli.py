"""`townlet status` and `townlet top` as the command line runs them: which shards to expect,
connect within --timeout, report or draw."""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer

from ops.connect import client_errors, connect_client
from ops.observe import Observer
from ops.status import HEALTH_EVERY_S, fleet_status, render, report_from
from ops.vocabulary import CliError
from shared.config import ConfigError, load_fleet


def expected_shards(fleet: Path | None, shard_ids: list[str] | None) -> list[str]:
    ids = list(shard_ids or [])
    if fleet is not None:
        try:
            ids += [s.id for s in load_fleet(fleet).shards]
        except ConfigError as exc:
            raise CliError(str(exc)) from None
    return sorted(set(ids))


def run_status(url: str, fleet: Path | None, shard_ids: list[str] | None, listen: float,
               timeout: float, as_json: bool) -> bool:
    """Print the report; True when healthy."""
    expected = expected_shards(fleet, shard_ids)
    broker = connect_client(url, timeout, "status")
    try:
        with client_errors(url):
            report = fleet_status(broker, expected, listen, discover=not shard_ids)
    finally:
        broker.close()
    typer.echo(json.dumps(report, indent=2, sort_keys=True, default=str) if as_json
               else render(report))
    return bool(report["healthy"])


def run_top(url: str, fleet: Path | None, shard_ids: list[str] | None, refresh: float,
            once: bool, timeout: float, as_json: bool) -> None:
    from ops.top import live_view

    expected = expected_shards(fleet, shard_ids)
    broker = connect_client(url, timeout, "top")
    window = max(refresh, HEALTH_EVERY_S) * 2
    try:
        with client_errors(url):
            observer = Observer(broker)
            try:
                def frame() -> dict[str, object]:
                    observer.pump(refresh)
                    return report_from(observer, expected, window, discover=not shard_ids)

                if as_json:
                    while True:
                        typer.echo(json.dumps(frame(), sort_keys=True, default=str))
                        if once:
                            return
                else:
                    live_view(frame, once=once, started=time.monotonic())
            finally:
                observer.close()
    except KeyboardInterrupt:
        pass
    finally:
        broker.close()
