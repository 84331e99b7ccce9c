"""The operational tables (SQLAlchemy 2): tokens, training jobs, robots, deployments, telemetry,
drift incidents and an audit trail of API actions, migrated by Alembic (dreamops/migrations), and
the registry's alias audit log. SQLite by default, PostgreSQL in production (`DREAMOPS_DATABASE_URL`).

They live in core because several layers share them: the API writes telemetry and deployments, the
drift jobs read telemetry and write incidents, and the registry's promotions write alias moves
through the API's sessions (the canary moves an alias in the same transaction as its stage)."""
from __future__ import annotations

import uuid
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from dreamops import generation
from dreamops.sql import make_engine, make_reader


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def new_id() -> str:
    return uuid.uuid4().hex


class UTCDateTime(sa.TypeDecorator):
    """Timezone-aware in and out, also on SQLite (which hands datetimes back naive)."""
    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_result_value(self, value, dialect):
        return value.replace(tzinfo=timezone.utc) if value is not None and value.tzinfo is None else value


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime, dict: sa.JSON, list: sa.JSON}


class ApiToken(Base):
    __tablename__ = "api_tokens"
    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(sa.String(128))
    role: Mapped[str] = mapped_column(sa.String(16))
    secret_hash: Mapped[str] = mapped_column(sa.String(64))  # sha256 of the secret part; never the token
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked: Mapped[bool] = mapped_column(default=False)


class TrainingJob(Base):
    __tablename__ = "training_jobs"
    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True, default=new_id)
    warehouse_id: Mapped[str] = mapped_column(sa.String(64), index=True)
    agent: Mapped[str] = mapped_column(sa.String(64))
    profile: Mapped[str] = mapped_column(sa.String(16))
    data_window_hours: Mapped[float | None]
    idempotency_key: Mapped[str | None] = mapped_column(sa.String(128), unique=True)
    flow_run_id: Mapped[str | None] = mapped_column(sa.String(64))
    status: Mapped[str] = mapped_column(sa.String(16), default="queued")  # queued|running|completed|failed|cancelled
    requested_by: Mapped[str] = mapped_column(sa.String(128))
    version: Mapped[str | None] = mapped_column(sa.String(16))
    error: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Robot(Base):
    __tablename__ = "robots"
    id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    warehouse_id: Mapped[str] = mapped_column(sa.String(64), index=True)
    last_seen: Mapped[datetime] = mapped_column(default=utcnow)
    running_version: Mapped[str | None] = mapped_column(sa.String(16))


class Deployment(Base):
    __tablename__ = "deployments"
    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True, default=new_id)
    model: Mapped[str] = mapped_column(sa.String(256))
    version: Mapped[str] = mapped_column(sa.String(16))
    baseline_version: Mapped[str | None] = mapped_column(sa.String(16))
    warehouse_id: Mapped[str | None] = mapped_column(sa.String(64), index=True)
    robot_ids: Mapped[list | None]
    stages: Mapped[list]  # canary percents, e.g. [10, 25, 50, 100]
    stage_index: Mapped[int] = mapped_column(default=0)
    stage_started_at: Mapped[datetime] = mapped_column(default=utcnow)
    status: Mapped[str] = mapped_column(sa.String(16), default="rolling_out", index=True)
    policy: Mapped[dict]  # bake time, minimum episodes, guardrail thresholds, alpha, power
    statistics: Mapped[dict] = mapped_column(default=dict)  # the last evaluation, shown by GET
    reason: Mapped[str | None] = mapped_column(sa.Text)  # why it ended (promoted, breach, by hand)
    breach_at: Mapped[datetime | None]  # when the breaching episode ended (robot clock)
    ended_at: Mapped[datetime | None]
    rollback_seconds: Mapped[float | None]  # breaching episode -> assignments back on the baseline
    created_by: Mapped[str] = mapped_column(sa.String(128))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class TelemetryEpisode(Base):
    __tablename__ = "telemetry_episodes"
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    robot_id: Mapped[str] = mapped_column(sa.String(64), index=True)
    warehouse_id: Mapped[str] = mapped_column(sa.String(64), index=True)
    # the registered model (family) the episode's version belongs to: version numbers repeat across models
    model: Mapped[str] = mapped_column(sa.String(256), default="carracing-vmc", server_default="carracing-vmc")
    version: Mapped[str] = mapped_column(sa.String(16))
    deployment_id: Mapped[str | None] = mapped_column(sa.String(32), index=True)
    arm: Mapped[str | None] = mapped_column(sa.String(16))
    stage_index: Mapped[int | None]
    seed: Mapped[int] = mapped_column(sa.BigInteger)  # int64 like the schema (PostgreSQL INTEGER is int32)
    reward: Mapped[float]
    collisions: Mapped[int] = mapped_column(sa.BigInteger)
    steps: Mapped[int] = mapped_column(sa.BigInteger)
    latency_p50_ms: Mapped[float]
    latency_p99_ms: Mapped[float]
    residual: Mapped[float | None]
    success_prob: Mapped[float | None]  # the success head's predicted probability (pick-vla; drift)
    ended_at: Mapped[datetime]
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    latents: Mapped[list | None]


class DriftIncident(Base):
    """Drift found for a warehouse: its robots run `fallback_version` (last-known-good) until a new
    production version lands."""
    __tablename__ = "drift_incidents"
    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True, default=new_id)
    warehouse_id: Mapped[str] = mapped_column(sa.String(64), index=True)
    model: Mapped[str] = mapped_column(sa.String(256))
    version: Mapped[str] = mapped_column(sa.String(16))  # the production version that drifted
    fallback_version: Mapped[str | None] = mapped_column(sa.String(16))
    signals: Mapped[dict]
    detected_at: Mapped[datetime] = mapped_column(default=utcnow)
    resolved_at: Mapped[datetime | None]
    resolution: Mapped[str | None] = mapped_column(sa.Text)


class ApiAuditEvent(Base):
    __tablename__ = "api_audit"
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    actor: Mapped[str] = mapped_column(sa.String(128))
    action: Mapped[str] = mapped_column(sa.String(64))
    detail: Mapped[dict] = mapped_column(default=dict)


# The registry's alias audit log (dreamops.registry.audit reads and writes it). Not under Alembic:
# registry-only deployments (no API) create it on first use, as they always have.
audit_metadata = sa.MetaData()

alias_moves = sa.Table(
    "dreamops_alias_moves", audit_metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("model", sa.String(256), nullable=False, index=True),
    sa.Column("alias", sa.String(64), nullable=False),
    sa.Column("from_version", sa.String(32)),
    sa.Column("to_version", sa.String(32)),  # NULL: the alias was removed
    sa.Column("actor", sa.String(256), nullable=False),
    sa.Column("source", sa.String(32), nullable=False),  # cli | api | flow | webhook | reconciler
    sa.Column("reason", sa.Text, nullable=False, default=""),
    sa.Column("outcome", sa.String(16), nullable=False),  # applied | refused | reverted
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
)

webhook_deliveries = sa.Table(
    "dreamops_webhook_deliveries", audit_metadata,
    sa.Column("delivery_id", sa.String(64), primary_key=True),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
)


MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def upgrade(url: str) -> None:
    """Bring the database to the newest schema (Alembic `upgrade head`)."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    command.upgrade(cfg, "head")


@lru_cache(maxsize=8)
def session_factory(url: str) -> sessionmaker[Session]:
    upgrade(url)
    engine = make_engine(url)
    audit_metadata.create_all(engine)  # alias moves are written through these sessions (canary.atomically)
    generation.create(engine)
    return sessionmaker(engine, expire_on_commit=False)


@lru_cache(maxsize=8)
def reader(url: str) -> sa.Engine:
    """Lock-free single-statement reads (dreamops.sql.make_reader) of the migrated database."""
    session_factory(url)
    return make_reader(url)
