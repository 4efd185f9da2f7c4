"""docker-compose.yml and configs/fleet/local.yaml describe the same fleet (`townlet up` runs the
latter as plain processes), so an edit to one that is not made to the other fails here. CI also
runs `docker-compose config -q` on the compose file."""

from __future__ import annotations

from typing import Any

import yaml

from shared.config import load_config, load_fleet
from tests.simtools import ROOT

SHARD_OPTIONS = ("--shard-id", "--config", "--tick-rate", "--checkpoint-every")


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
        assert options(argv) == {"--shard-id": shard.id, "--config": shard.config,
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
