"""Relationships: bounded per-agent ties, the rivalry ledger, and chat between neighbours.

Ties live in fixed-width columns (MAX_TIES per agent) so decay is one vector operation and the
memory per agent is constant, whatever the run length.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .tables import MAX_RIVALS

if TYPE_CHECKING:
    from .world import World

RIVALRY_DECAY = 0.01
LEDGER_DECAY = 0.005
LEDGER_EVICT = 0.05
LEDGER_AVOID = 0.7
LEDGER_STEP = 0.15
SOCIAL_EVENT_HISTORY = 200


def _tie_strength(trust: np.ndarray, fam: np.ndarray, riv: np.ndarray) -> np.ndarray:
    return np.abs(trust) + np.abs(fam) + riv


def _tie_index(world: World, a: int, b: int, create: bool) -> int:
    """Column index of a's tie to b; allocates (evicting the weakest tie) when ``create``."""
    ag = world.agents
    row = ag.tie_partner[a]
    hits = np.flatnonzero(row == b)
    if hits.size:
        return int(hits[0])
    if not create:
        return -1
    empty = np.flatnonzero(row < 0)
    if empty.size:
        idx = int(empty[0])
    else:  # full: the weakest tie makes room, keeping the strongest six
        idx = int(np.argmin(_tie_strength(ag.tie_trust[a], ag.tie_fam[a], ag.tie_riv[a])))
    row[idx] = b
    ag.tie_trust[a, idx] = 0.0
    ag.tie_fam[a, idx] = 0.0
    ag.tie_riv[a, idx] = 0.0
    return idx


def adjust_tie(world: World, a: int, b: int, trust: float = 0.0, fam: float = 0.0,
               riv: float = 0.0) -> None:
    """Apply a symmetric change to the a<->b tie, clamped to its ranges."""
    if a == b:
        return
    ag = world.agents
    for src, dst in ((a, b), (b, a)):
        i = _tie_index(world, src, dst, create=True)
        ag.tie_trust[src, i] = min(1.0, max(-1.0, ag.tie_trust[src, i] + trust))
        ag.tie_fam[src, i] = min(1.0, max(-1.0, ag.tie_fam[src, i] + fam))
        ag.tie_riv[src, i] = min(1.0, max(0.0, ag.tie_riv[src, i] + riv))


def set_tie(world: World, a: int, b: int, trust: float, fam: float, riv: float) -> None:
    ag = world.agents
    for src, dst in ((a, b), (b, a)):
        i = _tie_index(world, src, dst, create=True)
        ag.tie_trust[src, i] = min(1.0, max(-1.0, trust))
        ag.tie_fam[src, i] = min(1.0, max(-1.0, fam))
        ag.tie_riv[src, i] = min(1.0, max(0.0, riv))


def tie(world: World, a: int, b: int) -> dict[str, float]:
    i = _tie_index(world, a, b, create=False)
    ag = world.agents
    if i < 0:
        return {"trust": 0.0, "familiarity": 0.0, "rivalry": 0.0}
    return {
        "trust": round(float(ag.tie_trust[a, i]), 6),
        "familiarity": round(float(ag.tie_fam[a, i]), 6),
        "rivalry": round(float(ag.tie_riv[a, i]), 6),
    }


def ties_of(world: World, a: int) -> dict[str, dict[str, float]]:
    ag = world.agents
    out: dict[str, dict[str, float]] = {}
    for b in ag.tie_partner[a]:
        if b >= 0:
            other = ag.ids[int(b)]
            if other is not None:
                out[other] = tie(world, a, int(b))
    return dict(sorted(out.items()))


def forget_agent(world: World, slot: int) -> None:
    """Drop every tie and ledger entry pointing at a removed agent's slot."""
    ag = world.agents
    n = ag.size
    mask = ag.tie_partner[:n] == slot
    ag.tie_partner[:n][mask] = -1
    ag.tie_trust[:n][mask] = 0.0
    ag.tie_fam[:n][mask] = 0.0
    ag.tie_riv[:n][mask] = 0.0
    lmask = ag.rival[:n] == slot
    ag.rival[:n][lmask] = -1
    ag.rival_intensity[:n][lmask] = 0.0


def record_conflict(world: World, a: int, b: int, intensity: float = 1.0) -> None:
    """Add to both agents' rivalry ledger (0.15 x intensity per conflict)."""
    ag = world.agents
    for src, dst in ((a, b), (b, a)):
        row = ag.rival[src]
        hits = np.flatnonzero(row == dst)
        if hits.size:
            i = int(hits[0])
        else:
            empty = np.flatnonzero(row < 0)
            i = int(empty[0]) if empty.size else int(np.argmin(ag.rival_intensity[src]))
            row[i] = dst
            ag.rival_intensity[src, i] = 0.0
        ag.rival_intensity[src, i] = min(1.0, ag.rival_intensity[src, i] + LEDGER_STEP * intensity)


def avoids(world: World, a: int, b: int) -> bool:
    ag = world.agents
    hits = np.flatnonzero(ag.rival[a] == b)
    return bool(hits.size and ag.rival_intensity[a, int(hits[0])] > LEDGER_AVOID)


def decay(world: World) -> None:
    """Per-tick decay: tie rivalry -0.01, ledger -0.005 with eviction below 0.05."""
    ag = world.agents
    n = ag.size
    np.subtract(ag.tie_riv[:n], RIVALRY_DECAY, out=ag.tie_riv[:n])
    np.maximum(ag.tie_riv[:n], 0.0, out=ag.tie_riv[:n])
    led = ag.rival_intensity[:n]
    np.subtract(led, LEDGER_DECAY, out=led)
    gone = (led < LEDGER_EVICT) & (ag.rival[:n] >= 0)
    ag.rival[:n][gone] = -1
    led[gone | (ag.rival[:n] < 0)] = 0.0


def apply_chat(world: World, speaker: int, listener: int, quality: float, success: bool,
               tick: int) -> dict[str, Any]:
    """One chat: success raises trust/familiarity by quality, failure breeds rivalry."""
    if success:
        adjust_tie(world, speaker, listener, trust=0.05 * quality, fam=0.10 * quality)
        kind = "chat_success"
    else:
        adjust_tie(world, speaker, listener, fam=-0.05, riv=0.05)
        record_conflict(world, speaker, listener, intensity=0.5)
        kind = "chat_failure"
    event = {
        "type": kind,
        "tick": tick,
        "speaker": world.agents.ids[speaker],
        "listener": world.agents.ids[listener],
        "quality": round(float(quality), 6),
    }
    world.record_social(event)
    return event


def shared_meal(world: World, a: int, b: int, tick: int) -> dict[str, Any]:
    adjust_tie(world, a, b, trust=0.1, fam=0.25)
    ids = world.agents.ids
    event = {"type": "shared_meal", "tick": tick, "agents": [ids[a], ids[b]]}
    world.record_social(event)
    return event


def colocated_pairs(world: World, slots: np.ndarray) -> np.ndarray:
    """Pairs (k, 2) of agents standing on the same tile: 1st with 2nd, 3rd with 4th, ..."""
    if slots.size < 2:
        return np.empty((0, 2), dtype=np.int64)
    ag = world.agents
    key = ag.x[slots].astype(np.int64) * (world.grid_size + 1) + ag.y[slots]
    order = np.argsort(key, kind="stable")
    sk = key[order]
    starts = np.concatenate(([True], sk[1:] != sk[:-1]))
    group_start = np.maximum.accumulate(np.where(starts, np.arange(sk.size), 0))
    rank = np.arange(sk.size) - group_start
    first = np.flatnonzero((rank % 2 == 0)[:-1] & (sk[1:] == sk[:-1]))
    return np.stack([slots[order[first]], slots[order[first + 1]]], axis=1)


def chat_system(world: World, tick: int, events: list[dict[str, Any]]) -> None:
    cfg = world.config
    if not (cfg.features.relationships and cfg.features.chat):
        return
    ag = world.agents
    live = ag.live_slots()
    free = live[ag.busy_obj[live] < 0]
    pairs = colocated_pairs(world, free)
    if pairs.shape[0] == 0:
        return
    extro = (ag.personality[pairs[:, 0], 0] + ag.personality[pairs[:, 1], 0]) / 2.0
    draws = world.rng.random((pairs.shape[0], 3))
    talk = draws[:, 0] < cfg.behavior.chat_probability * (0.5 + extro)
    for k in np.flatnonzero(talk):
        a, b = int(pairs[k, 0]), int(pairs[k, 1])
        if avoids(world, a, b) or avoids(world, b, a):
            continue
        quality = 0.3 + 0.7 * float(draws[k, 1])
        trust = tie(world, a, b)["trust"]
        success = float(draws[k, 2]) < 0.6 + 0.4 * trust
        events.append(apply_chat(world, a, b, quality, success, tick))


__all__ = [
    "MAX_RIVALS",
    "adjust_tie",
    "apply_chat",
    "chat_system",
    "decay",
    "forget_agent",
    "record_conflict",
    "set_tie",
    "shared_meal",
    "tie",
    "ties_of",
]
