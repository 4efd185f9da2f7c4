"""The `townlet` commands that run processes: `run`, `shard`, `audit`, `up`.

Registered on the app by ``ops/cli.py``; like every command they only parse options (types
from ``ops/vocabulary.py``) and delegate.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Annotated

import typer

from ops.vocabulary import (
    AUDIT_LOG,
    AuditLogOpt,
    BrokerOpt,
    CliError,
    Exit,
    JsonOpt,
    LogLevel,
    LogLevelOpt,
    MetricsPortOpt,
    ShardOpt,
    die,
    fail,
)
from shared.config import ConfigError

FLEET_FILE = Path("configs/fleet/local.yaml")
FleetOpt = Annotated[Path, typer.Option("--fleet", help="Fleet file (shards, state root, "
                                                        "audit log)")]
JsonLogsOpt = Annotated[bool, typer.Option("--json", help="JSON log lines even on a terminal")]


def _logging(level: LogLevel | str = LogLevel.info, as_json: bool | None = None) -> None:
    from shared.logging import configure_logging

    configure_logging(level.value if isinstance(level, LogLevel) else level,
                      json=True if as_json else None)

def _url(broker: str | None) -> str:
    from ops.connect import broker_url

    try:
        return broker_url(broker)
    except CliError as exc:
        die(exc)


def run(
    config: Annotated[Path, typer.Argument(
        help="YAML config, e.g. configs/examples/poc_hybrid.yaml")],
    ticks: Annotated[int, typer.Option(min=1, help="Ticks to run")] = 100,
    seed: Annotated[int | None, typer.Option(min=0, help="Override world.seed")] = None,
    stream_telemetry: Annotated[bool, typer.Option(
        "--stream-telemetry", help="Mirror one JSON telemetry line per tick to stdout")] = False,
    telemetry_path: Annotated[Path | None, typer.Option(
        help="Write one JSON telemetry line per tick to this file")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Run one shard headless in-process (telemetry muted unless asked for)."""
    from ops.run_local import run_headless

    if stream_telemetry and telemetry_path is not None:
        raise fail("use either --stream-telemetry or --telemetry-path, not both", Exit.USAGE)
    run_headless(config, ticks, seed, stream_telemetry, telemetry_path, as_json=as_json)


def shard(
    shard_id: ShardOpt,
    config: Annotated[Path, typer.Option(help="The shard's YAML config")],
    broker: BrokerOpt = None,
    state_dir: Annotated[Path | None, typer.Option(
        help="Journal, checkpoint and lock (default state/<shard>)")] = None,
    tick_rate: Annotated[float | None, typer.Option(
        "--tick-rate", min=0.0, help="Ticks per second (0 = as fast as possible)")] = None,
    checkpoint_every: Annotated[int, typer.Option(min=1, help="Ticks between checkpoints")] = 200,
    ticks: Annotated[int | None, typer.Option(min=1, help="Stop after this many ticks")] = None,
    log_level: LogLevelOpt = LogLevel.info,
    metrics_port: MetricsPortOpt = None,
    as_json: JsonLogsOpt = False,
) -> None:
    """Run one shard worker: consume its queue, tick, publish results and telemetry."""
    from ops.signals import install_stop_signals

    url = _url(broker)
    stop = threading.Event()
    install_stop_signals(stop)
    from workers.shard.bootstrap import run_shard

    _logging(log_level, as_json)
    try:
        run_shard(shard_id, config, url, state_dir or Path("state") / shard_id,
                  stop, tick_rate_hz=tick_rate, max_ticks=ticks,
                  checkpoint_every=checkpoint_every, metrics_port=metrics_port)
    except (ConfigError, ValueError, OSError) as exc:
        raise fail(str(exc)) from None
    except Exception as exc:  # a bug or a lost disk: log it, exit non-zero, restart from state
        from shared.logging import get_logger

        get_logger("shard").exception(
            "shard_crashed", shard_id=shard_id, error=f"{type(exc).__name__}: {exc}")
        raise typer.Exit(1) from None


def audit(
    broker: BrokerOpt = None,
    audit_log: AuditLogOpt = AUDIT_LOG,
    metrics_port: MetricsPortOpt = None,
    log_level: LogLevelOpt = LogLevel.info,
    as_json: JsonLogsOpt = False,
) -> None:
    """Run the audit consumer: one fsynced JSON line per console result."""
    from ops.signals import install_stop_signals

    url = _url(broker)
    stop = threading.Event()
    install_stop_signals(stop)
    from shared.audit.sink import AuditLogLocked
    from workers.audit.consumer import run_audit

    _logging(log_level, as_json)
    try:
        run_audit(url, audit_log, stop, metrics_port=metrics_port)
    except (OSError, AuditLogLocked) as exc:  # another consumer writes it, or unwritable
        raise fail(str(exc)) from None
    except ValueError as exc:  # an unusable TOWNLET_RESULT_KEY: refuse to log unverified
        raise fail(str(exc)) from None


def up(
    fleet: FleetOpt = FLEET_FILE,
    broker: Annotated[str | None, typer.Option(
        help="amqp:// URL: run every worker as its own process on RabbitMQ. Without it (and "
             "without $TOWNLET_AMQP_URL), or with memory://, the fleet runs embedded in this "
             "process on the in-memory broker")] = None,
    ticks: Annotated[int | None, typer.Option(
        min=1, help="Stop each shard after N ticks; the fleet stops when all have")] = None,
    seconds: Annotated[float | None, typer.Option(min=0.1, help="Stop after S seconds")] = None,
    commands: Annotated[Path | None, typer.Option(
        help="JSONL of commands, sent as the fleet starts, one per line: {shard, name, "
             "args, kwargs, mode, cmd_id, auth, ...}; one line per result is printed")] = None,
    max_restarts: Annotated[int, typer.Option(
        min=0, help="Restarts of one child (with exponential backoff) before the whole fleet "
                    "stops with exit 1")] = 5,
    as_json: Annotated[bool, typer.Option("--json", help="Print results as JSON lines")] = False,
) -> None:
    """Run the whole fleet locally: every shard worker plus the audit consumer.

    Exit 1 if a command got no result or an error result, or a child kept dying."""
    from ops.fleet_cli import run_up

    try:
        code = run_up(fleet, broker, ticks=ticks, seconds=seconds, commands=commands,
                      max_restarts=max_restarts, as_json=as_json, logging=_logging)
    except CliError as exc:
        die(exc)
    raise typer.Exit(code)


