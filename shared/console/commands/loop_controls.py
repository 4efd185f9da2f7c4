"""Admin commands for the loop around the world: pause, resume, tick rate, snapshots.

They need the loop's controls; a router created without them (as the dry-run script's is)
answers ``unsupported`` rather than pretending (docs/CONSOLE.md, "Commands"). ``snapshot_save``
takes no directory: letting a remote operator choose where the shard writes files would be a
path-traversal hole.
"""

from __future__ import annotations

from typing import Any

from shared.console.envelope import ConsoleError, ErrorCode

from .args import ArgReader, invalid
from .registry import CommandSpec, Context, Controls, Registry, spec

MAX_TICK_RATE_HZ = 10_000.0


def _controls(ctx: Context, name: str) -> Controls:
    if ctx.controls is None:
        raise ConsoleError(ErrorCode.UNSUPPORTED,
                           f"{name} needs the simulation loop's controls; this router has none")
    return ctx.controls


def _state(controls: Controls) -> dict[str, Any]:
    return {"paused": controls.paused, "tick_rate_hz": controls.tick_rate_hz}


def pause(ctx: Context, r: ArgReader) -> dict[str, Any]:
    controls = _controls(ctx, "pause")
    r.done()
    controls.pause()
    return _state(controls)


def resume(ctx: Context, r: ArgReader) -> dict[str, Any]:
    controls = _controls(ctx, "resume")
    r.done()
    controls.resume()
    return _state(controls)


def set_tick_rate(ctx: Context, r: ArgReader) -> dict[str, Any]:
    controls = _controls(ctx, "set_tick_rate")
    hz = r.number("hz")
    r.done()
    if not 0.0 <= hz <= MAX_TICK_RATE_HZ:
        raise invalid(f"hz must be between 0 and {MAX_TICK_RATE_HZ:g}, got {hz}")
    controls.set_tick_rate(hz)
    return _state(controls)


def snapshot_save(ctx: Context, r: ArgReader) -> dict[str, Any]:
    controls = _controls(ctx, "snapshot_save")
    r.done()
    path = controls.save_snapshot()
    return {"path": str(path), "tick": ctx.world.tick}


SPECS: tuple[CommandSpec, ...] = (
    spec("pause", pause, role="admin", mutating=True,
         summary="Stop advancing ticks (commands still apply)."),
    spec("resume", resume, role="admin", mutating=True,
         summary="Advance ticks again after a pause."),
    spec("set_tick_rate", set_tick_rate, role="admin", mutating=True,
         usage=f"set_tick_rate <hz, 0 = as fast as possible, <= {MAX_TICK_RATE_HZ:g}>",
         summary="Target ticks per second of the shard loop."),
    spec("snapshot_save", snapshot_save, role="admin", mutating=True,
         summary="Write a snapshot of the shard to its snapshot directory; returns the path."),
)


def register(registry: Registry) -> None:
    for entry in SPECS:
        registry.add(entry)
