"""The serve process: runs the Prefect deployments of dreamops's flows (`dreamops serve`).

- `train/dreamops-train`: what `POST /api/v1/training/trigger` starts with `run_deployment`;
- `train/weekly-retrain-<warehouse>`: a weekly retrain per warehouse (cron, with a time zone);
- `drift-check/drift-check-<warehouse>`: the hourly drift check per warehouse;
- `train/retrain-on-drift`: started by its trigger (a Prefect automation) when a drift check emits
  `dreamops.drift.detected`; the event's warehouse becomes the run's `warehouse_id`.
Each family of `served_agents` gets its own three; the default family's keep the names above,
another's carry its name as a suffix (`drift-check-<warehouse>-<family>`). A family's
retrain-on-drift matches only its own drift events (the event's resource names the family) and
adds fleet data only if the family trains on it.
Needs a Prefect server (`PREFECT_API_URL`); `dreamops up` starts both. prefect.yaml declares the
same deployments for `prefect deploy` with a work pool.
"""
from __future__ import annotations

from prefect import serve
from prefect.events import DeploymentEventTrigger
from prefect.schedules import Cron, Interval

from dreamops.families import DEFAULT_FAMILY, family
from dreamops.flows.drift import DRIFT_EVENT, drift_check
from dreamops.flows.train import train
from dreamops.settings import Settings, get_settings

TRAIN_DEPLOYMENT = "dreamops-train"
DRIFT_RETRAIN = "retrain-on-drift"


def _named(name: str, agent: str) -> str:
    return name if agent == DEFAULT_FAMILY else f"{name}-{agent}"


def deployments(settings: Settings | None = None) -> list:
    settings = settings or get_settings()
    out = [train.to_deployment(name=TRAIN_DEPLOYMENT, parameters={"show_progress": False},
                               description="Train, gate and register one version (the REST API's training trigger).")]
    for agent in settings.served_agents:
        fam = family(agent)   # ValueError naming the families for a typo in DREAMOPS_SERVED_AGENTS
        common = {"show_progress": False, "profile": settings.retrain_profile, "agent": agent}
        fleet_hours = settings.retrain_data_window_hours if fam.supports("fleet_data") else None
        out.append(train.to_deployment(
            name=_named(DRIFT_RETRAIN, agent), parameters=common,
            description=f"Retrain {agent} for a warehouse whose drift check fired"
                        + (", on its recent fleet data." if fleet_hours else "."),
            triggers=[DeploymentEventTrigger(
                name=_named("retrain when drift is detected", agent), expect={DRIFT_EVENT},
                match={"prefect.resource.id": "dreamops.warehouse.*", "dreamops.model": agent},
                parameters={**common, "warehouse_id": "{{ event.resource['dreamops.warehouse'] }}",
                            "data_window_hours": fleet_hours})]))
        for warehouse in settings.warehouses:
            out.append(train.to_deployment(
                name=_named(f"weekly-retrain-{warehouse}", agent), description=f"Weekly retrain of {agent} for {warehouse}.",
                schedules=[Cron(settings.retrain_cron, timezone=settings.retrain_timezone)],
                parameters={**common, "warehouse_id": warehouse,
                            "data_window_hours": 7 * 24 if fam.supports("fleet_data") else None}))
            out.append(drift_check.to_deployment(
                name=_named(f"drift-check-{warehouse}", agent), description=f"Hourly drift check of {agent} in {warehouse}.",
                schedules=[Interval(settings.drift_check_interval_s)],
                parameters={"warehouse_id": warehouse, "model": agent}))
    return out


def serve_forever(limit: int = 1) -> None:
    """Run flow runs of these deployments as they are scheduled, `limit` at a time (training is
    CPU-bound: one at a time on a small machine)."""
    serve(*deployments(), limit=limit)
