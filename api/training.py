"""Training jobs: a row per trigger, started as a run of the Prefect deployment `train/dreamops-train`
(served by `dreamops serve`), reported from the flow run's state and the version it registered."""
from __future__ import annotations

import uuid

import sqlalchemy as sa
from sqlalchemy.orm import Session

from dreamops.db import ApiAuditEvent, TrainingJob
from dreamops.registry import store

DEPLOYMENT = "train/dreamops-train"
ACTIVE = ("queued", "running")
# Prefect state type -> job status
STATES = {"SCHEDULED": "queued", "PENDING": "queued", "PAUSED": "queued", "RUNNING": "running",
          "CANCELLING": "running", "COMPLETED": "completed", "FAILED": "failed", "CRASHED": "failed",
          "CANCELLED": "cancelled"}


def trigger(session: Session, warehouse_id: str, agent: str, profile: str, data_window_hours: float | None,
            requested_by: str, idempotency_key: str | None) -> tuple[TrainingJob, bool]:
    """(job, created). The same Idempotency-Key, or a job still active for the warehouse, returns
    the existing job instead of starting a second run."""
    if idempotency_key:
        existing = session.scalars(sa.select(TrainingJob).where(TrainingJob.idempotency_key == idempotency_key)).first()
        if existing is not None:
            return refresh(session, existing), False
    for job in session.scalars(sa.select(TrainingJob).where(TrainingJob.warehouse_id == warehouse_id,
                                                             TrainingJob.status.in_(ACTIVE))):
        if refresh(session, job).status in ACTIVE:
            return job, False
    job = TrainingJob(warehouse_id=warehouse_id, agent=agent, profile=profile, data_window_hours=data_window_hours,
                      requested_by=requested_by, idempotency_key=idempotency_key)
    session.add(job)
    session.commit()
    try:
        flow_run = _run_deployment({"agent": agent, "profile": profile, "warehouse_id": warehouse_id,
                                    "data_window_hours": data_window_hours, "show_progress": False})
    except Exception as exc:  # Prefect unreachable or the deployment is not served: the job says why
        job.status, job.error = "failed", f"could not start the flow run: {exc}"
        session.commit()
        raise RuntimeError(job.error) from exc
    job.flow_run_id = str(flow_run.id)
    session.add(ApiAuditEvent(actor=requested_by, action="training.trigger",
                              detail={"job_id": job.id, "flow_run_id": job.flow_run_id, "warehouse_id": warehouse_id}))
    session.commit()
    return job, True


def refresh(session: Session, job: TrainingJob) -> TrainingJob:
    """Update an active job from its flow run; on completion, find the version it registered."""
    if job.status not in ACTIVE or job.flow_run_id is None:
        return job
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        run = client.read_flow_run(uuid.UUID(job.flow_run_id))
    job.status = STATES.get(run.state_type.value if run.state_type else "PENDING", "queued")
    if job.status == "completed":
        mv = store.find_version_by_tag(job.agent, "prefect_flow_run_id", job.flow_run_id)
        job.version = str(mv.version) if mv else None
    elif job.status == "failed":
        job.error = run.state.message if run.state else "flow run failed"
    session.commit()
    return job


def _run_deployment(parameters: dict):
    from prefect.deployments import run_deployment

    return run_deployment(DEPLOYMENT, parameters=parameters, timeout=0, as_subflow=False)
