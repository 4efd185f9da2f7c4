"""Complete world state as (arrays, meta), and the canonical state hash.

``export_state`` captures everything the next tick depends on, by kind (see ``state.py``):
every ``Scalars`` field (walked, never listed), the RNG, the agent and object tables, and each
system's own state under the system's name. What the config fixes is not stored: a restore
rebuilds it. ``restore_in_place`` inverts the export into an existing world, so holders of the
world see the restored state and a restored world continues with the same hashes as one that
never stopped (docs/SIMULATION.md, "Determinism and the state hash"). No file I/O here: the
shell encodes the result.
"""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

import numpy as np

from shared.settings import SimulationConfig

from .codec import export_fields, restore_fields
from .state import Scalars, State
from .tables import AgentTable, ObjectTable
from .world import World

Saved = tuple[dict[str, np.ndarray], dict[str, Any]]


def _meta(world: State, *, for_hash: bool = False) -> dict[str, Any]:
    meta = export_fields(world, Scalars, for_hash=for_hash)
    meta["rng"] = world.rng.bit_generator.state
    if for_hash:  # the columns and ids are hashed as bytes (see state_hash), not as JSON
        meta["agents"] = None
        meta["objects"] = {"queues": world.objects.queues}
    else:
        meta["agents"] = world.agents.export()[1]
        meta["objects"] = world.objects.export()[1]
    for name, part in world.parts.items():
        meta[name] = part.export(for_hash=for_hash)
    return meta


def export_state(world: State) -> Saved:
    agent_arrays, _ = world.agents.export()
    object_arrays, _ = world.objects.export()
    return {**agent_arrays, **object_arrays}, _meta(world)


def restore_in_place(world: State, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    """Put an exported state into ``world`` (same config); holders of ``world`` see it.

    Every part of the state is replaced: a value the export lacks gets its declared default,
    never a leftover from before the restore.
    """
    restore_fields(world, Scalars, meta)
    world.rng.bit_generator.state = meta["rng"]
    world.agents = AgentTable.restore(arrays, meta["agents"], world.agents.layout)
    world.objects = ObjectTable.restore(arrays, meta["objects"])
    for name, part in world.parts.items():
        part.restore(meta.get(name, {}))


def restore_world(config: SimulationConfig, arrays: dict[str, np.ndarray],
                  meta: dict[str, Any]) -> World:
    world = World(config.model_copy(update={"agents": []}))
    world.config = config
    restore_in_place(world, arrays, meta)
    return world


def adopt_state(world: State, other: State) -> None:
    """Make ``world`` hold ``other``'s state (e.g. one just read from a snapshot), in place."""
    restore_in_place(world, *export_state(other))


def save_state(world: State) -> Saved:
    """An independent copy of the complete state (columns copied, meta deep-copied)."""
    arrays, meta = export_state(world)
    return arrays, copy.deepcopy(meta)


def rollback(world: State, saved: Saved) -> None:
    """Put ``world`` back to a state taken by ``save_state`` (in place: holders keep it)."""
    arrays, meta = saved
    restore_in_place(world, arrays, copy.deepcopy(meta))


def canonical_json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=_plain).encode()


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not serialisable: {type(value).__name__}")


def _ids_bytes(world: State) -> bytes:
    """Agent ids/origins as canonical JSON, re-encoded only when the table changed."""
    ag = world.agents
    key = (ag.version, ag.size)
    if ag.ids_cache[0] != key:
        ag.ids_cache = (key, canonical_json([ag.ids[: ag.size], ag.origins[: ag.size]]))
    return ag.ids_cache[1]


def state_hash(world: State) -> str:
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
    for name in ob.COLUMNS:
        h.update(getattr(ob, name).tobytes())
    h.update(_ids_bytes(world))
    h.update(canonical_json(_meta(world, for_hash=True)))
    return h.hexdigest()
