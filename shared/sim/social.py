"""Relationships: bounded per-agent ties, the rivalry ledger, and chat between neighbours.

Ties live in fixed-width columns (MAX_TIES per agent) so decay is one vector operation and the
memory per agent is constant, whatever the run length. See docs/SIMULATION.md, "Relationships".
"""

from __future__ import annotations

import numpy as np

from shared.settings import SimulationConfig

from .events import Chat, ChatFailure, ChatSuccess, Event, SharedMeal
from .state import SOCIAL_EVENT_HISTORY, BaseSystem, State
from .tables import MAX_RIVALS

RIVALRY_DECAY = 0.01
LEDGER_DECAY = 0.005
LEDGER_EVICT = 0.05
LEDGER_AVOID = 0.7
LEDGER_STEP = 0.15


def _tie_strength(trust: np.ndarray, fam: np.ndarray, riv: np.ndarray) -> np.ndarray:
    """How strong a tie is, for the six-tie bound: |trust| + |familiarity| + rivalry."""
    strength: np.ndarray = np.abs(trust) + np.abs(fam) + riv
    return strength


def _tie_index(state: State, a: int, b: int) -> int:
    """Column index of a's tie to b, or -1."""
    hits = np.flatnonzero(state.agents.tie_partner[a] == b)
    return int(hits[0]) if hits.size else -1


def _room_for(state: State, a: int, strength: float) -> int | None:
    """The column a new tie of ``strength`` would take in a's row, or None if it cannot.

    A free column if there is one; otherwise the weakest tie (lowest column on equal strength,
    so the choice is deterministic), but only when the new tie is strictly stronger: at the cap
    the strongest six are kept and a weaker newcomer is refused.
    """
    ag = state.agents
    empty = np.flatnonzero(ag.tie_partner[a] < 0)
    if empty.size:
        return int(empty[0])
    strengths = _tie_strength(ag.tie_trust[a], ag.tie_fam[a], ag.tie_riv[a])
    idx = int(np.argmin(strengths))
    return idx if strength > float(strengths[idx]) else None


def _clear(state: State, a: int, idx: int) -> None:
    ag = state.agents
    ag.tie_partner[a, idx] = -1
    ag.tie_trust[a, idx] = 0.0
    ag.tie_fam[a, idx] = 0.0
    ag.tie_riv[a, idx] = 0.0


def _drop_pair(state: State, a: int, b: int) -> None:
    """Remove the a<->b tie on both sides (whichever sides hold it)."""
    for src, dst in ((a, b), (b, a)):
        i = _tie_index(state, src, dst)
        if i >= 0:
            _clear(state, src, i)


def _pair_columns(state: State, a: int, b: int,
                  values: tuple[float, float, float]) -> tuple[int, int] | None:
    """Columns of the a->b and b->a ties, allocating both when the pair can hold the tie.

    ``values`` is the (trust, familiarity, rivalry) the new tie would have, which decides
    whether it may displace the weakest tie of a full row. A tie exists on both sides or on
    neither: if either side has no room, no tie is created (and a one-sided leftover is
    dropped); when a side evicts its weakest tie, the evicted partner loses its side too.
    """
    ia, ib = _tie_index(state, a, b), _tie_index(state, b, a)
    if ia >= 0 and ib >= 0:
        return ia, ib
    strength = abs(values[0]) + abs(values[1]) + values[2]
    ra = ia if ia >= 0 else _room_for(state, a, strength)
    rb = ib if ib >= 0 else _room_for(state, b, strength)
    if ra is None or rb is None:
        _drop_pair(state, a, b)
        return None
    ag = state.agents
    for src, dst, idx, had in ((a, b, ra, ia >= 0), (b, a, rb, ib >= 0)):
        if had:
            continue
        evicted = int(ag.tie_partner[src, idx])
        if evicted >= 0:
            _drop_pair(state, src, evicted)
        ag.tie_partner[src, idx] = dst
        ag.tie_trust[src, idx] = 0.0
        ag.tie_fam[src, idx] = 0.0
        ag.tie_riv[src, idx] = 0.0
    return ra, rb


def _clamped(trust: float, fam: float, riv: float) -> tuple[float, float, float]:
    return min(1.0, max(-1.0, trust)), min(1.0, max(-1.0, fam)), min(1.0, max(0.0, riv))


def adjust_tie(state: State, a: int, b: int, trust: float = 0.0, fam: float = 0.0,
               riv: float = 0.0) -> None:
    """Apply a symmetric change to the a<->b tie, clamped to its ranges."""
    if a == b:
        return
    cols = _pair_columns(state, a, b, _clamped(trust, fam, riv))
    if cols is None:
        return
    ag = state.agents
    for src, i in ((a, cols[0]), (b, cols[1])):
        ag.tie_trust[src, i] = min(1.0, max(-1.0, ag.tie_trust[src, i] + trust))
        ag.tie_fam[src, i] = min(1.0, max(-1.0, ag.tie_fam[src, i] + fam))
        ag.tie_riv[src, i] = min(1.0, max(0.0, ag.tie_riv[src, i] + riv))


def set_tie(state: State, a: int, b: int, trust: float, fam: float, riv: float) -> bool:
    """Set the a<->b tie on both sides; False if neither could hold it (six stronger ties)."""
    if a == b:
        return False
    values = _clamped(trust, fam, riv)
    cols = _pair_columns(state, a, b, values)
    if cols is None:
        return False
    ag = state.agents
    for src, i in ((a, cols[0]), (b, cols[1])):
        ag.tie_trust[src, i], ag.tie_fam[src, i], ag.tie_riv[src, i] = values
    return True


def tie(state: State, a: int, b: int) -> dict[str, float]:
    i = _tie_index(state, a, b)
    ag = state.agents
    if i < 0:
        return {"trust": 0.0, "familiarity": 0.0, "rivalry": 0.0}
    return {
        "trust": round(float(ag.tie_trust[a, i]), 6),
        "familiarity": round(float(ag.tie_fam[a, i]), 6),
        "rivalry": round(float(ag.tie_riv[a, i]), 6),
    }


def ties_of(state: State, a: int) -> dict[str, dict[str, float]]:
    ag = state.agents
    out: dict[str, dict[str, float]] = {}
    for b in ag.tie_partner[a]:
        if b >= 0:
            other = ag.ids[int(b)]
            if other is not None:
                out[other] = tie(state, a, int(b))
    return dict(sorted(out.items()))


def forget_agent(state: State, slot: int) -> None:
    """Drop every tie and ledger entry pointing at a removed agent's slot."""
    ag = state.agents
    n = ag.size
    mask = ag.tie_partner[:n] == slot
    ag.tie_partner[:n][mask] = -1
    ag.tie_trust[:n][mask] = 0.0
    ag.tie_fam[:n][mask] = 0.0
    ag.tie_riv[:n][mask] = 0.0
    lmask = ag.rival[:n] == slot
    ag.rival[:n][lmask] = -1
    ag.rival_intensity[:n][lmask] = 0.0


def record_conflict(state: State, a: int, b: int, intensity: float = 1.0) -> None:
    """Add to both agents' rivalry ledger (0.15 x intensity per conflict)."""
    ag = state.agents
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


def avoids(state: State, a: int, b: int) -> bool:
    ag = state.agents
    hits = np.flatnonzero(ag.rival[a] == b)
    return bool(hits.size and ag.rival_intensity[a, int(hits[0])] > LEDGER_AVOID)


def decay(state: State) -> None:
    """Per-tick decay: tie rivalry -0.01, ledger -0.005 with eviction below 0.05."""
    ag = state.agents
    n = ag.size
    np.subtract(ag.tie_riv[:n], RIVALRY_DECAY, out=ag.tie_riv[:n])
    np.maximum(ag.tie_riv[:n], 0.0, out=ag.tie_riv[:n])
    led = ag.rival_intensity[:n]
    np.subtract(led, LEDGER_DECAY, out=led)
    gone = (led < LEDGER_EVICT) & (ag.rival[:n] >= 0)
    ag.rival[:n][gone] = -1
    led[gone | (ag.rival[:n] < 0)] = 0.0


def apply_chat(state: State, speaker: int, listener: int, quality: float, success: bool,
               tick: int) -> Chat:
    """One chat: success raises trust/familiarity by quality, failure breeds rivalry."""
    kind: type[Chat]
    if success:
        adjust_tie(state, speaker, listener, trust=0.05 * quality, fam=0.10 * quality)
        kind = ChatSuccess
    else:
        adjust_tie(state, speaker, listener, fam=-0.05, riv=0.05)
        record_conflict(state, speaker, listener, intensity=0.5)
        kind = ChatFailure
    event = kind(tick, state.agent_id(speaker), state.agent_id(listener),
                 round(float(quality), 6))
    state.record_social(event)
    return event


def shared_meal(state: State, a: int, b: int, tick: int) -> SharedMeal:
    adjust_tie(state, a, b, trust=0.1, fam=0.25)
    event = SharedMeal(tick, (state.agent_id(a), state.agent_id(b)))
    state.record_social(event)
    return event


def colocated_pairs(state: State, slots: np.ndarray) -> np.ndarray:
    """Pairs (k, 2) of agents standing on the same tile: 1st with 2nd, 3rd with 4th, ..."""
    if slots.size < 2:
        return np.empty((0, 2), dtype=np.int64)
    ag = state.agents
    key = ag.x[slots].astype(np.int64) * (state.grid_size + 1) + ag.y[slots]
    order = np.argsort(key, kind="stable")
    sk = key[order]
    starts = np.concatenate(([True], sk[1:] != sk[:-1]))
    group_start = np.maximum.accumulate(np.where(starts, np.arange(sk.size), 0))
    rank = np.arange(sk.size) - group_start
    first = np.flatnonzero((rank % 2 == 0)[:-1] & (sk[1:] == sk[:-1]))
    return np.stack([slots[order[first]], slots[order[first + 1]]], axis=1)


def chat_system(state: State, tick: int, events: list[Event]) -> None:
    cfg = state.config
    if not (cfg.features.relationships and cfg.features.chat):
        return
    ag = state.agents
    live = ag.live_slots()
    free = live[ag.busy_obj[live] < 0]
    pairs = colocated_pairs(state, free)
    if pairs.shape[0] == 0:
        return
    extro = (ag.personality[pairs[:, 0], 0] + ag.personality[pairs[:, 1], 0]) / 2.0
    draws = state.rng.random((pairs.shape[0], 3))
    talk = draws[:, 0] < cfg.behavior.chat_probability * (0.5 + extro)
    for k in np.flatnonzero(talk):
        a, b = int(pairs[k, 0]), int(pairs[k, 1])
        if avoids(state, a, b) or avoids(state, b, a):
            continue
        quality = 0.3 + 0.7 * float(draws[k, 1])
        trust = tie(state, a, b)["trust"]
        success = float(draws[k, 2]) < 0.6 + 0.4 * trust
        events.append(apply_chat(state, a, b, quality, success, tick))


class Relationships(BaseSystem):
    """Tie and ledger decay, then chat; off with ``features.relationships``. Ties an operator
    set while it is off are still cleared when an agent leaves."""

    name = "relationships"

    def enabled(self, config: SimulationConfig) -> bool:
        return config.features.relationships

    def step(self, state: State, tick: int, events: list[Event]) -> None:
        decay(state)
        chat_system(state, tick, events)

    def forget(self, state: State, slot: int, tick: int, reason: str,
               events: list[Event]) -> None:
        forget_agent(state, slot)


SYSTEM = Relationships()

__all__ = [
    "MAX_RIVALS",
    "SOCIAL_EVENT_HISTORY",
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
