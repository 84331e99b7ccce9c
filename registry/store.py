"""Every MLflow call of dreamops: tracking runs, the metrics adapter, registering versions, lookups."""
from __future__ import annotations

import json
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.models import ModelSignature
from mlflow.types import Schema, TensorSpec

from dreamops.settings import Settings

ALIASES = ("staging", "canary", "production", "last-known-good")


class ModelVersionNotFoundError(LookupError):
    pass


def configure(settings: Settings) -> MlflowClient:
    """Point MLflow at the configured stores; the embedded default needs no server."""
    settings.resolved_home.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    mlflow.set_registry_uri(settings.mlflow_registry_uri)
    client = MlflowClient()
    if client.get_experiment_by_name(settings.experiment) is None:
        location = settings.artifact_root.as_uri() if settings.tracking_uri is None else None
        client.create_experiment(settings.experiment, artifact_location=location)
    mlflow.set_experiment(settings.experiment)
    return client


def git_sha() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


class MetricLogger:
    """The one adapter from flat namespaced metrics (`vae/recon`) to MLflow."""

    def __call__(self, metrics: dict[str, float], step: int) -> None:
        finite = {k: float(v) for k, v in metrics.items() if np.isfinite(v)}
        if finite:
            mlflow.log_metrics(finite, step=step)


def log_config(flat_params: dict[str, Any], config_yaml: str) -> None:
    params = {k: json.dumps(v) if isinstance(v, (dict, list)) else v for k, v in flat_params.items()}
    mlflow.log_params(params)
    mlflow.log_text(config_yaml, "config.yaml")


def log_dataset(manifest: pd.DataFrame, digest: str, source: str, name: str) -> None:
    """Dataset lineage: the manifest as an MLflow dataset whose digest is our content hash."""
    # integer columns as float: MLflow's schema inference warns about ints that cannot hold missing values
    manifest = manifest.astype({c: "float64" for c in manifest.select_dtypes("integer").columns})
    data = mlflow.data.from_pandas(manifest, source=source, name=name, digest=digest[:36])
    mlflow.log_input(data, context="training")
    mlflow.set_tag("data_hash", digest)


def log_json(obj: Any, artifact_file: str) -> None:
    mlflow.log_dict(obj, artifact_file)


def frame_signature() -> ModelSignature:
    return ModelSignature(inputs=Schema([TensorSpec(np.dtype(np.uint8), (-1, 64, 64, 3))]),
                          outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, 3))]))


@dataclass
class RegisteredVersion:
    name: str
    version: str
    run_id: str
    uri: str


def register_pyfunc(model_name: str, python_model: Any, artifacts: dict[str, str], signature: ModelSignature,
                    tags: dict[str, str], pip_requirements: list[str]) -> RegisteredVersion:
    """Log the pyfunc in the active run, register it as a new version and tag the version."""
    info = mlflow.pyfunc.log_model(name="model", python_model=python_model, artifacts=artifacts,
                                   signature=signature, registered_model_name=model_name,
                                   pip_requirements=pip_requirements)
    client = MlflowClient()
    version = str(info.registered_model_version)
    for key, value in tags.items():
        client.set_model_version_tag(model_name, version, key, str(value))
    return RegisteredVersion(model_name, version, mlflow.active_run().info.run_id, f"models:/{model_name}/{version}")


def get_version(model_name: str, ref: str) -> ModelVersion:
    """A version by number, alias (`production`) or `latest`."""
    client = MlflowClient()
    try:
        if ref == "latest":
            versions = client.search_model_versions(f"name='{model_name}'")
            if not versions:
                raise ModelVersionNotFoundError(f"model {model_name!r} has no versions yet")
            return max(versions, key=lambda v: int(v.version))
        if ref.isdigit():
            return client.get_model_version(model_name, ref)
        return client.get_model_version_by_alias(model_name, ref)
    except mlflow.exceptions.MlflowException as exc:
        raise ModelVersionNotFoundError(f"no version {ref!r} of model {model_name!r}") from exc


def download_version_artifact(model_name: str, version: str, artifact: str) -> Path:
    """Local path of one of a version's pyfunc artifacts (e.g. the weight bundle)."""
    dst = Path(tempfile.mkdtemp(prefix=f"dreamops-{model_name}-{version}-"))
    path = mlflow.artifacts.download_artifacts(f"models:/{model_name}/{version}/artifacts/{artifact}", dst_path=str(dst))
    return Path(path)


class PromotionRefusedError(ValueError):
    """An alias move the promotion rules forbid (e.g. a version that did not pass every gate)."""


GATED_ALIASES = ("staging", "canary", "production")


def find_alias(model_name: str, alias: str) -> ModelVersion | None:
    """The version holding `alias`, or None (also when the model does not exist yet)."""
    try:
        return MlflowClient().get_model_version_by_alias(model_name, alias)
    except mlflow.exceptions.MlflowException:
        return None


def record_gates(model_name: str, version: str, gates: list) -> bool:
    """Write every gate's outcome to the version (`gate.<name>` tags, `validation_status`) and its
    figure to the active run (`gate/<name>` metrics). Returns whether all passed."""
    client = MlflowClient()
    passed = all(g.passed for g in gates)
    for g in gates:
        client.set_model_version_tag(model_name, version, f"gate.{g.name}", g.tag)
    client.set_model_version_tag(model_name, version, "validation_status", "passed" if passed else "failed")
    mlflow.log_metrics({f"gate/{g.name}": g.figure for g in gates})
    return passed


def set_alias(model_name: str, version: str, alias: str) -> None:
    """Point `alias` at `version`. staging/canary/production need validation_status=passed."""
    client = MlflowClient()
    mv = client.get_model_version(model_name, version)
    status = mv.tags.get("validation_status", "missing")
    if alias in GATED_ALIASES and status != "passed":
        raise PromotionRefusedError(f"version {version} of {model_name!r} has validation_status={status}; "
                                    f"only versions that passed every gate may become {alias!r}")
    client.set_registered_model_alias(model_name, alias, version)
