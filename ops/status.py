"""`townlet status`: what an on-call engineer wants first, per shard of a fleet."""

from __future__ import annotations

import time
from typing import Any

from ops.client import private_queue_spec
from shared import wire
from shared.broker.base import Broker, BrokerError
from shared.topology import Topology


def _depth(broker: Broker, queue: str) -> int | None:
    try:
        return broker.queue_depth(queue)
    except BrokerError:
        return None  # not declared yet: the shard has never started


def fleet_status(broker: Broker, shard_ids: list[str], listen: float) -> dict[str, Any]:
    topo = Topology()
    latest = _listen(broker, topo, listen) if listen > 0 else {}
    shards = {}
    for shard_id in shard_ids:
        seen = latest.get(shard_id, {})
        shards[shard_id] = {
            "inbox_depth": _depth(broker, topo.shard_queue(shard_id)),
            "tick": seen.get("tick"),
            "state_hash": seen.get("state_hash"),
            "health": seen.get("health"),
            "seconds_since_telemetry": (round(time.monotonic() - seen["at"], 2)
                                        if "at" in seen else None),
        }
    return {"shards": shards, "audit_queue_depth": _depth(broker, topo.audit_queue),
            "dead_letter_depth": _depth(broker, topo.dead_queue)}


def _listen(broker: Broker, topo: Topology, seconds: float) -> dict[str, dict[str, Any]]:
    # Exclusive and broker-named: all a read-only monitor user may create.
    name = broker.declare_queue(private_queue_spec(((topo.telemetry_exchange, ""),)))
    latest: dict[str, dict[str, Any]] = {}
    try:
        broker.consume(name, prefetch=500)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for delivery in broker.poll(timeout=0.2):
                broker.ack(delivery)
                try:
                    body = wire.decode(delivery.body)
                except wire.WireError:
                    continue
                entry = latest.setdefault(str(body.get("shard_id")), {})
                entry["at"] = time.monotonic()
                if body.get("kind") == "health":
                    entry["health"] = body.get("payload", {}).get("health")
                else:
                    entry["tick"], entry["state_hash"] = body.get("tick"), body.get("state_hash")
    finally:
        broker.cancel(name)
        broker.delete_queue(name)
    return latest


def render(report: dict[str, Any]) -> str:
    lines = [f"{'shard':<16} {'inbox':>6} {'tick':>8} {'age s':>6}  health"]
    for shard_id, s in report["shards"].items():
        health = s["health"] or {}
        note = ("no telemetry" if s["tick"] is None else
                f"paused={health.get('paused')} reconnects={health.get('broker_reconnects')} "
                f"unsent={health.get('unsent_outputs', 0)} "
                f"last_error={health.get('last_error')}")
        lines.append(f"{shard_id:<16} {_n(s['inbox_depth']):>6} {_n(s['tick']):>8} "
                     f"{_n(s['seconds_since_telemetry']):>6}  {note}")
    lines.append(f"audit queue: {_n(report['audit_queue_depth'])}   "
                 f"dead letters: {_n(report['dead_letter_depth'])}")
    return "\n".join(lines)


def _n(value: Any) -> str:
    return "-" if value is None else str(value)
