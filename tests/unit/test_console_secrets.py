"""No console token reaches a result, event, audit line, telemetry payload, snapshot or log line.

Whatever the outcome: accepted, refused at every check, crashed with the token in the
exception text, or with the token pasted where it does not belong.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from shared.config import ConsoleAuthConfig, ConsoleAuthTokenConfig, load_config
from shared.console.commands import ArgReader, CommandSpec, Context, Registry, default_registry
from shared.console.handlers import ConsoleCommand
from shared.console.router import ConsoleRouter
from shared.logging import configure_logging
from shared.loop import SimulationLoop

REPO = Path(__file__).resolve().parents[2]
VIEWER, ADMIN, ENV_TOKEN = "viewer-Zq81x", "admin-Pw42k", "envtok-Hy63m"
SECRETS = (VIEWER, ADMIN, ENV_TOKEN)


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    structlog.reset_defaults()
    root.handlers[:] = handlers
    root.setLevel(level)


def leaky_registry() -> Registry:
    """The real commands plus one that crashes quoting the token and one that echoes input."""
    registry = Registry()
    for spec in default_registry().specs():
        registry.add(spec)

    def crash(ctx: Context, r: ArgReader) -> dict[str, Any]:
        raise ValueError(f"could not use {ADMIN} for {r.value('x', None)}")

    def echo(ctx: Context, r: ArgReader) -> dict[str, Any]:
        return {"said": r.value("x", None), "env": ENV_TOKEN}

    registry.add(CommandSpec("crash", "admin", "crash", "crashes", crash, True))
    registry.add(CommandSpec("echo", "viewer", "echo [x]", "echoes", echo, False))
    return registry


def payloads() -> list[Any]:
    def p(name: str, token: str | None, **extra: Any) -> dict[str, Any]:
        body: dict[str, Any] = {"name": name, **extra}
        if token is not None:
            body["auth"] = {"token": token}
        return body

    return [
        p("force_chat", ADMIN, cmd_id="ok-1", args=["agent_0", "agent_1"]),
        p("help", VIEWER), p("echo", VIEWER), p("echo", ENV_TOKEN),
        p("kill", "wrong-" + ADMIN, cmd_id="k1", args=["agent_3"]),  # unauthorized
        p("kill", VIEWER, cmd_id="k2", args=["agent_3"]),  # forbidden
        p("kill", ADMIN, args=["agent_3"]),  # usage: no cmd_id
        p("nope", ADMIN, cmd_id="u1"),  # unsupported
        p("kill", ADMIN, cmd_id="nf", args=["ghost"]),  # not_found
        p("crash", ADMIN, cmd_id="boom", args=["x"]),  # internal, token in the exception text
        p("spawn", ADMIN, cmd_id="s1", args=[ADMIN, 1, 1]),  # token as world data: refused
        p("echo", None, kwargs={"x": VIEWER}), p("help", VIEWER, metadata={"note": ADMIN}),
        p("help", VIEWER, issuer=ADMIN), p("help", ADMIN, cmd_id=ADMIN),
        p(ADMIN, VIEWER), {"name": "help", "token": ADMIN}, {"name": "help", ADMIN: 1},
        {"name": "help", "auth": ADMIN}, {"name": "help", "auth": {"token": ADMIN, "x": 1}},
        {"name": 5, "auth": {"token": ADMIN}, "cmd_id": "shape"}, [ADMIN], ADMIN,
    ]


def test_no_token_anywhere_whatever_the_outcome(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                caplog: pytest.LogCaptureFixture,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    stream = io.StringIO()
    configure_logging(level="debug", json=True, stream=stream)
    monkeypatch.setenv("TOWNLET_TEST_ENV_TOKEN", ENV_TOKEN)
    config = load_config(REPO / "configs/examples/poc_hybrid.yaml")
    config = config.model_copy(update={
        "console_auth": ConsoleAuthConfig(enabled=True, require_auth_for_viewer=False, tokens=[
            ConsoleAuthTokenConfig(token=VIEWER, role="viewer"),
            ConsoleAuthTokenConfig(token=ADMIN, role="admin"),
            ConsoleAuthTokenConfig(token_env="TOWNLET_TEST_ENV_TOKEN", role="viewer")]),
        "console": config.console.model_copy(
            update={"audit_path": str(tmp_path / "logs" / "commands.jsonl")})})
    loop = SimulationLoop(config)
    loop.router = ConsoleRouter(loop.telemetry, loop.world, config=config,
                                registry=leaky_registry(), controls=loop)

    for payload in payloads():
        loop.telemetry.queue_console_command(payload)
    artifacts = loop.step()
    loop.router.dispatch(ConsoleCommand(name="help", auth={"token": ADMIN}))
    loop.router.dispatch(ConsoleCommand(name="echo", kwargs={"x": ADMIN}))
    loop.router.dispatch(ConsoleCommand(name="crash", args=(ADMIN,)))
    telemetry = loop.telemetry.tick_message(loop.world, loop.last_hash, artifacts.events,
                                            artifacts.console_results)
    snapshot = loop.save_snapshot(tmp_path / "snaps").read_bytes()

    results = artifacts.console_results
    codes = {r.get("error", {}).get("code") for r in results}
    assert codes >= {None, "unauthorized", "forbidden", "usage", "unsupported", "not_found",
                     "internal", "invalid_args", "bad_request"}
    assert len(results) == len(payloads())
    assert "agent_3" in loop.world.agents.slot_of  # no refused kill went through
    everything = "\n".join([
        repr(results), repr(loop.telemetry.console_history()), repr(artifacts.events),
        (tmp_path / "logs" / "commands.jsonl").read_text(), repr(telemetry),
        snapshot.decode("latin-1"), repr(loop.health()), stream.getvalue(),
        caplog.text, *capsys.readouterr()])
    assert "console_command_crashed" in stream.getvalue()  # the crash was logged...
    for secret in SECRETS:
        assert secret not in everything  # ...and nothing anywhere quotes a token
