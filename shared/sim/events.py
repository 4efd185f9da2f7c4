"""What the simulation reports: typed events, and the one seam that turns them into wire dicts.

Inside the core an event is a frozen dataclass. It leaves the core only through
``events_to_wire`` / ``event_to_wire``, the one place that turns events into the plain dicts
telemetry, results and the audit log carry, and comes back (from a snapshot's social log or
employment queue) only through ``event_from_wire``. A wire dict is ``{"type": kind, **fields}``
with the fields in declaration order, so each class below fixes its event's key order.
See docs/SIMULATION.md, "Tick order" for when each event is raised.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields
from typing import Any, ClassVar


@dataclass(frozen=True)
class Event:
    kind: ClassVar[str] = ""

    def wire(self) -> dict[str, Any]:
        return {"type": self.kind, **self.__dict__}

    @classmethod
    def from_fields(cls, data: dict[str, Any]) -> Event:
        return cls(**{f.name: data[f.name] for f in fields(cls)})


@dataclass(frozen=True)
class AgentEvent(Event):
    """Something that happened to one agent (the fields every such event starts with)."""

    tick: int
    agent_id: str


# -- agents (docs/SIMULATION.md, "Agents and needs") -----------------------------------------
@dataclass(frozen=True)
class AgentFaint(AgentEvent):
    kind: ClassVar[str] = "agent_faint"


@dataclass(frozen=True)
class AgentRemoved(AgentEvent):
    kind: ClassVar[str] = "agent_removed"
    reason: str


@dataclass(frozen=True)
class AgentRespawned(AgentEvent):
    kind: ClassVar[str] = "agent_respawned"
    origin: str


@dataclass(frozen=True)
class NightlyReset(Event):
    kind: ClassVar[str] = "nightly_reset"
    tick: int
    agents: int


# -- shifts (docs/SIMULATION.md, "Jobs and shifts") ------------------------------------------
@dataclass(frozen=True)
class ShiftEvent(AgentEvent):
    job: str


@dataclass(frozen=True)
class ShiftLateStart(ShiftEvent):
    kind: ClassVar[str] = "shift_late_start"


@dataclass(frozen=True)
class ShiftAbsent(ShiftEvent):
    kind: ClassVar[str] = "shift_absent"


# -- affordances (docs/SIMULATION.md, "Objects and affordances") -----------------------------
@dataclass(frozen=True)
class AffordanceEvent(AgentEvent):
    object_id: str
    affordance: str


@dataclass(frozen=True)
class AffordanceFinish(AffordanceEvent):
    kind: ClassVar[str] = "affordance_finish"


@dataclass(frozen=True)
class AffordanceStart(AffordanceEvent):
    kind: ClassVar[str] = "affordance_start"
    cost: float


@dataclass(frozen=True)
class AffordanceFail(AffordanceEvent):
    kind: ClassVar[str] = "affordance_fail"
    reason: str


# -- relationships (docs/SIMULATION.md, "Relationships") -------------------------------------
@dataclass(frozen=True)
class Chat(Event):
    tick: int
    speaker: str
    listener: str
    quality: float


@dataclass(frozen=True)
class ChatSuccess(Chat):
    kind: ClassVar[str] = "chat_success"


@dataclass(frozen=True)
class ChatFailure(Chat):
    kind: ClassVar[str] = "chat_failure"


@dataclass(frozen=True)
class SharedMeal(Event):
    kind: ClassVar[str] = "shared_meal"
    tick: int
    agents: tuple[str, str]

    def wire(self) -> dict[str, Any]:
        return {"type": self.kind, "tick": self.tick, "agents": list(self.agents)}

    @classmethod
    def from_fields(cls, data: dict[str, Any]) -> Event:
        a, b = data["agents"]
        return cls(tick=data["tick"], agents=(a, b))


# -- employment (docs/SIMULATION.md, "The employment exit queue") ----------------------------
@dataclass(frozen=True)
class ExitPending(AgentEvent):
    kind: ClassVar[str] = "employment_exit_pending"
    pending_count: int


@dataclass(frozen=True)
class ExitQueueOverflow(Event):
    kind: ClassVar[str] = "employment_exit_queue_overflow"
    tick: int
    pending_count: int
    queue_limit: int


@dataclass(frozen=True)
class ExitDeferred(AgentEvent):
    kind: ClassVar[str] = "employment_exit_deferred"


@dataclass(frozen=True)
class ExitProcessed(Event):
    """The one event whose agent comes first: it is an exit record (``history``) plus a count."""

    kind: ClassVar[str] = "employment_exit_processed"
    agent_id: str
    tick: int
    reason: str
    exits_today: int


KINDS: dict[str, type[Event]] = {
    cls.kind: cls
    for cls in (AgentFaint, AgentRemoved, AgentRespawned, NightlyReset, ShiftLateStart,
                ShiftAbsent, AffordanceFinish, AffordanceStart, AffordanceFail, ChatSuccess,
                ChatFailure, SharedMeal, ExitPending, ExitQueueOverflow, ExitDeferred,
                ExitProcessed)
}


def event_to_wire(event: Event) -> dict[str, Any]:
    return event.wire()


def events_to_wire(events: Iterable[Event]) -> list[dict[str, Any]]:
    return [e.wire() for e in events]


def event_from_wire(data: dict[str, Any]) -> Event:
    """The typed event a wire dict describes; a clear ValueError for anything else."""
    cls = KINDS.get(str(data.get("type")))
    if cls is None:
        raise ValueError(f"unknown event type {data.get('type')!r}")
    try:
        return cls.from_fields(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"malformed {cls.kind} event: {exc}") from exc
