"""The world: all simulation state and the fixed order in which systems run each tick.

Pure and deterministic: no I/O, no wall clock, no unseeded randomness. Every random draw
comes from ``self.rng`` whose state is part of the snapshot and of the state hash.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np

from shared.config import NEEDS, AffordanceSpec, SimulationConfig

from . import affordances, jobs, policy, social
from .employment import EmploymentQueue
from .tables import MAX_TYPES, NEED_INDEX, POST_SHIFT, AgentTable, ObjectTable

COUNTER_BY_NEED = {"hunger": 0, "hygiene": 2, "energy": 3}


class UnknownAgent(KeyError):
    """Raised for an agent id that is not in the town (console maps it to not_found)."""

    def __str__(self) -> str:
        return f"unknown agent {self.args[0]!r}"


class World:
    def __init__(self, config: SimulationConfig) -> None:
        self.config = config
        self.tick = 0
        self.ticks_per_day = config.world.ticks_per_day
        self.grid_size = config.world.grid_size
        self.arrival_buffer = config.behavior.job_arrival_buffer
        self.rng = np.random.default_rng(config.world.seed)
        self.agents = AgentTable()
        self.employment = EmploymentQueue(config.employment)
        self.power_on = True
        self.water_on = True
        self.prices: dict[str, float] = {
            "meal_cost": config.economy.meal_cost,
            "ingredients_cost": config.economy.ingredients_cost,
            "shower_cost": config.economy.shower_cost,
        }
        self.respawns: list[list[Any]] = []  # [due_tick, origin, job, home_x, home_y]
        self.respawn_counts: dict[str, int] = {}
        self.next_job = 0
        self.social_events: list[dict[str, Any]] = []
        self.active_objects: set[int] = set()
        # Chained digest of every append-only log entry (social events, exits): the state hash
        # covers those logs without re-encoding them every tick.
        self.log_digest = ""
        self._setup_jobs()
        self._setup_affordances()
        self._setup_objects()
        for spec in config.agents:
            self.spawn_agent(spec.id, spec.position, job=spec.job, home=spec.home,
                             needs=spec.needs, wallet=spec.wallet)

    # -- construction ---------------------------------------------------------------------
    def _setup_jobs(self) -> None:
        jobs_cfg = self.config.jobs
        self.job_ids = list(jobs_cfg)
        self.job_index = {j: i for i, j in enumerate(self.job_ids)}
        col = lambda f, dt: np.array([f(j) for j in jobs_cfg.values()], dtype=dt)  # noqa: E731
        self.job_start = col(lambda j: j.start_tick, np.int64)
        self.job_end = col(lambda j: j.end_tick, np.int64)
        self.job_wage = col(lambda j: j.wage_rate, np.float64)
        self.job_late_penalty = col(lambda j: j.lateness_penalty, np.float64)
        self.job_x = col(lambda j: j.location[0], np.int32)
        self.job_y = col(lambda j: j.location[1], np.int32)
        season = np.zeros(self.ticks_per_day + 1, dtype=bool)
        for j in jobs_cfg.values():
            season[max(0, j.start_tick - self.arrival_buffer): j.end_tick + 1] = True
        self._season = season

    def in_shift_season(self, day_tick: int) -> bool:
        """Whether any job's shift (arrival buffer and closing tick included) covers day_tick."""
        return bool(self._season[min(day_tick, self.ticks_per_day)])

    def _setup_affordances(self) -> None:
        self.aff_by_type: list[AffordanceSpec] = []
        self.type_index: dict[str, int] = {}
        for spec in self.config.affordances.definitions:
            if spec.object_type not in self.type_index:  # first definition serves the type
                self.type_index[spec.object_type] = len(self.aff_by_type)
                self.aff_by_type.append(spec)
        if len(self.aff_by_type) > MAX_TYPES:
            raise ValueError(f"at most {MAX_TYPES} object types are supported")
        specs = self.aff_by_type
        self.durations = np.array([s.duration for s in specs] or [1], dtype=np.int32)
        self.req_power = np.array([s.requires_power for s in specs] or [False])
        self.req_water = np.array([s.requires_water for s in specs] or [False])
        self.effects = np.zeros((max(1, len(specs)), 3))
        for t, s in enumerate(specs):
            for need, delta in s.effects.items():
                self.effects[t, NEED_INDEX[need]] = delta
        self.counter_index = [COUNTER_BY_NEED.get(s.serves or "", 1) for s in specs]
        for t, s in enumerate(specs):  # cooking counts as "meals cooked"
            if s.produces_stock:
                self.counter_index[t] = 1
        self.serving: list[list[tuple[int, int]]] = [[] for _ in NEEDS]
        for t, s in enumerate(specs):
            if s.serves in NEED_INDEX:
                self.serving[NEED_INDEX[s.serves]].append((t, s.consumes_stock))
        b = self.config.behavior
        self.need_thresholds = np.array(
            [b.hunger_threshold, b.hygiene_threshold, b.energy_threshold])
        self.decay_rates = np.array([getattr(self.config.rewards.decay_rates, n) for n in NEEDS])

    def _setup_objects(self) -> None:
        objs = [o for o in self.config.objects if o.type in self.type_index]
        self.objects = ObjectTable([o.id for o in objs], [self.type_index[o.type] for o in objs],
                                   [o.position[0] for o in objs], [o.position[1] for o in objs])
        for i, o in enumerate(objs):
            consumes = self.aff_by_type[self.type_index[o.type]].consumes_stock
            default = self.config.economy.initial_stock if consumes else 0
            self.objects.stock[i] = default if o.stock is None else o.stock
        stock_types = [t for t, s in enumerate(self.aff_by_type) if s.consumes_stock]
        for t, s in enumerate(self.aff_by_type):
            if s.produces_stock and stock_types:
                for slot in np.flatnonzero(self.objects.type == t).tolist():
                    self.objects.linked[slot] = self._nearest(
                        self.objects.x[slot], self.objects.y[slot], stock_types[0])

    def _nearest(self, x: int, y: int, type_idx: int) -> int:
        ob = self.objects
        cand = np.flatnonzero(ob.type == type_idx)
        if cand.size == 0:
            return -1
        dist = np.abs(ob.x[cand] - x) + np.abs(ob.y[cand] - y)
        return int(cand[int(np.argmin(dist))])

    # -- agents ---------------------------------------------------------------------------
    def require_agent(self, agent_id: str) -> int:
        slot = self.agents.slot_of.get(agent_id)
        if slot is None:
            raise UnknownAgent(agent_id)
        return slot

    def spawn_agent(self, agent_id: str, position: tuple[int, int], *, job: str | None = None,
                    home: tuple[int, int] | None = None, needs: dict[str, float] | None = None,
                    wallet: float | None = None, origin: str | None = None) -> int:
        if job is not None and job not in self.job_index:
            raise ValueError(f"unknown job {job!r}")
        x, y = (int(v) for v in position)
        if not (0 <= x < self.grid_size and 0 <= y < self.grid_size):
            size = self.grid_size
            raise ValueError(f"position {(x, y)} is outside the {size}x{size} grid")
        ag = self.agents
        slot = ag.add(agent_id, origin or agent_id)
        hx, hy = home if home is not None else (x, y)
        ag.x[slot], ag.y[slot], ag.home_x[slot], ag.home_y[slot] = x, y, hx, hy
        draws = self.rng.random(6)
        base = 0.6 + 0.4 * draws[:3]
        for name, value in (needs or {}).items():
            base[NEED_INDEX[name]] = value
        ag.needs[slot] = np.clip(base, 0.0, 1.0)
        ag.personality[slot] = draws[3:]
        ag.wallet[slot] = self.config.economy.starting_wallet if wallet is None else wallet
        if job is None and self.job_ids:
            job = self.job_ids[self.next_job % len(self.job_ids)]
            self.next_job += 1
        ag.job[slot] = self.job_index[job] if job is not None else -1
        if job is not None and self.tick % self.ticks_per_day >= self.job_start[ag.job[slot]]:
            ag.shift_state[slot] = POST_SHIFT  # not rostered for a shift already under way
        ag.spawn_tick[slot] = self.tick
        for t in range(len(self.aff_by_type)):
            ag.assigned[slot, t] = self._nearest(hx, hy, t)
        return slot

    def leave_queue(self, slot: int) -> None:
        ag = self.agents
        o = int(ag.queued_obj[slot])
        if o >= 0:
            queue = self.objects.queues[o]
            queue[:] = [entry for entry in queue if entry[0] != slot]
            ag.queued_obj[slot] = -1

    def remove_agent(self, agent_id: str, tick: int, reason: str,
                     events: list[dict[str, Any]]) -> int:
        slot = self.require_agent(agent_id)
        affordances.interrupt(self, slot, tick, reason, events)
        self.employment.forget(self, agent_id)
        social.forget_agent(self, slot)
        self.agents.remove(slot)
        return slot

    def retire_agent(self, agent_id: str, tick: int, reason: str,
                     events: list[dict[str, Any]]) -> None:
        """Remove an agent and schedule its replacement ``<origin>#<n>``."""
        slot = self.require_agent(agent_id)
        ag = self.agents
        entry = [tick + self.config.employment.respawn_delay_ticks, ag.origins[slot],
                 self.job_ids[int(ag.job[slot])] if ag.job[slot] >= 0 else None,
                 int(ag.home_x[slot]), int(ag.home_y[slot])]
        self.remove_agent(agent_id, tick, reason, events)
        events.append({"type": "agent_removed", "tick": tick, "agent_id": agent_id,
                       "reason": reason})
        self.respawns.append(entry)

    def _respawn_due(self, tick: int, events: list[dict[str, Any]]) -> None:
        due = [r for r in self.respawns if r[0] <= tick]
        self.respawns = [r for r in self.respawns if r[0] > tick]
        for _due, origin, job, hx, hy in due:
            n = self.respawn_counts.get(origin, 0) + 1
            self.respawn_counts[origin] = n
            new_id = f"{origin}#{n}"
            self.spawn_agent(new_id, (hx, hy), job=job, home=(hx, hy),
                             needs=dict.fromkeys(NEEDS, 0.5), wallet=0.0, origin=origin)
            events.append({"type": "agent_respawned", "tick": tick, "agent_id": new_id,
                           "origin": origin})

    # -- per-tick -------------------------------------------------------------------------
    def affordance_cost(self, spec: AffordanceSpec) -> float:
        return self.prices.get(spec.cost_key, spec.cost) if spec.cost_key else spec.cost

    def chain(self, record: dict[str, Any]) -> None:
        h = hashlib.blake2b(self.log_digest.encode(), digest_size=16)
        h.update(json.dumps(record, sort_keys=True, separators=(",", ":")).encode())
        self.log_digest = h.hexdigest()

    def record_social(self, event: dict[str, Any]) -> None:
        self.chain(event)
        self.social_events.append(event)
        del self.social_events[: -social.SOCIAL_EVENT_HISTORY]

    def _needs_and_fainting(self, tick: int, events: list[dict[str, Any]]) -> None:
        ag = self.agents
        live = ag.live_slots()
        ag.needs[live] = np.maximum(ag.needs[live] - self.decay_rates, 0.0)
        if not self.config.features.mortality:
            return
        fainted = live[ag.needs[live, 0] <= self.config.rewards.faint_threshold]
        for s in fainted.tolist():
            agent_id = ag.ids[s]
            if agent_id is not None:
                events.append({"type": "agent_faint", "tick": tick, "agent_id": agent_id})
                self.retire_agent(agent_id, tick, "faint", events)

    def step(self, tick: int) -> list[dict[str, Any]]:
        """Run one tick; returns the events it produced, in the order they happened."""
        self.tick = tick
        events: list[dict[str, Any]] = []
        self._needs_and_fainting(tick, events)
        if tick % self.ticks_per_day == 0:
            jobs.nightly_reset(self, tick, events)
        jobs.shift_system(self, tick, events)
        policy.decide(self, tick)
        affordances.affordance_system(self, tick, events)
        if self.config.features.relationships:
            social.decay(self)
            social.chat_system(self, tick, events)
        self.employment.evaluate(self, tick, events)
        self._respawn_due(tick, events)
        return events
