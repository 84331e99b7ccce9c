"""The fleet's side: GET assignment, POST telemetry, POST episodes (npz shards for retraining)."""
from __future__ import annotations

import hashlib
import io
import tempfile
from pathlib import Path
from typing import Annotated

import numpy as np
import sqlalchemy as sa
from fastapi import APIRouter, Depends, HTTPException, Path as PathParam, Query, Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.orm import Session

from dreamops.api import canary
from dreamops.api.auth import Principal
from dreamops.api.db import Deployment, DriftIncident, Robot, TelemetryEpisode, utcnow
from dreamops.api.deps import allowed, db, promotions, settings
from dreamops.api.schemas import Assignment, EpisodeUploadAck, ModelName, TelemetryAck, TelemetryBatch
from dreamops.registry import store
from dreamops.settings import Settings
from dreamops.storage import open_store
from dreamops.tasks.dataset import SHARD_ARRAYS
from dreamops.tasks.fleet_data import upload_key

router = APIRouter(prefix="/robots", tags=["robots"])
ID = r"^[A-Za-z0-9_.-]{1,64}$"
MAX_UPLOAD_BYTES = 64 * 1024 * 1024
# in the OpenAPI document too, so clients (and the fuzz test) see the constraint FastAPI enforces
RobotId = Annotated[str, PathParam(pattern=ID, description="the robot's id (letters, digits, _ . -; at most 64)")]
EPISODE_BODY = {"requestBody": {"required": True, "description": "an npz of obs uint8 [T,64,64,3], actions [T,3], "
                                "rewards [T], dones [T] (T >= 1), at most 64 MiB",
                                "content": {"application/octet-stream": {"schema": {"type": "string",
                                                                                    "format": "binary"}}}}}


@router.get("/{robot_id}/assignment", response_model=Assignment)
def assignment(robot_id: RobotId, warehouse_id: str = Query(..., pattern=ID), model: ModelName = "carracing-vmc",
               _: Principal = Depends(allowed("robot")), session: Session = Depends(db)) -> Assignment:
    """The version this robot runs now: its arm of an active canary, else production."""
    promotions()
    robot = _seen(session, robot_id, warehouse_id)
    deployment = canary.active_for(session, robot_id, warehouse_id)
    if deployment is not None and deployment.model == model:
        session.flush()  # this robot counts in the split
        arm = canary.arm_of(session, deployment, robot_id)
        version = deployment.version if arm == "canary" else deployment.baseline_version
        deployment_id = deployment.id
    else:
        production = store.find_alias(model, "production")
        arm, version, deployment_id = "production", str(production.version) if production else None, None
        fallback = _drift_fallback(session, model, warehouse_id, version)
        if fallback:
            arm, version = "fallback", fallback
    robot.running_version = version
    session.commit()
    return Assignment(robot_id=robot_id, warehouse_id=warehouse_id, model=model, version=version,
                      deployment_id=deployment_id, arm=arm if version else None)


@router.post("/{robot_id}/telemetry", response_model=TelemetryAck)
def telemetry(robot_id: RobotId, batch: TelemetryBatch, _: Principal = Depends(allowed("robot")),
              session: Session = Depends(db)) -> TelemetryAck:
    """Store the episodes; an active deployment is evaluated at once (guardrails -> rollback)."""
    deployment = session.get(Deployment, batch.deployment_id) if batch.deployment_id else None
    if batch.deployment_id and deployment is None:
        raise HTTPException(404, f"no deployment {batch.deployment_id!r}")
    arm = stage = None
    if deployment is not None:
        arm = {deployment.version: "canary", deployment.baseline_version: "baseline"}.get(batch.version)
        stage = deployment.stage_index
    for e in batch.episodes:
        session.add(TelemetryEpisode(robot_id=robot_id, warehouse_id=batch.warehouse_id, version=batch.version,
                                     deployment_id=batch.deployment_id, arm=arm, stage_index=stage, seed=e.seed,
                                     reward=e.reward, collisions=e.collisions, steps=e.steps,
                                     latency_p50_ms=e.latency_p50_ms, latency_p99_ms=e.latency_p99_ms,
                                     residual=e.residual,
                                     ended_at=e.ended_at, latents=batch.latents or None))
    session.commit()
    status = None
    if deployment is not None:
        status = canary.step(session, deployment.id, promotions()).status
    return TelemetryAck(accepted=len(batch.episodes), deployment_status=status)


@router.post("/{robot_id}/episodes", response_model=EpisodeUploadAck, status_code=201, openapi_extra=EPISODE_BODY)
async def upload_episode(robot_id: RobotId, request: Request, warehouse_id: str = Query(..., pattern=ID),
                         version: str = Query(..., pattern=ID), _: Principal = Depends(allowed("robot")),
                         cfg: Settings = Depends(settings)) -> EpisodeUploadAck:
    """One episode as an npz of obs, actions, rewards, dones, kept for the next retrain."""
    body = await request.body()
    if not body or len(body) > MAX_UPLOAD_BYTES:
        raise HTTPException(413 if body else 422, f"episode must be 1 byte .. {MAX_UPLOAD_BYTES} bytes of npz")
    frames = _check_episode(body)
    key = upload_key(warehouse_id, robot_id, version, body)  # names its sha256: every read verifies it
    objects = open_store(cfg)
    await run_in_threadpool(_put, objects, body, key)
    return EpisodeUploadAck(key=key, uri=objects.uri(key), frames=frames, sha256=hashlib.sha256(body).hexdigest())


def _seen(session: Session, robot_id: str, warehouse_id: str) -> Robot:
    """Register the robot on first contact, or note where and when it was seen: one upsert, so
    simultaneous first contacts of a new robot all succeed (PostgreSQL and SQLite)."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    now = utcnow()
    statement = insert(Robot).values(id=robot_id, warehouse_id=warehouse_id, last_seen=now)
    session.execute(statement.on_conflict_do_update(index_elements=[Robot.id],
                                                    set_={"warehouse_id": warehouse_id, "last_seen": now}))
    return session.scalars(sa.select(Robot).where(Robot.id == robot_id).execution_options(populate_existing=True)).one()


def _drift_fallback(session: Session, model: str, warehouse_id: str, production: str | None) -> str | None:
    """While drift is open for the warehouse, its robots run last-known-good; the incident closes
    when production has moved on (the retrain landed)."""
    incident = session.scalars(sa.select(DriftIncident).where(
        DriftIncident.warehouse_id == warehouse_id, DriftIncident.model == model,
        DriftIncident.resolved_at.is_(None)).order_by(DriftIncident.detected_at.desc())).first()
    if incident is None:
        return None
    if production != incident.version:
        incident.resolved_at, incident.resolution = utcnow(), f"production moved to {production}"
        return None
    return incident.fallback_version


def _check_episode(body: bytes) -> int:
    try:
        with np.load(io.BytesIO(body), allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except Exception:
        raise HTTPException(422, "body is not a readable npz file") from None
    missing = set(SHARD_ARRAYS) - set(arrays)
    if missing:
        raise HTTPException(422, f"episode npz lacks {sorted(missing)}")
    obs, actions, rewards, dones = (arrays[k] for k in SHARD_ARRAYS)
    n = len(actions) if actions.ndim else 0  # 0-d arrays have no length
    if obs.shape != (n, 64, 64, 3) or obs.dtype != np.uint8 or actions.shape != (n, 3) or rewards.shape != (n,) \
            or dones.shape != (n,) or n == 0:
        raise HTTPException(422, "episode arrays must be obs uint8 [T,64,64,3], actions [T,3], rewards [T], dones [T]")
    for name, a in (("actions", actions), ("rewards", rewards), ("dones", dones)):
        if a.dtype.kind not in "biuf" or not np.isfinite(a.astype(np.float64)).all():
            raise HTTPException(422, f"episode {name} must be finite numbers")
    return n


def _put(objects, body: bytes, key: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "episode.npz"
        path.write_bytes(body)
        objects.put_file(path, key)
