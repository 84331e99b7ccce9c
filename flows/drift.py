"""The `drift-check` flow: one warehouse's recent telemetry -> three signals -> decision. On drift
it emits the Prefect event `dreamops.drift.detected` (resource: the warehouse), which the
`retrain-on-drift` deployment's trigger turns into a retrain, and puts the warehouse's robots on
last-known-good until a new production version lands. Figures go to MLflow."""
from __future__ import annotations

from datetime import timedelta

import mlflow
import numpy as np
from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NONE
from prefect.events import emit_event

from dreamops.api.db import DriftIncident, session_factory, utcnow
from dreamops.registry import store
from dreamops.settings import get_settings
from dreamops.tasks.drift import DriftWindow, check

DRIFT_EVENT = "dreamops.drift.detected"
DRIFT_EXPERIMENT = "dreamops-drift"

check_task = task(check, name="drift_signals", cache_policy=NONE)


def warehouse_resource(warehouse_id: str) -> dict[str, str]:
    return {"prefect.resource.id": f"dreamops.warehouse.{warehouse_id}", "dreamops.warehouse": warehouse_id}


@flow(name="drift-check")
def drift_check(warehouse_id: str, model: str = "carracing-vmc", window_hours: float = 4.0,
                baseline_days: float = 30.0, min_reward: float = 150.0, required_signals: int = 2) -> dict:
    """`required_signals` of the three must fire in the window (the seed's rule: two of three)."""
    settings = get_settings()
    store.configure(settings)
    production = store.find_alias(model, "production")
    if production is None:
        return {"warehouse_id": warehouse_id, "drift": False, "reason": "nothing in production"}
    version = str(production.version)
    reference = np.load(store.download_version_artifact(model, version, "reference_latents.npy"))
    window = DriftWindow(warehouse_id, version, utcnow(), timedelta(hours=window_hours), timedelta(days=baseline_days))
    decision, facts = check_task(window, settings.sql_url, reference, min_reward, required=required_signals)
    summary = {"warehouse_id": warehouse_id, "version": version, **decision.to_dict(), **facts}

    mlflow.set_experiment(DRIFT_EXPERIMENT)
    with mlflow.start_run(run_name=f"drift-{warehouse_id}"):
        mlflow.set_tags({"warehouse_id": warehouse_id, "model_version": version, "drift": str(decision.drift)})
        mlflow.log_metrics({f"drift/{s.name}": float(s.figure) for s in decision.signals if s.figure is not None})
        mlflow.log_metrics({"drift/fired": len(decision.fired), "drift/recent_episodes": facts["recent_episodes"]})
        mlflow.log_dict(summary, "drift.json")
    create_markdown_artifact(_markdown(summary), key=f"drift-{warehouse_id.lower()}",
                             description=f"drift check of {warehouse_id}")
    if decision.drift:
        fallback = store.find_alias(model, "last-known-good")
        with session_factory(settings.sql_url)() as session:
            session.add(DriftIncident(warehouse_id=warehouse_id, model=model, version=version,
                                      fallback_version=str(fallback.version) if fallback else None,
                                      signals=decision.to_dict()))
            session.commit()
        emit_event(DRIFT_EVENT, resource=warehouse_resource(warehouse_id),
                   payload={"model": model, "version": version, "fired": decision.fired})
    return summary


def _markdown(summary: dict) -> str:
    rows = "\n".join(f"| {s['name']} | {'yes' if s['fired'] else 'no'} | {s['figure']} | {s['threshold']} |"
                     for s in summary["signals"])
    return (f"# Drift check {summary['warehouse_id']} (version {summary['version']}): "
            f"{'DRIFT' if summary['drift'] else 'no drift'}\n\n| signal | fired | figure | threshold |\n"
            f"|---|---|---|---|\n{rows}\n\nRecent episodes {summary['recent_episodes']}, baseline "
            f"{summary['baseline_episodes']}; latent reference: {summary['reference_source']}\n")
