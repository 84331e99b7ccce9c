"""GET /models, GET /models/{version}: versions by number, semver (v2.3.1) or alias.

Answers come from the worker's cache (api/cache.py): computed from MLflow once per cache
generation (every alias move and webhook delivery raises it) and at most api_cache_ttl_s old
(tags edited in MLflow). MLflow and the database are called in FastAPI's threadpool, never on the
event loop; an answer in the cache is served without a thread hop."""
from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse

from dreamops.api import cache
from dreamops.api.auth import Principal
from dreamops.api.deps import allowed, promotions
from dreamops.api.schemas import ModelName, VersionOut, VersionPath
from dreamops.families import DEFAULT_FAMILY
from dreamops.registry import store
from dreamops.registry.lineage import describe, lineage
from dreamops.settings import get_settings

router = APIRouter(prefix="/models", tags=["models"])
DEFAULT_MODEL = DEFAULT_FAMILY  # a family registers its versions under its own name


async def _cached(key: tuple, compute) -> Response:
    cfg = get_settings()
    snapshot = await cache.view(cfg.sql_url, cfg.api_cache_ttl_s, cfg.robot_seen_interval_s).current()
    body = snapshot.answers.get(key)
    if body is None:
        def body_of() -> bytes:
            promotions()  # MLflow configured once per process
            return JSONResponse(jsonable_encoder(compute())).body
        body = await run_in_threadpool(snapshot.compute, key, body_of)
    return Response(body, media_type="application/json")


@router.get("")
async def list_models(model: ModelName = DEFAULT_MODEL, _: Principal = Depends(allowed("read"))) -> dict:
    def compute() -> dict:
        rows = store.list_versions(model)
        return {"model": model, "aliases": store.aliases(model),
                "versions": [{"version": r.version, "semver": r.semver, "aliases": r.aliases,
                              "validation_status": r.validation_status, "failed_gates": r.failed_gates,
                              "mean_reward": r.mean_reward, "data_hash": r.data_hash, "created": r.created}
                             for r in rows]}
    return await _cached(("list", model), compute)


@router.get("/{version}", response_model=VersionOut)
async def get_version(version: VersionPath, model: ModelName = DEFAULT_MODEL, with_lineage: bool = Query(True),
                      _: Principal = Depends(allowed("read"))) -> VersionOut:
    def compute() -> VersionOut:
        info = describe(model, version)
        if with_lineage:
            info["lineage"] = lineage(model, info["version"])
        return VersionOut(**info)
    return await _cached(("version", model, version, with_lineage), compute)
