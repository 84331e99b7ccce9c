"""Request and response bodies of the REST API.

Every number is finite and within a range its column holds (int64, and floats far from overflow
so that sums and means stay finite); every string is no longer than its PostgreSQL column (SQLite
would store it, PostgreSQL would refuse it: the two stores must agree)."""
from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from dreamops.families import DEFAULT_FAMILY
from dreamops.registry.audit import AliasMove


INT64_MIN, INT64_MAX = -(2 ** 63), 2 ** 63 - 1
MAX_ABS = 1e12  # any figure a robot reports; sums of 10^6 of them stay far from float overflow
ID_PATTERN = r"^[A-Za-z0-9_.-]+$"
NO_NUL = r"^[^\x00]*$"  # PostgreSQL text cannot hold NUL, even as a query parameter (SQLite can: they must agree)

Finite = Annotated[float, Field(allow_inf_nan=False, ge=-MAX_ABS, le=MAX_ABS)]
Count = Annotated[int, Field(ge=0, le=INT64_MAX)]
WarehouseId = Annotated[str, Field(min_length=1, max_length=64, pattern=ID_PATTERN)]  # String(64) columns
RobotId = Annotated[str, Field(min_length=1, max_length=64, pattern=ID_PATTERN)]
VersionRef = Annotated[str, Field(min_length=1, max_length=16, pattern=ID_PATTERN)]  # String(16) columns
DeploymentId = Annotated[str, Field(min_length=1, max_length=32, pattern=ID_PATTERN)]  # String(32) columns
JobId = Annotated[str, Field(min_length=1, max_length=32, pattern=ID_PATTERN)]
MODEL_NAME_MAX = 256  # String(256) columns
ModelName = Annotated[str, Field(min_length=1, max_length=MODEL_NAME_MAX, pattern=NO_NUL)]  # MLflow's names are free text
# a version by number, semver or alias; the examples (in the OpenAPI document) are what a client sends
VersionPath = Annotated[str, Field(min_length=1, max_length=MODEL_NAME_MAX, pattern=ID_PATTERN,
                                   examples=["2", "v1.1.0", "production"])]


class ErrorOut(BaseModel):
    """Every error answer: the HTTP status again and what went wrong (validation errors add `errors`)."""
    status: int
    message: str
    errors: list[dict] | None = None


class AliasMoveOut(BaseModel):
    model: str
    alias: str
    from_version: str | None
    to_version: str | None
    actor: str
    source: str
    reason: str
    outcome: str
    at: datetime | None

    @classmethod
    def of(cls, move: AliasMove) -> "AliasMoveOut":
        return cls(model=move.model, alias=move.alias, from_version=move.from_version, to_version=move.to_version,
                   actor=move.actor, source=move.source, reason=move.reason, outcome=move.outcome, at=move.at)


class WebhookAck(BaseModel):
    delivery_id: str
    event: str
    model: str | None
    moves: list[AliasMoveOut]
    deployments: list[str] = []  # rollouts started by a `canary` alias set in the MLflow UI


# --- robots (the fleet's side of the API) ---

class Assignment(BaseModel):
    """What a robot should run now. `version` is None when nothing is deployed to it yet."""
    robot_id: str
    warehouse_id: str
    model: str
    version: str | None
    semver: str | None = None
    deployment_id: str | None = None
    arm: str | None = None  # "canary" | "baseline" | "production" | "fallback" (drift: last-known-good)


class EpisodeReport(BaseModel):
    seed: int = Field(ge=INT64_MIN, le=INT64_MAX)
    reward: Finite
    collisions: Count = Field(description="off-track events (CarRacing's collisions)")
    steps: int = Field(ge=1, le=INT64_MAX)
    latency_p50_ms: float = Field(ge=0, le=MAX_ABS, allow_inf_nan=False)
    latency_p99_ms: float = Field(ge=0, le=MAX_ABS, allow_inf_nan=False)
    residual: float | None = Field(None, ge=0, le=MAX_ABS, allow_inf_nan=False,
                                   description="mean |M's predicted next z - encoded z| (drift)")
    success_prob: float | None = Field(None, ge=0, le=1, allow_inf_nan=False,
                                       description="the success head's predicted probability that the episode "
                                                   "succeeded, from what the robot saw (drift: calibration)")
    ended_at: datetime = Field(description="when the episode ended, on the robot's clock (UTC)")


class TelemetryBatch(BaseModel):
    warehouse_id: WarehouseId
    model: ModelName = Field(DEFAULT_FAMILY, description="the registered model the version belongs to")
    version: VersionRef
    deployment_id: DeploymentId | None = None
    episodes: list[EpisodeReport] = Field(min_length=1, max_length=1000)
    latents: list[Annotated[list[Finite], Field(max_length=1024)]] = Field(
        default_factory=list, max_length=256, description="a sample of V's latent means, for drift checks")


class TelemetryAck(BaseModel):
    accepted: int
    deployment_status: str | None = None


class EpisodeUploadAck(BaseModel):
    key: str
    uri: str
    frames: int
    sha256: str = Field(description="of the uploaded bytes; in the key too, and checked by every read for training")


# --- training ---

class TrainingTrigger(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"warehouse_id": "WH-1", "data_window_hours": 24,
                                                               "agent": DEFAULT_FAMILY, "profile": "quick"}]})
    warehouse_id: WarehouseId
    data_window_hours: float | None = Field(None, gt=0, le=24 * 365,
                                            description="also train on fleet episodes uploaded in this window")
    agent: str = Field(DEFAULT_FAMILY, max_length=64, description="an agent family of dreamops.families")
    profile: str = Field("quick", max_length=16)


class TrainingJobOut(BaseModel):
    job_id: str
    status: str
    warehouse_id: str
    agent: str
    profile: str
    data_window_hours: float | None
    flow_run_id: str | None
    version: str | None
    error: str | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, job) -> "TrainingJobOut":
        return cls(job_id=job.id, status=job.status, warehouse_id=job.warehouse_id, agent=job.agent,
                   profile=job.profile, data_window_hours=job.data_window_hours, flow_run_id=job.flow_run_id,
                   version=job.version, error=job.error, created_at=job.created_at, updated_at=job.updated_at)


# --- models ---

class VersionOut(BaseModel):
    model: str
    version: str
    semver: str | None
    aliases: list[str]
    validation_status: str
    gates: dict[str, str]
    metrics: dict[str, float]
    tags: dict[str, str]
    lineage: dict | None = None


# --- deployments ---

class DeployRequest(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"warehouse_id": "WH-1", "rollout_percent": 10},
                                                              {"robot_ids": ["r1", "r2"], "stages": [50, 100]}]})
    warehouse_id: WarehouseId | None = None
    robot_ids: list[RobotId] | None = Field(None, min_length=1, max_length=10_000)
    rollout_percent: int = Field(10, gt=0, le=100, description="the first stage's share of robots on the canary")
    stages: list[Annotated[int, Field(ge=INT64_MIN, le=INT64_MAX)]] | None = Field(
        None, max_length=100, description="explicit stages, e.g. [5, 20, 100]; default from rollout_percent")
    bake_seconds: float = Field(60.0, ge=0, le=MAX_ABS, allow_inf_nan=False)
    min_episodes: int = Field(5, ge=1, le=INT64_MAX)
    max_collisions_per_episode: float = Field(0.0, ge=0, le=MAX_ABS, allow_inf_nan=False)
    min_mean_reward: Finite = 0.0
    max_latency_p99_ms: float = Field(80.0, gt=0, le=MAX_ABS, allow_inf_nan=False)
    alpha: float = Field(0.05, gt=0, lt=1)
    power: float = Field(0.8, gt=0, lt=1)
    min_detectable_drop: float = Field(50.0, gt=0, le=MAX_ABS, allow_inf_nan=False,
                                       description="reward drop the Welch test's sample size is computed for")
    min_detectable_success_drop: float = Field(0.10, gt=0, lt=1, description="success-rate drop the two-proportion "
                                               "test's sample size is computed for (a family judged on success)")


class DeploymentOut(BaseModel):
    deployment_id: str
    status: str
    model: str
    version: str
    baseline_version: str | None
    warehouse_id: str | None
    robot_ids: list[str] | None
    stages: list[int]
    stage_index: int
    percent: int
    stage_started_at: datetime
    policy: dict
    statistics: dict
    reason: str | None
    breach_at: datetime | None
    ended_at: datetime | None
    rollback_seconds: float | None
    created_at: datetime

    @classmethod
    def of(cls, d) -> "DeploymentOut":
        return cls(deployment_id=d.id, status=d.status, model=d.model, version=d.version,
                   baseline_version=d.baseline_version, warehouse_id=d.warehouse_id, robot_ids=d.robot_ids,
                   stages=d.stages, stage_index=d.stage_index, percent=d.stages[d.stage_index],
                   stage_started_at=d.stage_started_at, policy=d.policy, statistics=d.statistics, reason=d.reason,
                   breach_at=d.breach_at, ended_at=d.ended_at, rollback_seconds=d.rollback_seconds,
                   created_at=d.created_at)


class RollbackRequest(BaseModel):
    reason: str = Field("rolled back by hand", max_length=500, pattern=NO_NUL)
