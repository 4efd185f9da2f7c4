"""Config loading: the example loads; user mistakes give one clear line naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.config import ConfigError, ConsoleAuthConfig, ConsoleAuthTokenConfig, load_config
from tests.simtools import EXAMPLE


def test_example_config_has_a_living_town() -> None:
    cfg = load_config(EXAMPLE)
    assert [a.id for a in cfg.agents][:8] == [f"agent_{i}" for i in range(8)]
    assert {o.type for o in cfg.objects} >= {"shower", "fridge", "stove", "bed"}
    assert set(cfg.jobs) == {"grocer", "barista"}
    assert [d.id for d in cfg.affordances.definitions] == [
        "use_shower", "eat_meal", "cook_meal", "rest_sleep"]


def test_seed_style_mutation_and_model_copy_work() -> None:
    cfg = load_config(EXAMPLE)
    cfg.employment.enforce_job_loop = True
    auth = ConsoleAuthConfig(enabled=True, tokens=[ConsoleAuthTokenConfig(token="t", role="admin")])
    copy = cfg.model_copy(update={"console_auth": auth})
    assert copy.console_auth.enabled and copy.employment.enforce_job_loop


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(("text", "expected"), [
    ("employment:\n  grace_tiks: 5\n", "employment.grace_tiks: unknown key"),
    ("employment:\n  grace_ticks: soon\n",
     "employment.grace_ticks: Input should be a valid integer"),
    ("rewards:\n  decay_rates: {hunger: 2.0}\n",
     "rewards.decay_rates.hunger: Input should be less"),
    ("jobs:\n  x: {start_tick: 10, end_tick: 5, wage_rate: 1, location: [0, 0]}\n", "end_tick"),
    ("agents: [{id: a, position: [0, 0], job: nope}]\n", "unknown job 'nope'"),
    ("- just\n- a list\n", "top level must be a mapping"),
    ("world: {seed: [unclosed\n", "not valid YAML"),
])
def test_bad_configs_name_the_key_and_the_problem(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text))
    assert expected in str(err.value)


def test_missing_files_are_reported(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "absent.yaml")
    path = write(tmp_path, "affordances:\n  affordances_file: nowhere.yaml\n")
    with pytest.raises(ConfigError, match="nowhere.yaml"):
        load_config(path)


def test_assignment_is_validated() -> None:
    cfg = load_config(EXAMPLE)
    with pytest.raises(ValueError):
        cfg.employment.daily_exit_cap = -1
