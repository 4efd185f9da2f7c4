"""The CLI's one vocabulary: exit codes, option types, choices, and failing in one line.

Every `townlet` command builds its options from the types here, so a flag means the same thing
(and is spelled the same way) everywhere: ``--shard``, ``--ticks``, ``--audit-log``,
``--broker``, ``--json``, ``--timeout``. Commands added by other modules (verify, vitals, ...)
use the same types and the same ``Exit`` codes.
"""

from __future__ import annotations

import sys
from enum import IntEnum, StrEnum
from pathlib import Path
from typing import Annotated, NoReturn

import typer


class Exit(IntEnum):
    """Exit codes of every `townlet` command (shown in `townlet --help`)."""

    OK = 0
    ERROR = 1  # an error result, an unhealthy fleet, a failed check, a bad input file
    USAGE = 2  # a bad option or argument (Typer's own usage errors use 2 as well)
    TIMEOUT = 3  # no answer within --timeout
    UNREACHABLE = 4  # the broker could not be reached (or was lost) within --timeout


EXIT_CODES_HELP = ("Exit codes: 0 ok; 1 error result, unhealthy or failed check; 2 usage "
                   "error; 3 timeout; 4 broker unreachable.")

# Old spellings still accepted (scripts written before the vocabulary was unified); main()
# rewrites them before Typer parses, with a note on stderr.
RENAMED_FLAGS = {"--shard-id": "--shard", "--max-ticks": "--ticks", "--log": "--audit-log",
                 "--audit": "--audit-log"}


class Mode(StrEnum):
    viewer = "viewer"
    admin = "admin"


class Kind(StrEnum):
    snapshot = "snapshot"
    diff = "diff"
    health = "health"


class LogLevel(StrEnum):
    debug = "debug"
    info = "info"
    warning = "warning"
    error = "error"


AUDIT_LOG = Path("logs/console/commands.jsonl")
DEFAULT_TIMEOUT_S = 5.0
CONSOLE_TOKEN_ENV = "TOWNLET_CONSOLE_TOKEN"

BrokerOpt = Annotated[str | None, typer.Option(
    "--broker", help="RabbitMQ URL (amqp://... or amqps://...); default: $TOWNLET_AMQP_URL, "
                     "else amqp://guest:guest@127.0.0.1:5672/%2F. (memory://, the embedded "
                     "broker, exists only inside `townlet up`.)")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output")]
TimeoutOpt = Annotated[float, typer.Option(
    "--timeout", min=0.1, help="Seconds to reach the broker and get an answer (exit 3 on a "
                               "timeout, 4 when the broker is unreachable)")]
ShardOpt = Annotated[str, typer.Option("--shard", help="Shard id (queue and routing key)")]
ShardFilterOpt = Annotated[list[str] | None, typer.Option(
    "--shard", help="Only this shard (repeat for several)")]
AuditLogOpt = Annotated[Path, typer.Option(
    "--audit-log", help="The JSONL audit log (`townlet audit` writes it; rotated .1, .2, ... "
                        "files are read too)")]
TokenEnvOpt = Annotated[str, typer.Option(
    "--token-env", help="Environment variable holding the console token to present")]
LogLevelOpt = Annotated[LogLevel, typer.Option(
    "--log-level", help="Log level (debug logs one line per tick and the broker library's own "
                        "records)")]
MetricsPortOpt = Annotated[int | None, typer.Option(
    "--metrics-port", min=1, max=65535,
    help="Serve Prometheus metrics on /metrics and a health probe on /healthz at this port")]


class CliError(Exception):
    """A failure to report in one line with an exit code (raised below the command layer)."""

    def __init__(self, message: str, code: Exit = Exit.ERROR) -> None:
        super().__init__(message)
        self.code = code


def fail(message: str, code: int = Exit.ERROR) -> typer.Exit:
    """Print ``error: message`` on stderr and return the Exit to raise."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(int(code))


def die(error: CliError) -> NoReturn:
    raise fail(str(error), error.code) from None


def rewrite_renamed(argv: list[str]) -> list[str]:
    """``argv`` with old flag spellings replaced (``--shard-id x`` -> ``--shard x``)."""
    out = []
    for arg in argv:
        name, sep, value = arg.partition("=")
        new = RENAMED_FLAGS.get(name)
        if new is not None:
            print(f"note: {name} is now {new}", file=sys.stderr)
            arg = new + sep + value
        out.append(arg)
    return out
