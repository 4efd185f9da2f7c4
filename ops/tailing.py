"""`townlet tail`: telemetry or console results as they are published, one line each.

``--save FILE`` also writes every per-tick telemetry message (snapshot and diff, the ones with a
``state_hash``) as a JSON line: the capture `townlet replay --telemetry FILE` checks against.
"""

from __future__ import annotations

import json
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import IO, Any

from ops.client import OperatorClient
from ops.connect import client_errors, connect_client
from ops.output import result_tail_line, telemetry_line
from ops.vocabulary import CliError
from shared.topology import Topology


def _open_save(path: Path) -> IO[str]:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return path.open("a", encoding="utf-8")
    except OSError as exc:
        raise CliError(f"cannot write {path}: {exc.strerror or exc}") from None


def _wanted(headers: dict[str, Any], body: dict[str, Any], shard_id: str | None,
            kind: str | None) -> bool:
    shard = headers.get("shard_id", body.get("shard_id"))
    return (not shard_id or shard == shard_id) and (not kind or body.get("kind") == kind)


def tail(url: str, *, shard_id: str | None, kind: str | None, results: bool, count: int | None,
         seconds: float | None, timeout: float, as_json: bool, save: Path | None) -> int:
    """Print until ``count`` messages or ``seconds``; returns how many were printed."""
    topo = Topology()
    exchange = topo.results_exchange if results else topo.telemetry_exchange
    printed = 0
    with ExitStack() as stack:
        sink = stack.enter_context(_open_save(save)) if save is not None else None
        broker = connect_client(url, timeout, "tail", shard_id)
        stack.callback(broker.close)
        with client_errors(url):
            for headers, body in OperatorClient(broker, topo).stream(exchange, seconds=seconds):
                if not _wanted(headers, body, shard_id, kind):
                    continue
                if sink is not None and body.get("state_hash"):
                    sink.write(json.dumps(body, sort_keys=True, default=str) + "\n")
                    sink.flush()
                line = (json.dumps(body, sort_keys=True, default=str) if as_json else
                        result_tail_line(body) if results else telemetry_line(body))
                sys.stdout.write(line + "\n")
                sys.stdout.flush()
                printed += 1
                if count is not None and printed >= count:
                    break
    return printed
