"""`townlet send`: one console command to one shard, its result as one line (or JSON)."""

from __future__ import annotations

import json
import time
from typing import Any

import typer

from ops.client import OperatorClient, build_command
from ops.connect import client_errors, connect_client
from ops.output import result_line
from ops.vocabulary import CliError, Exit
from shared.config import environment_value


def parse_value(text: str) -> Any:
    """A CLI value: JSON when it parses (numbers, objects, true), else the text itself."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_kwargs(items: list[str]) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CliError(f"--kw expects key=value, got {item!r}", Exit.USAGE)
        kwargs[key] = parse_value(value)
    return kwargs


def send(url: str, shard_id: str, name: str, args: list[str], kw: list[str], *, mode: str,
         cmd_id: str | None, token_env: str | None, wait: bool, timeout: float,
         as_json: bool) -> None:
    """Publish, wait for the result within ``timeout`` (connecting included), print it.

    Exit 1 for an error result, 3 when none came in time, 4 when the broker is away."""
    kwargs = parse_kwargs(kw)
    token = environment_value(token_env) if token_env else None
    payload = build_command(name, [parse_value(a) for a in args], kwargs, mode=mode,
                            cmd_id=cmd_id, token=token)
    deadline = time.monotonic() + timeout
    broker = connect_client(url, timeout, "send", shard_id)
    try:
        with client_errors(url):
            try:
                client = OperatorClient(broker)
                left = max(deadline - time.monotonic(), 0.1)
                result = client.send(shard_id, payload, wait=wait, timeout=left)
            except ValueError as exc:  # an invalid shard id
                raise CliError(str(exc), Exit.USAGE) from None
    finally:
        broker.close()
    if result is None:
        typer.echo(json.dumps({"queued": payload["cmd_id"]}) if as_json
                   else f"queued {shard_id} {name} cmd_id={payload['cmd_id']}")
        return
    typer.echo(json.dumps(result, indent=2, sort_keys=True) if as_json
               else result_line(result, payload))
    if result.get("status") != "ok":
        raise typer.Exit(int(Exit.ERROR))
