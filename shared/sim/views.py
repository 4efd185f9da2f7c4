"""Read-only views of the world as plain JSON-able dicts (for telemetry and the console).

Every float is rounded to 6 places so views are stable across platforms and compact on the wire.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from shared.settings import NEEDS

from . import jobs, social
from .state import State
from .tables import SHIFT_STATE_NAMES


def _r(value: float) -> float:
    return round(float(value), 6)


def agent_view(state: State, slot: int) -> dict[str, Any]:
    ag, ob = state.agents, state.objects
    busy = int(ag.busy_obj[slot])
    queued = int(ag.queued_obj[slot])
    job = int(ag.job[slot])
    return {
        "agent_id": ag.ids[slot],
        "position": [int(ag.x[slot]), int(ag.y[slot])],
        "home": [int(ag.home_x[slot]), int(ag.home_y[slot])],
        "needs": {n: _r(ag.needs[slot, i]) for i, n in enumerate(NEEDS)},
        "wallet": _r(ag.wallet[slot]),
        "job": state.job_ids[job] if job >= 0 else None,
        "shift_state": SHIFT_STATE_NAMES[int(ag.shift_state[slot])],
        "exit_pending": bool(ag.exit_pending[slot]),
        "using": ob.ids[busy] if busy >= 0 else None,
        "queued_for": ob.ids[queued] if queued >= 0 else None,
        "personality": dict(zip(("extroversion", "conscientiousness", "forgiveness"),
                                (_r(v) for v in ag.personality[slot]), strict=True)),
        "inventory": dict(zip(("meals_eaten", "meals_cooked", "showers", "sleeps"),
                              (int(v) for v in ag.counters[slot]), strict=True)),
    }


def job_view(state: State, slot: int) -> dict[str, Any]:
    ag = state.agents
    job = int(ag.job[slot])
    return {
        "job": state.job_ids[job] if job >= 0 else None,
        "shift_state": SHIFT_STATE_NAMES[int(ag.shift_state[slot])],
        "wallet": _r(ag.wallet[slot]),
        "wages_earned": _r(ag.wages_earned[slot]),
        "wages_withheld": _r(ag.wages_withheld[slot]),
        "penalties_paid": _r(ag.penalties_paid[slot]),
        "attendance_ratio": jobs.attendance_ratio(state, slot),
        "absent_shifts_7d": int(ag.absences[slot].sum()),
        "exit_pending": bool(ag.exit_pending[slot]),
    }


def jobs_view(state: State) -> dict[str, dict[str, Any]]:
    ag = state.agents
    return {str(ag.ids[s]): job_view(state, int(s)) for s in ag.live_slots()}


def needs_summary(state: State) -> dict[str, Any]:
    ag = state.agents
    live = ag.live_slots()
    if live.size == 0:
        return {"agents": 0}
    needs = ag.needs[live]
    out: dict[str, Any] = {"agents": int(live.size)}
    for i, n in enumerate(NEEDS):
        out[n] = {"mean": _r(needs[:, i].mean()), "min": _r(needs[:, i].min()),
                  "below_threshold": int((needs[:, i] < state.need_thresholds[i]).sum())}
    return out


def relationships_summary(state: State) -> dict[str, Any]:
    ag = state.agents
    n = ag.size
    has = (ag.tie_partner[:n] >= 0) & ag.alive[:n, None]
    ties = int(has.sum())
    trust = ag.tie_trust[:n][has]
    riv = ag.tie_riv[:n][has]
    ledger = (ag.rival[:n] >= 0) & ag.alive[:n, None]
    return {
        "ties": ties,
        "mean_trust": _r(trust.mean()) if ties else 0.0,
        "mean_rivalry": _r(riv.mean()) if ties else 0.0,
        "rivalry_ledger_entries": int(ledger.sum()),
        "avoiding_pairs": int((ag.rival_intensity[:n][ledger] > social.LEDGER_AVOID).sum()),
    }


def relationship_detail(state: State, slot: int) -> dict[str, Any]:
    ag = state.agents
    rivals = {}
    for i, other in enumerate(ag.rival[slot].tolist()):
        if other >= 0 and ag.ids[other] is not None:
            rivals[str(ag.ids[other])] = _r(ag.rival_intensity[slot, i])
    return {"agent_id": ag.ids[slot], "ties": social.ties_of(state, slot),
            "rivalry_ledger": dict(sorted(rivals.items()))}


def object_view(state: State, obj: int) -> dict[str, Any]:
    ob, ag = state.objects, state.agents
    occ = int(ob.occupant[obj])
    spec = state.aff_by_type[int(ob.type[obj])]
    return {
        "object_id": ob.ids[obj],
        "type": spec.object_type,
        "affordance": spec.id,
        "position": [int(ob.x[obj]), int(ob.y[obj])],
        "stock": int(ob.stock[obj]),
        "occupant": ag.ids[occ] if occ >= 0 else None,
        "progress": int(ag.aff_progress[occ]) if occ >= 0 else None,
        "duration": spec.duration,
        "occupied_since": int(ob.occupied_since[obj]) if occ >= 0 else None,
        "queue": [{"agent_id": ag.ids[s], "since": int(t)} for s, t in ob.queues[obj]],
    }


def objects_view(state: State) -> dict[str, dict[str, Any]]:
    return {state.objects.ids[o]: object_view(state, o) for o in range(len(state.objects))}


def world_summary(state: State) -> dict[str, Any]:
    ag = state.agents
    live = ag.live_slots()
    states = np.bincount(ag.shift_state[live].astype(np.int64), minlength=len(SHIFT_STATE_NAMES))
    return {
        "tick": state.tick,
        "agents": int(live.size),
        "shift_states": {name: int(c) for name, c in zip(SHIFT_STATE_NAMES, states, strict=True)},
        "power_on": state.power_on,
        "water_on": state.water_on,
        "prices": dict(sorted(state.prices.items())),
    }
