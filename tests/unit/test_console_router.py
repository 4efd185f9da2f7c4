"""The router's checks, in the order of docs/CONSOLE.md ("Checks and their order"), and its
exactly-once guarantees (replay, conflict, budget)."""

from __future__ import annotations

import copy
import itertools
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared import wire
from shared.config import (
    ConsoleAuthConfig,
    ConsoleAuthTokenConfig,
    SimulationConfig,
    load_config,
)
from shared.console.commands import ArgReader, Context, Registry
from shared.console.handlers import ConsoleCommand, create_console_router
from shared.console.router import ConsoleRouter
from shared.loop import SimulationLoop
from shared.sim.persist import state_hash

REPO = Path(__file__).resolve().parents[2]
VIEWER, ADMIN = "viewer-tok-41c7", "admin-tok-93e2"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_config(tmp_path: Path, *, auth: bool = True, **console: Any) -> SimulationConfig:
    config = load_config(REPO / "configs/examples/poc_hybrid.yaml")
    tokens = [ConsoleAuthTokenConfig(token=VIEWER, role="viewer", label="ops-viewer"),
              ConsoleAuthTokenConfig(token=ADMIN, role="admin", label="ops-admin")]
    console_cfg = config.console.model_copy(
        update={"audit_path": str(tmp_path / "audit" / "commands.jsonl"), **console})
    return config.model_copy(update={
        "console_auth": ConsoleAuthConfig(enabled=auth, require_auth_for_viewer=False,
                                          tokens=tokens),
        "console": console_cfg})


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def loop(tmp_path: Path, clock: FakeClock) -> SimulationLoop:
    return SimulationLoop(make_config(tmp_path), clock=clock)


def admin(name: str, *args: Any, cmd_id: str | None = "c1", token: str | None = ADMIN,
          **kwargs: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {"name": name, "args": list(args), "kwargs": kwargs,
                               "mode": "admin"}
    if cmd_id is not None:
        payload["cmd_id"] = cmd_id
    if token is not None:
        payload["auth"] = {"token": token}
    return payload


def step_with(loop: SimulationLoop, *payloads: Any) -> list[dict[str, Any]]:
    for payload in payloads:
        loop.telemetry.queue_console_command(payload)
    return loop.step().console_results


def chat(cmd_id: str, quality: float = 1.0) -> dict[str, Any]:
    return admin("force_chat", cmd_id=cmd_id,
                 payload={"speaker": "agent_0", "listener": "agent_1", "quality": quality})


def trust(loop: SimulationLoop) -> float:
    from shared.sim.social import tie
    world = loop.world
    return tie(world, world.require_agent("agent_0"), world.require_agent("agent_1"))["trust"]


def code(result: dict[str, Any]) -> str | None:
    return result.get("error", {}).get("code")


# -- checks in order -----------------------------------------------------------------------------
@pytest.mark.parametrize(("payload", "expected"), [
    # shape beats a bad token
    ({"name": 5, "auth": {"token": "bad"}, "cmd_id": "x"}, "usage"),
    ("not a map", "bad_request"),
    # auth beats an unknown command
    ({"name": "no_such", "auth": {"token": "bad"}, "cmd_id": "x"}, "unauthorized"),
    # unknown command beats the role
    ({"name": "no_such", "auth": {"token": VIEWER}}, "unsupported"),
    # role beats the missing cmd_id
    ({"name": "kill", "args": ["agent_0"], "auth": {"token": VIEWER}}, "forbidden"),
    # missing cmd_id on an admin command, before anything runs
    ({"name": "kill", "args": ["agent_0"], "auth": {"token": ADMIN}}, "usage"),
    # handler errors come last
    ({"name": "kill", "args": ["nobody"], "auth": {"token": ADMIN}, "cmd_id": "k"}, "not_found"),
    ({"name": "setneed", "args": ["agent_0", "hunger", 3], "auth": {"token": ADMIN},
      "cmd_id": "s"}, "invalid_args"),
])
def test_checks_run_in_spec_order(loop: SimulationLoop, payload: Any, expected: str) -> None:
    before = state_hash(loop.world)
    result = loop.router.apply(payload, tick=1, received_at=loop.telemetry.clock()).to_wire()
    assert result["status"] == "error"
    assert code(result) == expected, result["error"]
    assert state_hash(loop.world) == before


def test_admin_commands_are_refused_while_auth_is_disabled(tmp_path: Path) -> None:
    loop = SimulationLoop(make_config(tmp_path, auth=False))
    result = loop.router.apply(admin("kill", "agent_0"), tick=1, received_at=0.0).to_wire()
    assert code(result) == "forbidden" and "auth is disabled" in result["error"]["message"]
    assert "agent_0" in loop.world.agents.slot_of
    ok = loop.router.apply({"name": "employment_status"}, tick=1, received_at=0.0).to_wire()
    assert ok["status"] == "ok"


def test_viewer_commands_get_an_auto_cmd_id(loop: SimulationLoop) -> None:
    results = step_with(loop, {"name": "help"}, {"name": "employment_status"})
    assert [r["cmd_id"] for r in results] == ["auto-local-1-0", "auto-local-1-1"]
    results = step_with(loop, {"name": "help"})
    assert results[0]["cmd_id"] == "auto-local-2-0"


def test_result_envelope_and_latency(loop: SimulationLoop, clock: FakeClock) -> None:
    loop.telemetry.queue_console_command(chat("lat-1"))
    clock.now += 0.25  # the command waited 250 ms for its tick boundary
    (result,) = loop.step().console_results
    assert result["latency_ms"] == pytest.approx(250.0)
    assert {k: result[k] for k in ("v", "shard_id", "cmd_id", "name", "status", "tick",
                                    "issuer")} == {
        "v": 1, "shard_id": "local", "cmd_id": "lat-1", "name": "force_chat", "status": "ok",
        "tick": 1, "issuer": "ops-admin"}
    assert result["command"] == {"name": "force_chat", "args": [], "mode": "admin",
                                 "kwargs": chat("lat-1")["kwargs"], "cmd_id": "lat-1",
                                 "issuer": "ops-admin"}
    assert wire.decode(wire.encode(result)) == result  # msgpack-able, no tuples or numpy


# -- replay and conflict -------------------------------------------------------------------------
def test_replay_within_a_tick_and_across_ticks_is_identical(loop: SimulationLoop,
                                                            clock: FakeClock) -> None:
    first, again = step_with(loop, chat("once"), chat("once"))
    assert again == first
    assert trust(loop) == pytest.approx(0.05)  # applied once, not twice
    clock.now += 5
    loop.run_for_ticks(3)
    (later,) = step_with(loop, chat("once"))
    assert later == first  # same tick (1), same latency, same body
    assert later["tick"] == 1
    assert trust(loop) == pytest.approx(0.05)


def test_conflicting_reuse_of_a_cmd_id(loop: SimulationLoop) -> None:
    (first,) = step_with(loop, chat("dup", quality=1.0))
    (clash,) = step_with(loop, chat("dup", quality=0.2))
    assert code(clash) == "conflict" and clash["cmd_id"] == "dup"
    assert trust(loop) == pytest.approx(0.05)
    (replay,) = step_with(loop, chat("dup", quality=1.0))
    assert replay == first  # the original answer is still the one remembered


def test_handler_errors_are_remembered(loop: SimulationLoop) -> None:
    (first,) = step_with(loop, admin("kill", "ghost", cmd_id="k1"))
    assert code(first) == "not_found"
    loop.router.dispatch(ConsoleCommand(name="spawn", args=("ghost", 1, 1), cmd_id="sp"))
    (again,) = step_with(loop, admin("kill", "ghost", cmd_id="k1"))
    assert again == first and "ghost" in loop.world.agents.slot_of


@pytest.mark.parametrize("bad_token", [None, "wrong", VIEWER])
def test_precheck_refusals_are_not_remembered(loop: SimulationLoop, bad_token: str | None) -> None:
    (refused,) = step_with(loop, admin("kill", "agent_7", cmd_id="fix-me", token=bad_token))
    assert code(refused) in {"unauthorized", "forbidden"}
    (fixed,) = step_with(loop, admin("kill", "agent_7", cmd_id="fix-me"))
    assert fixed["status"] == "ok" and "agent_7" not in loop.world.agents.slot_of


def test_a_redelivered_refusal_gets_the_first_answer_verbatim(loop: SimulationLoop,
                                                              clock: FakeClock) -> None:
    bad = admin("kill", "agent_7", cmd_id="k-bad", token="wrong")
    (first,) = step_with(loop, bad)
    clock.now += 5
    loop.run_for_ticks(3)
    (again,) = step_with(loop, copy.deepcopy(bad))
    assert code(first) == "unauthorized" and again == first  # same tick, same body
    (fixed,) = step_with(loop, admin("kill", "agent_7", cmd_id="k-bad"))
    assert fixed["status"] == "ok" and fixed["tick"] > first["tick"]
    (late,) = step_with(loop, copy.deepcopy(bad))  # the old bad copy, redelivered after all
    assert late == first
    (forbidden,) = step_with(loop, admin("kill", "agent_6", cmd_id="k-bad", token=VIEWER))
    assert code(forbidden) == "forbidden" and forbidden["tick"] > first["tick"]  # new outcome


def test_refusals_are_remembered_across_a_snapshot(tmp_path: Path, clock: FakeClock) -> None:
    loop = SimulationLoop(make_config(tmp_path), clock=clock)
    (first,) = step_with(loop, admin("kill", "agent_7", cmd_id="k-view", token=VIEWER))
    path = loop.save_snapshot(tmp_path / "snaps")
    restored = SimulationLoop(make_config(tmp_path), clock=clock, audit=False)
    restored.load_snapshot(path)
    (again,) = step_with(restored, admin("kill", "agent_7", cmd_id="k-view", token=VIEWER))
    assert code(first) == "forbidden" and again == first


def test_auto_ids_are_not_handed_out_twice_after_a_restore_while_paused(
        tmp_path: Path, clock: FakeClock) -> None:
    loop = SimulationLoop(make_config(tmp_path), clock=clock)
    step_with(loop, admin("pause", cmd_id="p1"))
    (one,) = step_with(loop, {"name": "help"})  # a viewer command without a cmd_id
    path = loop.save_snapshot(tmp_path / "snaps")
    restored = SimulationLoop(make_config(tmp_path), clock=clock, audit=False)
    restored.load_snapshot(path)
    (two,) = step_with(restored, {"name": "help"})
    assert one["tick"] == two["tick"] and one["cmd_id"] != two["cmd_id"]


def flaky_registry(failures: int) -> Registry:
    registry = Registry()
    remaining = itertools.count(failures, -1)

    @registry.command("flaky", role="admin", mutating=True, summary="fails, then works")
    def flaky(ctx: Context, r: ArgReader) -> dict[str, Any]:
        r.done()
        if next(remaining) > 0:
            raise RuntimeError("transient fault")
        return {"ran": True}

    return registry


def test_internal_errors_are_reported_not_remembered_and_the_shard_survives(
        loop: SimulationLoop) -> None:
    router = ConsoleRouter(loop.telemetry, loop.world, config=loop.config,
                           registry=flaky_registry(1), errors=loop.errors, health=loop.health)
    crashed = router.apply(admin("flaky", cmd_id="f1"), tick=1, received_at=0.0).to_wire()
    assert code(crashed) == "internal" and "RuntimeError: transient fault" in \
        crashed["error"]["message"]
    assert loop.health().last_error["command"] == "flaky"  # type: ignore[index]
    retried = router.apply(admin("flaky", cmd_id="f1"), tick=2, received_at=0.0).to_wire()
    assert retried["status"] == "ok" and retried["result"] == {"ran": True}
    assert router.apply(admin("flaky", cmd_id="f1"), tick=3, received_at=0.0).to_wire() == retried


# -- window, snapshots ---------------------------------------------------------------------------
def test_cmd_id_window_is_bounded(tmp_path: Path) -> None:
    loop = SimulationLoop(make_config(tmp_path, cmd_id_window=3))
    step_with(loop, chat("w0"), chat("w1"), chat("w2"), chat("w3"))
    assert len(loop.router.ledger) == 3 and "w0" not in loop.router.ledger
    step_with(loop, chat("w0"))  # forgotten: runs again
    assert trust(loop) == pytest.approx(0.25)


def test_replay_survives_a_snapshot_round_trip(tmp_path: Path, loop: SimulationLoop) -> None:
    (first,) = step_with(loop, chat("snap-1"))
    loop.run_for_ticks(2)
    path = loop.save_snapshot(tmp_path / "snaps")
    restored = SimulationLoop(loop.config, audit=False)
    restored.load_snapshot(path)
    (replay,) = step_with(restored, chat("snap-1"))
    assert replay == first
    assert trust(restored) == pytest.approx(0.05)
    assert state_hash(restored.world) == state_hash(_advance(loop))


def _advance(loop: SimulationLoop) -> Any:
    loop.step()
    return loop.world


# -- per-tick budget and latest results ----------------------------------------------------------
def test_budget_spreads_commands_over_ticks_in_order(tmp_path: Path) -> None:
    loop = SimulationLoop(make_config(tmp_path, max_commands_per_tick=64))
    ids = [f"c{i:03d}" for i in range(200)]
    for cmd_id in ids:
        loop.telemetry.queue_console_command({"name": "employment_status", "cmd_id": cmd_id})
    applied = [loop.step().console_results for _ in range(5)]
    assert [len(batch) for batch in applied] == [64, 64, 64, 8, 0]
    assert [r["cmd_id"] for batch in applied for r in batch] == ids
    assert [batch[0]["tick"] for batch in applied[:4]] == [1, 2, 3, 4]
    assert loop.health().queue_depth == 0


def test_latest_console_results_are_never_stale(loop: SimulationLoop) -> None:
    step_with(loop, {"name": "help", "cmd_id": "a"})
    assert [r["cmd_id"] for r in loop.telemetry.latest_console_results()] == ["a"]
    step_with(loop, {"name": "help", "cmd_id": "b"}, {"name": "nope", "cmd_id": "c"})
    latest = loop.telemetry.latest_console_results()
    assert [(r["cmd_id"], r["tick"]) for r in latest] == [("b", 2), ("c", 2)]
    loop.step()  # a tick without commands keeps the latest tick that had some
    assert [r["cmd_id"] for r in loop.telemetry.latest_console_results()] == ["b", "c"]
    loop.router.dispatch(ConsoleCommand(name="help"))
    assert [r["cmd_id"] for r in loop.telemetry.latest_console_results()] == ["local-3-0"]


# -- trusted dispatch ----------------------------------------------------------------------------
def test_dispatch_is_trusted_admin_and_recorded(loop: SimulationLoop) -> None:
    router = create_console_router(loop.telemetry, loop.world, config=loop.config)
    loop.world.employment.enqueue_exit(loop.world, "agent_0", loop.world.tick)
    result = router.dispatch(ConsoleCommand(name="employment_exit", args=("approve", "agent_0"),
                                            kwargs={}))
    assert result["status"] == "ok" and result["result"]["approved"] is True
    assert (result["issuer"], result["command"]["mode"], result["cmd_id"]) == (
        "local", "admin", "local-0-0")
    assert loop.telemetry.latest_console_results() == [result]
    lines = (Path(loop.config.console.audit_path)).read_text().splitlines()
    assert '"cmd_id":"local-0-0"' in lines[-1]


def test_dispatch_honours_cmd_ids(loop: SimulationLoop) -> None:
    first = loop.router.dispatch(ConsoleCommand(name="setneed", args=("agent_0", "hunger", 0.9),
                                                cmd_id="n1"))
    again = loop.router.dispatch(ConsoleCommand(name="setneed", args=("agent_0", "hunger", 0.9),
                                                cmd_id="n1"))
    clash = loop.router.dispatch(ConsoleCommand(name="setneed", args=("agent_0", "hunger", 0.1),
                                                cmd_id="n1"))
    assert again == first and code(clash) == "conflict"
    bad = loop.router.dispatch(ConsoleCommand(name="help", args="oops"))  # type: ignore[arg-type]
    assert code(bad) == "usage"


# -- hostile input -------------------------------------------------------------------------------
JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                   max_size=3),
    max_leaves=12)
FIELDS = st.sampled_from(["v", "name", "args", "kwargs", "mode", "cmd_id", "issuer", "auth",
                          "timestamp_ms", "metadata", "junk"])
NAMES = st.sampled_from(["help", "kill", "spawn", "employment_status", "force_chat", "x"])
PAYLOADS = JSONISH | st.dictionaries(FIELDS, JSONISH | NAMES, max_size=6) | st.fixed_dictionaries(
    {"name": NAMES}, optional={"args": JSONISH, "kwargs": JSONISH, "auth": JSONISH,
                               "cmd_id": JSONISH, "mode": JSONISH})


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payload=PAYLOADS)
def test_any_payload_gets_one_well_formed_result(loop: SimulationLoop, payload: Any) -> None:
    before = state_hash(loop.world)
    result = loop.router.apply(copy.deepcopy(payload), tick=1, received_at=0.0).to_wire()
    assert result["status"] in {"ok", "error"}
    assert isinstance(result["cmd_id"], str) and result["cmd_id"]
    assert ("error" in result) == (result["status"] == "error")
    wire.encode(result)
    assert state_hash(loop.world) == before  # no token, so nothing may change


def test_a_bug_in_the_checks_still_answers(loop: SimulationLoop,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_a: Any, **_k: Any) -> Any:
        raise KeyError("checker bug")

    monkeypatch.setattr("shared.console.router.parse_payload", broken)
    result = loop.router.apply({"name": "help", "cmd_id": "h1"}, tick=1, received_at=0.0).to_wire()
    assert (code(result), result["cmd_id"], result["name"]) == ("internal", "h1", "help")
    assert "h1" not in loop.router.ledger


def test_dispatch_of_something_else_is_a_bad_request(loop: SimulationLoop) -> None:
    result = loop.router.dispatch({"name": "help"})  # type: ignore[arg-type]
    assert code(result) == "bad_request"
    assert loop.telemetry.latest_console_results()[-1] == result


def test_a_second_router_given_the_loops_ledger_shares_its_exactly_once_state(
        loop: SimulationLoop) -> None:
    second = ConsoleRouter(loop.telemetry, loop.world, config=loop.config,
                           ledger=loop.router.ledger, errors=loop.errors, health=loop.health)
    first = loop.router.dispatch(ConsoleCommand(name="help"))
    other = second.dispatch(ConsoleCommand(name="help"))
    assert first["cmd_id"] != other["cmd_id"]  # one counter: an assigned id never repeats
    answered = second.apply(chat("shared-1"), tick=1, received_at=0.0).to_wire()
    assert loop.router.apply(chat("shared-1"), tick=2, received_at=0.0).to_wire() == answered
