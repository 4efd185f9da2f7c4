"""Admin commands that change the world. Thin: read and check the arguments, call ``sim.ops``.

Every handler reads all of its arguments (and ``done()`` refuses leftovers) before calling the
operation, and the operation validates before it mutates, so a refused command changes nothing.
"""

from __future__ import annotations

from typing import Any

from shared.config import NEEDS
from shared.sim import ops, social, views
from shared.sim.events import event_to_wire, events_to_wire

from .args import ArgReader, invalid, to_number, to_pair
from .registry import Context, command


def _needs_map(value: Any) -> dict[str, float] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise invalid(f"needs must be a map of {list(NEEDS)} to values in [0, 1]")
    return {str(k): to_number(f"needs.{k}", v) for k, v in value.items()}


@command("spawn", role="admin", mutating=True,
         usage="spawn <agent_id> <x> <y> [job]  (kwargs: position=[x, y], home=[x, y], "
               "needs={hunger: v, ...}, wallet)",
         summary="Add a new agent at a position (job round-robin unless given).")
def spawn(ctx: Context, r: ArgReader) -> dict[str, Any]:
    agent_id = r.text("agent_id")
    position = r.position()
    job = r.text("job", None)
    home = to_pair("home", r.value("home")) if r.has_keyword("home") else None
    needs = _needs_map(r.value("needs", None))
    wallet = r.number("wallet", None)
    r.done()
    slot = ops.spawn(ctx.world, agent_id, position, job=job, home=home, needs=needs,
                     wallet=wallet)
    return {"spawned": True, "agent": views.agent_view(ctx.world, slot)}


@command("teleport", role="admin", mutating=True,
         usage="teleport <agent_id> <x> <y>  (or kwargs agent_id, position=[x, y])",
         summary="Move an agent at once, abandoning what it was using or queueing for.")
def teleport(ctx: Context, r: ArgReader) -> dict[str, Any]:
    agent_id = r.text("agent_id")
    position = r.position()
    r.done()
    before = views.agent_view(ctx.world, ctx.world.require_agent(agent_id))
    events = ops.teleport(ctx.world, agent_id, position, ctx.tick)
    return {"agent_id": agent_id, "from": before["position"], "position": list(position),
            "abandoned": {"using": before["using"], "queued_for": before["queued_for"]},
            "events": events_to_wire(events)}


@command("setneed", role="admin", mutating=True,
         usage=f"setneed <agent_id> <need: {'|'.join(NEEDS)}> <value 0..1>",
         summary="Set one need of an agent.")
def setneed(ctx: Context, r: ArgReader) -> dict[str, Any]:
    agent_id = r.text("agent_id")
    need = r.text("need")
    value = r.number("value")
    r.done()
    previous = ops.set_need(ctx.world, agent_id, need, value)
    return {"agent_id": agent_id, "need": need, "previous": round(previous, 6), "value": value}


@command("price", role="admin", mutating=True, usage="price <key> <value >= 0>",
         summary="Change a price (meal_cost, ingredients_cost, shower_cost).")
def price(ctx: Context, r: ArgReader) -> dict[str, Any]:
    key = r.text("key")
    value = r.number("value")
    r.done()
    previous = ops.set_price(ctx.world, key, value)
    return {"key": key, "previous": previous, "price": ctx.world.prices[key],
            "prices": dict(sorted(ctx.world.prices.items()))}


@command("set_rel", role="admin", mutating=True,
         usage="set_rel <agent_a> <agent_b> [trust -1..1] [familiarity -1..1] [rivalry 0..1]",
         summary="Set the tie between two agents (both directions); omitted fields are kept.")
def set_rel(ctx: Context, r: ArgReader) -> dict[str, Any]:
    a_id, b_id = r.text("agent_a"), r.text("agent_b")
    values = {name: r.number(name, None) for name in ("trust", "familiarity", "rivalry")}
    r.done()
    world = ctx.world
    current = social.tie(world, world.require_agent(a_id), world.require_agent(b_id))
    merged = {k: current[k] if v is None else v for k, v in values.items()}
    tie_ab, tie_ba = ops.set_relationship(world, a_id, b_id, merged["trust"],
                                          merged["familiarity"], merged["rivalry"])
    return {"agent_a": a_id, "agent_b": b_id, "tie_ab": tie_ab, "tie_ba": tie_ba}


@command("kill", role="admin", mutating=True, usage="kill <agent_id>",
         summary="Remove an agent permanently (reason 'killed'; no respawn).")
def kill(ctx: Context, r: ArgReader) -> dict[str, Any]:
    agent_id = r.text("agent_id")
    r.done()
    events = ops.kill(ctx.world, agent_id, ctx.tick)
    return {"agent_id": agent_id, "removed": True, "reason": "killed",
            "events": events_to_wire(events)}


@command("force_chat", role="admin", mutating=True,
         usage="force_chat <speaker> <listener> [quality 0..1, default 1.0]  "
               "(or kwargs payload={speaker, listener, quality})",
         summary="Apply a successful chat between two agents; shows both updated ties.")
def force_chat(ctx: Context, r: ArgReader) -> dict[str, Any]:
    if r.has_keyword("payload"):
        payload = r.value("payload")
        r.done()  # the payload form takes nothing else
        if not isinstance(payload, dict):
            raise invalid("payload must be a map {speaker, listener, quality}")
        r = ArgReader(r.usage, (), payload)
    speaker, listener = r.text("speaker"), r.text("listener")
    quality = r.number("quality", 1.0)
    r.done()
    event, speaker_tie, listener_tie = ops.force_chat(ctx.world, speaker, listener, quality,
                                                      ctx.tick)
    return {"speaker": speaker, "listener": listener, "quality": event.quality,
            "event": event_to_wire(event), "speaker_tie": speaker_tie, "listener_tie": listener_tie}


@command("set_exit_cap", role="admin", mutating=True, usage="set_exit_cap <n >= 0, 0 = unlimited>",
         summary="Change the daily employment exit cap.")
def set_exit_cap(ctx: Context, r: ArgReader) -> dict[str, Any]:
    cap = r.integer("n")
    r.done()
    previous = ops.set_exit_cap(ctx.world, cap)
    return {"previous": previous, "daily_exit_cap": cap,
            "metrics": ctx.world.employment.metrics()}


@command("perturb", role="admin", mutating=True,
         usage="perturb blackout | outage | restore | price_spike [price=meal_cost] [factor=2.0]",
         summary="Power off, water off, both back on, or multiply a price.")
def perturb(ctx: Context, r: ArgReader) -> dict[str, Any]:
    kind = r.choice("kind", ops.PERTURBATIONS)
    extra: dict[str, Any] = {}
    if kind == "price_spike":
        extra = {"price": r.text("price", "meal_cost"), "factor": r.number("factor", 2.0)}
    r.done()
    return {"perturbation": kind, **ops.perturb(ctx.world, kind, **extra)}
