"""The `townlet` command line (Typer). Commands stay thin: each delegates to one module."""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path
from typing import Annotated, Any

import typer

from ops import trust_cli
from shared.config import ConfigError, FleetConfig, environment_value

app = typer.Typer(help="Townlet shards: run, operate and inspect deterministic town shards.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)

AUDIT_LOG = Path("logs/console/commands.jsonl")
DRY_RUN_CONFIG = Path("configs/examples/poc_hybrid.yaml")  # the dry-run script's cwd-relative path
BrokerOpt = Annotated[str | None, typer.Option(
    "--broker", help="RabbitMQ URL (amqp://... or amqps://...); default: $TOWNLET_AMQP_URL, "
                     "else amqp://guest:guest@127.0.0.1:5672/%2F. (memory://, the embedded "
                     "broker, exists only inside `townlet up`.)")]
MEMORY_ONLY_IN_UP = ("memory:// is the embedded broker and exists only inside one process: use "
                     "`townlet up` (no broker configured) or an amqp:// URL")
USAGE = 2  # exit code of a bad option, as Typer's own usage errors


def _in_process_only(url: str) -> bool:
    """Whether ``url`` names a transport that lives inside one process (memory://)."""
    from shared.broker import find_transport

    transport = find_transport(url)
    return transport is not None and transport.in_process


def _broker_url(value: str | None) -> str:
    """The broker URL of a command that talks to a broker from its own process.

    memory:// is refused here: an in-memory broker is private to the process that holds it, so
    a lone shard, audit consumer or operator command on it could never meet anyone."""
    from shared.broker import default_amqp_url, find_transport, network_schemes, redact_url

    url = value or default_amqp_url()
    if _in_process_only(url):
        raise _fail(MEMORY_ONLY_IN_UP, USAGE)
    if find_transport(url) is None:
        schemes = " or ".join(f"{scheme}://..." for scheme in network_schemes())
        raise _fail(f"unsupported broker URL {redact_url(url)}: use {schemes}", USAGE)
    return url


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


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

    url = _broker_url(broker)
    stop = threading.Event()
    install_stop_signals(stop)
    from workers.shard.bootstrap import run_shard

    _logging(log_level)
    try:
        run_shard(shard_id, config, url, state_dir or Path("state") / shard_id,
                  stop, tick_rate_hz=tick_rate, max_ticks=max_ticks,
                  checkpoint_every=checkpoint_every)
    except (ConfigError, ValueError) as exc:
        raise _fail(str(exc)) from None
    except Exception as exc:  # a bug or a lost disk: log it, exit non-zero, restart from state
        from shared.logging import get_logger

        get_logger("shard").exception(
            "shard_crashed", shard_id=shard_id, error=f"{type(exc).__name__}: {exc}")
        raise typer.Exit(1) from None


@app.command()
def audit(
    broker: BrokerOpt = None,
    log: Annotated[Path, typer.Option(help="JSONL audit log")] = AUDIT_LOG,
) -> None:
    """Run the audit consumer: one fsynced JSON line per console result."""
    from ops.signals import install_stop_signals

    url = _broker_url(broker)
    stop = threading.Event()
    install_stop_signals(stop)
    from workers.audit.consumer import run_audit

    _logging()
    try:
        run_audit(url, log, stop)
    except ValueError as exc:  # an unusable TOWNLET_RESULT_KEY: refuse to log unverified
        raise _fail(str(exc)) from None


@app.command()
def up(
    fleet: Annotated[Path, typer.Option(help="Fleet file")] = Path("configs/fleet/local.yaml"),
    broker: Annotated[str | None, typer.Option(
        help="amqp:// URL: run every worker as its own process on RabbitMQ. Without it (and "
             "without $TOWNLET_AMQP_URL), or with memory://, the fleet runs embedded in this "
             "process on the in-memory broker")] = None,
    ticks: Annotated[int | None, typer.Option(
        min=1, help="Stop each shard after N ticks; the fleet stops when all have")] = None,
    seconds: Annotated[float | None, typer.Option(min=0.1, help="Stop after S seconds")] = None,
    commands: Annotated[Path | None, typer.Option(
        help="JSONL of commands, sent as the fleet starts, one per line: {shard, name, "
             "args, kwargs, mode, cmd_id, auth, ...}; results are printed as JSON lines")] = None,
) -> None:
    """Run the whole fleet locally: every shard worker plus the audit consumer."""
    from ops import fleet as fleet_mod
    from ops.signals import install_stop_signals
    from shared.broker import AMQP_URL_ENV

    url = broker or environment_value(AMQP_URL_ENV)
    embedded = not url or _in_process_only(url)
    if not embedded:
        url = _broker_url(url)
    spec, items = _load_fleet_and_commands(fleet, commands)
    _logging()
    stop = threading.Event()
    install_stop_signals(stop)
    if embedded:
        if seconds is not None:
            _stop_after(seconds, stop)
        summary = fleet_mod.run_embedded(spec, stop, ticks=ticks, commands=items)
    else:
        summary = fleet_mod.run_processes(spec, str(url), stop, seconds, ticks=ticks,
                                          commands=items)
    for result in summary["results"]:
        typer.echo(json.dumps(result, sort_keys=True))
    for error in summary["errors"]:
        typer.echo(f"error: {error}", err=True)
    typer.echo(f"fleet stopped; audit log: {summary['audit_log']}", err=True)
    if summary["errors"]:
        raise typer.Exit(1)


def _stop_after(seconds: float, stop: threading.Event) -> None:
    timer = threading.Timer(seconds, stop.set)
    timer.daemon = True  # a run that ends first (--ticks) must not wait for it
    timer.start()


def _load_fleet_and_commands(
        fleet: Path, commands: Path | None,
) -> tuple[FleetConfig, list[tuple[str, dict[str, Any]]] | None]:
    """Everything `up` reads, checked before anything starts: a typo fails in one line here
    instead of in a worker thread or after the fleet has been running for a while."""
    from ops.commands_file import CommandsFileError, read_commands
    from shared.config import load_config, load_fleet

    try:
        spec = load_fleet(fleet)
        for shard in spec.shards:
            load_config(shard.config)
    except ConfigError as exc:
        raise _fail(str(exc)) from None
    if commands is None:
        return spec, None
    try:
        return spec, read_commands(commands, [s.id for s in spec.shards])
    except CommandsFileError as exc:
        raise _fail(str(exc)) from None


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
    token = environment_value(token_env) if token_env else None
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

    url = _broker_url(broker)
    try:
        ids = shard_ids or [s.id for s in load_fleet(fleet).shards]
        report = fleet_status(open_broker(url), ids, listen)
    except (ConfigError, BrokerError) as exc:
        raise _fail(str(exc)) from None
    typer.echo(json.dumps(report, indent=2, sort_keys=True) if as_json else render(report))


@app.command()
def replay(
    config: Annotated[Path, typer.Option(help="The shard's initial config")],
    shard_id: Annotated[str, typer.Option("--shard", help="Shard id in the audit log")],
    ticks: Annotated[int, typer.Option(min=1, help="Replay up to this tick")],
    audit_log: Annotated[Path, typer.Option(
        "--audit", help="The audit log `townlet audit` wrote (its rotated .1, .2, ... files "
                        "are read too); for a shard that never got a command, an empty file")
    ] = AUDIT_LOG,
    telemetry: Annotated[Path | None, typer.Option(
        help="Captured telemetry JSONL to check every tick's state_hash against")] = None,
    write_state: Annotated[Path | None, typer.Option(
        help="Also write the rebuilt shard as a state dir a worker resumes from (must not "
             "hold a checkpoint or journal yet); refused if telemetry disagrees or a line "
             "fails verification")] = None,
    key_env: trust_cli.KeyEnvOpt = trust_cli.RESULT_KEY_ENV,
) -> None:
    """Rebuild a shard from its config and audit log; verify hashes against telemetry."""
    from ops.replay import ReplayInputError, read_audit, rebuild, telemetry_hashes
    from ops.verify import load_keyring
    from shared.config import load_config

    try:
        cfg = load_config(config)
        keyring = load_keyring(key_env)
        # Read both inputs before the (long) replay: a typo fails at once, not minutes later.
        read = read_audit(audit_log, shard_id, keyring)
        live = None if telemetry is None else telemetry_hashes(telemetry, shard_id)
    except (ConfigError, ReplayInputError, ValueError) as exc:
        raise _fail(str(exc)) from None
    results = trust_cli.verified_results(read, key_env, keyring is not None,
                                         writing=write_state is not None)
    loop, hashes = rebuild(cfg, shard_id, results, ticks)
    last = max(hashes) if hashes else 0
    typer.echo(f"replayed {len(hashes)} ticks of {shard_id}; tick {last} state_hash "
               f"{hashes.get(last, '-')}")
    if live is not None:
        shared_ticks = sorted(set(live) & set(hashes))
        bad = [t for t in shared_ticks if live[t] != hashes[t]]
        typer.echo(f"checked {len(shared_ticks)} ticks against telemetry: "
                   f"{'all match' if not bad else f'{len(bad)} differ, first at tick {bad[0]}'}")
        if bad or not shared_ticks:
            raise typer.Exit(1)  # never write a state that disagrees with the live shard
    if write_state is not None:
        from workers.shard.recovery import seed_state_dir

        try:
            path = seed_state_dir(write_state, loop, cfg)
        except OSError as exc:
            raise _fail(str(exc)) from None
        typer.echo(f"wrote {path}: a worker started with --state-dir {write_state} resumes "
                   f"{shard_id} at tick {loop.tick}")


app.command()(trust_cli.verify)
app.command("shard-key")(trust_cli.shard_key)


@app.command("dry-run")
def dry_run() -> None:
    """Run the console dry run (scripts/console_dry_run.py) against a fresh in-process shard.

    Run it from the project root: the script reads configs/ and writes logs/ relative to it."""
    import runpy

    if not DRY_RUN_CONFIG.is_file():  # the script would die with a ConfigError traceback
        raise _fail(f"{DRY_RUN_CONFIG} not found in {Path.cwd()}: run `townlet dry-run` from "
                    "the project root (the directory holding configs/)")
    script = Path(__file__).resolve().parents[1] / "scripts" / "console_dry_run.py"
    runpy.run_path(str(script), run_name="__main__")


if __name__ == "__main__":
    app()
