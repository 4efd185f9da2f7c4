"""The `townlet` command line (Typer). Commands stay thin: each delegates to one module.

The shared vocabulary (option types, choices, exit codes, one-line failures) is in
``ops/vocabulary.py``; broker URLs and fast-failing client connections in ``ops/connect.py``.
"""

from __future__ import annotations

import json
import sys
import threading
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Annotated

import typer

from ops.vocabulary import (
    AUDIT_LOG,
    CONSOLE_TOKEN_ENV,
    DEFAULT_TIMEOUT_S,
    EXIT_CODES_HELP,
    AuditLogOpt,
    BrokerOpt,
    CliError,
    Exit,
    JsonOpt,
    Kind,
    LogLevel,
    LogLevelOpt,
    MetricsPortOpt,
    Mode,
    ShardFilterOpt,
    ShardOpt,
    TimeoutOpt,
    TokenEnvOpt,
    die,
    fail,
    rewrite_renamed,
)
from shared.config import ConfigError

app = typer.Typer(
    help=f"Townlet shards: run, operate and inspect deterministic town shards.\n\n"
         f"{EXIT_CODES_HELP}",
    no_args_is_help=True, add_completion=True, pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]})

FLEET_FILE = Path("configs/fleet/local.yaml")
FleetOpt = Annotated[Path, typer.Option("--fleet", help="Fleet file (shards, state root, "
                                                        "audit log)")]


def _version(value: bool) -> None:
    if value:
        try:
            typer.echo(f"townlet {version('townlet')}")
        except PackageNotFoundError:  # running from a checkout that was never installed
            typer.echo("townlet (not installed)")
        raise typer.Exit()


@app.callback()
def _main(version_: Annotated[bool, typer.Option(
        "--version", callback=_version, is_eager=True, help="Print the version and exit")]
          = False) -> None:
    from shared.logging import quiet_libraries

    quiet_libraries()  # a client command configures no logging: keep pika's records out


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
    as_json: JsonOpt = False,
) -> None:
    """Run one shard headless in-process (telemetry muted unless asked for)."""
    from ops.run_local import run_headless

    if stream_telemetry and telemetry_path is not None:
        raise fail("use either --stream-telemetry or --telemetry-path, not both", Exit.USAGE)
    run_headless(config, ticks, seed, stream_telemetry, telemetry_path, as_json=as_json)


@app.command()
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
    as_json: Annotated[bool, typer.Option("--json", help="JSON log lines even on a "
                                                         "terminal")] = False,
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


@app.command()
def audit(
    broker: BrokerOpt = None,
    audit_log: AuditLogOpt = AUDIT_LOG,
    metrics_port: MetricsPortOpt = None,
    log_level: LogLevelOpt = LogLevel.info,
    as_json: Annotated[bool, typer.Option("--json", help="JSON log lines even on a "
                                                         "terminal")] = False,
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


@app.command()
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


@app.command()
def send(
    shard_id: Annotated[str, typer.Argument(metavar="SHARD", help="Target shard")],
    name: Annotated[str, typer.Argument(help="Console command, e.g. employment_status")],
    args: Annotated[list[str] | None, typer.Argument(help="Positional args (JSON or text)")] = None,
    kw: Annotated[list[str] | None, typer.Option(
        help="key=value kwargs (value JSON or text); repeat for several")] = None,
    mode: Annotated[Mode, typer.Option(help="Requested role (the token decides)")] = Mode.viewer,
    cmd_id: Annotated[str | None, typer.Option(help="Idempotency key (default: generated)")] = None,
    token_env: TokenEnvOpt = CONSOLE_TOKEN_ENV,
    wait: Annotated[bool, typer.Option(help="Wait for the result")] = True,
    timeout: TimeoutOpt = DEFAULT_TIMEOUT_S,
    broker: BrokerOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the whole result envelope as "
                                                         "JSON")] = False,
) -> None:
    """Send one console command to a shard; print one line: ok/error, shard, command, tick.

    Exit 1 on an error result or a shard with no queue, 3 on no result in time, 4 when the
    broker is unreachable."""
    from ops.sending import send as send_command

    try:
        send_command(_url(broker), shard_id, name, args or [], kw or [], mode=mode.value,
                     cmd_id=cmd_id, token_env=token_env, wait=wait, timeout=timeout,
                     as_json=as_json)
    except CliError as exc:
        die(exc)


@app.command()
def tail(
    shard_id: Annotated[str | None, typer.Option("--shard", help="Only this shard")] = None,
    kind: Annotated[Kind | None, typer.Option(help="Only this telemetry kind")] = None,
    results: Annotated[bool, typer.Option(help="Tail console results instead")] = False,
    count: Annotated[int | None, typer.Option(min=1, help="Stop after N messages")] = None,
    seconds: Annotated[float | None, typer.Option(min=0.1, help="Stop after S seconds")] = None,
    save: Annotated[Path | None, typer.Option(
        help="Also append per-tick telemetry as JSON lines to FILE (for `townlet replay "
             "--telemetry FILE`)")] = None,
    timeout: TimeoutOpt = DEFAULT_TIMEOUT_S,
    broker: BrokerOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Raw messages as JSON lines")] = False,
) -> None:
    """Print telemetry (or console results) as they are published, one line each."""
    from ops.tailing import tail as tail_messages

    try:
        tail_messages(_url(broker), shard_id=shard_id, kind=kind.value if kind else None,
                      results=results, count=count, seconds=seconds, timeout=timeout,
                      as_json=as_json, save=save)
    except CliError as exc:
        die(exc)
    except (BrokenPipeError, KeyboardInterrupt):  # `| head`, or Ctrl-C: a normal end
        sys.stdout = open("/dev/null", "w")  # noqa: SIM115 - silence the exit-time flush


@app.command()
def status(
    fleet: Annotated[Path | None, typer.Option(
        help="Fleet file: its shards are reported even when silent")] = None,
    shard_ids: ShardFilterOpt = None,
    listen: Annotated[float, typer.Option(
        min=0.0, help="Seconds to listen for telemetry (stops early once every named shard "
                      "was seen); a shard with no new tick in this window is stale")] = 2.0,
    timeout: TimeoutOpt = DEFAULT_TIMEOUT_S,
    broker: BrokerOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Fleet status: state (ticking/paused/stale/unknown), tick, rate, lag, inbox, consumers,
    the audit consumer and dead letters. Exit 1 when anything is unhealthy."""
    from ops.status_cli import run_status

    try:
        healthy = run_status(_url(broker), fleet, shard_ids, listen, timeout, as_json)
    except CliError as exc:
        die(exc)
    if not healthy:
        raise typer.Exit(int(Exit.ERROR))


@app.command()
def top(
    fleet: Annotated[Path | None, typer.Option(help="Fleet file: show its shards too")] = None,
    shard_ids: ShardFilterOpt = None,
    refresh: Annotated[float, typer.Option(min=0.1, help="Seconds between refreshes")] = 1.0,
    once: Annotated[bool, typer.Option(help="Draw once and exit (a snapshot)")] = False,
    timeout: TimeoutOpt = DEFAULT_TIMEOUT_S,
    broker: BrokerOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON view per refresh "
                                                         "instead of drawing")] = False,
) -> None:
    """A live view of the fleet, refreshed in place: tick, rate, lag, inbox, employment
    pending, exits today and last error per shard. Ctrl-C quits."""
    from ops.status_cli import run_top

    try:
        run_top(_url(broker), fleet, shard_ids, refresh, once, timeout, as_json)
    except CliError as exc:
        die(exc)


@app.command()
def replay(
    config: Annotated[Path, typer.Option(help="The shard's initial config")],
    shard_id: ShardOpt,
    ticks: Annotated[int | None, typer.Option(
        min=1, help="Replay up to this tick (default: the last tick of --telemetry)")] = None,
    audit_log: AuditLogOpt = AUDIT_LOG,
    telemetry: Annotated[Path | None, typer.Option(
        help="Captured telemetry JSONL (`townlet tail --save`) to check every tick's "
             "state_hash against")] = None,
    bisect: Annotated[bool, typer.Option(
        help="Stop at the first tick whose state_hash differs from --telemetry and show it "
             "(exit 1), or say all match (exit 0)")] = False,
    write_state: Annotated[Path | None, typer.Option(
        help="Also write the rebuilt shard as a state dir a worker resumes from (must not "
             "hold a checkpoint or journal yet); refused if telemetry disagrees")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Rebuild a shard from its config and audit log; verify hashes against telemetry."""
    from ops.bisect import run_replay

    try:
        code = run_replay(config, shard_id, ticks, audit_log, telemetry, bisect=bisect,
                          write_state=write_state, as_json=as_json)
    except CliError as exc:
        die(exc)
    raise typer.Exit(code)


@app.command("dry-run")
def dry_run(
    shard_id: Annotated[str | None, typer.Option(
        "--shard", help="Run the checklist against this live shard over the broker (admin "
                        "token from --token-env); without it, against a fresh in-process "
                        "shard")] = None,
    audit_log: AuditLogOpt = AUDIT_LOG,
    token_env: TokenEnvOpt = CONSOLE_TOKEN_ENV,
    timeout: TimeoutOpt = DEFAULT_TIMEOUT_S,
    broker: BrokerOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The console dry run of docs/user/console-dry-run.md: PASS/FAIL per checklist item.

    Each item is printed with its evidence; exit 1 if any fails. In process it reads configs/
    and writes logs/ relative to the current directory (run it from the project root)."""
    from ops.dry_run import run_in_process, run_live

    try:
        if shard_id is None:
            ok = run_in_process(as_json=as_json)
        else:
            ok = run_live(_url(broker), shard_id, audit_log=audit_log, token_env=token_env,
                          timeout=timeout, as_json=as_json)
    except CliError as exc:
        die(exc)
    if not ok:
        raise typer.Exit(int(Exit.ERROR))


@app.command()
def probe(
    port: Annotated[int, typer.Option(min=1, max=65535, help="The process's --metrics-port")],
    host: Annotated[str, typer.Option(help="Where the process listens")] = "127.0.0.1",
    timeout: TimeoutOpt = 3.0,
    as_json: JsonOpt = False,
) -> None:
    """Ask a shard or audit process's health probe (/healthz); exit 0 healthy, 1 not, 4 no
    answer (what the compose healthchecks run)."""
    from ops.probe import probe as ask

    healthy, body = ask(host, port, timeout)
    typer.echo(json.dumps(body, sort_keys=True) if as_json else
               f"{'healthy' if healthy else 'unhealthy'}: {body.get('detail', body)}")
    if not healthy:
        raise typer.Exit(int(Exit.UNREACHABLE if body.get("unreachable") else Exit.ERROR))


def main() -> None:
    """The `townlet` entry point: old flag spellings rewritten, then Typer."""
    sys.argv[1:] = rewrite_renamed(sys.argv[1:])
    app(prog_name="townlet")


if __name__ == "__main__":
    main()
