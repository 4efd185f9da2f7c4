"""What the config fixes for the life of a world: job and affordance tables, the initial objects.

Everything here is derived from the config alone, so persistence never stores it: a restore
rebuilds it from the same config (the snapshot's config fingerprint guarantees it is the same).
The arrays are indexed by job index and object type index, the numbers the agent columns hold.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from shared.settings import NEEDS, AffordanceSpec, JobConfig, SimulationConfig

from .tables import MAX_TYPES, NEED_INDEX, ObjectTable

# Which inventory counter an affordance bumps, by the need it serves (docs/SIMULATION.md,
# "Objects and affordances"); anything else counts as cooking.
COUNTER_BY_NEED = {"hunger": 0, "hygiene": 2, "energy": 3}


class Catalog:
    """Config-derived lookup tables, set as plain attributes (read on every tick)."""

    def __init__(self, config: SimulationConfig) -> None:
        self.config = config
        self.ticks_per_day = config.world.ticks_per_day
        self.grid_size = config.world.grid_size
        self.arrival_buffer = config.behavior.job_arrival_buffer
        self._setup_jobs()
        self._setup_affordances()

    # -- jobs (docs/SIMULATION.md, "Jobs and shifts") -------------------------------------
    def _setup_jobs(self) -> None:
        jobs_cfg = self.config.jobs
        self.job_ids = list(jobs_cfg)
        self.job_index = {j: i for i, j in enumerate(self.job_ids)}

        def col(f: Callable[[JobConfig], Any], dt: Any) -> np.ndarray:
            return np.array([f(j) for j in jobs_cfg.values()], dtype=dt)

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

    # -- affordances (docs/SIMULATION.md, "Objects and affordances") ----------------------
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

    def initial_objects(self) -> ObjectTable:
        """The configured objects (of known types) with their starting stock and stove links."""
        objs = [o for o in self.config.objects if o.type in self.type_index]
        objects = ObjectTable([o.id for o in objs], [self.type_index[o.type] for o in objs],
                              [o.position[0] for o in objs], [o.position[1] for o in objs])
        for i, o in enumerate(objs):
            consumes = self.aff_by_type[self.type_index[o.type]].consumes_stock
            default = self.config.economy.initial_stock if consumes else 0
            objects.stock[i] = default if o.stock is None else o.stock
        stock_types = [t for t, s in enumerate(self.aff_by_type) if s.consumes_stock]
        for t, s in enumerate(self.aff_by_type):
            if s.produces_stock and stock_types:
                for slot in np.flatnonzero(objects.type == t).tolist():
                    objects.linked[slot] = objects.nearest(
                        objects.x[slot], objects.y[slot], stock_types[0])
        return objects
