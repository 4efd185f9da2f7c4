"""Objects, reservation queues and affordances.

An agent standing on its target object's tile joins that object's queue. A free object is
granted to the queued agent with the highest age priority (FIFO among equals). Starting checks
power, water, stock and funds and charges the cost exactly once; effects apply on completion.
The stall breaker rotates an occupant only when it has made no progress for
``ghost_step_after`` ticks, so long affordances always finish under contention; a stuck
occupant is rotated whether or not anyone waits, so a lone one is not frozen on its object.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from . import social

if TYPE_CHECKING:
    from .world import World


def join_queues(world: World, tick: int) -> None:
    ag, ob = world.agents, world.objects
    live = ag.live_slots()
    cand = live[(ag.busy_obj[live] < 0) & (ag.queued_obj[live] < 0) & (ag.target_obj[live] >= 0)]
    if cand.size == 0:
        return
    obj = ag.target_obj[cand]
    here = (ag.x[cand] == ob.x[obj]) & (ag.y[cand] == ob.y[obj])
    cand, obj = cand[here], obj[here]
    cooled = ag.cooldown_until[cand, ob.type[obj]] <= tick
    for s, o in zip(cand[cooled].tolist(), obj[cooled].tolist(), strict=True):
        ob.queues[o].append([s, tick])
        ag.queued_obj[s] = o
        world.active_objects.add(o)


def _release(world: World, slot: int, *, completed: bool = False) -> None:
    """Free the agent's object. An affordance that did not finish is refunded (cost and the
    stock it took), so a rotated or interrupted agent never pays twice for one meal."""
    ag, ob = world.agents, world.objects
    o = int(ag.busy_obj[slot])
    if o >= 0:
        ob.occupant[o] = -1
        world.active_objects.add(o)
        if not completed:
            ag.wallet[slot] += ag.aff_paid[slot]
            ob.stock[o] += world.aff_by_type[int(ob.type[o])].consumes_stock
    ag.busy_obj[slot] = -1
    ag.aff_progress[slot] = 0
    ag.aff_paid[slot] = 0.0
    ag.target_obj[slot] = -1


def interrupt(world: World, slot: int, tick: int, reason: str,
              events: list[dict[str, Any]]) -> None:
    """Stop whatever an agent is doing (teleport, kill, exit) and free its object."""
    ag = world.agents
    o = int(ag.busy_obj[slot])
    if o >= 0:
        events.append(_event(world, "affordance_fail", tick, slot, o, reason=reason))
        _release(world, slot)
    world.leave_queue(slot)


def _event(world: World, kind: str, tick: int, slot: int, obj: int, **extra: Any) -> dict[str, Any]:
    spec = world.aff_by_type[int(world.objects.type[obj])]
    return {"type": kind, "tick": tick, "agent_id": world.agents.ids[slot],
            "object_id": world.objects.ids[obj], "affordance": spec.id, **extra}


def _start_failure(world: World, slot: int, obj: int) -> str | None:
    spec = world.aff_by_type[int(world.objects.type[obj])]
    if spec.requires_power and not world.power_on:
        return "power_off"
    if spec.requires_water and not world.water_on:
        return "water_off"
    if spec.consumes_stock and world.objects.stock[obj] < spec.consumes_stock:
        return "insufficient_stock"
    if world.agents.wallet[slot] + 1e-12 < world.affordance_cost(spec):
        return "insufficient_funds"
    return None


def _grant(world: World, obj: int, tick: int, events: list[dict[str, Any]]) -> None:
    ag, ob = world.agents, world.objects
    queue = ob.queues[obj]
    weight = world.config.queue_fairness.age_priority_weight
    scores = [weight * (tick - since) for _s, since in queue]
    best = int(np.argmax(scores))  # first of the maximal scores: FIFO among equals
    slot, _since = queue.pop(best)
    ag.queued_obj[slot] = -1
    spec = world.aff_by_type[int(ob.type[obj])]
    failure = _start_failure(world, slot, obj)
    if failure is not None:
        events.append(_event(world, "affordance_fail", tick, slot, obj, reason=failure))
        # Back off so a hopeless agent does not retry (and emit an event) every tick.
        ag.cooldown_until[slot, ob.type[obj]] = tick + world.config.queue_fairness.cooldown_ticks
        ag.target_obj[slot] = -1
        return
    cost = world.affordance_cost(spec)
    paid = min(cost, float(ag.wallet[slot]))
    ag.wallet[slot] -= paid  # charged once, at the start
    ag.aff_paid[slot] = paid
    ob.stock[obj] -= spec.consumes_stock
    ob.occupant[obj] = slot
    ob.occupied_since[obj] = tick
    ob.last_progress[obj] = tick
    ag.busy_obj[slot] = obj
    ag.aff_progress[slot] = 0
    events.append(_event(world, "affordance_start", tick, slot, obj, cost=round(cost, 6)))


def _complete(world: World, slot: int, tick: int, events: list[dict[str, Any]]) -> None:
    ag, ob = world.agents, world.objects
    obj = int(ag.busy_obj[slot])
    t = int(ob.type[obj])
    spec = world.aff_by_type[t]
    ag.needs[slot] = np.clip(ag.needs[slot] + world.effects[t], 0.0, 1.0)
    if spec.produces_stock and ob.linked[obj] >= 0:
        ob.stock[ob.linked[obj]] += spec.produces_stock
    ag.counters[slot, world.counter_index[t]] += 1
    ag.cooldown_until[slot, t] = tick + world.config.queue_fairness.cooldown_ticks
    events.append(_event(world, "affordance_finish", tick, slot, obj))
    _release(world, slot, completed=True)
    if spec.consumes_stock and world.config.features.relationships and ob.queues[obj]:
        events.append(social.shared_meal(world, slot, ob.queues[obj][0][0], tick))


def _rotate(world: World, slot: int, tick: int, events: list[dict[str, Any]]) -> None:
    obj = int(world.agents.busy_obj[slot])
    events.append(_event(world, "affordance_fail", tick, slot, obj, reason="stalled"))
    _release(world, slot)
    world.objects.queues[obj].append([slot, tick])  # to the back of the line, age reset
    world.agents.queued_obj[slot] = obj
    world.agents.target_obj[slot] = obj


def progress(world: World, tick: int, events: list[dict[str, Any]]) -> None:
    ag, ob = world.agents, world.objects
    live = ag.live_slots()
    busy = live[ag.busy_obj[live] >= 0]
    if busy.size == 0:
        return
    obj = ag.busy_obj[busy]
    t = ob.type[obj]
    blocked = np.zeros(busy.size, dtype=bool)
    if not world.power_on:
        blocked |= world.req_power[t]
    if not world.water_on:
        blocked |= world.req_water[t]
    moving = busy[~blocked]
    ag.aff_progress[moving] += 1
    ob.last_progress[obj[~blocked]] = tick
    done = moving[ag.aff_progress[moving] >= world.durations[ob.type[ag.busy_obj[moving]]]]
    for s in done.tolist():
        _complete(world, s, tick, events)
    ghost_after = world.config.queue_fairness.ghost_step_after
    # Only an occupant whose affordance is blocked can be stuck: one making progress is never
    # rotated. A stuck one is rotated even when nobody waits: alone at the back of the queue it
    # is granted again at once, fails to start (power_off, ...), backs off and re-plans.
    stuck = busy[blocked & (tick - ob.last_progress[obj] >= ghost_after)]
    for s in stuck.tolist():
        _rotate(world, s, tick, events)


def grant_free_objects(world: World, tick: int, events: list[dict[str, Any]]) -> None:
    ob = world.objects
    for o in sorted(world.active_objects):
        if ob.occupant[o] < 0 and ob.queues[o]:
            _grant(world, o, tick, events)
    world.active_objects = {o for o in world.active_objects
                            if ob.occupant[o] >= 0 or ob.queues[o]}


def affordance_system(world: World, tick: int, events: list[dict[str, Any]]) -> None:
    progress(world, tick, events)
    join_queues(world, tick)
    grant_free_objects(world, tick, events)
