"""POST /training/trigger, GET /training/{job_id}."""
from __future__ import annotations

from fastapi import APIRouter, Depends, Header, HTTPException, Response
from sqlalchemy.orm import Session

from dreamops.api import training
from dreamops.api.auth import Principal
from dreamops.api.deps import allowed, db
from dreamops.api.schemas import NO_NUL, JobId, TrainingJobOut, TrainingTrigger
from dreamops.db import TrainingJob
from dreamops.families import family

router = APIRouter(prefix="/training", tags=["training"])


@router.post("/trigger", response_model=TrainingJobOut, status_code=202, responses={
    200: {"model": TrainingJobOut, "description": "the job already active for the warehouse, or the one this "
                                                  "Idempotency-Key started"}})
def trigger(body: TrainingTrigger, response: Response, idempotency_key: str | None = Header(None, max_length=128, pattern=NO_NUL),
            who: Principal = Depends(allowed("train")), session: Session = Depends(db)) -> TrainingJobOut:
    """Start the train flow for a warehouse and return at once (status `queued`). While a job for the
    warehouse is still queued or running, or for a repeated Idempotency-Key, the existing job is returned."""
    try:  # the family's own profiles and capabilities (dreamops.families): no training code imported here
        fam = family(body.agent)
        fam.check_profile(body.profile)
        if body.data_window_hours:
            fam.require("fleet_data")
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    job, created = training.trigger(session, body.warehouse_id, body.agent, body.profile, body.data_window_hours,
                                    who.name, idempotency_key)
    if not created:
        response.status_code = 200
    return TrainingJobOut.of(job)


@router.get("/{job_id}", response_model=TrainingJobOut)
def status(job_id: JobId, _: Principal = Depends(allowed("read")), session: Session = Depends(db)) -> TrainingJobOut:
    job = session.get(TrainingJob, job_id)
    if job is None:
        raise HTTPException(404, f"no training job {job_id!r}")
    return TrainingJobOut.of(training.refresh(session, job))
