"""The fleet's side: GET assignment, POST telemetry, POST episodes (npz shards for retraining)."""
from __future__ import annotations

import hashlib
import io
import tempfile
from pathlib import Path
from typing import Annotated

import numpy as np
from fastapi import APIRouter, Depends, HTTPException, Path as PathParam, Query, Request, Response
from fastapi.concurrency import run_in_threadpool

from dreamops.api import cache, canary
from dreamops.api.auth import Principal
from dreamops.api.deps import allowed, promotions, settings
from dreamops.api.schemas import Assignment, EpisodeUploadAck, ModelName, TelemetryAck, TelemetryBatch
from dreamops.db import Deployment, session_factory
from dreamops.families import DEFAULT_FAMILY, family
from dreamops.settings import Settings, get_settings
from dreamops.storage import open_store
from dreamops.uploads import upload_key
from dreamops.validation.data_gate import episode_problem

router = APIRouter(prefix="/robots", tags=["robots"])
ID = r"^[A-Za-z0-9_.-]{1,64}$"
MAX_UPLOAD_BYTES = 64 * 1024 * 1024
# in the OpenAPI document too, so clients (and the fuzz test) see the constraint FastAPI enforces
RobotId = Annotated[str, PathParam(pattern=ID, description="the robot's id (letters, digits, _ . -; at most 64)")]
EPISODE_BODY = {"requestBody": {"required": True, "description": "an npz of obs uint8 [T,64,64,3], actions [T,A], "
                                "rewards [T], dones [T] (T >= 1) and the further arrays of the family's upload "
                                "schema (`?model=`), at most 64 MiB",
                                "content": {"application/octet-stream": {"schema": {"type": "string",
                                                                                    "format": "binary"}}}}}


@router.get("/{robot_id}/assignment", response_model=Assignment)
async def assignment(robot_id: RobotId, warehouse_id: str = Query(..., pattern=ID), model: ModelName = DEFAULT_FAMILY,
                     _: Principal = Depends(allowed("robot"))) -> Assignment:
    """The version this robot runs now: its arm of an active canary, else production (or, while
    drift is open for the warehouse, last-known-good). Served from the worker's cache, which every
    alias move and rollout step invalidates at once (api/cache.py); the robot's row (last_seen,
    running_version) is written when its version changes, and at most every robot_seen_interval_s
    otherwise. Database and MLflow work runs in the threadpool, never on the event loop."""
    cfg = get_settings()
    view = cache.view(cfg.sql_url, cfg.api_cache_ttl_s, cfg.robot_seen_interval_s)
    snapshot = await view.current()
    key = (robot_id, warehouse_id, model)
    answer = snapshot.answers.get(key)
    if answer is None:
        if not snapshot.ready(model):
            await run_in_threadpool(_load, snapshot, model)
        answer = _assign(snapshot, robot_id, warehouse_id, model)
        if answer.resolve is None:
            snapshot.remember(key, answer)
    changes_split = snapshot.fleet.changes_split(robot_id, warehouse_id)
    if answer.resolve is not None or view.must_write(robot_id, warehouse_id, answer.version, changes_split):
        await run_in_threadpool(view.write_seen, robot_id, warehouse_id, answer.version, changes_split, answer.resolve)
    return Response(answer.body, media_type="application/json")


def _load(snapshot: cache.Snapshot, model: str) -> None:
    promotions()  # MLflow configured once per process
    snapshot.load(model)


def _assign(snapshot: cache.Snapshot, robot_id: str, warehouse_id: str, model: str) -> cache.Answer:
    """The assignment from the snapshot alone (memory only)."""
    fleet, resolve = snapshot.fleet, None
    rollout = fleet.active_for(robot_id, warehouse_id)
    if rollout is not None and rollout.model == model:
        arm = fleet.splits[rollout.id].arm(robot_id, rollout.percent)  # this robot counts in the split
        version = rollout.version if arm == "canary" else rollout.baseline_version
        deployment_id = rollout.id
    else:
        production = snapshot.production[model]
        arm, version, deployment_id = "production", production, None
        incident = fleet.incidents.get((warehouse_id, model))
        if incident is not None:  # drift: last-known-good until production has moved on (the retrain landed)
            if production != incident.version:
                resolve = (incident, production)
            elif incident.fallback_version:
                arm, version = "fallback", incident.fallback_version
    body = Assignment(robot_id=robot_id, warehouse_id=warehouse_id, model=model, version=version,
                      deployment_id=deployment_id, arm=arm if version else None).model_dump_json().encode()
    return cache.Answer(version, body, resolve)


@router.post("/{robot_id}/telemetry", response_model=TelemetryAck)
async def telemetry(robot_id: RobotId, batch: TelemetryBatch, _: Principal = Depends(allowed("robot"))) -> TelemetryAck:
    """Store the episodes: batches that arrive together go in one transaction, one multi-row
    insert. An active deployment is judged at once when the batch holds a canary episode past a
    guardrail threshold (a breach rolls back in this request), else at most every
    canary_eval_interval_s per API worker; the tick judges it every canary_tick_s as well.
    `deployment_status` is the deployment's status after this request."""
    cfg = get_settings()
    view = cache.view(cfg.sql_url, cfg.api_cache_ttl_s, cfg.robot_seen_interval_s)
    rollout = status = arm = stage = None
    if batch.deployment_id:
        snapshot = await view.current()
        if snapshot.fleet is None:
            await run_in_threadpool(snapshot.load)
        rollout = snapshot.fleet.by_id.get(batch.deployment_id)
        if rollout is not None:  # rolling out (the snapshot holds the active ones)
            status, stage = canary.ACTIVE, rollout.stage_index
            version, baseline = rollout.version, rollout.baseline_version
        else:  # ended, or unknown: its row
            ended = await run_in_threadpool(_deployment, cfg.sql_url, batch.deployment_id)
            if ended is None:
                raise HTTPException(404, f"no deployment {batch.deployment_id!r}")
            status, stage, version, baseline = ended
        arm = {version: "canary", baseline: "baseline"}.get(batch.version)
    latents = batch.latents or None
    await view.insert([{"robot_id": robot_id, "warehouse_id": batch.warehouse_id, "model": batch.model,
                        "version": batch.version,
                        "deployment_id": batch.deployment_id, "arm": arm, "stage_index": stage, "seed": e.seed,
                        "reward": e.reward, "collisions": e.collisions, "steps": e.steps,
                        "latency_p50_ms": e.latency_p50_ms, "latency_p99_ms": e.latency_p99_ms,
                        "residual": e.residual, "success_prob": e.success_prob, "ended_at": e.ended_at, "latents": latents} for e in batch.episodes])
    if rollout is not None and (
            (arm == "canary" and canary.past_a_guardrail(rollout.policy, batch.episodes))
            or cache.evaluations.due(rollout.id, cfg.canary_eval_interval_s)):
        status = await run_in_threadpool(_judge, cfg.sql_url, rollout.id)
    return TelemetryAck(accepted=len(batch.episodes), deployment_status=status)


def _deployment(url: str, deployment_id: str) -> tuple | None:
    with session_factory(url)() as session:
        d = session.get(Deployment, deployment_id)
        return None if d is None else (d.status, d.stage_index, d.version, d.baseline_version)


def _judge(url: str, deployment_id: str) -> str:
    with session_factory(url)() as session:
        return canary.step(session, deployment_id, promotions()).status


@router.post("/{robot_id}/episodes", response_model=EpisodeUploadAck, status_code=201, openapi_extra=EPISODE_BODY)
async def upload_episode(robot_id: RobotId, request: Request, warehouse_id: str = Query(..., pattern=ID),
                         version: str = Query(..., pattern=ID), model: ModelName = DEFAULT_FAMILY,
                         _: Principal = Depends(allowed("robot")),
                         cfg: Settings = Depends(settings)) -> EpisodeUploadAck:
    """One episode of the family `model` as an npz (obs, actions, rewards, dones and the family's
    further arrays), kept for the family's next retrain of this warehouse."""
    try:
        family(model)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    body = await request.body()
    if not body or len(body) > MAX_UPLOAD_BYTES:
        raise HTTPException(413 if body else 422, f"episode must be 1 byte .. {MAX_UPLOAD_BYTES} bytes of npz")
    # reading the npz, hashing up to 64 MiB and the object store's client are work for a thread,
    # not for the event loop that serves every other request
    return await run_in_threadpool(_store_episode, cfg, body, warehouse_id, robot_id, version, model)


def _store_episode(cfg: Settings, body: bytes, warehouse_id: str, robot_id: str, version: str,
                   model: str) -> EpisodeUploadAck:
    frames = _check_episode(body, model)
    key = upload_key(warehouse_id, robot_id, version, body, model=model)  # names its sha256: every read verifies it
    objects = open_store(cfg)
    _put(objects, body, key)
    return EpisodeUploadAck(key=key, uri=objects.uri(key), frames=frames, sha256=hashlib.sha256(body).hexdigest())


def _check_episode(body: bytes, model: str) -> int:
    """The upload's frame count; 422 unless it is an npz of what the family's robots upload
    (Family.upload_schema)."""
    try:
        with np.load(io.BytesIO(body), allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except Exception:
        raise HTTPException(422, "body is not a readable npz file") from None
    problem = episode_problem(arrays, family(model).load("upload_schema"))
    if problem:
        raise HTTPException(422, f"episode {problem}")
    return len(arrays["actions"])


def _put(objects, body: bytes, key: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "episode.npz"
        path.write_bytes(body)
        objects.put_file(path, key)
