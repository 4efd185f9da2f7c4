"""The replay store is bounded in bytes; big echoes are trimmed, exactly-once still holds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from shared.config import ConsoleAuthConfig, ConsoleAuthTokenConfig, SimulationConfig
from shared.console.ledger import result_size
from shared.loop import SimulationLoop
from tests.simtools import example_config

ADMIN = "admin-tok-bounds-7f1e"
BLOB = "x" * 60_000


def loop_with(tmp_path: Path, **console: Any) -> SimulationLoop:
    config: SimulationConfig = example_config()
    config.console_auth = ConsoleAuthConfig(enabled=True, require_auth_for_viewer=False, tokens=[
        ConsoleAuthTokenConfig(token=ADMIN, role="admin", label="ops-admin")])
    config.console.audit_enabled = False
    for key, value in console.items():
        setattr(config.console, key, value)
    return SimulationLoop(config, audit=False)


def apply(loop: SimulationLoop, payload: dict[str, Any]) -> dict[str, Any]:
    return loop.router.apply(payload, tick=loop.tick + 1, received_at=0.0).to_wire()


def test_a_flood_of_big_anonymous_commands_stays_within_the_byte_budget(tmp_path: Path) -> None:
    loop = loop_with(tmp_path, stored_results_max_bytes=65_536)
    admin = apply(loop, {"cmd_id": "adm-1", "name": "setneed", "mode": "admin",
                         "args": ["agent_0", "energy", 0.5], "auth": {"token": ADMIN}})
    for n in range(300):
        result = apply(loop, {"cmd_id": f"big-{n}", "name": "help", "args": [BLOB]})
        assert len(json.dumps(result)) < 4096  # neither the echo nor the message holds BLOB
    assert result["command"]["trimmed"]["bytes"] > 60_000
    ledger = loop.router.ledger
    assert 0 < ledger.stored_bytes <= 65_536
    assert "big-0" not in ledger and "big-299" in ledger  # oldest anonymous answers went first
    assert "adm-1" in ledger  # an admin's answer is never pushed out by them
    again = apply(loop, {"cmd_id": "adm-1", "name": "setneed", "mode": "admin",
                         "args": ["agent_0", "energy", 0.5], "auth": {"token": ADMIN}})
    assert again == admin  # exactly once for the admin, byte for byte
    checkpoint = len(json.dumps(ledger.export()))
    assert checkpoint < 200_000, checkpoint  # before issue 9: 300 x 120 KB


def test_refusals_are_budgeted_too(tmp_path: Path) -> None:
    loop = loop_with(tmp_path, stored_results_max_bytes=65_536)
    for n in range(300):  # unknown command: refused, remembered for its redeliveries
        apply(loop, {"cmd_id": f"nope-{n}", "name": "no_such", "args": [BLOB]})
    refusals = loop.router.ledger.export()["refusals"]
    assert 0 < sum(len(json.dumps(r, separators=(",", ":"))) for r in refusals) <= 65_536


def test_a_trimmed_echo_keeps_conflict_and_replay_working(tmp_path: Path) -> None:
    loop = loop_with(tmp_path)
    first = apply(loop, {"cmd_id": "h-1", "name": "help", "args": [BLOB]})
    assert first["command"]["args"] == [] and first["command"]["trimmed"]["fingerprint"]
    assert apply(loop, {"cmd_id": "h-1", "name": "help", "args": [BLOB]}) == first
    other = apply(loop, {"cmd_id": "h-1", "name": "help", "args": [BLOB + "y"]})
    assert other["error"]["code"] == "conflict"
    # Rebuilt from its result (a journal replay, `townlet replay`), the ledger still knows the
    # command by its real fingerprint: a redelivery is answered, not refused as a conflict.
    from shared.console.results import ConsoleResult

    fresh = loop_with(tmp_path)
    fresh.router.reapply(ConsoleResult.from_wire(first))
    assert apply(fresh, {"cmd_id": "h-1", "name": "help", "args": [BLOB]}) == first


def test_commands_that_change_the_world_are_always_echoed_in_full(tmp_path: Path) -> None:
    loop = loop_with(tmp_path, echo_max_bytes=256)
    big_kwargs = {"payload": {"speaker": "agent_0", "listener": "agent_1", "quality": 0.5,
                              "note": "z" * 1000}}
    result = apply(loop, {"cmd_id": "chat-1", "name": "force_chat", "mode": "admin",
                          "kwargs": big_kwargs, "auth": {"token": ADMIN}})
    assert result["command"]["kwargs"] == big_kwargs and "trimmed" not in result["command"]
    assert result_size(loop.router.ledger.lookup("chat-1")[1]) > 1000  # type: ignore[index]
