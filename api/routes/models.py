"""GET /models, GET /models/{version}: versions by number, semver (v2.3.1) or alias."""
from __future__ import annotations

from fastapi import APIRouter, Depends, Query
from fastapi.concurrency import run_in_threadpool

from dreamops.api.auth import Principal
from dreamops.api.deps import allowed, promotions
from dreamops.api.schemas import ModelName, VersionOut, VersionPath
from dreamops.registry import store
from dreamops.registry.lineage import describe, lineage

router = APIRouter(prefix="/models", tags=["models"])
DEFAULT_MODEL = "carracing-vmc"


@router.get("")
def list_models(model: ModelName = DEFAULT_MODEL, _: Principal = Depends(allowed("read"))) -> dict:
    promotions()  # MLflow configured once per process
    rows = store.list_versions(model)
    return {"model": model, "aliases": store.aliases(model),
            "versions": [{"version": r.version, "semver": r.semver, "aliases": r.aliases,
                          "validation_status": r.validation_status, "failed_gates": r.failed_gates,
                          "mean_reward": r.mean_reward, "data_hash": r.data_hash, "created": r.created}
                         for r in rows]}


@router.get("/{version}", response_model=VersionOut)
async def get_version(version: VersionPath, model: ModelName = DEFAULT_MODEL, with_lineage: bool = Query(True),
                      _: Principal = Depends(allowed("read"))) -> VersionOut:
    promotions()
    info = await run_in_threadpool(describe, model, version)
    if with_lineage:
        info["lineage"] = await run_in_threadpool(lineage, model, info["version"])
    return VersionOut(**info)
