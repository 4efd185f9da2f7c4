"""What the simulation reports: the events a tick (or an operator action) produced.

Events leave the core only through ``events_to_wire`` / ``event_to_wire``, the one place that
turns them into the plain dicts telemetry, results and the audit log carry.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

Event = dict[str, Any]


def event_to_wire(event: Event) -> dict[str, Any]:
    return dict(event)


def events_to_wire(events: Iterable[Event]) -> list[dict[str, Any]]:
    return [event_to_wire(e) for e in events]
