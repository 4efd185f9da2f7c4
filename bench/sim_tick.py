"""Per-tick cost of the simulation core at several town sizes.

Measures world.step + state_hash (what every shard tick pays) over the busiest part of the day
(both shifts of the default jobs), as the median of per-run medians. Prints a table and writes
JSON. Usage: python bench/sim_tick.py [--sizes 10,50,1000,10000] [--runs 5] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shared.scenarios import generate_town  # noqa: E402
from shared.sim.persist import state_hash  # noqa: E402
from shared.sim.world import World  # noqa: E402

WARMUP_UNTIL = 160  # just before the first shift's arrival buffer
TARGETS_MS = {50: 1.0, 1000: 5.0, 10000: 50.0}


def one_run(n_agents: int, ticks: int, seed: int) -> float:
    world = World(generate_town(n_agents, seed=seed))
    for t in range(1, WARMUP_UNTIL):
        world.step(t)
    samples = []
    for t in range(WARMUP_UNTIL, WARMUP_UNTIL + ticks):
        start = time.perf_counter()
        world.step(t)
        state_hash(world)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1000.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="10,50,1000,10000")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("bench/results/sim_tick.json"))
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    results = {}
    print(f"{'agents':>8} {'median ms/tick':>15} {'runs (ms)':>40} {'target':>8}")
    for n in sizes:
        ticks = 400 if n <= 1000 else 100
        runs = [one_run(n, ticks, seed=42 + r) for r in range(args.runs)]
        med = statistics.median(runs)
        target = TARGETS_MS.get(n)
        results[n] = {"median_ms_per_tick": round(med, 4), "runs_ms": [round(r, 4) for r in runs],
                      "ticks_per_run": ticks, "target_ms": target}
        shown = ", ".join(f"{r:.2f}" for r in runs)
        print(f"{n:>8} {med:>15.3f} {shown:>40} {target if target else '-':>8}")
    report = {"benchmark": "sim_tick", "python": platform.python_version(),
              "machine": platform.machine(), "results": results}
    if 1000 in results and 10000 in results:
        ratio = results[10000]["median_ms_per_tick"] / results[1000]["median_ms_per_tick"]
        report["growth_1000_to_10000"] = round(ratio, 2)
        print(f"cost growth 1,000 -> 10,000 agents: {ratio:.2f}x (target <= 12x)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
