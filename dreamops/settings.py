"""Process-wide settings (env prefix DREAMOPS_). Read once, at the edges (CLI, flows, API)."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DREAMOPS_", extra="ignore")

    home: Path = Field(Path(".dreamops"), description="Root of the embedded default stores.")
    tracking_uri: str | None = Field(None, description="MLflow tracking URI; default: SQLite under home.")
    registry_uri: str | None = Field(None, description="MLflow registry URI; default: the tracking URI.")
    experiment: str = Field("dreamops", description="MLflow experiment that training runs go to.")
    dataset_dir: Path | None = Field(None, description="Local dataset store; default: home/datasets.")
    workers: int = Field(0, description="Parallel simulator processes; 0 means one per CPU core.")
    ray_address: str | None = Field(None, description="Ray cluster (host:port) that collection and real-env "
                                    "evaluation run on; default: `workers` local processes.")
    database_url: str | None = Field(None, description="dreamops's own SQL store (alias audit log, webhook "
                                     "deliveries); default: SQLite under home. PostgreSQL in production.")
    storage_uri: str | None = Field(None, description="Object store for datasets and uploads: a folder or "
                                    "s3://bucket/prefix; default: the local dataset folder.")
    s3_endpoint_url: str | None = Field(None, description="S3 endpoint (MinIO, moto); default: "
                                        "$MLFLOW_S3_ENDPOINT_URL, else AWS.")
    actor: str | None = Field(None, description="Who alias moves are recorded as; default: the OS user.")
    webhook_secret: str | None = Field(None, description="Shared secret of the MLflow webhooks (HMAC-SHA256).")
    webhook_max_age_s: int = Field(300, description="Webhook deliveries older than this are rejected.")
    canary_tick_s: float = Field(2.0, ge=0, description="How often the API re-evaluates active canary rollouts "
                                 "(0: never; rollouts then advance only as telemetry arrives).")
    reconcile_interval_s: float = Field(30.0, description="How often the API polls MLflow's aliases for moves "
                                        "made in the UI (the webhook fallback); 0 turns it off.")
    api_workers: int = Field(0, ge=0, description="uvicorn worker processes of `dreamops api`; 0: one per CPU "
                             "core on PostgreSQL, 1 on SQLite (whose one write lock the workers would queue on).")
    api_access_log: bool = Field(False, description="uvicorn's access log of `dreamops api` (one line per "
                                 "request; at fleet rates ~10% of the API's CPU). Errors are logged either way.")
    api_cache_ttl_s: float = Field(2.0, ge=0, description="The longest an API worker serves an assignment or a "
                                   "model lookup from its cache. Every change dreamops makes (alias moves, rollout "
                                   "steps, drift incidents, webhook deliveries) invalidates the cache at once, in "
                                   "every worker; this bounds what it cannot see: tags edited in MLflow, an alias set "
                                   "in the MLflow UI before the webhook or reconciler reports it, a token revoked by "
                                   "hand, robots leaving a canary's fleet. 0 turns the caches off.")
    robot_seen_interval_s: float = Field(30.0, ge=0, description="An assignment lookup writes the robot's "
                                         "last_seen at most this often per API worker while its version is "
                                         "unchanged (a new version, warehouse or first contact is written at once).")
    canary_eval_interval_s: float = Field(1.0, ge=0, description="Telemetry of an active rollout is judged at "
                                          "most this often per API worker; a batch holding a canary episode past a "
                                          "guardrail threshold is judged at once, and the tick judges every rollout "
                                          "every canary_tick_s. 0: every batch.")
    warehouses: list[str] = Field(default_factory=lambda: ["default"], description="Warehouses with a weekly "
                                  "retrain and an hourly drift check (JSON list in the environment).")
    served_agents: list[str] = Field(default_factory=lambda: ["carracing-vmc"], description="Agent families "
                                     "each warehouse runs: a drift check and a weekly retrain per warehouse and "
                                     "family, and a retrain-on-drift per family (JSON list in the environment).")
    retrain_profile: str = Field("quick", description="Profile of scheduled and drift-triggered retrains.")
    retrain_cron: str = Field("0 3 * * 1", description="Weekly retrain schedule (Monday 03:00).")
    retrain_timezone: str = Field("UTC", description="Time zone of the retrain schedule.")
    retrain_data_window_hours: float = Field(24.0, description="Fleet data a drift-triggered retrain adds.")
    drift_check_interval_s: float = Field(3600.0, description="How often each warehouse's drift check runs.")
    drift_window_hours: float = Field(4.0, gt=0, description="The recent telemetry one drift check judges.")
    drift_min_reward: float = Field(0.0, description="Performance floor: the window's mean episode reward below "
                                                     "it fires the performance signal (fleet episodes are 300 "
                                                     "frames; the seed's 700 is for 1000-frame laps).")
    server_backend_store_uri: str | None = Field(None, description="`dreamops server`: MLflow backend store "
                                                 "(postgresql://...); default: the embedded SQLite.")
    server_artifacts_destination: str | None = Field(None, description="`dreamops server`: where the MLflow "
                                                     "server keeps artifacts (s3://bucket/path); default: home.")
    server_webhooks_to_private: bool = Field(False, description="`dreamops server`: let MLflow deliver webhooks "
                                             "over http to private addresses (the API on the same network).")
    server_webhook_key: str | None = Field(None, description="`dreamops server`: Fernet key MLflow encrypts "
                                           "webhook secrets with; default: one generated once into home (mlflow-webhook.key). "
                                           "Set it in production, where servers do not share a home.")

    @property
    def resolved_home(self) -> Path:
        return self.home.resolve()

    @property
    def mlflow_tracking_uri(self) -> str:
        return self.tracking_uri or f"sqlite:///{self.resolved_home / 'mlflow.db'}"

    @property
    def mlflow_registry_uri(self) -> str:
        return self.registry_uri or self.mlflow_tracking_uri

    @property
    def artifact_root(self) -> Path:
        return self.resolved_home / "mlartifacts"

    @property
    def datasets(self) -> Path:
        return (self.dataset_dir or self.resolved_home / "datasets").resolve()

    @property
    def sql_url(self) -> str:
        return self.database_url or f"sqlite:///{self.resolved_home / 'dreamops.db'}"

    @property
    def s3_endpoint(self) -> str | None:
        import os

        return self.s3_endpoint_url or os.environ.get("MLFLOW_S3_ENDPOINT_URL") or None

    @property
    def actor_name(self) -> str:
        import getpass

        return self.actor or getpass.getuser()

    @property
    def api_worker_count(self) -> int:
        """`api_workers`, or its default for the store: SQLite serialises every write on one lock
        (more workers only queue on it, and each would start its own Prefect temporary server)."""
        import os

        from dreamops.sql import is_sqlite

        if self.api_workers > 0:
            return self.api_workers
        return 1 if is_sqlite(self.sql_url) else max(1, os.cpu_count() or 1)

    @property
    def n_workers(self) -> int:
        import os

        return self.workers if self.workers > 0 else max(1, os.cpu_count() or 1)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
