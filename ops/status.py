"""`townlet status`: the fleet's truth in one screen, and exit 1 when anything is unhealthy.

Each shard (seen on the telemetry exchange, or named by the fleet file / ``--shard``) is one of:

* ``ticking``: a new tick was seen within the listen window;
* ``paused``: its health says paused (a paused shard still sends health every second);
* ``stale``: its inbox exists but no new tick came within the window (dead, hung, or holding
  because its outbox is full): unhealthy;
* ``unknown``: named, but neither telemetry nor an inbox exists (a typo, or never started):
  unhealthy.

Also unhealthy: no consumer on a shard's inbox, no audit consumer, dead letters waiting (see
ops/runbooks/backlog-and-dead-letters.md). A paused shard is an operator's choice, not a fault.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from ops.observe import Observer, ShardSeen
from shared.broker.base import Broker, QueueStats
from shared.topology import Topology

HEALTH_EVERY_S = 1.0  # how often a live shard sends health (workers/shard/options.py)


def shard_state(seen: ShardSeen | None, inbox: QueueStats | None, now: float,
                window: float) -> str:
    if seen is not None and seen.tick_at and now - seen.tick_at <= window:
        return "ticking"
    if seen is not None and seen.health is not None and now - seen.health_at <= window:
        if seen.health.get("paused"):
            return "paused"
        return "stale"  # alive but not ticking: holding for the broker, or a hung tick
    return "stale" if inbox is not None else "unknown"


def shard_row(shard_id: str, seen: ShardSeen | None, inbox: QueueStats | None, now: float,
              window: float) -> dict[str, Any]:
    health = (seen.health if seen else None) or {}
    rate = seen.rate() if seen else None
    return {
        "state": shard_state(seen, inbox, now, window),
        "tick": seen.tick if seen and seen.tick is not None else (seen.health_tick if seen
                                                                    else None),
        "rate_hz": round(rate, 2) if rate is not None else health.get("tick_rate_hz"),
        "lag_s": round(now - seen.last_seen(), 2) if seen and seen.last_seen() else None,
        "inbox_depth": inbox.messages if inbox else None,
        "consumers": inbox.consumers if inbox else None,
        "state_hash": seen.state_hash if seen else None,
        "health": seen.health if seen else None,
        "unsent_outputs": health.get("unsent_outputs"),
        "last_error": health.get("last_error"),
        "employment_pending": (seen.employment.get("pending_count") if seen else None),
        "exits_today": (seen.employment.get("exits_today") if seen else None),
    }


def problems_of(report: dict[str, Any]) -> list[str]:
    out = []
    for shard_id, row in report["shards"].items():
        if row["state"] in ("stale", "unknown"):
            out.append(f"{shard_id} is {row['state']}")
        elif row["consumers"] == 0:
            out.append(f"{shard_id} ticks but nobody consumes its inbox")
    audit = report["audit"]
    if not audit["alive"]:
        out.append("no audit consumer on townlet.audit: results are not being audited")
    if report["dead_letters"]:
        out.append(f"{report['dead_letters']} dead letter(s) waiting in townlet.dead")
    return out


def _settled(seen: ShardSeen) -> bool:
    """Seen enough to classify: health, and a tick unless paused."""
    return seen.health is not None and (seen.tick is not None or bool(seen.health.get("paused")))


def _all_seen(expected: Iterable[str], discover: bool) -> Callable[[dict[str, ShardSeen]], bool]:
    """When listening can stop: every expected shard settled, and, when discovering, a whole
    health period has passed (every live shard has sent health by then) with all seen settled."""
    wanted = set(expected)
    started = time.monotonic()

    def check(seen: dict[str, ShardSeen]) -> bool:
        if not all(s in seen and _settled(seen[s]) for s in wanted):
            return False
        if not discover:
            return bool(wanted)
        return (time.monotonic() - started >= HEALTH_EVERY_S * 1.2
                and all(_settled(s) for s in seen.values()))
    return check


def report_from(observer: Observer, expected: list[str], window: float,
                discover: bool = True) -> dict[str, Any]:
    """The report: ``expected`` shards, plus (``discover``) every shard seen on the wire."""
    topo = observer.topo
    now = time.monotonic()
    ids = sorted(set(expected) | (set(observer.seen) if discover else set()))
    shards = {s: shard_row(s, observer.seen.get(s), observer.queue_stats(topo.shard_queue(s)),
                           now, window) for s in ids}
    audit = observer.queue_stats(topo.audit_queue)
    dead = observer.queue_stats(topo.dead_queue)
    report: dict[str, Any] = {
        "shards": shards,
        "audit": {"alive": bool(audit and audit.consumers), "consumers":
                  audit.consumers if audit else 0, "backlog": audit.messages if audit else None},
        "audit_queue_depth": audit.messages if audit else None,
        "dead_letters": dead.messages if dead else 0,
        "dead_letter_depth": dead.messages if dead else None,
    }
    report["problems"] = problems_of(report)
    report["healthy"] = not report["problems"]
    return report


def fleet_status(broker: Broker, expected: list[str], listen: float,
                 discover: bool = True) -> dict[str, Any]:
    """Listen up to ``listen`` seconds (less once every expected shard was seen), then report.

    Discovering shards takes a little over one health period (every live shard sends health
    about once a second, paused or not)."""
    observer = Observer(broker, Topology())
    try:
        observer.pump(listen, until=_all_seen(expected, discover))
        return report_from(observer, expected, max(listen, HEALTH_EVERY_S * 1.5), discover)
    finally:
        observer.close()


def _n(value: Any) -> str:
    return "-" if value is None else str(value)


def render(report: dict[str, Any]) -> str:
    lines = [f"{'shard':<16} {'state':<8} {'tick':>8} {'rate':>6} {'lag s':>6} {'inbox':>6} "
             f"{'cons':>4} {'unsent':>6}  last error"]
    for shard_id, s in report["shards"].items():
        lines.append(f"{shard_id:<16} {s['state']:<8} {_n(s['tick']):>8} {_n(s['rate_hz']):>6} "
                     f"{_n(s['lag_s']):>6} {_n(s['inbox_depth']):>6} {_n(s['consumers']):>4} "
                     f"{_n(s['unsent_outputs']):>6}  {_n(s['last_error'])[:60]}")
    if not report["shards"]:
        lines.append("(no shard seen: none is publishing telemetry on this broker)")
    audit = report["audit"]
    lines.append(f"audit consumer: {'alive' if audit['alive'] else 'ABSENT'} "
                 f"(backlog {_n(audit['backlog'])})   dead letters: {report['dead_letters']}")
    lines.extend(f"UNHEALTHY: {p}" for p in report["problems"])
    if report["healthy"]:
        lines.append("healthy")
    return "\n".join(lines)
