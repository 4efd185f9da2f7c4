"""docker-compose.yml and configs/fleet/local.yaml describe the same fleet (`townlet up` runs the
latter as plain processes), so an edit to one that is not made to the other fails here. CI also
runs `docker-compose config -q` on the compose file."""

from __future__ import annotations

from typing import Any

import pytest
import typer
import yaml

from ops.cli import app
from ops.fleet import child_commands
from shared.config import load_config, load_fleet
from tests.simtools import ROOT

# click's UsageError, whichever click Typer runs on (recent Typer vendors its own copy):
# BadParameter's base class.
UsageError = typer.BadParameter.__mro__[1]

SHARD_OPTIONS = ("--shard", "--config", "--tick-rate", "--checkpoint-every")


def options(argv: list[str]) -> dict[str, str]:
    return {flag: argv[argv.index(flag) + 1] for flag in SHARD_OPTIONS if flag in argv}


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded


def test_compose_runs_the_shards_of_the_local_fleet_with_the_same_options() -> None:
    fleet = load_fleet(ROOT / "configs" / "fleet" / "local.yaml")
    services = compose()["services"]
    shards = {name: svc for name, svc in services.items() if name.startswith("shard-")}
    assert set(shards) == {f"shard-{s.id}" for s in fleet.shards}
    for shard in fleet.shards:
        argv = [str(a) for a in shards[f"shard-{shard.id}"]["command"]]
        assert argv[0] == "shard"
        assert options(argv) == {"--shard": shard.id, "--config": shard.config,
                                 "--tick-rate": f"{shard.tick_rate_hz:g}",
                                 "--checkpoint-every": str(fleet.checkpoint_every)}
        assert argv[argv.index("--state-dir") + 1] == f"/state/{shard.id}"  # on a shared volume
        load_config(ROOT / shard.config)  # and the config it names is valid
    assert services["audit"]["command"][0] == "audit"


def test_compose_gives_each_shard_the_token_variables_its_config_reads() -> None:
    services = compose()["services"]
    for name, svc in services.items():
        if not name.startswith("shard-"):
            continue
        config = load_config(ROOT / svc["command"][svc["command"].index("--config") + 1])
        wanted = {t.token_env for t in config.console_auth.tokens if t.token_env}
        assert wanted <= set(svc["environment"]), name
        assert "TOWNLET_AMQP_URL" in svc["environment"], name
    assert "TOWNLET_ADMIN_TOKEN" not in services["audit"]["environment"]  # least privilege


def parse(argv: list[str]) -> None:
    """Parse ``townlet ARGV`` exactly as the CLI would (types, choices, required options),
    without running it; UsageError if it is not a valid invocation."""
    group: Any = typer.main.get_command(app)
    command = group.commands.get(argv[0])
    assert command is not None, f"no command {argv[0]!r}"
    command.make_context(argv[0], list(argv[1:])).close()


def compose_invocations() -> list[tuple[str, list[str]]]:
    out = []
    for name, svc in compose()["services"].items():
        if "command" in svc:
            out.append((f"{name} command", [str(a) for a in svc["command"]]))
        test = (svc.get("healthcheck") or {}).get("test") or []
        if test[:2] == ["CMD", "townlet"]:
            out.append((f"{name} healthcheck", [str(a) for a in test[2:]]))
    return out


def test_every_compose_command_is_a_valid_townlet_invocation() -> None:
    invocations = compose_invocations()
    townlet_services = [n for n, s in compose()["services"].items() if "build" in s]
    # every townlet service has a command and a healthcheck that runs the probe
    assert len(invocations) == 2 * len(townlet_services)
    for where, argv in invocations:
        try:
            parse(argv)
        except UsageError as exc:
            pytest.fail(f"{where}: `townlet {' '.join(argv)}` is not valid: {exc}")


def test_the_validity_check_catches_a_stale_flag() -> None:
    with pytest.raises(UsageError):
        parse(["shard", "--shard", "a", "--config", "c.yaml", "--no-such-flag"])
    with pytest.raises(UsageError):
        parse(["tail", "--kind", "bogus"])


def test_townlet_up_children_are_valid_invocations_too() -> None:
    fleet = load_fleet(ROOT / "configs" / "fleet" / "local.yaml")
    for argv in child_commands(fleet, max_ticks=5).values():
        parse(argv[3:])  # after [python, -m, ops.cli]


def test_compose_names_the_broker_for_containers_and_keeps_host_ports_configurable() -> None:
    services = compose()["services"]
    for name, svc in services.items():
        if "build" in svc:
            assert "@rabbitmq:5672" in svc["environment"]["TOWNLET_AMQP_URL"], name
            assert "${TOWNLET_AMQP_URL" not in svc["environment"]["TOWNLET_AMQP_URL"], name
    rabbit = services["rabbitmq"]
    assert rabbit["hostname"] == "rabbitmq"
    assert all("${" in port for port in rabbit["ports"])
    assert all("healthcheck" in svc for svc in services.values())
