"""Human-readable one-liners for what the CLI prints (``--json`` prints the raw values instead).

Identity first (shard, tick), then what happened, so a terminal full of lines reads top to
bottom without scrolling right for the shard id.
"""

from __future__ import annotations

import json
from typing import Any


def _ms(value: Any) -> str:
    return f"{value:.1f} ms" if isinstance(value, int | float) else "- ms"


def is_replay(result: dict[str, Any], sent: dict[str, Any]) -> bool:
    """Whether ``result`` is a stored answer to an earlier send of the same cmd_id.

    A shard answers a repeated cmd_id with the stored result byte for byte (docs/PROTOCOL.md,
    guarantee 2); that result quotes the command as first applied, with its own timestamp."""
    command = result.get("command")
    stamp = sent.get("timestamp_ms")
    return (isinstance(command, dict) and stamp is not None
            and command.get("timestamp_ms") not in (None, stamp))


def result_line(result: dict[str, Any], sent: dict[str, Any] | None = None) -> str:
    """``ok town-a employment_status tick=123 4.2 ms`` or ``error town-a kill forbidden: ...``."""
    shard, name, tick = result.get("shard_id"), result.get("name"), result.get("tick")
    head = f"{shard} {name} tick={tick}"
    if result.get("status") == "ok":
        line = f"ok {head} {_ms(result.get('latency_ms'))}"
    else:
        error = result.get("error") or {}
        line = f"error {head} {error.get('code')}: {error.get('message')}"
    if sent is not None and is_replay(result, sent):
        line += f" (replay: stored result of an earlier send of {result.get('cmd_id')})"
    return line


def result_tail_line(result: dict[str, Any]) -> str:
    """A console result as `townlet tail --results` prints it."""
    return f"{result_line(result)} cmd_id={result.get('cmd_id')}"


def telemetry_line(message: dict[str, Any]) -> str:
    """A telemetry message as `townlet tail` prints it."""
    shard, tick, kind = message.get("shard_id"), message.get("tick"), message.get("kind")
    payload = message.get("payload") or {}
    if kind == "health":
        h = payload.get("health") or {}
        error = h.get("last_error")
        return (f"{shard} tick={tick} health rate={h.get('tick_rate_hz')}Hz "
                f"inbox={h.get('queue_depth')} paused={'yes' if h.get('paused') else 'no'} "
                f"unsent={h.get('unsent_outputs', 0)} reconnects={h.get('broker_reconnects')} "
                f"last_error={_short(error) if error else '-'}")
    digest = str(message.get("state_hash") or "")[:12]
    events = payload.get("events") or []
    results = payload.get("console_results") or []
    changed = len(payload.get("set") or {}) if kind == "diff" else len(payload)
    return (f"{shard} tick={tick} {kind} hash={digest} events={len(events)} "
            f"results={len(results)} {'changed' if kind == 'diff' else 'sections'}={changed}")


def _short(value: Any, limit: int = 80) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return text if len(text) <= limit else text[:limit - 3] + "..."
