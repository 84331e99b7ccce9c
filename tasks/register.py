"""Registering a trained version, the same for every family: the family's pyfunc with its lineage
tags and the next semver, every gate recorded on the version, and `staging` moved to it when all
passed. And the typed result every train run returns (`TrainResult`)."""
from __future__ import annotations

from dataclasses import dataclass, field
from importlib.metadata import version as pkg_version
from typing import Any

from mlflow.models import ModelSignature

from dreamops.registry import store
from dreamops.registry.promotion import Promotions
from dreamops.registry.semver import Fingerprint, next_version
from dreamops.settings import get_settings


@dataclass(frozen=True)
class Candidate:
    """What a train run registers, and where it came from (the version's lineage tags)."""
    agent: str                   # the family: also the registered model's name
    profile: str
    warehouse_id: str
    run_id: str                  # the MLflow run that trained it
    flow_run_id: str             # the Prefect flow run
    python_model: Any            # the family's mlflow.pyfunc.PythonModel
    artifacts: dict[str, str]    # pyfunc artifact name -> local path
    signature: ModelSignature
    fingerprint: Fingerprint     # what the semver rule compares with the newest version
    data_hash: str
    data_uri: str
    weights: dict[str, str]      # component -> weights hash (load_bundle checks them on every load)
    extra_tags: dict[str, str] = field(default_factory=dict)
    extra_packages: tuple[str, ...] = ()   # pinned into the pyfunc's requirements next to torch and mlflow
    parent_version: str | None = None


@dataclass(frozen=True)
class Registration:
    version: store.RegisteredVersion
    semver: str
    passed: bool                 # every gate passed: `staging` points at it


def register_version(candidate: Candidate, gates: list) -> Registration:
    c = candidate
    newest, newest_tags = store.newest_semver(c.agent)
    semver = next_version(newest, Fingerprint.from_tags(newest_tags), c.fingerprint)
    registered = store.register_pyfunc(
        c.agent, c.python_model, c.artifacts, c.signature,
        tags={"data_hash": c.data_hash, "data_uri": c.data_uri, "git_sha": store.git_sha(),
              "warehouse_id": c.warehouse_id, "profile": c.profile, "validation_status": "pending",
              "prefect_flow_run_id": c.flow_run_id, "semver": semver, **c.fingerprint.tags(),
              **({"parent_version": c.parent_version} if c.parent_version else {}),
              **{f"weights.{k}": v for k, v in c.weights.items()}, **c.extra_tags},
        pip_requirements=[f"{p}=={pkg_version(p)}" for p in ("torch", "mlflow", *c.extra_packages)])
    passed = store.record_gates(c.agent, registered.version, gates)
    if passed:
        Promotions.from_settings(get_settings()).promote(c.agent, registered.version, "staging", source="flow",
                                                         reason=f"every gate passed in run {c.run_id}")
    return Registration(registered, semver, passed)


@dataclass
class TrainResult:
    """What every train run returns. `family` holds the family's own results (its evaluation,
    rounds, latency); its `summary_lines` (dreamops.families) reads them for the CLI."""
    agent: str
    profile: str
    model_name: str
    version: str
    semver: str
    model_uri: str
    run_id: str
    data_hash: str
    data_uri: str
    parent_version: str | None
    validation_status: str       # passed | failed
    failed_gates: list[str]
    family: dict[str, Any]
    stage_s: dict[str, float] = field(default_factory=dict)   # seconds per stage, where the family times them
    flow_s: float | None = None

    @classmethod
    def of(cls, candidate: Candidate, registration: Registration, gates: list, family: dict[str, Any],
           stage_s: dict[str, float] | None = None, flow_s: float | None = None) -> "TrainResult":
        v = registration.version
        return cls(candidate.agent, candidate.profile, v.name, v.version, registration.semver, v.uri,
                   candidate.run_id, candidate.data_hash, candidate.data_uri, candidate.parent_version,
                   "passed" if registration.passed else "failed", [g.name for g in gates if not g.passed],
                   family, stage_s or {}, flow_s)
