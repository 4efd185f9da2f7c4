"""Throughput of a whole shard worker: simulation, console, journal fsync, telemetry, outputs.

One real ``ShardWorker`` (the production code path) on the in-process broker, ticking as fast as
it can (rate 0) on the example town, its state dir on local disk:

* idle: no commands; what a tick costs end to end (telemetry encode + journal fsync dominate);
* busy: admin ``setneed`` commands queued beforehand, applied at the full per-tick budget, each
  answered with a confirmed result and remembered for replay.

Prints a table (median of several runs) and writes JSON.
Usage: python bench/worker_tick.py [--runs 5] [--ticks 1000] [--commands 3200] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shared import wire  # noqa: E402
from shared.broker import MemoryHub, open_broker  # noqa: E402
from shared.broker.base import Message  # noqa: E402
from shared.config import SimulationConfig, load_config  # noqa: E402
from shared.logging import configure_logging  # noqa: E402
from shared.topology import Topology, declare_shard  # noqa: E402
from workers.shard.options import WorkerOptions  # noqa: E402
from workers.shard.worker import ShardWorker  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "configs" / "examples" / "poc_hybrid.yaml"
TOKEN_ENV = "TOWNLET_ADMIN_TOKEN"  # the example config's admin token variable
TOKEN = "bench-admin-token"
SHARD = "bench"


def queue_commands(hub: MemoryHub, topo: Topology, count: int) -> None:
    client = open_broker("memory://", hub=hub)
    declare_shard(client, topo, SHARD)
    for i in range(count):
        cmd_id = f"bench-{i}"
        body = {"v": 1, "name": "setneed", "args": [f"agent_{i % 8}", "hunger", 0.5 + i % 50 / 100],
                "mode": "admin", "cmd_id": cmd_id, "auth": {"token": TOKEN}}
        client.publish(topo.commands_exchange, SHARD,
                       Message(body=wire.encode(body), message_id=cmd_id, persistent=True))
    client.close()


def one_run(config: SimulationConfig, ticks: int, commands: int, state_root: Path) -> float:
    """Seconds for one worker to reach ``ticks`` (start-up and recovery excluded)."""
    hub, topo = MemoryHub(), Topology()
    queue_commands(hub, topo, commands)
    state = Path(tempfile.mkdtemp(prefix="worker-", dir=state_root))
    worker = ShardWorker(config, open_broker("memory://", hub=hub), WorkerOptions(
        shard_id=SHARD, state_dir=state, tick_rate_hz=0, until_tick=ticks, checkpoint_every=200))
    started: list[float] = []
    original = worker.recover

    def timed_recover() -> None:  # the clock starts once the worker is ready to tick
        original()
        started.append(time.perf_counter())

    worker.recover = timed_recover  # type: ignore[method-assign]
    worker.run(threading.Event())
    elapsed = time.perf_counter() - started[0]
    answered = len(worker.loop.router.ledger)
    if answered != commands:
        raise SystemExit(f"only {answered} of {commands} commands were applied")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--ticks", type=int, default=1000, help="idle scenario length")
    parser.add_argument("--commands", type=int, default=3200, help="busy scenario size")
    parser.add_argument("--state-root", type=Path, default=None,
                        help="where the workers' state dirs go (default: a temp dir)")
    parser.add_argument("--out", type=Path, default=Path("bench/results/worker_tick.json"))
    parser.add_argument("--log-level", default="info",
                        help="as `townlet shard` (info: one JSON line per command), to /dev/null")
    args = parser.parse_args()
    os.environ[TOKEN_ENV] = TOKEN
    configure_logging(args.log_level, json=True, stream=open(os.devnull, "w"))  # noqa: SIM115
    config = load_config(EXAMPLE)
    config.console.audit_enabled = False  # the worker never writes the audit itself
    budget = config.console.max_commands_per_tick
    busy_ticks = math.ceil(args.commands / budget)
    state_root = args.state_root or Path(tempfile.mkdtemp(prefix="townlet-bench-"))
    state_root.mkdir(parents=True, exist_ok=True)

    idle = [one_run(config, args.ticks, 0, state_root) for _ in range(args.runs)]
    busy = [one_run(config, busy_ticks, args.commands, state_root) for _ in range(args.runs)]
    idle_ms = statistics.median(idle) / args.ticks * 1000
    busy_ms = statistics.median(busy) / busy_ticks * 1000
    busy_cps = args.commands / statistics.median(busy)
    print(f"state dirs under {state_root} (journal fsync per boundary), "
          f"log level {args.log_level}")
    print(f"{'scenario':<34} {'median':>12} {'runs':>40}")
    print(f"{'idle: ms per tick':<34} {idle_ms:>12.3f} "
          f"{', '.join(f'{r / args.ticks * 1000:.2f}' for r in idle):>40}")
    print(f"{'idle: ticks per second':<34} {1000 / idle_ms:>12.0f}")
    print(f"{f'busy ({budget} cmds/tick): ms per tick':<34} {busy_ms:>12.3f} "
          f"{', '.join(f'{r / busy_ticks * 1000:.2f}' for r in busy):>40}")
    print(f"{'busy: commands per second':<34} {busy_cps:>12.0f}")
    report = {
        "benchmark": "worker_tick", "python": platform.python_version(),
        "machine": platform.machine(), "runs": args.runs, "state_root": str(state_root),
        "log_level": args.log_level,
        "idle": {"ticks": args.ticks, "median_ms_per_tick": round(idle_ms, 4),
                 "runs_s": [round(r, 4) for r in idle]},
        "busy": {"commands": args.commands, "ticks": busy_ticks, "budget_per_tick": budget,
                 "median_ms_per_tick": round(busy_ms, 4),
                 "commands_per_second": round(busy_cps, 1),
                 "runs_s": [round(r, 4) for r in busy]},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
