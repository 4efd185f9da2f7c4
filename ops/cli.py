"""The `townlet` command line (Typer). Commands stay thin: each delegates to one module."""

from __future__ import annotations

import json
import os
import sys
import threading
from pathlib import Path
from typing import Annotated, Any

import typer

from shared.config import ConfigError

app = typer.Typer(help="Townlet shards: run, operate and inspect deterministic town shards.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)

AUDIT_LOG = Path("logs/console/commands.jsonl")
BrokerOpt = Annotated[str | None, typer.Option(
    "--broker", help="Broker URL (amqp://... or memory://); default: $TOWNLET_AMQP_URL, "
                     "else amqp://guest:guest@127.0.0.1:5672/%2F")]


def _broker_url(value: str | None) -> str:
    from shared.broker import default_amqp_url

    return value or default_amqp_url()


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(1)


def _logging(level: str = "info") -> None:
    from shared.logging import configure_logging

    configure_logging(level)


@app.command()
def run(
    config: Annotated[Path, typer.Argument(
        help="YAML config, e.g. configs/examples/poc_hybrid.yaml")],
    ticks: Annotated[int, typer.Option(min=1, help="Ticks to run")] = 100,
    seed: Annotated[int | None, typer.Option(min=0, help="Override world.seed")] = None,
    stream_telemetry: Annotated[bool, typer.Option(
        "--stream-telemetry", help="Mirror one JSON telemetry line per tick to stdout")] = False,
    telemetry_path: Annotated[Path | None, typer.Option(
        help="Write one JSON telemetry line per tick to this file")] = None,
) -> None:
    """Run one shard headless in-process (telemetry muted unless asked for)."""
    from ops.run_local import run_headless

    if stream_telemetry and telemetry_path is not None:
        raise _fail("use either --stream-telemetry or --telemetry-path, not both")
    run_headless(config, ticks, seed, stream_telemetry, telemetry_path)


@app.command()
def shard(
    shard_id: Annotated[str, typer.Option("--shard-id", help="Shard id (queue and routing key)")],
    config: Annotated[Path, typer.Option(help="The shard's YAML config")],
    broker: BrokerOpt = None,
    state_dir: Annotated[Path | None, typer.Option(
        help="Journal, checkpoint and lock (default state/<shard-id>)")] = None,
    tick_rate: Annotated[float | None, typer.Option(
        "--tick-rate", min=0.0, help="Ticks per second (0 = as fast as possible)")] = None,
    checkpoint_every: Annotated[int, typer.Option(min=1, help="Ticks between checkpoints")] = 200,
    max_ticks: Annotated[int | None, typer.Option(min=1, help="Stop after this many ticks")] = None,
    log_level: Annotated[str, typer.Option(help="debug logs one line per tick")] = "info",
) -> None:
    """Run one shard worker: consume its queue, tick, publish results and telemetry."""
    from ops.signals import install_stop_signals

    stop = threading.Event()
    install_stop_signals(stop)
    from workers.shard.bootstrap import run_shard

    _logging(log_level)
    try:
        run_shard(shard_id, config, _broker_url(broker), state_dir or Path("state") / shard_id,
                  stop, tick_rate_hz=tick_rate, max_ticks=max_ticks,
                  checkpoint_every=checkpoint_every)
    except (ConfigError, ValueError) as exc:
        raise _fail(str(exc)) from None
    except Exception as exc:  # a bug or a lost disk: log it, exit non-zero, restart from state
        import structlog

        structlog.get_logger("townlet.shard").exception(
            "shard_crashed", shard_id=shard_id, error=f"{type(exc).__name__}: {exc}")
        raise typer.Exit(1) from None


@app.command()
def audit(
    broker: BrokerOpt = None,
    log: Annotated[Path, typer.Option(help="JSONL audit log")] = AUDIT_LOG,
) -> None:
    """Run the audit consumer: one fsynced JSON line per console result."""
    from ops.signals import install_stop_signals

    stop = threading.Event()
    install_stop_signals(stop)
    from workers.audit.consumer import run_audit

    _logging()
    run_audit(_broker_url(broker), log, stop)


@app.command()
def up(
    fleet: Annotated[Path, typer.Option(help="Fleet file")] = Path("configs/fleet/local.yaml"),
    broker: Annotated[str | None, typer.Option(
        help="Broker URL; without it (and without $TOWNLET_AMQP_URL) the fleet runs embedded "
             "on the in-memory broker")] = None,
    ticks: Annotated[int | None, typer.Option(min=1, help="Embedded: stop after N ticks")] = None,
    seconds: Annotated[float | None, typer.Option(min=0.1, help="Stop after S seconds")] = None,
    commands: Annotated[Path | None, typer.Option(
        help="Embedded: JSONL of commands to send ({shard, name, args, kwargs, ...})")] = None,
) -> None:
    """Run the whole fleet locally: every shard worker plus the audit consumer."""
    from ops import fleet as fleet_mod
    from ops.signals import install_stop_signals
    from shared.config import load_fleet

    _logging()
    try:
        spec = load_fleet(fleet)
    except ConfigError as exc:
        raise _fail(str(exc)) from None
    stop = threading.Event()
    install_stop_signals(stop)
    url = broker or os.environ.get("TOWNLET_AMQP_URL")
    if url and not url.startswith("memory://"):
        fleet_mod.run_processes(spec, url, stop, seconds)
        return
    if seconds is not None:
        threading.Timer(seconds, stop.set).start()
    items = _read_jsonl(commands) if commands else None
    summary = fleet_mod.run_embedded(spec, stop, ticks=ticks, commands=items)
    for result in summary["results"]:
        typer.echo(json.dumps(result, sort_keys=True))
    typer.echo(f"fleet stopped; audit log: {summary['audit_log']}", err=True)


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    try:
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except (OSError, json.JSONDecodeError) as exc:
        raise _fail(f"cannot read commands file {path}: {exc}") from None


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


@app.command()
def send(
    shard_id: Annotated[str, typer.Argument(help="Target shard")],
    name: Annotated[str, typer.Argument(help="Console command, e.g. employment_status")],
    args: Annotated[list[str] | None, typer.Argument(help="Positional args (JSON or text)")] = None,
    kw: Annotated[list[str] | None, typer.Option(
        help="key=value kwargs (value JSON or text)")] = None,
    mode: Annotated[str, typer.Option(help="viewer or admin")] = "viewer",
    cmd_id: Annotated[str | None, typer.Option(help="Idempotency key (default: generated)")] = None,
    token_env: Annotated[str | None, typer.Option(
        help="Environment variable holding the console token")] = "TOWNLET_CONSOLE_TOKEN",
    wait: Annotated[bool, typer.Option(help="Wait for the result")] = True,
    timeout: Annotated[float, typer.Option(min=0.1)] = 10.0,
    broker: BrokerOpt = None,
) -> None:
    """Publish one console command to a shard and print its result (exit 1 on error)."""
    from ops.client import OperatorClient, ResultTimeout, build_command
    from shared.broker import BrokerError, open_broker

    kwargs: dict[str, Any] = {}
    for item in kw or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise _fail(f"--kw expects key=value, got {item!r}")
        kwargs[key] = _parse_value(value)
    token = os.environ.get(token_env) if token_env else None
    payload = build_command(name, [_parse_value(a) for a in args or []], kwargs, mode=mode,
                            cmd_id=cmd_id, token=token)
    try:
        client = OperatorClient(open_broker(_broker_url(broker)))
        result = client.send(shard_id, payload, wait=wait, timeout=timeout)
    except (BrokerError, ValueError, ResultTimeout) as exc:
        raise _fail(str(exc)) from None
    if result is None:
        typer.echo(json.dumps({"queued": payload["cmd_id"]}))
        return
    typer.echo(json.dumps(result, indent=2, sort_keys=True))
    if result.get("status") != "ok":
        raise typer.Exit(1)


@app.command()
def tail(
    shard_id: Annotated[str | None, typer.Option("--shard", help="Only this shard")] = None,
    kind: Annotated[str | None, typer.Option(help="snapshot, diff or health")] = None,
    results: Annotated[bool, typer.Option(help="Tail console results instead")] = False,
    count: Annotated[int | None, typer.Option(min=1)] = None,
    seconds: Annotated[float | None, typer.Option(min=0.1)] = None,
    broker: BrokerOpt = None,
) -> None:
    """Print telemetry (or console results) as JSON lines, as they are published."""
    from ops.client import OperatorClient
    from shared.broker import BrokerError, open_broker
    from shared.topology import Topology

    topo = Topology()
    exchange = topo.results_exchange if results else topo.telemetry_exchange
    try:
        client = OperatorClient(open_broker(_broker_url(broker)), topo)
        for headers, body in client.stream(exchange, seconds=seconds, count=None):
            if shard_id and headers.get("shard_id") != shard_id:
                continue
            if kind and body.get("kind") != kind:
                continue
            sys.stdout.write(json.dumps(body, sort_keys=True) + "\n")
            sys.stdout.flush()
            count = None if count is None else count - 1
            if count == 0:
                return
    except BrokerError as exc:
        raise _fail(str(exc)) from None


@app.command()
def status(
    fleet: Annotated[Path, typer.Option(help="Fleet file")] = Path("configs/fleet/local.yaml"),
    shard_ids: Annotated[list[str] | None, typer.Option(
        "--shard", help="Shard ids to show instead of the fleet file's")] = None,
    listen: Annotated[float, typer.Option(min=0.0, help="Seconds to wait for health")] = 2.0,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False,
    broker: BrokerOpt = None,
) -> None:
    """Fleet status: inbox depth, latest tick and health per shard, audit and dead queues."""
    from ops.status import fleet_status, render
    from shared.broker import BrokerError, open_broker
    from shared.config import load_fleet

    try:
        ids = shard_ids or [s.id for s in load_fleet(fleet).shards]
        report = fleet_status(open_broker(_broker_url(broker)), ids, listen)
    except (ConfigError, BrokerError) as exc:
        raise _fail(str(exc)) from None
    typer.echo(json.dumps(report, indent=2, sort_keys=True) if as_json else render(report))


@app.command()
def replay(
    config: Annotated[Path, typer.Option(help="The shard's initial config")],
    shard_id: Annotated[str, typer.Option("--shard", help="Shard id in the audit log")],
    ticks: Annotated[int, typer.Option(min=1, help="Replay up to this tick")],
    audit_log: Annotated[Path, typer.Option("--audit")] = AUDIT_LOG,
    telemetry: Annotated[Path | None, typer.Option(
        help="Captured telemetry JSONL to check every tick's state_hash against")] = None,
) -> None:
    """Rebuild a shard from its config and audit log; verify hashes against telemetry."""
    from ops.replay import audit_results, telemetry_hashes
    from ops.replay import replay as run_replay
    from shared.config import load_config

    try:
        cfg = load_config(config)
    except ConfigError as exc:
        raise _fail(str(exc)) from None
    hashes = run_replay(cfg, shard_id, audit_results(audit_log, shard_id), ticks)
    last = max(hashes) if hashes else 0
    typer.echo(f"replayed {len(hashes)} ticks of {shard_id}; tick {last} state_hash "
               f"{hashes.get(last, '-')}")
    if telemetry is not None:
        live = telemetry_hashes(telemetry, shard_id)
        shared_ticks = sorted(set(live) & set(hashes))
        bad = [t for t in shared_ticks if live[t] != hashes[t]]
        typer.echo(f"checked {len(shared_ticks)} ticks against telemetry: "
                   f"{'all match' if not bad else f'{len(bad)} differ, first at tick {bad[0]}'}")
        if bad or not shared_ticks:
            raise typer.Exit(1)


@app.command("dry-run")
def dry_run() -> None:
    """Run the console dry run (scripts/console_dry_run.py) against a fresh in-process shard."""
    import runpy

    script = Path(__file__).resolve().parents[1] / "scripts" / "console_dry_run.py"
    runpy.run_path(str(script), run_name="__main__")


if __name__ == "__main__":
    app()
