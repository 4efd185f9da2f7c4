"""The settings models: what a config file may say, validated (pydantic), and nothing else.

Pure on purpose: no file, YAML or environment access here, so the simulation core can depend on
its settings without depending on I/O (``shared/config.py`` reads files and the environment).
Models are mutable (the user's dry-run script does ``config.employment.enforce_job_loop = True``)
but every assignment is validated, and unknown keys are refused everywhere so a typo in a config
never silently does nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

NEEDS = ("hunger", "hygiene", "energy")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


Position = tuple[int, int]


class FeaturesConfig(_Model):
    mortality: bool = True
    relationships: bool = True
    chat: bool = True
    coworker_effects: bool = True
    teleport_movement: bool = False


class NeedsRates(_Model):
    hunger: float = Field(0.01, ge=0.0, le=1.0)
    hygiene: float = Field(0.005, ge=0.0, le=1.0)
    energy: float = Field(0.008, ge=0.0, le=1.0)


class RewardsConfig(_Model):
    decay_rates: NeedsRates = Field(default_factory=lambda: NeedsRates())
    faint_threshold: float = Field(0.03, ge=0.0, le=1.0)


class EconomyConfig(_Model):
    meal_cost: float = Field(0.4, ge=0.0)
    ingredients_cost: float = Field(0.15, ge=0.0)
    shower_cost: float = Field(0.2, ge=0.0)
    starting_wallet: float = Field(1.0, ge=0.0)
    initial_stock: int = Field(2, ge=0)


class JobConfig(_Model):
    start_tick: int = Field(ge=0)
    end_tick: int = Field(gt=0)
    wage_rate: float = Field(ge=0.0)
    lateness_penalty: float = Field(0.1, ge=0.0)
    location: Position

    @model_validator(mode="after")
    def _window(self) -> JobConfig:
        if self.end_tick <= self.start_tick:
            raise ValueError("end_tick must be greater than start_tick")
        return self


class BehaviorConfig(_Model):
    hunger_threshold: float = Field(0.4, ge=0.0, le=1.0)
    hygiene_threshold: float = Field(0.4, ge=0.0, le=1.0)
    energy_threshold: float = Field(0.4, ge=0.0, le=1.0)
    job_arrival_buffer: int = Field(20, ge=0)
    chat_probability: float = Field(0.05, ge=0.0, le=1.0)


class EmploymentConfig(_Model):
    enforce_job_loop: bool = False
    grace_ticks: int = Field(5, ge=0)
    absent_cutoff: int = Field(30, ge=1)
    absence_slack: int = Field(20, ge=0)
    late_tick_penalty: float = Field(0.005, ge=0.0)
    absence_penalty: float = Field(0.2, ge=0.0)
    max_absent_shifts: int = Field(3, ge=1)
    attendance_window: int = Field(3, ge=1, le=30)
    daily_exit_cap: int = Field(2, ge=0)
    exit_queue_limit: int = Field(8, ge=1)
    exit_review_window: int = Field(1440, ge=1)
    respawn_delay_ticks: int = Field(10, ge=0)


class QueueFairnessConfig(_Model):
    cooldown_ticks: int = Field(60, ge=0)
    ghost_step_after: int = Field(3, ge=1)
    age_priority_weight: float = Field(0.1, ge=0.0)


class AffordanceSpec(_Model):
    id: str
    object_type: str
    duration: int = Field(ge=1)
    effects: dict[str, float] = Field(default_factory=dict)
    cost: float = Field(0.0, ge=0.0)
    cost_key: str | None = None  # economy field that overrides ``cost`` (so price changes apply)
    consumes_stock: int = Field(0, ge=0)
    produces_stock: int = Field(0, ge=0)
    requires_power: bool = False
    requires_water: bool = False
    serves: str | None = None  # the need this affordance is chosen for

    @field_validator("effects")
    @classmethod
    def _known_needs(cls, value: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(value) - set(NEEDS))
        if unknown:
            raise ValueError(f"unknown need(s) {unknown}; expected one of {list(NEEDS)}")
        return value


# The core household affordances (the same as configs/affordances/core.yaml), used when a
# config names no affordances file so a config works wherever it is placed.
DEFAULT_AFFORDANCES: list[dict[str, Any]] = [
    {"id": "use_shower", "object_type": "shower", "duration": 30, "cost": 0.2,
     "effects": {"hygiene": 0.45, "energy": -0.03}, "cost_key": "shower_cost",
     "requires_water": True, "serves": "hygiene"},
    {"id": "eat_meal", "object_type": "fridge", "duration": 15, "cost": 0.4,
     "effects": {"hunger": 0.4, "energy": 0.05}, "cost_key": "meal_cost", "consumes_stock": 1,
     "serves": "hunger"},
    {"id": "cook_meal", "object_type": "stove", "duration": 40, "cost": 0.15, "effects": {},
     "cost_key": "ingredients_cost", "produces_stock": 1, "requires_power": True,
     "serves": "hunger"},
    {"id": "rest_sleep", "object_type": "bed", "duration": 60, "effects": {"energy": 0.8},
     "serves": "energy"},
]


class AffordancesConfig(_Model):
    affordances_file: str | None = None  # relative to the config file
    definitions: list[AffordanceSpec] = Field(
        default_factory=lambda: [AffordanceSpec(**d) for d in DEFAULT_AFFORDANCES])


class AgentSpec(_Model):
    id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    position: Position
    home: Position | None = None
    job: str | None = None
    needs: dict[str, float] | None = None
    wallet: float | None = Field(None, ge=0.0)


class ObjectSpec(_Model):
    id: str = Field(min_length=1, max_length=64)
    type: str
    position: Position
    stock: int | None = Field(None, ge=0)


class WorldConfig(_Model):
    seed: int = Field(42, ge=0)
    ticks_per_day: int = Field(1440, ge=10)
    grid_size: int = Field(64, ge=4, le=100_000)


class TelemetryConfig(_Model):
    snapshot_every: int = Field(50, ge=1)
    history: int = Field(256, ge=1)


class ConsoleAuthTokenConfig(_Model):
    token: str | None = Field(None, repr=False)
    token_env: str | None = None
    role: Literal["viewer", "admin"] = "viewer"
    label: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> ConsoleAuthTokenConfig:
        if (self.token is None) == (self.token_env is None):
            raise ValueError("give exactly one of token or token_env")
        return self

    def resolve(self, environ: Mapping[str, str]) -> str | None:
        """The secret itself, from the config or from ``environ`` (the caller's environment:
        read at use time, so a rotated token needs no restart)."""
        if self.token is not None:
            return self.token
        return environ.get(self.token_env or "") or None


class ConsoleAuthConfig(_Model):
    enabled: bool = False
    require_auth_for_viewer: bool = True
    tokens: list[ConsoleAuthTokenConfig] = Field(default_factory=list)


class ConsoleConfig(_Model):
    schema_version: str = "0.2.0"
    supported_schema_min: str = "0.2.0"
    supported_schema_max: str = "0.2.99"
    max_commands_per_tick: int = Field(64, ge=1)
    cmd_id_window: int = Field(100_000, ge=1)
    result_history: int = Field(512, ge=1)
    max_body_bytes: int = Field(65_536, ge=256)
    # docs/CONSOLE.md, "Exactly once": the byte budget of stored non-admin results (and, as
    # much again, of remembered refusals), and the echo size past which a command that
    # changes nothing is echoed as a fingerprint instead of its arguments.
    stored_results_max_bytes: int = Field(32 * 1024 * 1024, ge=65_536)
    echo_max_bytes: int = Field(4096, ge=256)
    audit_path: str = "logs/console/commands.jsonl"
    audit_enabled: bool = True


class SimulationConfig(_Model):
    config_id: str = "townlet"
    features: FeaturesConfig = Field(default_factory=lambda: FeaturesConfig())
    rewards: RewardsConfig = Field(default_factory=lambda: RewardsConfig())
    economy: EconomyConfig = Field(default_factory=lambda: EconomyConfig())
    jobs: dict[str, JobConfig] = Field(default_factory=dict)
    behavior: BehaviorConfig = Field(default_factory=lambda: BehaviorConfig())
    employment: EmploymentConfig = Field(default_factory=lambda: EmploymentConfig())
    queue_fairness: QueueFairnessConfig = Field(default_factory=lambda: QueueFairnessConfig())
    affordances: AffordancesConfig = Field(default_factory=lambda: AffordancesConfig())
    world: WorldConfig = Field(default_factory=lambda: WorldConfig())
    agents: list[AgentSpec] = Field(default_factory=list)
    objects: list[ObjectSpec] = Field(default_factory=list)
    telemetry: TelemetryConfig = Field(default_factory=lambda: TelemetryConfig())
    console_auth: ConsoleAuthConfig = Field(default_factory=lambda: ConsoleAuthConfig())
    console: ConsoleConfig = Field(default_factory=lambda: ConsoleConfig())

    @model_validator(mode="after")
    def _cross_checks(self) -> SimulationConfig:
        for kind, items in (("agents", self.agents), ("objects", self.objects)):
            ids = [item.id for item in items]
            dupes = sorted({i for i in ids if ids.count(i) > 1}) if len(ids) < 5000 else []
            if dupes or len(set(ids)) != len(ids):
                raise ValueError(f"{kind}: duplicate id(s) {dupes or '(many)'}")
        for agent in self.agents:
            if agent.job is not None and agent.job not in self.jobs:
                raise ValueError(f"agent {agent.id}: unknown job {agent.job!r}")
        self._check_job_windows()
        return self

    def _check_job_windows(self) -> None:
        """Every shift window must lie inside one day: 0 <= start_tick < end_tick < ticks_per_day.

        Shifts are evaluated on ``tick % ticks_per_day``, so a tick at or past the day length
        never occurs: such a shift would never start or never close. Reported per key path
        (``jobs.<id>.start_tick`` / ``jobs.<id>.end_tick``), like a field error.
        """
        day = self.world.ticks_per_day
        errors: list[InitErrorDetails] = []
        for job_id, job in self.jobs.items():
            for key, value in (("start_tick", job.start_tick), ("end_tick", job.end_tick)):
                if value >= day:
                    errors.append(InitErrorDetails(
                        type=PydanticCustomError(
                            "job_window",
                            "{value} is not inside the day: a shift window needs "
                            "0 <= start_tick < end_tick < world.ticks_per_day ({day})",
                            {"value": value, "day": day}),
                        loc=("jobs", job_id, key), input=value))
        if errors:
            raise ValidationError.from_exception_data(type(self).__name__, errors)


class FleetShard(_Model):
    id: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    config: str
    tick_rate_hz: float = Field(10.0, ge=0.0)


class FleetConfig(_Model):
    """A fleet: the shards docker-compose.yml runs, also runnable as plain processes."""

    state_root: str = "state"
    audit_log: str = "logs/console/commands.jsonl"
    checkpoint_every: int = Field(200, ge=1)
    shards: list[FleetShard] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> FleetConfig:
        ids = [s.id for s in self.shards]
        if len(set(ids)) != len(ids):
            raise ValueError(f"duplicate shard ids in {ids}")
        return self
