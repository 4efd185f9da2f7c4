"""Complete world state as (arrays, meta), and the canonical state hash.

``export_state`` captures everything the next tick depends on: agent and object columns,
queues, employment queue and history, relationships, rivalry, respawn schedule, prices,
perturbations and the RNG. ``restore_world`` inverts it exactly, so a restored world continues
with the same hashes as one that never stopped. No file I/O here: the shell encodes the result.
"""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

import numpy as np

from shared.config import SimulationConfig

from .tables import AgentTable, ObjectTable
from .world import World


def _meta(world: World, *, for_hash: bool = False) -> dict[str, Any]:
    _, agent_meta = world.agents.export() if not for_hash else (None, None)
    employment = world.employment.export()
    if for_hash:  # covered by log_digest / hashed separately, see state_hash
        employment["history"] = len(employment["history"])
    return {
        "tick": world.tick,
        "agents": agent_meta,
        "objects": {"queues": world.objects.queues} if for_hash else world.objects.export()[1],
        "employment": employment,
        "respawns": world.respawns,
        "respawn_counts": dict(sorted(world.respawn_counts.items())),
        "next_job": world.next_job,
        "prices": dict(sorted(world.prices.items())),
        "power_on": world.power_on,
        "water_on": world.water_on,
        "social_events": len(world.social_events) if for_hash else world.social_events,
        "log_digest": world.log_digest,
        "rng": world.rng.bit_generator.state,
    }


def export_state(world: World) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    agent_arrays, _ = world.agents.export()
    object_arrays, _ = world.objects.export()
    return {**agent_arrays, **object_arrays}, _meta(world)


def restore_world(config: SimulationConfig, arrays: dict[str, np.ndarray],
                  meta: dict[str, Any]) -> World:
    world = World(config.model_copy(update={"agents": []}))
    world.config = config
    world.tick = int(meta["tick"])
    world.agents = AgentTable.restore(arrays, meta["agents"])
    world.objects = ObjectTable.restore(arrays, meta["objects"])
    world.employment.restore(meta["employment"])
    world.respawns = [list(r) for r in meta["respawns"]]
    world.respawn_counts = {k: int(v) for k, v in meta["respawn_counts"].items()}
    world.next_job = int(meta["next_job"])
    world.prices = {k: float(v) for k, v in meta["prices"].items()}
    world.power_on = bool(meta["power_on"])
    world.water_on = bool(meta["water_on"])
    world.social_events = list(meta["social_events"])
    world.log_digest = str(meta["log_digest"])
    world.rng.bit_generator.state = meta["rng"]
    ob = world.objects
    world.active_objects = {o for o in range(len(ob)) if ob.occupant[o] >= 0 or ob.queues[o]}
    return world


def save_state(world: World) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """An independent copy of the complete state (columns copied, meta deep-copied)."""
    arrays, meta = export_state(world)
    return arrays, copy.deepcopy(meta)


def rollback(world: World, saved: tuple[dict[str, np.ndarray], dict[str, Any]]) -> None:
    """Put ``world`` back to a state taken by ``save_state`` (in place: holders keep it)."""
    arrays, meta = saved
    restored = restore_world(world.config, arrays, copy.deepcopy(meta))
    world.__dict__.update(restored.__dict__)


def canonical_json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=_plain).encode()


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not serialisable: {type(value).__name__}")


def _ids_bytes(world: World) -> bytes:
    """Agent ids/origins as canonical JSON, re-encoded only when the table changed."""
    ag = world.agents
    key = (ag.version, ag.size)
    if ag.ids_cache[0] != key:
        ag.ids_cache = (key, canonical_json([ag.ids[: ag.size], ag.origins[: ag.size]]))
    return ag.ids_cache[1]


def state_hash(world: World) -> str:
    """Hash of the complete canonical state (columns byte-for-byte, the rest as sorted JSON).

    Append-only logs (social events, exit history) enter through ``log_digest``, which chains
    every entry as it is appended, so hashing stays cheap however long the run.
    """
    h = hashlib.blake2b(digest_size=16)
    size = world.agents.size
    for name, col in world.agents.cols.items():
        h.update(name.encode())
        h.update(col[:size].tobytes())
    ob = world.objects
    for name in ("type", "x", "y", "stock", "occupant", "occupied_since", "last_progress",
                 "linked"):
        h.update(getattr(ob, name).tobytes())
    h.update(_ids_bytes(world))
    h.update(canonical_json(_meta(world, for_hash=True)))
    return h.hexdigest()
