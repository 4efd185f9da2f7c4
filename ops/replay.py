"""`townlet replay`: rebuild a shard from its initial config and its audit log.

docs/PROTOCOL.md, guarantee 7: the audit log holds every result a shard applied, with the
command as applied; re-running the applied ones at their ticks reproduces the live state hash of
every tick. A captured telemetry stream (``--telemetry``) is checked tick by tick when given.
Audit lines become typed results as they are read (``ConsoleResult.from_wire``). With the
result keyring, only lines holding a result signed by its shard are used (``read_audit``):
a line written or edited by anyone without the key never becomes history (docs/THREAT_MODEL.md).
Files are split on ``\n`` only: no character inside a string can end a line.
"""

from __future__ import annotations

import json
import tempfile
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.audit.reader import rotated_files
from shared.audit.records import CHAIN_FIELD
from shared.config import SimulationConfig
from shared.console.results import ConsoleResult
from shared.loop import SimulationLoop
from shared.trust.keys import Keyring
from shared.trust.signing import Verdict, verify_result


class ReplayInputError(ValueError):
    """An audit log or telemetry file that can't be read; the message names file and line."""


@dataclass
class AuditRead:
    results: list[ConsoleResult] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # "<file> line N: <verdict>", not used


def audit_results(audit_path: Path, shard_id: str) -> list[ConsoleResult]:
    """Every audit line of one shard, oldest file first, in the order they were written."""
    return read_audit(audit_path, shard_id, None).results


def read_audit(audit_path: Path, shard_id: str, keyring: Keyring | None) -> AuditRead:
    """One shard's audit lines as results; with ``keyring``, verified ones only."""
    out = AuditRead()
    rotated = [path for _index, path in sorted(rotated_files(audit_path), reverse=True)]
    if not rotated and not audit_path.is_file():
        # Not "no commands": a missing log is almost always a mistyped path, and replaying
        # without the commands would report hashes that silently differ from the live run.
        raise ReplayInputError(f"audit log not found: {audit_path} (for a shard that never "
                               "received a command, pass an empty file)")
    for path in [*rotated, audit_path]:
        if not path.exists():  # rotated away between the listing and now
            continue
        for number, record in _json_lines(path, "audit log"):
            if not isinstance(record, dict):
                raise ReplayInputError(f"{path} line {number}: not an audit record")
            if record.get("shard_id") != shard_id:
                continue
            verdict = _verdict(record, keyring)
            if verdict is Verdict.OK:
                out.results.append(_result(record, path, number))
            else:
                out.refused.append(f"{path} line {number}: {verdict.value}")
    return out


def _verdict(record: dict[str, Any], keyring: Keyring | None) -> Verdict:
    if keyring is None:
        return Verdict.OK  # the caller said, loudly, that nothing is verified
    return verify_result({k: v for k, v in record.items() if k != CHAIN_FIELD}, keyring)


def _result(record: dict[str, Any], path: Path, number: int) -> ConsoleResult:
    try:
        return ConsoleResult.from_wire(record)
    except (KeyError, TypeError, ValueError) as exc:
        raise ReplayInputError(f"{path} line {number}: not a console result ({exc!r})") \
            from None


def _json_lines(path: Path, what: str) -> list[tuple[int, Any]]:
    """(line number, value) of every non-blank line; ReplayInputError naming the bad one."""
    try:
        text = path.read_bytes().decode("utf-8")  # no newline translation either
    except FileNotFoundError:
        raise ReplayInputError(f"{what} not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ReplayInputError(f"cannot read {what} {path}: {exc}") from None
    out = []
    # "\n" only: str.splitlines() also splits on U+2028, U+0085, ... that JSON leaves raw.
    for number, line in enumerate(text.split("\n"), start=1):
        if line.strip():
            try:
                out.append((number, json.loads(line)))
            except json.JSONDecodeError as exc:
                raise ReplayInputError(f"{path} line {number}: not valid JSON ({exc.msg})") \
                    from None
    return out


def replay(config: SimulationConfig, shard_id: str, results: list[ConsoleResult],
           until_tick: int) -> dict[int, str]:
    """State hash of every tick 1..until_tick, rebuilt from the applied results alone."""
    return rebuild(config, shard_id, results, until_tick)[1]


def rebuild(config: SimulationConfig, shard_id: str, results: list[ConsoleResult],
            until_tick: int, stop: Callable[[int, str], bool] | None = None,
            ) -> tuple[SimulationLoop, dict[int, str]]:
    """The shard as it was at ``until_tick`` (its loop: world, command ledger, pause state)
    and the state hash of every tick on the way; ``stop(tick, hash)`` ends it early."""
    by_tick: dict[int, list[ConsoleResult]] = defaultdict(list)
    for result in results:
        by_tick[result.tick].append(result)
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
            if stop is not None and stop(boundary, digest):
                break
    return loop, hashes


def telemetry_hashes(path: Path, shard_id: str) -> dict[int, str]:
    """tick -> state_hash of one shard in a captured telemetry JSONL (health lines skipped)."""
    out: dict[int, str] = {}
    for number, message in _json_lines(path, "telemetry file"):
        if not isinstance(message, dict):
            raise ReplayInputError(f"{path} line {number}: not a telemetry message")
        if message.get("state_hash") and message.get("shard_id", shard_id) == shard_id:
            tick = message.get("tick")
            if not isinstance(tick, int) or isinstance(tick, bool):
                raise ReplayInputError(f"{path} line {number}: state_hash without an integer "
                                       "tick")
            out[tick] = str(message["state_hash"])
    return out
