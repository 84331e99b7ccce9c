"""The dreamops REST API (FastAPI). Run: `dreamops api` (uvicorn). OpenAPI at /docs, the rollout dashboard at /ui.

Every error is a JSON body `{"status": <code>, "message": "..."}` (validation errors add `errors`).
"""
from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from contextlib import asynccontextmanager

import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from dreamops.api import canary
from dreamops.api.auth import AuthError
from dreamops.api.deps import promotions
from dreamops.api.routes import deployments, models, robots, training, ui, webhooks
from dreamops.api.schemas import ErrorOut
from dreamops.db import Deployment, session_factory
from dreamops.registry import store
from dreamops.registry.errors import PromotionRefusedError, VersionIntegrityError
from dreamops.settings import get_settings

API_PREFIX = "/api/v1"
log = logging.getLogger("dreamops.api")


def tick_deployments() -> int:
    """Evaluate every active rollout once (bake times elapse without telemetry; a restarted API
    picks its rollouts up here). Returns how many were evaluated."""
    make_session = session_factory(get_settings().sql_url)
    with make_session() as session:
        ids = list(session.scalars(sa.select(Deployment.id).where(Deployment.status == canary.ACTIVE)))
    for deployment_id in ids:
        with make_session() as session:
            try:
                canary.step(session, deployment_id, promotions())
            except Exception:  # one broken rollout must not stop the others
                log.exception("evaluating deployment %s failed", deployment_id)
    return len(ids)


def reconcile_aliases() -> int:
    """The webhook fallback: apply the promotion rules to alias moves made in the MLflow UI, and
    start the rollout of a `canary` set there. Returns how many moves it found."""
    moves = 0
    p = promotions()
    for model in store.model_names():
        for move in p.reconcile(model, source="reconciler", actor="mlflow"):
            moves += 1
            if move.alias == "canary" and move.outcome == "applied" and move.to_version:
                with session_factory(get_settings().sql_url)() as session:
                    canary.start_from_alias(session, p, model, move.to_version)
    return moves


@asynccontextmanager
async def lifespan(app: FastAPI):
    settings = get_settings()
    settings.resolved_home.mkdir(parents=True, exist_ok=True)  # the embedded default's SQLite lives there
    await run_in_threadpool(session_factory, settings.sql_url)  # migrate before serving
    await run_in_threadpool(promotions)  # MLflow configured once, before any route needs it
    if gc.get_freeze_count() == 0:  # once per process
        # what start-up made (imported modules, MLflow's and SQLAlchemy's state: ~360,000 objects)
        # lives as long as the process: the collector leaves it alone from now on. A full collection
        # of it took 0.7 s on the 2-core machine, the p99 of every request in flight.
        gc.collect()
        gc.freeze()
        # young collections every 10,000 allocations, not 700 (64 clients, side by side: 1,964 vs
        # 1,462 assignment lookups/s, p99 82 vs 161 ms)
        gc.set_threshold(10_000, 10, 10)

    stop = asyncio.Event()

    async def every(interval_s: float, job, what: str) -> None:
        while interval_s > 0:
            with contextlib.suppress(asyncio.TimeoutError):  # sleep, or wake at once when the app stops
                await asyncio.wait_for(stop.wait(), interval_s)
            if stop.is_set():
                return
            try:
                await run_in_threadpool(job)
            except Exception:
                log.exception("%s failed", what)

    tasks = [asyncio.create_task(every(settings.canary_tick_s, tick_deployments, "deployment tick")),
             asyncio.create_task(every(settings.reconcile_interval_s, reconcile_aliases, "alias reconciliation"))]
    yield
    # stop, then wait: cancelling would leave a job already in its thread running after the app is
    # gone, against whatever settings and databases come next (in the tests: the next test's)
    stop.set()
    await asyncio.gather(*tasks)


def _error(status: int, message: str, **extra) -> JSONResponse:
    return JSONResponse({"status": status, "message": message, **extra}, status_code=status)


ERRORS = {400: "the body cannot be read (webhooks: not an MLflow event)",
          401: "missing, malformed or revoked bearer token (webhooks: bad signature or timestamp)",
          403: "the token's role may not do this", 404: "no such version, deployment, job or robot",
          409: "refused by the promotion rules, a rollout conflict, or a replayed delivery",
          413: "upload too large", 422: "invalid request: the message names each bad field",
          503: "a server dreamops needs (Prefect, the database) is unavailable"}
# the error answers each router's routes can give (all of them: ErrorOut bodies)
ROUTER_ERRORS = {"training": (401, 403, 404, 422, 503), "models": (401, 403, 404, 422),
                 "deployments": (401, 403, 404, 409, 422), "robots": (401, 403, 404, 413, 422),
                 "webhooks": (400, 401, 409, 422)}


def _documented(statuses) -> dict:
    return {status: {"model": ErrorOut, "description": ERRORS[status]} for status in statuses}


def create_app() -> FastAPI:
    app = FastAPI(title="dreamops", version="0.1.0", lifespan=lifespan,
                  description="Training triggers, model lookup, staged canary rollouts and registry events.")
    for name, router in (("training", training.router), ("models", models.router),
                         ("deployments", deployments.router), ("robots", robots.router),
                         ("webhooks", webhooks.router)):
        app.include_router(router, prefix=API_PREFIX, responses=_documented(ROUTER_ERRORS[name]))
    app.include_router(ui.router)  # the rollout dashboard, /ui (not part of the versioned JSON API)

    @app.get("/healthz", tags=["ops"])
    def healthz() -> dict:
        return {"status": "ok"}

    @app.exception_handler(StarletteHTTPException)  # FastAPI's own (its body parsing raises Starlette's)
    async def http_error(request: Request, exc: StarletteHTTPException):
        if exc.status_code == 400 and isinstance(exc.__cause__, ValueError):  # FastAPI could not decode the body
            return _error(422, f"invalid request: body is not UTF-8 JSON ({exc.__cause__.__class__.__name__})",
                          errors=[{"where": "body", "problem": "not UTF-8 JSON"}])
        return _error(exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        errors = [{"where": ".".join(str(p) for p in e["loc"]), "problem": e["msg"]} for e in exc.errors()]
        summary = "; ".join(f"{e['where']}: {e['problem']}" for e in errors)
        return _error(422, f"invalid request: {summary}", errors=errors)

    @app.exception_handler(AuthError)
    async def auth_error(request: Request, exc: AuthError):
        return _error(exc.status, exc.message)

    @app.exception_handler(LookupError)
    async def not_found(request: Request, exc: LookupError):
        return _error(404, str(exc))

    @app.exception_handler(PromotionRefusedError)
    async def refused(request: Request, exc: PromotionRefusedError):
        return _error(409, str(exc))

    @app.exception_handler(canary.DeploymentConflict)
    async def conflict(request: Request, exc: canary.DeploymentConflict):
        return _error(409, str(exc))

    @app.exception_handler(ValueError)
    async def bad_value(request: Request, exc: ValueError):
        return _error(422, str(exc))

    @app.exception_handler(VersionIntegrityError)
    async def integrity(request: Request, exc: VersionIntegrityError):
        return _error(409, str(exc))

    @app.exception_handler(RuntimeError)
    async def unavailable(request: Request, exc: RuntimeError):  # e.g. Prefect unreachable
        return _error(503, str(exc))

    return app


app = create_app()
