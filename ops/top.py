"""`townlet top`: the fleet as a table redrawn in place (Rich; the only module importing it).

Rows come from the same report as `townlet status` (``ops/status.py``); this module only draws.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

STATE_STYLE = {"ticking": "green", "paused": "yellow", "stale": "bold red",
               "unknown": "bold red"}
COLUMNS = ("shard", "state", "tick", "rate", "lag s", "inbox", "pending", "exits today",
           "last error")


def _cell(value: Any) -> str:
    return "-" if value is None else str(value)


def table(report: dict[str, Any], started: float) -> Table:
    audit = report["audit"]
    title = (f"townlet top: {len(report['shards'])} shard(s), audit "
             f"{'alive' if audit['alive'] else 'ABSENT'} (backlog {_cell(audit['backlog'])}), "
             f"dead letters {report['dead_letters']}, "
             f"{'healthy' if report['healthy'] else 'UNHEALTHY'}")
    grid = Table(title=title, caption=f"up {time.monotonic() - started:.0f}s - Ctrl-C quits",
                 expand=False)
    width = max([len("shard"), *map(len, report["shards"])])
    for name in COLUMNS:
        left = name in ("shard", "state", "last error")
        # Never cut a shard id or a number; a long last error wraps.
        grid.add_column(name, justify="left" if left else "right",
                        no_wrap=name != "last error", overflow="fold",
                        min_width=width if name == "shard" else len(name))
    for shard_id, row in report["shards"].items():
        state = row["state"]
        grid.add_row(shard_id, f"[{STATE_STYLE.get(state, 'white')}]{state}[/]",
                     _cell(row["tick"]), _cell(row["rate_hz"]), _cell(row["lag_s"]),
                     _cell(row["inbox_depth"]), _cell(row["employment_pending"]),
                     _cell(row["exits_today"]), _cell(row["last_error"])[:60])
    if not report["shards"]:
        grid.add_row("(none seen)", *[""] * (len(COLUMNS) - 1))
    return grid


def live_view(frame: Callable[[], dict[str, Any]], *, once: bool, started: float) -> None:
    """Draw ``frame()`` once, or redraw it in place until Ctrl-C. Off a terminal (a pipe, a
    file) there is no "in place": each frame is printed after the last, like `top -b`."""
    console = Console()
    if once or not console.is_terminal:
        while True:
            console.print(table(frame(), started))
            console.file.flush()  # a reader of the pipe sees each frame as it is drawn
            if once:
                return
    with Live(table(frame(), started), console=console, auto_refresh=False,
              transient=False) as live:
        while True:
            live.update(table(frame(), started), refresh=True)
