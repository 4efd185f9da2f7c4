"""Read-only commands: snapshots, employment, agents, objects, relationships, help.

None of these change the world, so none needs a cmd_id (``relationship_detail`` is admin only
because it exposes one agent's private ledger).
"""

from __future__ import annotations

import re
from typing import Any

from shared.console.envelope import ConsoleError, ErrorCode
from shared.sim import views
from shared.sim.events import events_to_wire
from shared.sim.social import SOCIAL_EVENT_HISTORY, ties_of

from .args import ArgReader, invalid
from .registry import CommandSpec, Context, Registry, spec

RESULT_FIELDS = ("cmd_id", "name", "status", "tick", "issuer", "latency_ms", "error")


# -- schema version ---------------------------------------------------------------------------
def _version(text: str) -> tuple[int, ...] | None:
    match = re.fullmatch(r"v?(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:[-+].*)?", text.strip())
    if match is None:
        return None
    return tuple(int(part or 0) for part in match.groups())


def schema_fields(ctx: Context) -> dict[str, Any]:
    """The shard's schema version and a warning when the console does not support it."""
    console = ctx.config.console
    version, low, high = (_version(v) for v in (console.schema_version,
                                                 console.supported_schema_min,
                                                 console.supported_schema_max))
    warning = None
    if version is None or low is None or high is None:
        warning = (f"cannot compare schema version {console.schema_version!r} with the "
                   f"supported range [{console.supported_schema_min}, "
                   f"{console.supported_schema_max}]")
    elif not low <= version <= high:
        warning = (f"shard schema_version {console.schema_version} is outside the console's "
                   f"supported range [{console.supported_schema_min}, "
                   f"{console.supported_schema_max}]; fields may be missing or renamed")
    return {"schema_version": console.schema_version, "schema_warning": warning}


# -- snapshots and employment -------------------------------------------------------------------
def _compact_results(ctx: Context) -> list[dict[str, Any]]:
    # Outcomes only, not bodies: a snapshot quoting the previous snapshot's body would make
    # every snapshot larger than the last.
    return [{k: r[k] for k in RESULT_FIELDS if k in r}
            for r in ctx.telemetry.latest_console_results()]


def telemetry_snapshot(ctx: Context, r: ArgReader) -> dict[str, Any]:
    r.done()
    world = ctx.world
    return {
        **schema_fields(ctx),
        "shard_id": ctx.telemetry.shard_id,
        "tick": world.tick,
        "world": views.world_summary(world),
        "employment": world.employment.metrics(),
        "jobs": views.jobs_view(world),
        "needs": views.needs_summary(world),
        "relationships": views.relationships_summary(world),
        "console_results": _compact_results(ctx),
        "health": ctx.health().to_wire(),
        "providers": {"policy": ctx.policy_provider, "telemetry": ctx.telemetry_provider},
    }


def pending_agents(ctx: Context) -> list[dict[str, Any]]:
    world, queue = ctx.world, ctx.world.employment
    out = []
    for agent_id in queue.queue:
        slot = world.agents.slot_of.get(agent_id)
        entry: dict[str, Any] = {
            "agent_id": agent_id,
            "enqueued_at": queue.enqueued_at[agent_id],
            "waiting_ticks": world.tick - queue.enqueued_at[agent_id],
            "manual_approved": agent_id in queue.manual,
        }
        if slot is not None:
            entry.update(views.job_view(world, slot))
        out.append(entry)
    return out


def employment_status(ctx: Context, r: ArgReader) -> dict[str, Any]:
    r.done()
    return {**schema_fields(ctx), "metrics": ctx.world.employment.metrics(),
            "pending_agents": pending_agents(ctx)}


def employment_exit(ctx: Context, r: ArgReader) -> dict[str, Any]:
    action = r.choice("action", ("review", "enqueue", "approve", "defer"))
    if action == "review":
        r.done()
        return {"action": "review", **ctx.world.employment.metrics(),
                "pending_agents": pending_agents(ctx)}
    agent_id = r.text("agent_id")
    r.done()
    ctx.world.require_agent(agent_id)  # unknown agent -> not_found, before anything changes
    queue = ctx.world.employment
    if action == "enqueue":  # the seed's manual enqueue, reachable over the broker
        queued = queue.enqueue_exit(ctx.world, agent_id, ctx.tick)
        return {"enqueued": queued, "agent_id": agent_id, "metrics": queue.metrics()}
    if action == "approve":
        queue.approve(ctx.world, agent_id)
        return {"approved": True, "agent_id": agent_id, "metrics": queue.metrics()}
    queue.defer(ctx.world, agent_id)
    return {"deferred": True, "agent_id": agent_id, "metrics": queue.metrics()}


# -- agents, objects, relationships -----------------------------------------------------------
def agent_status(ctx: Context, r: ArgReader) -> dict[str, Any]:
    agent_id = r.text("agent_id")
    r.done()
    slot = ctx.world.require_agent(agent_id)
    return {**views.agent_view(ctx.world, slot), "employment": views.job_view(ctx.world, slot)}


def _object_slot(ctx: Context, object_id: str) -> int:
    slot = ctx.world.objects.slot_of.get(object_id)
    if slot is None:
        raise ConsoleError(ErrorCode.NOT_FOUND, f"unknown object {object_id!r}",
                           {"objects": list(ctx.world.objects.ids)})
    return slot


def affordance_status(ctx: Context, r: ArgReader) -> dict[str, Any]:
    object_id = r.text("object_id", None)
    r.done()
    world = ctx.world
    if object_id is not None:
        objects = {object_id: views.object_view(world, _object_slot(ctx, object_id))}
    else:
        objects = views.objects_view(world)
    return {"power_on": world.power_on, "water_on": world.water_on, "objects": objects}


def queue_inspect(ctx: Context, r: ArgReader) -> dict[str, Any]:
    object_id = r.text("object_id")
    r.done()
    view = views.object_view(ctx.world, _object_slot(ctx, object_id))
    keys = ("object_id", "affordance", "occupant", "progress", "duration", "queue")
    return {**{k: view[k] for k in keys}, "queue_length": len(view["queue"])}


def relationship_summary(ctx: Context, r: ArgReader) -> dict[str, Any]:
    agent_id = r.text("agent_id", None)
    r.done()
    summary = views.relationships_summary(ctx.world)
    if agent_id is None:
        return summary
    slot = ctx.world.require_agent(agent_id)
    return {**summary, "agent_id": agent_id, "ties": ties_of(ctx.world, slot)}


def relationship_detail(ctx: Context, r: ArgReader) -> dict[str, Any]:
    agent_id = r.text("agent_id")
    r.done()
    return views.relationship_detail(ctx.world, ctx.world.require_agent(agent_id))


def social_events(ctx: Context, r: ArgReader) -> dict[str, Any]:
    limit = r.integer("limit", 20)
    r.done()
    if not 1 <= limit <= SOCIAL_EVENT_HISTORY:
        raise invalid(f"limit must be between 1 and {SOCIAL_EVENT_HISTORY}, got {limit}")
    events = events_to_wire(ctx.world.social_events[-limit:])
    return {"limit": limit, "count": len(events), "events": events}


def help_command(ctx: Context, r: ArgReader) -> dict[str, Any]:
    name = r.text("command", None)
    r.done()
    if name is None:
        return {"commands": [entry.describe() for entry in ctx.registry.specs()]}
    entry = ctx.registry.get(name)
    if entry is None:
        raise ConsoleError(ErrorCode.NOT_FOUND, f"unknown command {name!r}",
                           {"commands": ctx.registry.names()})
    return {"commands": [entry.describe()]}


SPECS: tuple[CommandSpec, ...] = (
    spec("telemetry_snapshot", telemetry_snapshot,
         summary="Schema, tick, employment, jobs, needs, relationships, latest console results "
         "and health."),
    spec("employment_status", employment_status,
         summary="Employment exit queue metrics and the pending agents."),
    spec("employment_exit", employment_exit, role="admin", mutating=True,
         usage="employment_exit review | enqueue <agent_id> | approve <agent_id> | "
               "defer <agent_id>",
         summary="Review the exit queue, queue an agent for exit, approve a manual exit, or "
                 "defer (un-queue) an agent."),
    spec("agent_status", agent_status, usage="agent_status <agent_id>",
         summary="One agent: position, needs, wallet, job and shift, what it is doing."),
    spec("affordance_status", affordance_status, usage="affordance_status [object_id]",
         summary="Objects: occupant, progress, queue, stock; power and water."),
    spec("queue_inspect", queue_inspect, usage="queue_inspect <object_id>",
         summary="The reservation queue of one object, in grant order."),
    spec("relationship_summary", relationship_summary, usage="relationship_summary [agent_id]",
         summary="Town-wide tie statistics, or one agent's ties."),
    spec("relationship_detail", relationship_detail, role="admin",
         usage="relationship_detail <agent_id>",
         summary="One agent's ties and rivalry ledger."),
    spec("social_events", social_events,
         usage=f"social_events [limit=20, 1..{SOCIAL_EVENT_HISTORY}]",
         summary="The most recent chats and shared meals, oldest first."),
    spec("help", help_command, usage="help [command]",
         summary="List the commands (or one) with usage and role."),
)


def register(registry: Registry) -> None:
    for entry in SPECS:
        registry.add(entry)
