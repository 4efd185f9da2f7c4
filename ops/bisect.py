"""`townlet replay` as the command line runs it: rebuild, compare with captured telemetry, and
with ``--bisect`` stop at the first tick whose state hash differs and show what happened there.

A tick's state depends on every tick before it, so the replay itself is sequential; "bisect"
means it stops at the first divergence (the earliest tick to investigate) and names the
commands applied at that tick and the last tick that still matched.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from ops.replay import ReplayInputError, read_audit, rebuild, telemetry_hashes
from ops.trust_cli import verified_results
from ops.vocabulary import CliError, Exit
from shared.config import ConfigError, load_config
from shared.console.results import ConsoleResult


def _inputs(config: Path, shard_id: str, audit_log: Path, telemetry: Path | None,
            key_env: str, writing: bool,
            ) -> tuple[Any, list[ConsoleResult], dict[int, str] | None]:
    from ops.verify import load_keyring

    try:
        cfg = load_config(config)
        keyring = load_keyring(key_env)
        # Read both inputs before the (long) replay: a typo fails at once, not minutes later.
        read = read_audit(audit_log, shard_id, keyring)
        live = None if telemetry is None else telemetry_hashes(telemetry, shard_id)
    except (ConfigError, ReplayInputError, ValueError) as exc:
        raise CliError(str(exc)) from None
    # Verified lines only (docs/THREAT_MODEL.md): a forged line never becomes history.
    results = verified_results(read, key_env, keyring is not None, writing=writing)
    return cfg, results, live


def _first_difference(live: dict[int, str], hashes: dict[int, str]) -> dict[str, Any]:
    shared = sorted(set(live) & set(hashes))
    bad = [t for t in shared if live[t] != hashes[t]]
    return {"checked": len(shared), "differ": len(bad), "first_differing_tick":
            bad[0] if bad else None}


def run_replay(config: Path, shard_id: str, ticks: int | None, audit_log: Path,
               telemetry: Path | None, *, bisect: bool, write_state: Path | None,
               as_json: bool, key_env: str) -> int:
    """Replay (and check, and write); returns the exit code."""
    if bisect and telemetry is None:
        raise CliError("--bisect needs --telemetry FILE (capture it with `townlet tail "
                       "--shard S --save FILE`)", Exit.USAGE)
    cfg, results, live = _inputs(config, shard_id, audit_log, telemetry, key_env,
                                 writing=write_state is not None)
    if ticks is None:
        if not live:
            raise CliError("give --ticks (or --telemetry with at least one tick)", Exit.USAGE)
        ticks = max(live)

    def differs(tick: int, digest: str) -> bool:
        return bisect and live is not None and tick in live and live[tick] != digest

    loop, hashes = rebuild(cfg, shard_id, results, ticks, stop=differs)
    last = max(hashes) if hashes else 0
    out: dict[str, Any] = {"shard_id": shard_id, "replayed_ticks": len(hashes), "tick": last,
                           "state_hash": hashes.get(last)}
    if live is not None:
        out.update(_first_difference(live, hashes))
        bad_tick = out["first_differing_tick"]
        if bad_tick is not None:
            out["live_hash"], out["replay_hash"] = live[bad_tick], hashes[bad_tick]
            out["last_matching_tick"] = max((t for t in live if t < bad_tick and
                                             hashes.get(t) == live[t]), default=None)
            out["commands_at_tick"] = [{"cmd_id": r.cmd_id, "name": r.name}
                                       for r in results if r.tick == bad_tick]
    code = Exit.OK
    if live is not None and (out["first_differing_tick"] is not None or not out["checked"]):
        code = Exit.ERROR  # never write a state that disagrees with the live shard
    elif write_state is not None:
        out["wrote"], out["state_dir"] = _write_state(write_state, loop, cfg), str(write_state)
    typer.echo(json.dumps(out, sort_keys=True) if as_json else _render(out, bisect))
    return int(code)


def _write_state(path: Path, loop: Any, cfg: Any) -> str:
    from workers.shard.recovery import seed_state_dir

    try:
        return str(seed_state_dir(path, loop, cfg))
    except OSError as exc:
        raise CliError(str(exc)) from None


def _render(out: dict[str, Any], bisect: bool) -> str:
    lines = [f"replayed {out['replayed_ticks']} ticks of {out['shard_id']}; tick {out['tick']} "
             f"state_hash {out['state_hash'] or '-'}"]
    if "checked" in out:
        bad = out["first_differing_tick"]
        lines.append(f"checked {out['checked']} ticks against telemetry: " + (
            "all match" if bad is None and out["checked"] else "none in common" if bad is None
            else f"{out['differ']} differ, first at tick {bad}"))
        if bad is not None:
            lines.append(f"first differing tick: {bad} (live {out['live_hash']}, replay "
                         f"{out['replay_hash']}); last matching tick: "
                         f"{out['last_matching_tick'] if out['last_matching_tick'] else '-'}")
            commands = ", ".join(f"{c['name']} ({c['cmd_id']})" for c in
                                 out["commands_at_tick"]) or "none"
            lines.append(f"commands applied at tick {bad}: {commands}")
            if bisect:
                lines.append("stopped at the first difference (--bisect)")
    if "wrote" in out:
        lines.append(f"wrote {out['wrote']}: a worker started with --state-dir "
                     f"{out['state_dir']} resumes {out['shard_id']} at tick {out['tick']}")
    return "\n".join(lines)
