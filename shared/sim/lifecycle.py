"""How agents arrive and leave: spawn, remove, retire (remove and schedule a respawn), respawn.

Leaving is the one moment every system must hear about, whatever its config: ``remove`` asks
each system, in scheduler order, to forget the agent (interrupt its affordance, drop its exit,
clear ties that point at its slot) before the slot is freed. See docs/SIMULATION.md, "Agents
and needs" and "The employment exit queue".
"""

from __future__ import annotations

import numpy as np

from shared.settings import NEEDS

from .events import AgentRemoved, AgentRespawned, Event
from .state import BaseSystem, Respawn, State
from .tables import NEED_INDEX, POST_SHIFT


def spawn(state: State, agent_id: str, position: tuple[int, int], *, job: str | None = None,
          home: tuple[int, int] | None = None, needs: dict[str, float] | None = None,
          wallet: float | None = None, origin: str | None = None) -> int:
    """Add an agent; draws its starting needs and personality from the world's RNG."""
    if job is not None and job not in state.job_index:
        raise ValueError(f"unknown job {job!r}")
    x, y = (int(v) for v in position)
    if not (0 <= x < state.grid_size and 0 <= y < state.grid_size):
        size = state.grid_size
        raise ValueError(f"position {(x, y)} is outside the {size}x{size} grid")
    ag = state.agents
    slot = ag.add(agent_id, origin or agent_id)
    hx, hy = home if home is not None else (x, y)
    ag.x[slot], ag.y[slot], ag.home_x[slot], ag.home_y[slot] = x, y, hx, hy
    draws = state.rng.random(6)
    base = 0.6 + 0.4 * draws[:3]
    for name, value in (needs or {}).items():
        base[NEED_INDEX[name]] = value
    ag.needs[slot] = np.clip(base, 0.0, 1.0)
    ag.personality[slot] = draws[3:]
    ag.wallet[slot] = state.config.economy.starting_wallet if wallet is None else wallet
    if job is None and state.job_ids:
        job = state.job_ids[state.next_job % len(state.job_ids)]
        state.next_job += 1
    ag.job[slot] = state.job_index[job] if job is not None else -1
    if job is not None and state.tick % state.ticks_per_day >= state.job_start[ag.job[slot]]:
        ag.shift_state[slot] = POST_SHIFT  # not rostered for a shift already under way
    ag.spawn_tick[slot] = state.tick
    for t in range(len(state.aff_by_type)):
        ag.assigned[slot, t] = state.nearest(hx, hy, t)
    return slot


def remove(state: State, agent_id: str, tick: int, reason: str, events: list[Event]) -> int:
    """Take an agent out of the town for good; every system forgets it first."""
    slot = state.require_agent(agent_id)
    for system in state.systems:
        system.forget(state, slot, tick, reason, events)
    state.agents.remove(slot)
    return slot


def retire(state: State, agent_id: str, tick: int, reason: str, events: list[Event]) -> None:
    """Remove an agent and schedule its replacement ``<origin>#<n>``."""
    slot = state.require_agent(agent_id)
    ag = state.agents
    origin = ag.origins[slot]
    assert origin is not None  # every live slot has one (AgentTable.add)
    entry = Respawn(tick + state.config.employment.respawn_delay_ticks, origin,
                    state.job_ids[int(ag.job[slot])] if ag.job[slot] >= 0 else None,
                    int(ag.home_x[slot]), int(ag.home_y[slot]))
    remove(state, agent_id, tick, reason, events)
    events.append(AgentRemoved(tick, agent_id, reason))
    state.respawns.append(entry)


def respawn_due(state: State, tick: int, events: list[Event]) -> None:
    due = [r for r in state.respawns if r.due_tick <= tick]
    state.respawns = [r for r in state.respawns if r.due_tick > tick]
    for r in due:
        n = state.respawn_counts.get(r.origin, 0) + 1
        state.respawn_counts[r.origin] = n
        new_id = f"{r.origin}#{n}"
        home = (r.home_x, r.home_y)
        spawn(state, new_id, home, job=r.job, home=home, needs=dict.fromkeys(NEEDS, 0.5),
              wallet=0.0, origin=r.origin)
        events.append(AgentRespawned(tick, new_id, r.origin))


class Respawns(BaseSystem):
    """Last in the tick: replacements whose delay has run out arrive."""

    name = "respawns"

    def step(self, state: State, tick: int, events: list[Event]) -> None:
        respawn_due(state, tick, events)


SYSTEM = Respawns()
