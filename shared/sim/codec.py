"""Field-by-field persistence of dataclass state: what a snapshot stores and the hash covers.

``export_fields`` and ``restore_fields`` walk a dataclass's fields, so a new field is saved,
restored and hashed without anyone editing a list of names. Values are converted by their
annotation: numbers, strings and booleans as they are, lists, dicts and named tuples element by
element, typed events through the wire seam of ``events.py``. A field marked ``LOG`` is an
append-only log whose entries are chained into the log digest as they are appended: the state
hash counts them instead of re-encoding them every tick (docs/SIMULATION.md, "Determinism and
the state hash").
"""

from __future__ import annotations

import functools
import types
import typing
from dataclasses import MISSING, Field, dataclass, field, fields
from typing import Any

from .events import Event, event_from_wire, event_to_wire

LOG = {"hashed_as": "length"}


def log_field() -> Any:
    """An append-only log of values (hashed by its length, see the module docstring)."""
    return field(default_factory=list, metadata=LOG)


@functools.cache
def _plan(cls: type) -> tuple[tuple[str, str, Any, Field[Any]], ...]:
    """(name, hash form, annotation, field) per field of ``cls``, resolved once per class.

    The hash form is "length" for a log, "wire" for a value holding typed events (the JSON
    encoder cannot take those), "as_is" for the rest.
    """
    hints = typing.get_type_hints(cls)
    plan = []
    for f in fields(cls):
        hint = hints[f.name]
        form = ("length" if f.metadata.get("hashed_as") == "length"
                else "wire" if _holds_events(hint) else "as_is")
        plan.append((f.name, form, hint, f))
    return tuple(plan)


def _holds_events(hint: Any) -> bool:
    if isinstance(hint, type) and issubclass(hint, Event):
        return True
    return any(_holds_events(arg) for arg in typing.get_args(hint))


def export_fields(obj: Any, cls: type, *, for_hash: bool = False) -> dict[str, Any]:
    """The fields ``cls`` declares, read from ``obj``, as JSON-able values (hash form on request).

    The hash form passes plain values through untouched (the canonical JSON encoder copes),
    which keeps the per-tick hash cheap; logs are reduced to their length.
    """
    if not for_hash:
        return {name: to_wire(getattr(obj, name)) for name, _form, _hint, _f in _plan(cls)}
    out: dict[str, Any] = {}
    for name, form, _hint, _f in _plan(cls):
        value = getattr(obj, name)
        out[name] = (len(value) if form == "length" else to_wire(value) if form == "wire"
                     else value)
    return out


def restore_fields(obj: Any, cls: type, data: dict[str, Any]) -> None:
    """Set every field ``cls`` declares on ``obj`` from ``data`` (in place).

    A field the data lacks (written before the field existed) gets its declared default, so a
    restore never leaves a value from before it behind.
    """
    for name, _form, hint, f in _plan(cls):
        if name in data:
            value = from_wire(data[name], hint)
        elif f.default_factory is not MISSING:
            value = f.default_factory()
        elif f.default is not MISSING:
            value = f.default
        else:
            raise ValueError(f"state has no value for {cls.__name__}.{name}")
        setattr(obj, name, value)


def to_wire(value: Any) -> Any:
    if isinstance(value, Event):
        return event_to_wire(value)
    if isinstance(value, dict):
        return {k: to_wire(v) for k, v in sorted(value.items())}
    if isinstance(value, list | tuple):
        return [to_wire(v) for v in value]
    return value


def from_wire(value: Any, hint: Any) -> Any:
    """Rebuild a value of annotation ``hint`` from its wire form."""
    if hint is Any:
        return value
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        return from_wire(value, next(a for a in args if a is not type(None)))
    if origin is list:
        return [from_wire(v, args[0]) for v in value]
    if origin is dict:
        return {from_wire(k, args[0]): from_wire(v, args[1]) for k, v in value.items()}
    if origin is tuple:
        return tuple(from_wire(v, a) for v, a in zip(value, args, strict=True))
    if isinstance(hint, type) and issubclass(hint, Event):
        return event_from_wire(value)
    if isinstance(hint, type) and issubclass(hint, tuple) and hasattr(hint, "_fields"):
        sub = typing.get_type_hints(hint)
        return hint(*(from_wire(v, sub[n]) for v, n in zip(value, hint._fields, strict=True)))
    if hint in (int, float, str, bool):
        return hint(value)
    raise TypeError(f"no wire form for {hint!r}")


@dataclass(eq=False)
class FieldState:
    """Base for a system's own persisted state: declare fields, persistence needs no edit.

    A system whose ``create_state`` returns an instance gets it saved in snapshots, restored on
    load and rollback, and covered by the state hash under the system's name.
    """

    def export(self, *, for_hash: bool = False) -> dict[str, Any]:
        return export_fields(self, type(self), for_hash=for_hash)

    def restore(self, data: dict[str, Any]) -> None:
        restore_fields(self, type(self), data)
