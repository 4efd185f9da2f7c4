"""Seeded reference runs whose per-tick state hashes are pinned in ``hashes.json``.

A refactor must not change a single hash; a deliberate rule change regenerates the file
(``python -m tests.golden.scenarios --write``) and says in its commit which rule changed and why.
Each scenario runs through the dry run's Python surface (``SimulationLoop``,
``router.dispatch``), so the check holds whatever the internals look like.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from shared.config import SimulationConfig, load_config
from shared.console.handlers import ConsoleCommand
from shared.loop import SimulationLoop
from shared.scenarios import generate_town

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "configs" / "examples" / "poc_hybrid.yaml"
HASHES = Path(__file__).with_name("hashes.json")

# (tick before which it is dispatched, command name, args, kwargs): every admin operation the
# console offers, so a refactor of the operations is pinned as well as the systems.
COMMANDS: list[tuple[int, str, list[Any], dict[str, Any]]] = [
    (25, "setneed", ["agent_1", "hunger", 0.2], {}),
    (40, "teleport", ["agent_2", 5, 5], {}),
    (60, "force_chat", ["agent_0", "agent_3", 0.8], {}),
    (90, "spawn", ["newcomer", 4, 4], {"wallet": 3.0}),
    (120, "set_rel", ["agent_4", "agent_5"], {"trust": -0.5, "rivalry": 0.9}),
    (150, "perturb", ["blackout"], {}),
    (200, "perturb", ["restore"], {}),
    (260, "price", ["meal_cost", 0.6], {}),
    (300, "perturb", ["price_spike"], {"factor": 1.5}),
    (420, "employment_exit", ["approve", "agent_6"], {}),
    (500, "set_exit_cap", [0], {}),
    (700, "kill", ["agent_7"], {}),
    (900, "perturb", ["outage"], {}),
    (960, "perturb", ["restore"], {}),
]


def _example(enforce: bool) -> SimulationConfig:
    config = load_config(EXAMPLE)
    config.employment.enforce_job_loop = enforce
    return config


def _run(config: SimulationConfig, ticks: int, commands: bool) -> list[str]:
    loop = SimulationLoop(config, shard_id="golden", audit=False)
    due = {tick: [] for tick, *_ in COMMANDS} if commands else {}
    for tick, name, args, kwargs in COMMANDS if commands else []:
        due[tick].append((name, args, kwargs))
    hashes = []
    for _ in range(ticks):
        for name, args, kwargs in due.get(loop.tick + 1, []):
            result = loop.router.dispatch(ConsoleCommand(name=name, args=args, kwargs=kwargs))
            assert result["status"] == "ok", result
        hashes.append(loop.step(collect=False).state_hash)
    return hashes


SCENARIOS: dict[str, Callable[[], list[str]]] = {
    "example_2000": lambda: _run(_example(False), 2000, commands=False),
    "example_job_loop_commands_2000": lambda: _run(_example(True), 2000, commands=True),
    "generated_200_agents_600": lambda: _run(generate_town(200, seed=11), 600, commands=False),
}


def compute() -> dict[str, list[str]]:
    return {name: run() for name, run in SCENARIOS.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write", action="store_true", help=f"rewrite {HASHES.name}")
    args = parser.parse_args()
    hashes = compute()
    if args.write:
        HASHES.write_text(json.dumps(hashes, indent=0) + "\n")
        print(f"wrote {HASHES}")
    else:
        pinned = json.loads(HASHES.read_text())
        for name, got in hashes.items():
            same = pinned.get(name) == got
            print(f"{name}: {'identical' if same else 'DIFFERENT'}")


if __name__ == "__main__":
    main()
