"""Objects, reservation queues and affordances.

An agent standing on its target object's tile joins that object's queue. A free object is
granted to the queued agent with the highest age priority (FIFO among equals). Starting checks
power, water, stock and funds and charges the cost exactly once; effects apply on completion.
The stall breaker rotates an occupant only when it has made no progress for
``ghost_step_after`` ticks, so long affordances always finish under contention; a stuck
occupant is rotated whether or not anyone waits, so a lone one is not frozen on its object.
See docs/SIMULATION.md, "Objects and affordances" and "Reservation queues".
"""

from __future__ import annotations

import numpy as np

from . import social
from .events import AffordanceFail, AffordanceFinish, AffordanceStart, Event
from .state import BaseSystem, State


def join_queues(state: State, tick: int) -> None:
    ag, ob = state.agents, state.objects
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
        ob.active.add(o)


def _release(state: State, slot: int, *, completed: bool = False) -> None:
    """Free the agent's object. An affordance that did not finish is refunded (cost and the
    stock it took), so a rotated or interrupted agent never pays twice for one meal."""
    ag, ob = state.agents, state.objects
    o = int(ag.busy_obj[slot])
    if o >= 0:
        ob.occupant[o] = -1
        ob.active.add(o)
        if not completed:
            ag.wallet[slot] += ag.aff_paid[slot]
            ob.stock[o] += state.aff_by_type[int(ob.type[o])].consumes_stock
    ag.busy_obj[slot] = -1
    ag.aff_progress[slot] = 0
    ag.aff_paid[slot] = 0.0
    ag.target_obj[slot] = -1


def interrupt(state: State, slot: int, tick: int, reason: str,
              events: list[Event]) -> None:
    """Stop whatever an agent is doing (teleport, kill, exit) and free its object."""
    ag = state.agents
    o = int(ag.busy_obj[slot])
    if o >= 0:
        events.append(AffordanceFail(tick, *_names(state, slot, o), reason))
        _release(state, slot)
    state.leave_queue(slot)


def _names(state: State, slot: int, obj: int) -> tuple[str, str, str]:
    """(agent id, object id, affordance id) for an event about ``slot`` using ``obj``."""
    spec = state.aff_by_type[int(state.objects.type[obj])]
    return state.agent_id(slot), state.objects.ids[obj], spec.id


def _start_failure(state: State, slot: int, obj: int) -> str | None:
    spec = state.aff_by_type[int(state.objects.type[obj])]
    if spec.requires_power and not state.power_on:
        return "power_off"
    if spec.requires_water and not state.water_on:
        return "water_off"
    if spec.consumes_stock and state.objects.stock[obj] < spec.consumes_stock:
        return "insufficient_stock"
    if state.agents.wallet[slot] + 1e-12 < state.affordance_cost(spec):
        return "insufficient_funds"
    return None


def _grant(state: State, obj: int, tick: int, events: list[Event]) -> None:
    ag, ob = state.agents, state.objects
    queue = ob.queues[obj]
    weight = state.config.queue_fairness.age_priority_weight
    scores = [weight * (tick - since) for _s, since in queue]
    best = int(np.argmax(scores))  # first of the maximal scores: FIFO among equals
    slot, _since = queue.pop(best)
    ag.queued_obj[slot] = -1
    spec = state.aff_by_type[int(ob.type[obj])]
    failure = _start_failure(state, slot, obj)
    if failure is not None:
        events.append(AffordanceFail(tick, *_names(state, slot, obj), failure))
        # Back off so a hopeless agent does not retry (and emit an event) every tick.
        ag.cooldown_until[slot, ob.type[obj]] = tick + state.config.queue_fairness.cooldown_ticks
        ag.target_obj[slot] = -1
        return
    cost = state.affordance_cost(spec)
    paid = min(cost, float(ag.wallet[slot]))
    ag.wallet[slot] -= paid  # charged once, at the start
    ag.aff_paid[slot] = paid
    ob.stock[obj] -= spec.consumes_stock
    ob.occupant[obj] = slot
    ob.occupied_since[obj] = tick
    ob.last_progress[obj] = tick
    ag.busy_obj[slot] = obj
    ag.aff_progress[slot] = 0
    events.append(AffordanceStart(tick, *_names(state, slot, obj), round(cost, 6)))


def _complete(state: State, slot: int, tick: int, events: list[Event]) -> None:
    ag, ob = state.agents, state.objects
    obj = int(ag.busy_obj[slot])
    t = int(ob.type[obj])
    spec = state.aff_by_type[t]
    ag.needs[slot] = np.clip(ag.needs[slot] + state.effects[t], 0.0, 1.0)
    if spec.produces_stock and ob.linked[obj] >= 0:
        ob.stock[ob.linked[obj]] += spec.produces_stock
    ag.counters[slot, state.counter_index[t]] += 1
    ag.cooldown_until[slot, t] = tick + state.config.queue_fairness.cooldown_ticks
    events.append(AffordanceFinish(tick, *_names(state, slot, obj)))
    _release(state, slot, completed=True)
    if spec.consumes_stock and state.config.features.relationships and ob.queues[obj]:
        events.append(social.shared_meal(state, slot, ob.queues[obj][0][0], tick))


def _rotate(state: State, slot: int, tick: int, events: list[Event]) -> None:
    obj = int(state.agents.busy_obj[slot])
    events.append(AffordanceFail(tick, *_names(state, slot, obj), "stalled"))
    _release(state, slot)
    state.objects.queues[obj].append([slot, tick])  # to the back of the line, age reset
    state.agents.queued_obj[slot] = obj
    state.agents.target_obj[slot] = obj


def progress(state: State, tick: int, events: list[Event]) -> None:
    ag, ob = state.agents, state.objects
    live = ag.live_slots()
    busy = live[ag.busy_obj[live] >= 0]
    if busy.size == 0:
        return
    obj = ag.busy_obj[busy]
    t = ob.type[obj]
    blocked = np.zeros(busy.size, dtype=bool)
    if not state.power_on:
        blocked |= state.req_power[t]
    if not state.water_on:
        blocked |= state.req_water[t]
    moving = busy[~blocked]
    ag.aff_progress[moving] += 1
    ob.last_progress[obj[~blocked]] = tick
    done = moving[ag.aff_progress[moving] >= state.durations[ob.type[ag.busy_obj[moving]]]]
    for s in done.tolist():
        _complete(state, s, tick, events)
    ghost_after = state.config.queue_fairness.ghost_step_after
    # Only an occupant whose affordance is blocked can be stuck: one making progress is never
    # rotated. A stuck one is rotated even when nobody waits: alone at the back of the queue it
    # is granted again at once, fails to start (power_off, ...), backs off and re-plans.
    stuck = busy[blocked & (tick - ob.last_progress[obj] >= ghost_after)]
    for s in stuck.tolist():
        _rotate(state, s, tick, events)


def grant_free_objects(state: State, tick: int, events: list[Event]) -> None:
    ob = state.objects
    for o in sorted(ob.active):
        if ob.occupant[o] < 0 and ob.queues[o]:
            _grant(state, o, tick, events)
    ob.active = {o for o in ob.active if ob.occupant[o] >= 0 or ob.queues[o]}


def affordance_system(state: State, tick: int, events: list[Event]) -> None:
    progress(state, tick, events)
    join_queues(state, tick)
    grant_free_objects(state, tick, events)


class Affordances(BaseSystem):
    name = "affordances"

    def step(self, state: State, tick: int, events: list[Event]) -> None:
        affordance_system(state, tick, events)

    def forget(self, state: State, slot: int, tick: int, reason: str,
               events: list[Event]) -> None:
        interrupt(state, slot, tick, reason, events)


SYSTEM = Affordances()
