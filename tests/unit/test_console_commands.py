"""Every console command: what it does when it works, and what an operator sees when it cannot.

Commands run through the trusted ``dispatch`` path (admin) unless a test is about roles. Every
refused admin command must leave the world's state hash unchanged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from shared.config import SimulationConfig, load_config
from shared.console.commands import default_registry, spec
from shared.console.handlers import ConsoleCommand, create_console_router
from shared.loop import SimulationLoop
from shared.sim.persist import state_hash

REGISTRY = default_registry()

REPO = Path(__file__).resolve().parents[2]


def make_config(tmp_path: Path, **console: Any) -> SimulationConfig:
    config = load_config(REPO / "configs/examples/poc_hybrid.yaml")
    update = {"audit_path": str(tmp_path / "audit.jsonl"), **console}
    return config.model_copy(update={"console": config.console.model_copy(update=update)})


@pytest.fixture
def loop(tmp_path: Path) -> SimulationLoop:
    loop = SimulationLoop(make_config(tmp_path))
    loop.snapshot_dir = tmp_path / "snapshots"
    return loop


def run(loop: SimulationLoop, name: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
    return loop.router.dispatch(ConsoleCommand(name=name, args=args, kwargs=kwargs))


def ok(loop: SimulationLoop, name: str, *args: Any, **kwargs: Any) -> Any:
    result = run(loop, name, *args, **kwargs)
    assert result["status"] == "ok", result.get("error")
    return result["result"]


def fails(loop: SimulationLoop, code: str, name: str, *args: Any, **kwargs: Any) -> str:
    """The command is refused with ``code`` and the world is untouched; returns the message."""
    before = state_hash(loop.world)
    result = run(loop, name, *args, **kwargs)
    assert result["status"] == "error", result.get("result")
    assert result["error"]["code"] == code, result["error"]
    assert state_hash(loop.world) == before
    return str(result["error"]["message"])


def agent(loop: SimulationLoop, agent_id: str) -> dict[str, Any]:
    return ok(loop, "agent_status", agent_id)  # type: ignore[no-any-return]


# -- snapshots and schema ------------------------------------------------------------------------
def test_telemetry_snapshot(loop: SimulationLoop) -> None:
    loop.run_for_ticks(3)
    run(loop, "help")
    snap = ok(loop, "telemetry_snapshot")
    assert (snap["schema_version"], snap["schema_warning"], snap["tick"]) == ("0.2.0", None, 3)
    assert snap["employment"]["pending_count"] == 0 and "daily_exit_cap" in snap["employment"]
    assert set(snap["jobs"]["agent_0"]) >= {"shift_state", "wallet", "attendance_ratio",
                                            "exit_pending"}
    assert snap["needs"]["agents"] == 8 and "mean_trust" in snap["relationships"]
    assert [r["name"] for r in snap["console_results"]] == ["help"]
    assert "result" not in snap["console_results"][0]  # outcomes, not nested bodies
    assert set(snap["health"]) >= {"tick_rate_hz", "queue_depth", "last_error"}
    assert "too many" in fails(loop, "usage", "telemetry_snapshot", "extra")


@pytest.mark.parametrize(("version", "warned"), [
    ("0.2.0", False), ("0.2.50", False), ("0.3.0", True), ("0.1.9", True),
    ("0.10.0", True),  # numeric, not lexical: 0.10 > 0.2.99
    ("banana", True),
])
def test_schema_warning(tmp_path: Path, version: str, warned: bool) -> None:
    loop = SimulationLoop(make_config(tmp_path, schema_version=version))
    for name in ("telemetry_snapshot", "employment_status"):
        result = ok(loop, name)
        assert result["schema_version"] == version
        assert (result["schema_warning"] is not None) == warned
    if warned:
        assert version in ok(loop, "employment_status")["schema_warning"]


# -- employment ----------------------------------------------------------------------------------
def test_employment_review_approve_defer_status(loop: SimulationLoop) -> None:
    loop.world.employment.enqueue_exit(loop.world, "agent_0", loop.world.tick)
    review = ok(loop, "employment_exit", "review")
    assert review["pending"] == ["agent_0"] and review["pending_agents"][0]["agent_id"] == "agent_0"
    approve = ok(loop, "employment_exit", "approve", "agent_0")
    assert approve["approved"] is True and approve["agent_id"] == "agent_0"
    assert approve["metrics"]["manual_approvals"] == ["agent_0"]
    status = ok(loop, "employment_status")
    assert status["pending_agents"][0]["manual_approved"] is True
    defer = ok(loop, "employment_exit", "defer", "agent_0")
    assert defer == {"deferred": True, "agent_id": "agent_0", "metrics": defer["metrics"]}
    status = ok(loop, "employment_status")
    assert status["metrics"]["pending_count"] == 0 and status["pending_agents"] == []
    assert agent(loop, "agent_0")["exit_pending"] is False


def test_enqueue_is_the_seeds_manual_enqueue_as_a_command(loop: SimulationLoop) -> None:
    queued = ok(loop, "employment_exit", "enqueue", "agent_0")
    assert queued["enqueued"] is True and queued["metrics"]["pending"] == ["agent_0"]
    assert agent(loop, "agent_0")["exit_pending"] is True
    again = ok(loop, "employment_exit", "enqueue", "agent_0")
    assert again["enqueued"] is False and again["metrics"]["pending_count"] == 1  # once
    assert ok(loop, "employment_exit", "review")["pending"] == ["agent_0"]
    fails(loop, "not_found", "employment_exit", "enqueue", "nobody")
    fails(loop, "usage", "employment_exit", "enqueue")


def test_approve_exits_at_the_next_evaluation(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    config.employment.enforce_job_loop = True
    loop = SimulationLoop(config)
    ok(loop, "employment_exit", "approve", "agent_2")
    loop.step()
    assert "agent_2" not in loop.world.agents.slot_of
    assert loop.world.employment.history[-1]["reason"] == "manual_approve"


def test_employment_exit_errors(loop: SimulationLoop) -> None:
    assert "usage: employment_exit" in fails(loop, "usage", "employment_exit")
    fails(loop, "usage", "employment_exit", "fire", "agent_0")
    fails(loop, "usage", "employment_exit", "approve")
    fails(loop, "not_found", "employment_exit", "approve", "nobody")
    fails(loop, "not_found", "employment_exit", "defer", "nobody")
    assert "no pending exit" in fails(loop, "invalid_args", "employment_exit", "defer", "agent_0")
    fails(loop, "usage", "employment_status", "x")


def test_set_exit_cap(loop: SimulationLoop) -> None:
    result = ok(loop, "set_exit_cap", 5)
    assert (result["previous"], result["daily_exit_cap"]) == (2, 5)
    assert loop.world.employment.daily_exit_cap == 5
    assert ok(loop, "set_exit_cap", "0")["metrics"]["daily_exit_cap"] == 0
    fails(loop, "invalid_args", "set_exit_cap", -1)
    fails(loop, "invalid_args", "set_exit_cap", "many")
    fails(loop, "usage", "set_exit_cap")


# -- relationships -------------------------------------------------------------------------------
def test_force_chat_payload_and_args_forms(loop: SimulationLoop) -> None:
    result = ok(loop, "force_chat",
                payload={"speaker": "agent_0", "listener": "agent_1", "quality": 0.75})
    assert result["speaker_tie"] == {"trust": 0.0375, "familiarity": 0.075, "rivalry": 0.0}
    assert result["listener_tie"] == result["speaker_tie"]
    assert result["event"]["type"] == "chat_success"
    again = ok(loop, "force_chat", "agent_1", "agent_0")  # quality defaults to 1.0
    assert again["quality"] == 1.0 and again["speaker_tie"]["trust"] == pytest.approx(0.0875)
    clamped = ok(loop, "force_chat", speaker="agent_2", listener="agent_3", quality=7)
    assert clamped["quality"] == 1.0
    events = ok(loop, "social_events", 2)["events"]
    assert [e["speaker"] for e in events] == ["agent_1", "agent_2"]


def test_force_chat_errors(loop: SimulationLoop) -> None:
    fails(loop, "not_found", "force_chat", "agent_0", "nobody")
    assert "itself" in fails(loop, "invalid_args", "force_chat", "agent_0", "agent_0")
    fails(loop, "invalid_args", "force_chat", payload="agent_0->agent_1")
    fails(loop, "invalid_args", "force_chat", "agent_0", "agent_1", "loud")
    fails(loop, "usage", "force_chat", payload={"speaker": "agent_0"})
    fails(loop, "usage", "force_chat", payload={"speaker": "agent_0", "listener": "agent_1"},
          speaker="agent_2")


def test_set_rel_and_relationship_views(loop: SimulationLoop) -> None:
    result = ok(loop, "set_rel", "agent_0", "agent_1", 0.5, 0.25, 0.1)
    assert result["tie_ab"] == result["tie_ba"] == {"trust": 0.5, "familiarity": 0.25,
                                                    "rivalry": 0.1}
    kept = ok(loop, "set_rel", "agent_0", "agent_1", trust=-0.5)["tie_ab"]
    assert kept == {"trust": -0.5, "familiarity": 0.25, "rivalry": 0.1}
    summary = ok(loop, "relationship_summary")
    assert summary["ties"] == 2
    one = ok(loop, "relationship_summary", "agent_0")
    assert one["agent_id"] == "agent_0" and one["ties"] == {"agent_1": kept}
    detail = ok(loop, "relationship_detail", "agent_1")
    assert detail["agent_id"] == "agent_1" and detail["ties"]["agent_0"]["trust"] == -0.5


def test_relationship_errors(loop: SimulationLoop) -> None:
    fails(loop, "invalid_args", "set_rel", "agent_0", "agent_1", 2)
    fails(loop, "invalid_args", "set_rel", "agent_0", "agent_1", rivalry=-0.1)
    fails(loop, "invalid_args", "set_rel", "agent_0", "agent_0", 0.1)
    fails(loop, "not_found", "set_rel", "agent_0", "ghost", 0.1)
    fails(loop, "usage", "set_rel", "agent_0")
    fails(loop, "not_found", "relationship_summary", "ghost")
    fails(loop, "not_found", "relationship_detail", "ghost")
    fails(loop, "usage", "relationship_detail")
    fails(loop, "invalid_args", "social_events", 0)
    fails(loop, "invalid_args", "social_events", "lots")


def test_relationship_detail_is_admin_only(loop: SimulationLoop) -> None:
    result = loop.router.apply({"name": "relationship_detail", "args": ["agent_0"]}, tick=1,
                               received_at=0.0).to_wire()
    assert result["error"]["code"] == "forbidden"


# -- agents --------------------------------------------------------------------------------------
def test_spawn(loop: SimulationLoop) -> None:
    result = ok(loop, "spawn", "newbie", 5, 6, "barista")
    assert result["agent"]["position"] == [5, 6] and result["agent"]["job"] == "barista"
    full = ok(loop, "spawn", agent_id="rich", position=[1, 2], home=[3, 3],
              needs={"hunger": 0.2}, wallet=9)["agent"]
    assert (full["home"], full["needs"]["hunger"], full["wallet"]) == ([3, 3], 0.2, 9.0)
    assert agent(loop, "newbie")["agent_id"] == "newbie"


def test_spawn_errors(loop: SimulationLoop) -> None:
    assert "already exists" in fails(loop, "invalid_args", "spawn", "agent_0", 1, 1)
    assert "outside" in fails(loop, "invalid_args", "spawn", "x1", 99, 1)
    fails(loop, "invalid_args", "spawn", "x1", 1, 1, "astronaut")
    fails(loop, "invalid_args", "spawn", "bad#id", 1, 1)
    fails(loop, "invalid_args", "spawn", agent_id="x1", position=[1, 1], needs={"joy": 1})
    fails(loop, "invalid_args", "spawn", agent_id="x1", position=[1, 1], needs={"hunger": 2})
    fails(loop, "invalid_args", "spawn", agent_id="x1", position=[1, 1], wallet=-1)
    fails(loop, "invalid_args", "spawn", agent_id="x1", position=[1])
    fails(loop, "usage", "spawn", "x1", 1)
    fails(loop, "usage", "spawn", agent_id="x1", position=[1, 1], colour="red")


def test_teleport_interrupts_what_the_agent_is_doing(loop: SimulationLoop) -> None:
    loop.run_for_ticks(20)
    assert agent(loop, "agent_3")["using"] == "bed_2"
    result = ok(loop, "teleport", "agent_3", 10, 10)
    assert (result["from"], result["position"]) == ([3, 3], [10, 10])
    assert result["abandoned"]["using"] == "bed_2"
    assert result["events"][0]["reason"] == "teleported"
    assert agent(loop, "agent_3")["using"] is None
    assert ok(loop, "queue_inspect", "bed_2")["occupant"] is None
    assert ok(loop, "teleport", agent_id="agent_0", position=[0, 0])["position"] == [0, 0]


def test_teleport_errors(loop: SimulationLoop) -> None:
    fails(loop, "invalid_args", "teleport", "agent_0", -1, 0)
    fails(loop, "not_found", "teleport", "ghost", 1, 1)
    fails(loop, "invalid_args", "teleport", "agent_0", "up", 1)
    fails(loop, "usage", "teleport", "agent_0")


def test_setneed(loop: SimulationLoop) -> None:
    result = ok(loop, "setneed", "agent_0", "hunger", 0.9)
    assert result["previous"] == 0.45 and result["value"] == 0.9
    assert agent(loop, "agent_0")["needs"]["hunger"] == 0.9
    fails(loop, "invalid_args", "setneed", "agent_0", "joy", 0.5)
    fails(loop, "invalid_args", "setneed", "agent_0", "hunger", 1.5)
    fails(loop, "not_found", "setneed", "ghost", "hunger", 0.5)


def test_kill_is_permanent(loop: SimulationLoop) -> None:
    result = ok(loop, "kill", "agent_5")
    assert result["reason"] == "killed" and result["events"][-1]["reason"] == "killed"
    loop.run_for_ticks(loop.config.employment.respawn_delay_ticks + 2)
    assert not any(a and a.startswith("agent_5") for a in loop.world.agents.ids)
    fails(loop, "not_found", "kill", "agent_5")
    fails(loop, "not_found", "agent_status", "agent_5")


def test_agent_status(loop: SimulationLoop) -> None:
    status = agent(loop, "agent_1")
    assert status["job"] == "barista" and status["employment"]["attendance_ratio"] == 1.0
    fails(loop, "usage", "agent_status")


# -- world ---------------------------------------------------------------------------------------
def test_price(loop: SimulationLoop) -> None:
    result = ok(loop, "price", "meal_cost", 0.8)
    assert (result["previous"], result["price"]) == (0.4, 0.8)
    assert loop.world.prices["meal_cost"] == 0.8
    fails(loop, "invalid_args", "price", "caviar", 1)
    fails(loop, "invalid_args", "price", "meal_cost", -0.1)
    fails(loop, "usage", "price", "meal_cost")


def test_perturb(loop: SimulationLoop) -> None:
    assert ok(loop, "perturb", "blackout")["power_on"] is False
    assert ok(loop, "perturb", "outage")["water_on"] is False
    status = ok(loop, "affordance_status")
    assert (status["power_on"], status["water_on"]) == (False, False)
    restored = ok(loop, "perturb", "restore")
    assert (restored["power_on"], restored["water_on"]) == (True, True)
    spike = ok(loop, "perturb", "price_spike", "shower_cost", 3)
    assert spike["prices"]["shower_cost"] == pytest.approx(0.6)
    fails(loop, "usage", "perturb", "earthquake")
    fails(loop, "invalid_args", "perturb", "price_spike", "caviar")


def test_affordance_status_and_queue_inspect(loop: SimulationLoop) -> None:
    status = ok(loop, "affordance_status")
    assert set(status["objects"]) == set(loop.world.objects.ids)
    one = ok(loop, "affordance_status", "fridge_1")["objects"]
    assert list(one) == ["fridge_1"] and one["fridge_1"]["stock"] == 3
    queue = ok(loop, "queue_inspect", "shower_1")
    assert (queue["object_id"], queue["queue"], queue["queue_length"]) == ("shower_1", [], 0)
    fails(loop, "not_found", "affordance_status", "jacuzzi")
    fails(loop, "not_found", "queue_inspect", "jacuzzi")
    fails(loop, "usage", "queue_inspect")


# -- loop controls -------------------------------------------------------------------------------
def test_pause_resume_and_tick_rate(loop: SimulationLoop) -> None:
    assert ok(loop, "pause")["paused"] is True
    loop.step()
    assert loop.world.tick == 0  # paused: commands apply, the world waits
    assert ok(loop, "resume")["paused"] is False
    loop.step()
    assert loop.world.tick == 1
    assert ok(loop, "set_tick_rate", 5)["tick_rate_hz"] == 5.0
    assert loop.health().tick_rate_hz == 5.0
    fails(loop, "invalid_args", "set_tick_rate", -1)
    fails(loop, "invalid_args", "set_tick_rate", "fast")


def test_health_shows_the_controls_and_the_queue_in_its_wire_form(loop: SimulationLoop) -> None:
    ok(loop, "pause")
    loop.telemetry.queue_console_command({"name": "help"})
    message = loop.telemetry.health_message(loop.tick, loop.health())
    assert message["kind"] == "health"
    health = message["payload"]["health"]
    assert list(health) == ["tick_rate_hz", "queue_depth", "last_error", "broker_reconnects",
                            "paused", "unsent_outputs"]  # docs/PROTOCOL.md, unchanged
    assert (health["paused"], health["queue_depth"], health["unsent_outputs"]) == (True, 1, 0)
    assert ok(loop, "telemetry_snapshot")["health"] == health  # one view, two readers


def test_snapshot_save(loop: SimulationLoop, tmp_path: Path) -> None:
    loop.run_for_ticks(2)
    result = ok(loop, "snapshot_save")
    path = Path(result["path"])
    assert path.is_file() and path.parent == tmp_path / "snapshots" and result["tick"] == 2
    fails(loop, "usage", "snapshot_save", "/etc")


@pytest.mark.parametrize(("name", "args"), [("pause", ()), ("resume", ()),
                                            ("set_tick_rate", (2,)), ("snapshot_save", ())])
def test_loop_controls_unsupported_without_controls(loop: SimulationLoop, name: str,
                                                    args: tuple[Any, ...]) -> None:
    bare = create_console_router(loop.telemetry, loop.world, config=loop.config)
    result = bare.dispatch(ConsoleCommand(name=name, args=args, kwargs={}))
    assert result["error"]["code"] == "unsupported"


# -- help ----------------------------------------------------------------------------------------
def test_help_is_generated_from_the_registry(loop: SimulationLoop) -> None:
    listed = ok(loop, "help")["commands"]
    assert [c["name"] for c in listed] == REGISTRY.names()
    for entry in listed:
        spec = REGISTRY.get(entry["name"])
        assert spec is not None
        assert (entry["role"], entry["usage"], entry["mutating"]) == (spec.role, spec.usage,
                                                                     spec.mutating)
    assert ok(loop, "help", "kill")["commands"][0]["role"] == "admin"
    assert ok(loop, "help", command="help")["commands"][0]["role"] == "viewer"
    fails(loop, "not_found", "help", "fly")


def test_every_seed_and_spec_command_is_registered() -> None:
    expected = {"telemetry_snapshot", "employment_status", "employment_exit", "force_chat",
                "spawn", "teleport", "setneed", "price", "set_rel", "kill",
                "relationship_summary", "relationship_detail", "social_events",
                "affordance_status", "queue_inspect", "agent_status", "pause", "resume",
                "set_tick_rate", "snapshot_save", "set_exit_cap", "perturb", "help"}
    assert set(REGISTRY.names()) == expected
    admin = {n for n in expected if REGISTRY.get(n).role == "admin"}  # type: ignore[union-attr]
    assert admin == expected - {"telemetry_snapshot", "employment_status", "help",
                                "relationship_summary", "social_events", "affordance_status",
                                "queue_inspect", "agent_status"}


def test_the_registry_is_built_when_asked_not_on_import() -> None:
    first, second = default_registry(), default_registry()
    first.add(spec("extra", lambda ctx, r: {}, summary="only in the first table"))
    assert "extra" in first and "extra" not in second
    assert second.names() == REGISTRY.names()
