"""The serve process: runs the Prefect deployments of dreamops's flows (`dreamops serve`).

- `train/dreamops-train`: what `POST /api/v1/training/trigger` starts with `run_deployment`;
- `train/weekly-retrain-<warehouse>`: a weekly retrain per warehouse (cron, with a time zone);
- `drift-check/drift-check-<warehouse>`: the hourly drift check per warehouse;
- `train/retrain-on-drift`: started by its trigger (a Prefect automation) when a drift check emits
  `dreamops.drift.detected`; the event's warehouse becomes the run's `warehouse_id`.
Needs a Prefect server (`PREFECT_API_URL`); `dreamops up` starts both. prefect.yaml declares the
same deployments for `prefect deploy` with a work pool.
"""
from __future__ import annotations

from prefect import serve
from prefect.events import DeploymentEventTrigger
from prefect.schedules import Cron, Interval

from dreamops.flows.drift import DRIFT_EVENT, drift_check
from dreamops.flows.train import train
from dreamops.settings import Settings, get_settings

TRAIN_DEPLOYMENT = "dreamops-train"
DRIFT_RETRAIN = "retrain-on-drift"


def deployments(settings: Settings | None = None) -> list:
    settings = settings or get_settings()
    common = {"show_progress": False, "profile": settings.retrain_profile}
    out = [
        train.to_deployment(name=TRAIN_DEPLOYMENT, parameters={"show_progress": False},
                            description="Train, gate and register one version (the REST API's training trigger)."),
        train.to_deployment(
            name=DRIFT_RETRAIN, parameters=common,
            description="Retrain a warehouse whose drift check fired, on its recent fleet data.",
            triggers=[DeploymentEventTrigger(
                name="retrain when drift is detected", expect={DRIFT_EVENT},
                match={"prefect.resource.id": "dreamops.warehouse.*"},
                parameters={**common, "warehouse_id": "{{ event.resource['dreamops.warehouse'] }}",
                            "data_window_hours": settings.retrain_data_window_hours})]),
    ]
    for warehouse in settings.warehouses:
        out.append(train.to_deployment(
            name=f"weekly-retrain-{warehouse}", description=f"Weekly retrain of {warehouse}.",
            schedules=[Cron(settings.retrain_cron, timezone=settings.retrain_timezone)],
            parameters={**common, "warehouse_id": warehouse, "data_window_hours": 7 * 24}))
        out.append(drift_check.to_deployment(
            name=f"drift-check-{warehouse}", description=f"Hourly drift check of {warehouse}.",
            schedules=[Interval(settings.drift_check_interval_s)], parameters={"warehouse_id": warehouse}))
    return out


def serve_forever(limit: int = 1) -> None:
    """Run flow runs of these deployments as they are scheduled, `limit` at a time (training is
    CPU-bound: one at a time on a small machine)."""
    serve(*deployments(), limit=limit)
