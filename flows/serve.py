"""The serve process: runs the Prefect deployments of dreamops's flows (`dreamops serve`).

`train/dreamops-train` is what `POST /api/v1/training/trigger` starts with `run_deployment`.
Needs a Prefect server (`PREFECT_API_URL`); `dreamops up` starts both.
"""
from __future__ import annotations

from prefect import serve

from dreamops.flows.train import train

TRAIN_DEPLOYMENT = "dreamops-train"


def deployments() -> list:
    return [train.to_deployment(name=TRAIN_DEPLOYMENT, description="Train, gate and register one version "
                                "(started by the REST API's training trigger).",
                                parameters={"show_progress": False})]


def serve_forever(limit: int = 1) -> None:
    """Run flow runs of these deployments as they are scheduled, `limit` at a time (training is
    CPU-bound: one at a time on a small machine)."""
    serve(*deployments(), limit=limit)
