"""Operator actions on the world (what admin console commands do), pure and deterministic.

Each function validates everything it is given *before* touching the world and raises
``OpError`` (bad value) or ``UnknownAgent`` (no such agent) without side effects, so a refused
command leaves the state hash unchanged. Events an action causes are returned to the caller
(the console puts them in its result) because they happen between ticks, outside any tick's
event list. See docs/SIMULATION.md, "Perturbations" for what the perturbations switch.
"""

from __future__ import annotations

import math
import re
from typing import Any

from shared.settings import NEEDS

from . import affordances, lifecycle, social
from .employment import queue_of
from .events import AgentRemoved, Chat, Event
from .state import State
from .tables import NEED_INDEX

AGENT_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")  # as in config; no '#', kept for respawns
PERTURBATIONS = ("blackout", "outage", "restore", "price_spike")
MAX_PRICE = 1e6


class OpError(ValueError):
    """A value an operator gave that the world cannot take; the message says which and why."""


def _check_range(name: str, value: float, lo: float, hi: float) -> float:
    if not math.isfinite(value) or not lo <= value <= hi:
        raise OpError(f"{name} must be between {lo} and {hi}, got {value}")
    return float(value)


def check_position(state: State, position: tuple[int, int], what: str = "position") -> None:
    x, y = position
    if not (0 <= x < state.grid_size and 0 <= y < state.grid_size):
        raise OpError(f"{what} ({x}, {y}) is outside the {state.grid_size}x{state.grid_size} grid")


def _check_needs(needs: dict[str, float] | None) -> None:
    for name, value in (needs or {}).items():
        if name not in NEED_INDEX:
            raise OpError(f"unknown need {name!r}; expected one of {list(NEEDS)}")
        _check_range(f"need {name}", value, 0.0, 1.0)


def spawn(state: State, agent_id: str, position: tuple[int, int], *, job: str | None = None,
          home: tuple[int, int] | None = None, needs: dict[str, float] | None = None,
          wallet: float | None = None) -> int:
    """Add a new agent; its id must be new and well formed (ids with '#' are respawns')."""
    if not AGENT_ID.match(agent_id):
        raise OpError("agent_id must be 1-64 characters of letters, digits, '_', '.', '-'")
    if agent_id in state.agents.slot_of:
        raise OpError(f"agent {agent_id} already exists")
    if job is not None and job not in state.job_index:
        raise OpError(f"unknown job {job!r}; jobs are {state.job_ids}")
    check_position(state, position)
    if home is not None:
        check_position(state, home, "home")
    _check_needs(needs)
    if wallet is not None:
        _check_range("wallet", wallet, 0.0, MAX_PRICE)
    return lifecycle.spawn(state, agent_id, position, job=job, home=home, needs=needs,
                           wallet=wallet)


def teleport(state: State, agent_id: str, position: tuple[int, int],
             tick: int) -> list[Event]:
    """Move an agent at once; whatever it was using or queueing for is abandoned first."""
    slot = state.require_agent(agent_id)
    check_position(state, position)
    events: list[Event] = []
    affordances.interrupt(state, slot, tick, "teleported", events)
    state.agents.x[slot], state.agents.y[slot] = position
    state.agents.target_obj[slot] = -1  # re-plan from the new tile
    return events


def kill(state: State, agent_id: str, tick: int) -> list[Event]:
    """Remove an agent for good (no respawn, unlike faints and employment exits)."""
    state.require_agent(agent_id)
    events: list[Event] = []
    lifecycle.remove(state, agent_id, tick, "killed", events)
    events.append(AgentRemoved(tick, agent_id, "killed"))
    return events


def set_need(state: State, agent_id: str, need: str, value: float) -> float:
    """Set one need; returns the previous value."""
    slot = state.require_agent(agent_id)
    _check_needs({need: value})
    index = NEED_INDEX[need]
    previous = float(state.agents.needs[slot, index])
    state.agents.needs[slot, index] = value
    return previous


def set_price(state: State, key: str, value: float) -> float:
    """Change a price (``state.prices``); returns the previous one."""
    if key not in state.prices:
        raise OpError(f"unknown price {key!r}; prices are {sorted(state.prices)}")
    _check_range(key, value, 0.0, MAX_PRICE)
    previous = state.prices[key]
    state.prices[key] = float(value)
    return previous


def set_relationship(state: State, a_id: str, b_id: str, trust: float, familiarity: float,
                     rivalry: float) -> tuple[dict[str, float], dict[str, float]]:
    """Set the a<->b tie (both directions); returns (a's tie to b, b's tie to a)."""
    a, b = _pair(state, a_id, b_id)
    _check_range("trust", trust, -1.0, 1.0)
    _check_range("familiarity", familiarity, -1.0, 1.0)
    _check_range("rivalry", rivalry, 0.0, 1.0)
    social.set_tie(state, a, b, trust, familiarity, rivalry)
    return social.tie(state, a, b), social.tie(state, b, a)


def force_chat(state: State, speaker_id: str, listener_id: str, quality: float,
               tick: int) -> tuple[Chat, dict[str, float], dict[str, float]]:
    """A successful chat (quality clamped to [0, 1]); returns (event, both updated ties)."""
    speaker, listener = _pair(state, speaker_id, listener_id)
    if not math.isfinite(quality):
        raise OpError("quality must be a finite number")
    if not state.config.features.relationships:
        raise OpError("relationships are disabled in this shard's config")
    quality = min(1.0, max(0.0, float(quality)))
    event = social.apply_chat(state, speaker, listener, quality, True, tick)
    return event, social.tie(state, speaker, listener), social.tie(state, listener, speaker)


def _pair(state: State, a_id: str, b_id: str) -> tuple[int, int]:
    a, b = state.require_agent(a_id), state.require_agent(b_id)
    if a == b:
        raise OpError("an agent cannot have a relationship with itself")
    return a, b


def set_exit_cap(state: State, cap: int) -> int:
    """Daily employment exit cap (0 = unlimited); returns the previous cap."""
    if cap < 0:
        raise OpError(f"exit cap must be >= 0 (0 = unlimited), got {cap}")
    queue = queue_of(state)
    previous = queue.daily_exit_cap
    queue.daily_exit_cap = int(cap)
    return previous


def perturb(state: State, kind: str, *, price: str = "meal_cost",
            factor: float = 2.0) -> dict[str, Any]:
    """blackout (power off), outage (water off), restore (both on), price_spike (x factor)."""
    if kind not in PERTURBATIONS:
        raise OpError(f"unknown perturbation {kind!r}; expected one of {list(PERTURBATIONS)}")
    if kind == "price_spike":
        _check_range("factor", factor, 0.0, 1000.0)
        if price not in state.prices:
            raise OpError(f"unknown price {price!r}; prices are {sorted(state.prices)}")
        set_price(state, price, state.prices[price] * factor)
    elif kind == "blackout":
        state.power_on = False
    elif kind == "outage":
        state.water_on = False
    else:
        state.power_on = state.water_on = True
    return {"power_on": state.power_on, "water_on": state.water_on,
            "prices": dict(sorted(state.prices.items()))}
