"""Reading configuration: YAML files and the environment (the only module that touches either).

``load_config`` validates a YAML file into the models of ``shared/settings.py`` (re-exported
here, so ``from shared.config import load_config, ConsoleAuthConfig`` keeps working);
``resolve_token`` reads a console token from the process environment when it is needed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from shared.settings import (
    DEFAULT_AFFORDANCES,
    NEEDS,
    AffordancesConfig,
    AffordanceSpec,
    AgentSpec,
    BehaviorConfig,
    ConsoleAuthConfig,
    ConsoleAuthTokenConfig,
    ConsoleConfig,
    EconomyConfig,
    EmploymentConfig,
    FeaturesConfig,
    FleetConfig,
    FleetShard,
    JobConfig,
    NeedsRates,
    ObjectSpec,
    Position,
    QueueFairnessConfig,
    RewardsConfig,
    SimulationConfig,
    TelemetryConfig,
    WorldConfig,
)

__all__ = [
    "AffordancesConfig",
    "AffordanceSpec",
    "AgentSpec",
    "BehaviorConfig",
    "ConfigError",
    "ConsoleAuthConfig",
    "ConsoleAuthTokenConfig",
    "ConsoleConfig",
    "DEFAULT_AFFORDANCES",
    "environment_value",
    "EconomyConfig",
    "EmploymentConfig",
    "FeaturesConfig",
    "FleetConfig",
    "FleetShard",
    "JobConfig",
    "load_config",
    "load_fleet",
    "NEEDS",
    "NeedsRates",
    "ObjectSpec",
    "parse_config",
    "Position",
    "QueueFairnessConfig",
    "resolve_token",
    "RewardsConfig",
    "SimulationConfig",
    "TelemetryConfig",
    "WorldConfig",
]


class ConfigError(Exception):
    """A user mistake in a config file: the message names the key path and the problem."""


def environment_value(name: str) -> str | None:
    """The process environment's value for ``name`` (unset or empty: None).

    The one place settings are read from the environment (broker URLs, token variables), so
    where configuration comes from is never a surprise."""
    return os.environ.get(name) or None


def resolve_token(entry: ConsoleAuthTokenConfig) -> str | None:
    """A configured console token, env-sourced ones read now (rotation needs no restart)."""
    return entry.resolve(os.environ)


def load_fleet(path: str | Path) -> FleetConfig:
    path = Path(path)
    raw = _read_yaml(path)
    try:
        return FleetConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_validation(exc, str(path))) from None


def _format_validation(err: ValidationError, source: str) -> str:
    lines = [f"invalid config {source}:"]
    for item in err.errors():
        path = ".".join(str(p) for p in item["loc"]) or "(top level)"
        msg = item["msg"]
        if item["type"] == "extra_forbidden":
            msg = "unknown key"
        lines.append(f"  {path}: {msg}")
    return "\n".join(lines)


def _read_yaml(path: Path) -> Any:
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None


def _load_affordances(raw: dict[str, Any], base: Path) -> None:
    """Inline the affordance definitions file, resolved relative to the config file."""
    section = raw.get("affordances")
    if not isinstance(section, dict):
        return  # absent: built-in defaults; wrong type: reported by validation
    ref = section.get("affordances_file")
    if not isinstance(ref, str) or "definitions" in section:
        return
    path = (base / ref).resolve()
    if not path.is_file():
        raise ConfigError(f"affordances.affordances_file: file not found: {path}")
    data = _read_yaml(path)
    defs = data.get("affordances") if isinstance(data, dict) else None
    if not isinstance(defs, list):
        raise ConfigError(f"affordances.affordances_file: {path} must hold a list 'affordances'")
    section["definitions"] = defs


def parse_config(raw: Any, *, source: str = "<dict>", base: Path | None = None) -> SimulationConfig:
    """Validate an already-parsed mapping (used by tests and by ``load_config``)."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"invalid config {source}: top level must be a mapping")
    if base is not None:
        _load_affordances(raw, base)
    try:
        return SimulationConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_validation(exc, source)) from None


def load_config(path: str | Path) -> SimulationConfig:
    """Read, resolve and validate a YAML config; raises ConfigError with a readable message."""
    path = Path(path)
    raw = _read_yaml(path)
    return parse_config(raw, source=str(path), base=path.parent)
