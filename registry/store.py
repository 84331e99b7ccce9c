"""Every MLflow call of dreamops: tracking runs, the metrics adapter, registering versions, lookups."""
from __future__ import annotations

import contextlib
import json
import subprocess
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NamedTuple

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.models import ModelSignature
from mlflow.types import Schema, TensorSpec

from dreamops.families import family
from dreamops.registry.errors import VersionIntegrityError
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
        try:
            client.create_experiment(settings.experiment, artifact_location=location)
        except mlflow.exceptions.MlflowException:
            # another process (an API worker starting next to this one) created it first
            if client.get_experiment_by_name(settings.experiment) is None:
                raise
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
    """carracing-vmc: frames in, actions out; `reset` (start of an episode: clear M's memory) is a parameter.
    Every parameter the pyfunc reads must be here: MLflow drops (with a warning) params the signature lacks."""
    from mlflow.types.schema import ParamSchema, ParamSpec

    return ModelSignature(inputs=Schema([TensorSpec(np.dtype(np.uint8), (-1, 64, 64, 3))]),
                          outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, 3))]),
                          params=ParamSchema([ParamSpec("reset", "boolean", False)]))


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


def filter_literal(value: str) -> str:
    """`value` as a string literal of an MLflow search filter. MLflow's filter grammar has no escape
    character: the literal is quoted with the quote mark `value` does not contain."""
    if "'" not in value:
        return f"'{value}'"
    if '"' not in value:
        return f'"{value}"'
    raise ModelVersionNotFoundError(f"no model {value!r}: a name with both quote marks cannot be searched in MLflow")


def _versions(model_name: str) -> list[ModelVersion]:
    return MlflowClient().search_model_versions(f"name={filter_literal(model_name)}")


def get_version(model_name: str, ref: str) -> ModelVersion:
    """A version by number (`3`), semantic version (`1.2.0` or `v1.2.0`), alias (`production`) or `latest`."""
    from dreamops.registry.semver import is_semver, parse

    client = MlflowClient()
    try:
        if ref == "latest" or is_semver(ref):
            versions = _versions(model_name)
            if not versions:
                raise ModelVersionNotFoundError(f"model {model_name!r} has no versions yet")
            if ref == "latest":
                return max(versions, key=lambda v: int(v.version))
            found = [v for v in versions if v.tags.get("semver") and parse(v.tags["semver"]) == parse(ref)]
            if not found:
                raise ModelVersionNotFoundError(f"no version {ref!r} of model {model_name!r}")
            return client.get_model_version(model_name, found[0].version)  # search results omit aliases
        if ref.isdigit():
            return client.get_model_version(model_name, ref)
        return client.get_model_version_by_alias(model_name, ref)
    except mlflow.exceptions.MlflowException as exc:
        raise ModelVersionNotFoundError(f"no version {ref!r} of model {model_name!r}") from exc


@dataclass
class VersionSummary:
    version: str
    semver: str
    aliases: list[str]
    validation_status: str
    failed_gates: list[str]
    created: datetime
    mean_reward: str
    data_hash: str


def list_versions(model_name: str) -> list[VersionSummary]:
    """Every version, newest first, with its aliases and gate status."""
    by_version: dict[str, list[str]] = {}
    for alias, version in aliases(model_name).items():
        by_version.setdefault(str(version), []).append(alias)
    rows = []
    for v in sorted(_versions(model_name), key=lambda v: -int(v.version)):
        failed = [k.removeprefix("gate.") for k, val in v.tags.items() if k.startswith("gate.")
                  and not val.startswith("passed")]
        rows.append(VersionSummary(str(v.version), v.tags.get("semver", "-"), sorted(by_version.get(str(v.version), [])),
                                   v.tags.get("validation_status", "missing"), sorted(failed),
                                   datetime.fromtimestamp(v.creation_timestamp / 1000, timezone.utc),
                                   v.tags.get("eval.mean_reward", "-"), v.tags.get("data_hash", "")[:12]))
    return rows


def newest_semver(model_name: str) -> tuple[str | None, dict[str, str]]:
    """The highest semantic version of a model and that version's tags (None, {} for a new model)."""
    from dreamops.registry.semver import is_semver, parse

    try:
        tagged = [v for v in _versions(model_name) if is_semver(v.tags.get("semver", ""))]
    except mlflow.exceptions.MlflowException:
        return None, {}
    if not tagged:
        return None, {}
    best = max(tagged, key=lambda v: parse(v.tags["semver"]))
    return best.tags["semver"], dict(best.tags)


def set_version_tags(model_name: str, version: str, tags: dict[str, str]) -> None:
    client = MlflowClient()
    for key, value in tags.items():
        client.set_model_version_tag(model_name, version, key, str(value))


def download_version_artifact(model_name: str, version: str, artifact: str) -> Path:
    """Local path of one of a version's pyfunc artifacts (e.g. the weight bundle)."""
    dst = Path(tempfile.mkdtemp(prefix=f"dreamops-{model_name}-{version}-"))
    path = mlflow.artifacts.download_artifacts(f"models:/{model_name}/{version}/artifacts/{artifact}", dst_path=str(dst))
    return Path(path)


def read_run_artifact(run_id: str, artifact: str) -> str | None:
    """A run's text artifact, or None when the run has none by that name (a version registered
    outside dreamops, e.g. from the MLflow UI). The download is removed once read."""
    with tempfile.TemporaryDirectory(prefix=f"dreamops-run-{run_id[:8]}-") as dst:
        try:
            path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=artifact, dst_path=dst)
        except (mlflow.exceptions.MlflowException, OSError):
            return None
        return Path(path).read_text()


def find_alias(model_name: str, alias: str) -> ModelVersion | None:
    """The version holding `alias`, or None (also when the model does not exist yet)."""
    try:
        return MlflowClient().get_model_version_by_alias(model_name, alias)
    except mlflow.exceptions.MlflowException:
        return None


def aliases(model_name: str) -> dict[str, str]:
    """alias -> version as MLflow has them now (whoever set them: dreamops or the MLflow UI)."""
    try:
        model = MlflowClient().get_registered_model(model_name)
    except mlflow.exceptions.MlflowException:
        return {}
    return {alias: str(version) for alias, version in model.aliases.items()}


def model_names() -> list[str]:
    return sorted(m.name for m in MlflowClient().search_registered_models())


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


def write_alias(model_name: str, alias: str, version: str | None) -> None:
    """Point `alias` at `version`, or remove it (None). Raw: the promotion rules live in
    registry.promotion, which is the only caller."""
    client = MlflowClient()
    if version is None:
        with contextlib.suppress(mlflow.exceptions.MlflowException):
            client.delete_registered_model_alias(model_name, alias)
    else:
        client.set_registered_model_alias(model_name, alias, version)


WEBHOOK_NAME = "dreamops"
WEBHOOK_EVENTS = ("model_version.created", "model_version_alias.created", "model_version_alias.deleted")


def register_webhook(url: str, secret: str, name: str = WEBHOOK_NAME) -> str:
    """Create (or repoint) the MLflow webhook that tells dreamops about new versions and alias moves.
    Needs an MLflow >= 3.3 server with a SQL backend store. Returns the webhook id."""
    client = MlflowClient()
    for hook in client.list_webhooks():
        if hook.name == name:
            client.update_webhook(hook.webhook_id, url=url, events=list(WEBHOOK_EVENTS), secret=secret,
                                  status="ACTIVE")
            return hook.webhook_id
    return client.create_webhook(name=name, url=url, events=list(WEBHOOK_EVENTS), secret=secret).webhook_id


class LoadedVersion(NamedTuple):
    version: ModelVersion
    bundle: Any  # the family's bundle class (dreamops.families): VMCBundle, PickVLA, ...
    path: Path  # the downloaded bundle file, for worker processes


def load_bundle(model_name: str, ref: str) -> LoadedVersion:
    """A registered version's weights, after checking that every component still hashes to the
    `weights.*` tags written at registration: versions are immutable, and a changed artifact is
    refused rather than served. The family registered under `model_name` says which file and class."""
    fam = family(model_name)
    mv = get_version(model_name, ref)
    path = download_version_artifact(model_name, str(mv.version), fam.bundle_file)
    bundle = fam.load("bundle").load(path)
    for component, digest in bundle.component_hashes().items():
        recorded = mv.tags.get(f"weights.{component}")
        if recorded is not None and recorded != digest:
            raise VersionIntegrityError(f"version {mv.version} of {model_name!r}: {component} weights hash to "
                                        f"{digest[:12]}, registered as {recorded[:12]}; refusing to load")
    return LoadedVersion(mv, bundle, path)


def find_version_by_tag(model_name: str, key: str, value: str) -> ModelVersion | None:
    try:
        found = [v for v in _versions(model_name) if v.tags.get(key) == value]
    except mlflow.exceptions.MlflowException:
        return None
    return max(found, key=lambda v: int(v.version)) if found else None


def pick_signature(horizon: int = 16, action_dim: int = 4, proprio_dim: int = 21) -> ModelSignature:
    """pick-vla: named observation tensors in, action chunks out; the instruction is a parameter."""
    from mlflow.types.schema import ParamSchema, ParamSpec

    return ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.uint8), (-1, 64, 64, 3), "rgb"),
                       TensorSpec(np.dtype(np.float32), (-1, 64, 64, 1), "depth"),
                       TensorSpec(np.dtype(np.float32), (-1, proprio_dim), "proprio")]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, horizon, action_dim))]),
        params=ParamSchema([ParamSpec("instruction", "string", "pick up the red box"), ParamSpec("seed", "long", 0)]))
