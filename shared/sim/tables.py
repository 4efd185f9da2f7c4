"""Columnar agent and object tables: struct-of-arrays so a tick is vector work.

Agents live in slots. A removed agent frees its slot; the lowest free slot is reused, so the
layout (and the state hash) depends only on the sequence of spawns and removals
(docs/SIMULATION.md, "Determinism and the state hash").
"""

from __future__ import annotations

from typing import Any

import numpy as np

NEED_INDEX = {"hunger": 0, "hygiene": 1, "energy": 2}
MAX_TIES = 6
MAX_RIVALS = 4
MAX_TYPES = 8  # distinct object types a town may define

# Shift states (stored as int8 in the ``shift_state`` column).
IDLE, AWAIT_START, ON_TIME, LATE, ABSENT, POST_SHIFT = range(6)
SHIFT_STATE_NAMES = ("idle", "await_start", "on_time", "late", "absent", "post_shift")

ColumnSpec = tuple[Any, tuple[int, ...], Any]  # (dtype, trailing shape, fill value)

# name -> ColumnSpec. Order matters: it is the hash order. Columns a system contributes
# (``System.columns``) come after these, in scheduler order, so these keep their place.
AGENT_COLUMNS: dict[str, ColumnSpec] = {
    "alive": (np.bool_, (), False),
    "x": (np.int32, (), 0),
    "y": (np.int32, (), 0),
    "home_x": (np.int32, (), 0),
    "home_y": (np.int32, (), 0),
    "needs": (np.float64, (3,), 1.0),
    "wallet": (np.float64, (), 0.0),
    "job": (np.int16, (), -1),
    "shift_state": (np.int8, (), IDLE),
    "arrived": (np.bool_, (), False),
    "worked_ticks": (np.int32, (), 0),
    "off_tile_streak": (np.int32, (), 0),
    "wages_earned": (np.float64, (), 0.0),
    "wages_withheld": (np.float64, (), 0.0),
    "penalties_paid": (np.float64, (), 0.0),
    "attendance": (np.float64, (30,), np.nan),  # ring of on-time fractions, newest at count-1
    "attendance_count": (np.int32, (), 0),
    "absences": (np.int8, (7,), 0),  # absences per day-of-week slot
    "exit_pending": (np.bool_, (), False),
    "busy_obj": (np.int32, (), -1),
    "queued_obj": (np.int32, (), -1),
    "target_obj": (np.int32, (), -1),
    "aff_progress": (np.int32, (), 0),
    "aff_paid": (np.float64, (), 0.0),  # refunded if the affordance ends without finishing
    "cooldown_until": (np.int64, (MAX_TYPES,), 0),  # per object type index
    "assigned": (np.int32, (MAX_TYPES,), -1),  # household object per type index
    "personality": (np.float64, (3,), 0.5),  # extroversion, conscientiousness, forgiveness
    "counters": (np.int32, (4,), 0),  # meals eaten, meals cooked, showers, sleeps
    "spawn_tick": (np.int64, (), 0),
    "tie_partner": (np.int32, (MAX_TIES,), -1),
    "tie_trust": (np.float64, (MAX_TIES,), 0.0),
    "tie_fam": (np.float64, (MAX_TIES,), 0.0),
    "tie_riv": (np.float64, (MAX_TIES,), 0.0),
    "rival": (np.int32, (MAX_RIVALS,), -1),
    "rival_intensity": (np.float64, (MAX_RIVALS,), 0.0),
}


class AgentTable:
    """Agent columns plus the id <-> slot mapping."""

    def __init__(self, capacity: int = 16,
                 columns: dict[str, ColumnSpec] | None = None) -> None:
        self.layout = dict(AGENT_COLUMNS if columns is None else columns)
        self.capacity = 0
        self.version = 0  # bumped on add/remove so id lists can be hashed once per change
        self.ids_cache: tuple[tuple[int, int], bytes] = ((-1, -1), b"")
        self._live_key = (-1, -1)
        self._live = np.empty(0, dtype=np.int64)
        self.size = 0  # slots in use so far (alive or freed): arrays[:size] is the live region
        self.ids: list[str | None] = []
        self.origins: list[str | None] = []
        self.slot_of: dict[str, int] = {}
        self.cols: dict[str, np.ndarray] = {}
        self._grow(max(capacity, 16))

    def _grow(self, capacity: int) -> None:
        for name, (dtype, shape, fill) in self.layout.items():
            fresh = np.full((capacity, *shape), fill, dtype=dtype)
            old = self.cols.get(name)
            if old is not None:
                fresh[: self.capacity] = old
            self.cols[name] = fresh
            setattr(self, name, fresh)  # plain attribute access on the hot path
        self.ids.extend([None] * (capacity - self.capacity))
        self.origins.extend([None] * (capacity - self.capacity))
        self.capacity = capacity

    # Columns are set as attributes in _grow; declared here for type checkers.
    alive: np.ndarray
    x: np.ndarray
    y: np.ndarray
    home_x: np.ndarray
    home_y: np.ndarray
    needs: np.ndarray
    wallet: np.ndarray
    job: np.ndarray
    shift_state: np.ndarray
    arrived: np.ndarray
    worked_ticks: np.ndarray
    off_tile_streak: np.ndarray
    wages_earned: np.ndarray
    wages_withheld: np.ndarray
    penalties_paid: np.ndarray
    attendance: np.ndarray
    attendance_count: np.ndarray
    absences: np.ndarray
    exit_pending: np.ndarray
    busy_obj: np.ndarray
    queued_obj: np.ndarray
    target_obj: np.ndarray
    aff_progress: np.ndarray
    aff_paid: np.ndarray
    cooldown_until: np.ndarray
    assigned: np.ndarray
    personality: np.ndarray
    counters: np.ndarray
    spawn_tick: np.ndarray
    tie_partner: np.ndarray
    tie_trust: np.ndarray
    tie_fam: np.ndarray
    tie_riv: np.ndarray
    rival: np.ndarray
    rival_intensity: np.ndarray

    def add(self, agent_id: str, origin: str) -> int:
        """Allocate the lowest free slot, reset its columns to defaults, and map the id."""
        if agent_id in self.slot_of:
            raise ValueError(f"agent {agent_id} already exists")
        free = np.flatnonzero(~self.cols["alive"][: self.size])
        if free.size:
            slot = int(free[0])
        else:
            if self.size == self.capacity:
                self._grow(self.capacity * 2)
            slot = self.size
            self.size += 1
        for name, (_dtype, _shape, fill) in self.layout.items():
            self.cols[name][slot] = fill
        self.cols["alive"][slot] = True
        self.ids[slot] = agent_id
        self.origins[slot] = origin
        self.slot_of[agent_id] = slot
        self.version += 1
        return slot

    def remove(self, slot: int) -> None:
        agent_id = self.ids[slot]
        if agent_id is not None:
            del self.slot_of[agent_id]
        self.ids[slot] = None
        self.origins[slot] = None
        self.cols["alive"][slot] = False
        self.version += 1

    def live_slots(self) -> np.ndarray:
        """Slots of living agents in slot order (cached until the next add/remove)."""
        if self._live_key != (self.version, self.size):
            self._live = np.flatnonzero(self.cols["alive"][: self.size])
            self._live.setflags(write=False)  # shared by every system this tick
            self._live_key = (self.version, self.size)
        return self._live

    def export(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        arrays = {f"agent.{n}": c[: self.size].copy() for n, c in self.cols.items()}
        meta = {"size": self.size, "ids": self.ids[: self.size],
                "origins": self.origins[: self.size]}
        return arrays, meta

    @classmethod
    def restore(cls, arrays: dict[str, np.ndarray], meta: dict[str, Any],
                columns: dict[str, ColumnSpec] | None = None) -> AgentTable:
        size = int(meta["size"])
        table = cls(capacity=max(16, size), columns=columns)
        for name in table.layout:
            # A column added since the export was written keeps its fill value (the docs/
            # ARCHITECTURE.md promise: an old checkpoint still restores after a new system).
            stored = arrays.get(f"agent.{name}")
            if stored is not None:
                table.cols[name][:size] = stored
        table.size = size
        table.ids[:size] = list(meta["ids"])
        table.origins[:size] = list(meta["origins"])
        table.slot_of = {a: i for i, a in enumerate(table.ids[:size]) if a is not None}
        table.version += 1
        return table


class ObjectTable:
    """Household objects: fixed for the life of a world, with reservation queues."""

    COLUMNS = ("type", "x", "y", "stock", "occupant", "occupied_since", "last_progress", "linked")
    MUTABLE = COLUMNS[3:]  # the rest come from the config and are passed to __init__

    def __init__(self, ids: list[str], types: list[int], xs: list[int], ys: list[int]) -> None:
        n = len(ids)
        self.ids = list(ids)
        self.slot_of = {oid: i for i, oid in enumerate(ids)}
        self.type = np.asarray(types, dtype=np.int16).reshape(n)
        self.x = np.asarray(xs, dtype=np.int32).reshape(n)
        self.y = np.asarray(ys, dtype=np.int32).reshape(n)
        self.stock = np.zeros(n, dtype=np.int32)
        self.occupant = np.full(n, -1, dtype=np.int32)
        self.occupied_since = np.zeros(n, dtype=np.int64)
        self.last_progress = np.zeros(n, dtype=np.int64)
        self.linked = np.full(n, -1, dtype=np.int32)  # stove -> the fridge it restocks
        # Reservation queues: per object, ordered [agent_slot, enqueued_tick] pairs.
        self.queues: list[list[list[int]]] = [[] for _ in range(n)]
        # Objects with an occupant or a queue: the only ones granting can change. Derived from
        # the two, so it is rebuilt on restore rather than stored.
        self.active: set[int] = set()

    def __len__(self) -> int:
        return len(self.ids)

    def nearest(self, x: int, y: int, type_idx: int) -> int:
        """The object of a type closest to (x, y) by Manhattan distance (lowest slot on ties)."""
        cand = np.flatnonzero(self.type == type_idx)
        if cand.size == 0:
            return -1
        dist = np.abs(self.x[cand] - x) + np.abs(self.y[cand] - y)
        return int(cand[int(np.argmin(dist))])

    def export(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        arrays = {f"object.{n}": getattr(self, n).copy() for n in self.COLUMNS}
        return arrays, {"ids": self.ids, "queues": self.queues}

    @classmethod
    def restore(cls, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> ObjectTable:
        table = cls(list(meta["ids"]), arrays["object.type"].tolist(),
                    arrays["object.x"].tolist(), arrays["object.y"].tolist())
        for name in cls.MUTABLE:
            getattr(table, name)[:] = arrays[f"object.{name}"]
        table.queues = [[list(map(int, e)) for e in q] for q in meta["queues"]]
        table.active = {o for o in range(len(table)) if table.occupant[o] >= 0 or table.queues[o]}
        return table
