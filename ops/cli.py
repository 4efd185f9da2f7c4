"""The `townlet` command line (Typer). Commands stay thin: each delegates to one module.

The shared vocabulary (option types, choices, exit codes, one-line failures) is in
``ops/vocabulary.py``; broker URLs and fast-failing client connections in ``ops/connect.py``.
"""

from __future__ import annotations

import json
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Annotated

import typer

from ops import cli_processes, trust_cli
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
    Mode,
    ShardFilterOpt,
    ShardOpt,
    TimeoutOpt,
    TokenEnvOpt,
    die,
    rewrite_renamed,
)

app = typer.Typer(
    help=f"Townlet shards: run, operate and inspect deterministic town shards.\n\n"
         f"{EXIT_CODES_HELP}",
    no_args_is_help=True, add_completion=True, pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]})

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


# The commands that run processes (run, shard, audit, up) live in ops/cli_processes.py; they are
# registered here, explicitly, in the order `townlet --help` lists them.
for _command in (cli_processes.run, cli_processes.shard, cli_processes.audit, cli_processes.up):
    app.command()(_command)


def _url(broker: str | None) -> str:
    from ops.connect import broker_url

    try:
        return broker_url(broker)
    except CliError as exc:
        die(exc)


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
    """Fleet status per shard, the audit consumer and dead letters; exit 1 when unhealthy.

    Per shard: state (ticking, paused, stale, unknown), tick, rate, lag, inbox depth and
    consumers, unsent outputs and last error."""
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
    """A live view of the fleet, refreshed in place (Rich). Ctrl-C quits.

    Per shard: state, tick, rate, lag, inbox, employment pending, exits today, last error."""
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
             "hold a checkpoint or journal yet); refused if telemetry disagrees or a line "
             "fails verification")] = None,
    key_env: trust_cli.KeyEnvOpt = trust_cli.RESULT_KEY_ENV,
    as_json: JsonOpt = False,
) -> None:
    """Rebuild a shard from its config and audit log; verify hashes against telemetry."""
    from ops.bisect import run_replay

    try:
        code = run_replay(config, shard_id, ticks, audit_log, telemetry, bisect=bisect,
                          write_state=write_state, as_json=as_json, key_env=key_env)
    except CliError as exc:
        die(exc)
    raise typer.Exit(code)


app.command()(trust_cli.verify)
app.command("shard-key")(trust_cli.shard_key)


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
    """Ask a shard or audit process's health probe (/healthz): exit 0 healthy, 1 not, 4 silent.

    What the compose healthchecks run."""
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
