"""`townlet replay`: rebuild a shard from its initial config and its audit log.

PROTOCOL guarantee 7: the audit log holds every result a shard applied, with the command as
applied; re-running the applied ones at their ticks reproduces the live state hash of every
tick. A captured telemetry stream (``--telemetry``) is checked tick by tick when given.
"""

from __future__ import annotations

import json
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

from shared.audit.reader import rotated_files
from shared.config import SimulationConfig
from shared.loop import SimulationLoop


def audit_results(audit_path: Path, shard_id: str) -> list[dict[str, Any]]:
    """Every audit line of one shard, oldest file first, in the order they were written."""
    out: list[dict[str, Any]] = []
    rotated = [path for _index, path in sorted(rotated_files(audit_path), reverse=True)]
    for path in [*rotated, audit_path]:
        if not path.exists():
            continue
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                record = json.loads(line)
                if record.get("shard_id") == shard_id:
                    out.append(record)
    return out


def replay(config: SimulationConfig, shard_id: str, results: list[dict[str, Any]],
           until_tick: int) -> dict[int, str]:
    """State hash of every tick 1..until_tick, rebuilt from the applied results alone."""
    by_tick: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for result in results:
        by_tick[int(result["tick"])].append(result)
    loop = SimulationLoop(config, shard_id=shard_id, audit=False)
    hashes: dict[int, str] = {}
    with tempfile.TemporaryDirectory(prefix="townlet-replay-") as tmp:
        loop.snapshot_dir = Path(tmp)  # snapshot_save commands re-run harmlessly here
        while loop.tick < until_tick:
            boundary = loop.tick + 1
            for result in by_tick.pop(boundary, []):
                loop.router.reapply(result)
            if loop.paused:
                break  # the shard was still paused at the end of the log
            _, digest = loop.advance(boundary)
            hashes[boundary] = digest
    return hashes


def telemetry_hashes(path: Path, shard_id: str) -> dict[int, str]:
    out: dict[int, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        message = json.loads(line)
        if message.get("state_hash") and message.get("shard_id", shard_id) == shard_id:
            out[int(message["tick"])] = str(message["state_hash"])
    return out
