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
    def n_workers(self) -> int:
        import os

        return self.workers if self.workers > 0 else max(1, os.cpu_count() or 1)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
