"""The `drift-check` flow: one warehouse's recent telemetry -> three signals -> decision. On drift
it emits the Prefect event `dreamops.drift.detected` (resource: the warehouse), which the
`retrain-on-drift` deployment's trigger turns into a retrain, and puts the warehouse's robots on
last-known-good until a new production version lands. Figures go to MLflow."""
from __future__ import annotations

import tempfile
from datetime import timedelta
from pathlib import Path

import mlflow
import numpy as np
from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NONE
from prefect.events import emit_event

from dreamops import generation
from dreamops.db import DriftIncident, session_factory, utcnow
from dreamops.families import DEFAULT_FAMILY, family
from dreamops.registry import store
from dreamops.settings import get_settings
from dreamops.tasks.drift import DriftWindow, Judgement, check
from dreamops.validation.drift.report import save_html

DRIFT_EVENT = "dreamops.drift.detected"
DRIFT_EXPERIMENT = "dreamops-drift"
REPORT_FILE = "evidently_report.html"

check_task = task(check, name="drift_signals", cache_policy=NONE)


def warehouse_resource(warehouse_id: str, model: str) -> dict[str, str]:
    """The drift event's resource: the warehouse, labelled with the family whose model drifted (each
    family's retrain-on-drift matches its own)."""
    return {"prefect.resource.id": f"dreamops.warehouse.{warehouse_id}", "dreamops.warehouse": warehouse_id,
            "dreamops.model": model}


@flow(name="drift-check")
def drift_check(warehouse_id: str, model: str = DEFAULT_FAMILY, window_hours: float | None = None,
                baseline_days: float = 30.0, min_reward: float | None = None, required_signals: int = 2) -> dict:
    """`required_signals` of the three must fire in the window (the seed's rule: two of three);
    which three is the family's (Family.drift_signals, next to the latents' MMD).
    window_hours and min_reward default to the settings drift_window_hours and drift_min_reward."""
    signals = family(model).load("drift_signals")  # ValueError for an unknown family, before any work
    settings = get_settings()
    window_hours = settings.drift_window_hours if window_hours is None else window_hours
    min_reward = settings.drift_min_reward if min_reward is None else min_reward
    store.configure(settings)
    production = store.find_alias(model, "production")
    if production is None:
        return {"warehouse_id": warehouse_id, "drift": False, "reason": "nothing in production"}
    version = str(production.version)
    reference = np.load(store.download_version_artifact(model, version, "reference_latents.npy"))
    window = DriftWindow(warehouse_id, version, utcnow(), timedelta(hours=window_hours), timedelta(days=baseline_days),
                         model=model)
    judgement = check_task(window, settings.sql_url, reference, min_reward, required=required_signals,
                           family_signals=signals)
    decision, facts = judgement.decision, judgement.facts
    summary = {"warehouse_id": warehouse_id, "version": version, **decision.to_dict(), **facts,
               "evidently": judgement.evidently.to_dict()}
    summary["mlflow_run_id"] = log_drift_run(judgement, summary)
    create_markdown_artifact(_markdown(summary), key=f"drift-{warehouse_id.lower()}",
                             description=f"drift check of {warehouse_id}")
    if decision.drift:
        fallback = store.find_alias(model, "last-known-good")
        with session_factory(settings.sql_url)() as session:
            session.add(DriftIncident(warehouse_id=warehouse_id, model=model, version=version,
                                      fallback_version=str(fallback.version) if fallback else None,
                                      signals=decision.to_dict()))
            generation.bump(session.connection())  # the warehouse's assignments change (API caches)
            session.commit()
        emit_event(DRIFT_EVENT, resource=warehouse_resource(warehouse_id, model),
                   payload={"model": model, "version": version, "fired": decision.fired})
    return summary


@task(cache_policy=NONE)
def log_drift_run(judgement: Judgement, summary: dict) -> str:
    """One MLflow run per check: every signal's figure, the MMD test's figures, the decision as
    drift.json and the Evidently report as evidently_report.html. Returns the run id."""
    decision, evidently = judgement.decision, judgement.evidently
    mlflow.set_experiment(DRIFT_EXPERIMENT)
    with mlflow.start_run(run_name=f"drift-{summary['warehouse_id']}") as run:
        mlflow.set_tags({"warehouse_id": summary["warehouse_id"], "model_version": summary["version"],
                         "drift": str(decision.drift), "fired": ",".join(decision.fired) or "none"})
        signals = [*decision.signals, evidently]
        mlflow.log_metrics({f"drift/{s.name}": float(s.figure) for s in signals if s.figure is not None})
        mlflow.log_metrics({f"drift/{s.name}_fired": float(s.fired) for s in signals})
        mmd = next((s for s in decision.signals if s.name == "latents"), None)
        if mmd is not None:
            mlflow.log_metrics({f"mmd/{k}": float(v) for k, v in mmd.detail.items()})
        mlflow.log_metrics({"drift/fired": len(decision.fired), "drift/recent_episodes": summary["recent_episodes"],
                            "drift/baseline_episodes": summary["baseline_episodes"]})
        mlflow.log_dict(summary, "drift.json")
        if judgement.snapshot is not None:
            with tempfile.TemporaryDirectory() as tmp:
                mlflow.log_artifact(str(save_html(judgement.snapshot, Path(tmp) / REPORT_FILE)))
        return run.info.run_id


def _markdown(summary: dict) -> str:
    rows = "\n".join(f"| {s['name']} | {'yes' if s['fired'] else 'no'} | {s['figure']} | {s['threshold']} |"
                     for s in summary["signals"])
    return (f"# Drift check {summary['warehouse_id']} (version {summary['version']}): "
            f"{'DRIFT' if summary['drift'] else 'no drift'}\n\n| signal | fired | figure | threshold |\n"
            f"|---|---|---|---|\n{rows}\n\nRecent episodes {summary['recent_episodes']}, baseline "
            f"{summary['baseline_episodes']}; latent reference: {summary['reference_source']}\n")
