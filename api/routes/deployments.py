"""Canary deployments: POST /models/{version}/deploy, GET /deployments[/{id}], POST .../promote|rollback."""
from __future__ import annotations

import sqlalchemy as sa
from fastapi import APIRouter, Depends, HTTPException, Query
from sqlalchemy.orm import Session

from dreamops.api import canary
from dreamops.api.auth import Principal
from dreamops.api.deps import allowed, db, promotions
from dreamops.api.schemas import (ID_PATTERN, DeploymentId, DeploymentOut, DeployRequest, ModelName,
                                   RollbackRequest, VersionPath)
from dreamops.db import Deployment
from dreamops.families import DEFAULT_FAMILY

router = APIRouter(tags=["deployments"])


@router.post("/models/{version}/deploy", response_model=DeploymentOut, status_code=202)
def deploy(version: VersionPath, body: DeployRequest, model: ModelName = DEFAULT_FAMILY,
           who: Principal = Depends(allowed("deploy")), session: Session = Depends(db)) -> DeploymentOut:
    """Start a staged canary of `version` (number, semver or alias) on a warehouse or a robot list."""
    if (body.warehouse_id is None) == (body.robot_ids is None):
        raise HTTPException(422, "give exactly one of warehouse_id or robot_ids")
    policy = canary.RolloutPolicy(stages=body.stages or canary.stages_from_percent(body.rollout_percent),
                                  **body.model_dump(include={"bake_seconds", "min_episodes", "max_collisions_per_episode",
                                                             "min_mean_reward", "max_latency_p99_ms", "alpha", "power",
                                                             "min_detectable_drop", "min_detectable_success_drop"}))
    deployment = canary.start(session, promotions(), model, version, policy, who.name,
                              warehouse_id=body.warehouse_id, robot_ids=body.robot_ids)
    return DeploymentOut.of(deployment)


@router.get("/deployments", response_model=list[DeploymentOut])
def list_deployments(status: str | None = Query(None, max_length=16, pattern=ID_PATTERN), _: Principal = Depends(allowed("read")),
                     session: Session = Depends(db)) -> list[DeploymentOut]:
    q = sa.select(Deployment).order_by(Deployment.created_at.desc()).limit(100)
    if status:
        q = q.where(Deployment.status == status)
    return [DeploymentOut.of(d) for d in session.scalars(q)]


def _get(session: Session, deployment_id: str) -> Deployment:
    deployment = session.get(Deployment, deployment_id)
    if deployment is None:
        raise HTTPException(404, f"no deployment {deployment_id!r}")
    return deployment


@router.get("/deployments/{deployment_id}", response_model=DeploymentOut)
def get_deployment(deployment_id: DeploymentId, _: Principal = Depends(allowed("read")),
                   session: Session = Depends(db)) -> DeploymentOut:
    deployment = _get(session, deployment_id)
    if deployment.status == canary.ACTIVE:  # fresh statistics (and bake time) on every read
        deployment = canary.step(session, deployment_id, promotions())
    return DeploymentOut.of(deployment)


@router.post("/deployments/{deployment_id}/promote", response_model=DeploymentOut)
def promote(deployment_id: DeploymentId, who: Principal = Depends(allowed("deploy")),
            session: Session = Depends(db)) -> DeploymentOut:
    deployment = _get(session, deployment_id)
    if deployment.status != canary.ACTIVE:
        raise HTTPException(409, f"deployment {deployment_id} is {deployment.status}")
    return DeploymentOut.of(canary.promote_stage(session, deployment, promotions(), who.name))


@router.post("/deployments/{deployment_id}/rollback", response_model=DeploymentOut)
def rollback(deployment_id: DeploymentId, body: RollbackRequest | None = None, who: Principal = Depends(allowed("deploy")),
             session: Session = Depends(db)) -> DeploymentOut:
    deployment = _get(session, deployment_id)
    if deployment.status != canary.ACTIVE:
        raise HTTPException(409, f"deployment {deployment_id} is {deployment.status}")
    reason = f"{(body or RollbackRequest()).reason} (by {who.name})"
    return DeploymentOut.of(canary.rollback(session, deployment, reason, promotions(), who.name))
