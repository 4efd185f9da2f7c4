"""Generated towns of any size: households of four and jobs scaled with the population.

Used by the benchmark and by tests that need a bigger town than the example config. Object and
job counts grow linearly with agents, so per-tick cost can be compared across sizes.
"""

from __future__ import annotations

import math
from typing import Any

from shared.config import SimulationConfig, load_config, parse_config

HOUSEHOLD = 4
AGENTS_PER_JOB = 40
_HOUSE_OBJECTS = (("shower", 0, 0), ("fridge", 1, 0), ("stove", 2, 0), ("bed", 0, 1), ("bed", 2, 1))


def generate_town(n_agents: int, *, seed: int = 42, base: SimulationConfig | None = None,
                  enforce_job_loop: bool = True) -> SimulationConfig:
    """A town of ``n_agents`` on a square grid: each household gets its own 3x2 block."""
    base = base or load_config("configs/examples/poc_hybrid.yaml")
    households = max(1, math.ceil(n_agents / HOUSEHOLD))
    per_row = max(1, math.ceil(math.sqrt(households)))
    grid = per_row * 4 + 8
    agents: list[dict[str, Any]] = []
    objects: list[dict[str, Any]] = []
    for h in range(households):
        ox, oy = (h % per_row) * 4, (h // per_row) * 4
        for k, (kind, dx, dy) in enumerate(_HOUSE_OBJECTS):
            objects.append({"id": f"{kind}_{h}_{k}", "type": kind, "position": [ox + dx, oy + dy]})
        for m in range(min(HOUSEHOLD, n_agents - h * HOUSEHOLD)):
            agents.append({"id": f"agent_{h * HOUSEHOLD + m}", "position": [ox + m % 3, oy + 2]})
    raw = base.model_dump(mode="json")
    raw["jobs"] = _scaled_jobs(raw["jobs"], n_agents, grid)
    raw["agents"], raw["objects"] = agents, objects
    raw["world"] = {**raw["world"], "seed": seed, "grid_size": grid}
    raw["employment"]["enforce_job_loop"] = enforce_job_loop
    return parse_config(raw, source=f"<generated town of {n_agents}>")


def _scaled_jobs(jobs: dict[str, Any], n_agents: int, grid: int) -> dict[str, Any]:
    count = max(len(jobs), math.ceil(n_agents / AGENTS_PER_JOB))
    templates = list(jobs.values())
    out: dict[str, Any] = {}
    names = list(jobs)
    for i in range(count):
        tpl = dict(templates[i % len(templates)])
        x = (i * 7919) % (grid - 2) + 1
        y = (i * 104729) % (grid - 2) + 1
        tpl["location"] = [x, y]
        out[names[i] if i < len(names) else f"{names[i % len(names)]}_{i}"] = tpl
    return out
