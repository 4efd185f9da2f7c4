"""The CLI commands of the trust chain (`townlet verify`, `townlet shard-key`) and the checks
`townlet replay` makes of its input; ``ops/cli.py`` registers them (docs/THREAT_MODEL.md)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ops.vocabulary import Exit, JsonOpt
from shared.topology import validate_shard_id
from shared.trust.env import RESULT_KEY_ENV, keyring_from_env
from shared.trust.keys import TrustKeyError

if TYPE_CHECKING:  # the CLI imports this module at start: keep the simulation out of it
    from ops.replay import AuditRead
    from shared.console.results import ConsoleResult

__all__ = ["RESULT_KEY_ENV", "KeyEnvOpt", "shard_key", "shard_key_token", "verified_results",
           "verify"]

AUDIT_LOG = Path("logs/console/commands.jsonl")
KeyEnvOpt = Annotated[str, typer.Option(
    "--key-env", help="Environment variable holding the fleet result key(s), newest first "
                      "(see ops/runbooks/rotate-keys.md)")]


def _fail(message: str, code: Exit = Exit.ERROR) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(int(code))


def verify(
    path: Annotated[Path, typer.Argument(help="The audit log (its rotated .1, .2, ... files "
                                              "are checked too)")] = AUDIT_LOG,
    key_env: KeyEnvOpt = RESULT_KEY_ENV,
    as_json: JsonOpt = False,
) -> None:
    """Check an audit log's chain and signatures (exit 1 naming the first bad line)."""
    import json

    from ops.verify import verify_command, verify_json

    try:
        if as_json:
            code, report = verify_json(path, key_env)
            typer.echo(json.dumps(report, sort_keys=True))
            raise typer.Exit(code)
        code, lines = verify_command(path, key_env)
    except ValueError as exc:  # an unusable key: a usage mistake, nothing was checked
        raise _fail(str(exc), Exit.USAGE) from None
    for line in lines:
        typer.echo(line, err=line.startswith(("warning:", "note:")))
    raise typer.Exit(code)


def shard_key(
    shard_id: Annotated[str, typer.Option("--shard", help="The shard the key is for")],
    key_env: KeyEnvOpt = RESULT_KEY_ENV,
    as_json: JsonOpt = False,
) -> None:
    """Print one shard's signing key (its TOWNLET_SHARD_KEY), derived from the fleet key."""
    import json

    try:
        token = shard_key_token(shard_id, key_env)
    except ValueError as exc:
        raise _fail(str(exc), Exit.USAGE) from None
    typer.echo(json.dumps({"shard_id": shard_id, "shard_key": token}) if as_json else token)


def shard_key_token(shard_id: str, key_env: str) -> str:
    """The ``TOWNLET_SHARD_KEY`` of ``shard_id`` under the current key in ``key_env``: a shard
    handed only this signs its own results and nobody else's (docs/THREAT_MODEL.md)."""
    validate_shard_id(shard_id)
    keyring = keyring_from_env(key_env)
    if keyring is None:
        raise TrustKeyError(f"{key_env} is not set: it must hold the fleet key")
    return keyring.current.shard_key(shard_id).token()


def verified_results(read: AuditRead, key_env: str, keyed: bool, *,
                     writing: bool) -> list[ConsoleResult]:
    """The results `townlet replay` may use; says loudly what was not verified or left out."""
    if not keyed:
        typer.echo(f"warning: {key_env} is not set: audit lines are NOT verified (any line, "
                   "forged or not, is replayed)", err=True)
    if read.refused:
        typer.echo(f"warning: {len(read.refused)} audit line(s) of this shard are not verified "
                   f"results and were left out, first: {read.refused[0]} (run `townlet "
                   "verify`)", err=True)
        if writing:
            raise _fail("not writing a state dir from an audit log with unverified lines")
    return read.results
