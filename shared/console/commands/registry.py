"""The command registry: one table that both dispatches commands and generates ``help``.

A command is registered with its name, role, usage line, one-line summary and whether it
changes state; ``help`` reads the very same entries, so it can never list a command the router
does not run (or miss one it does). See docs/CONSOLE.md, "Commands".

Nothing registers itself on import: each command module lists its ``SPECS`` and
``shared.console.commands.default_registry()`` composes them, so a router (or a test) gets
exactly the table it was given.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from .args import ArgReader

if TYPE_CHECKING:
    from shared.config import SimulationConfig
    from shared.sim.world import World
    from shared.telemetry import Health, TelemetryHub

ROLES = ("viewer", "admin")


class Controls(Protocol):
    """The loop-level knobs (``SimulationLoop`` provides them; a bare router has none)."""

    paused: bool
    tick_rate_hz: float

    def pause(self) -> None: ...

    def resume(self) -> None: ...

    def set_tick_rate(self, hz: float) -> None: ...

    def save_snapshot(self, directory: str | Path | None = None) -> Path: ...


@dataclass
class Context:
    """What a handler may use. ``tick`` is the tick boundary the command is applied at;
    ``health`` reads the shard's health now (the loop's or the worker's)."""

    world: World
    telemetry: TelemetryHub
    config: SimulationConfig
    registry: Registry
    tick: int
    health: Callable[[], Health]
    controls: Controls | None = None
    policy_provider: str | None = None
    telemetry_provider: str | None = None


Handler = Callable[[Context, ArgReader], dict[str, Any]]


def spec(name: str, handler: Handler, *, summary: str, role: str = "viewer",
         usage: str | None = None, mutating: bool = False) -> CommandSpec:
    """A catalogue entry; ``usage`` defaults to the bare name."""
    return CommandSpec(name, role, usage or name, summary, handler, mutating)


@dataclass(frozen=True)
class CommandSpec:
    name: str
    role: str
    usage: str
    summary: str
    handler: Handler
    mutating: bool

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "role": self.role, "usage": self.usage,
                "summary": self.summary, "mutating": self.mutating,
                "needs_cmd_id": self.needs_cmd_id}

    @property
    def needs_cmd_id(self) -> bool:
        # Admin commands change the world (or expose private state): they must be retry-safe.
        return self.role == "admin" or self.mutating


class Registry:
    def __init__(self, specs: tuple[CommandSpec, ...] = ()) -> None:
        self._specs: dict[str, CommandSpec] = {}
        for entry in specs:
            self.add(entry)

    def add(self, spec: CommandSpec) -> None:
        if spec.role not in ROLES:
            raise ValueError(f"command {spec.name}: role must be one of {ROLES}")
        if spec.name in self._specs:
            raise ValueError(f"command {spec.name} is registered twice")
        self._specs[spec.name] = spec

    def command(self, name: str, *, role: str = "viewer", usage: str | None = None,
                summary: str, mutating: bool = False) -> Callable[[Handler], Handler]:
        """Decorator registering ``handler`` under ``name``."""

        def register(handler: Handler) -> Handler:
            self.add(spec(name, handler, summary=summary, role=role, usage=usage,
                          mutating=mutating))
            return handler

        return register

    def get(self, name: str) -> CommandSpec | None:
        return self._specs.get(name)

    def names(self) -> list[str]:
        return sorted(self._specs)

    def specs(self) -> list[CommandSpec]:
        return [self._specs[name] for name in self.names()]

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    def __len__(self) -> int:
        return len(self._specs)
