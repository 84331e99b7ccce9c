"""The dreamops REST API (FastAPI). Run: `dreamops api` or `uvicorn dreamops.api.main:app`."""
from __future__ import annotations

from fastapi import FastAPI

from dreamops.api.routes import webhooks

API_PREFIX = "/api/v1"


def create_app() -> FastAPI:
    app = FastAPI(title="dreamops", version="0.1.0",
                  description="Training triggers, model lookup, canary rollouts and registry events.")
    app.include_router(webhooks.router, prefix=API_PREFIX)

    @app.get("/healthz", tags=["ops"])
    def healthz() -> dict:
        return {"status": "ok"}

    return app


app = create_app()
