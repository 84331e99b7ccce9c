"""The API in-process (FastAPI's TestClient, lifespan and ticker included) on a fresh database per
test, once on PostgreSQL (production) and once on the embedded default, SQLite under the home; MLflow
on a temporary embedded store."""
from __future__ import annotations

from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient


@dataclass
class Api:
    client: TestClient
    tokens: dict[str, str]  # role -> bearer token

    def as_(self, role: str) -> dict:
        return {"Authorization": f"Bearer {self.tokens[role]}"}

    def get(self, path: str, role: str = "engineer", **kw):
        return self.client.get(f"/api/v1{path}", headers=self.as_(role), **kw)

    def post(self, path: str, role: str = "engineer", **kw):
        return self.client.post(f"/api/v1{path}", headers={**self.as_(role), **kw.pop("headers", {})}, **kw)


def reset_api_caches() -> None:
    from dreamops.api import cache, deps
    from dreamops.settings import get_settings

    cache.reset()
    get_settings.cache_clear()
    deps.promotions.cache_clear()
    deps._receiver.cache_clear()


@pytest.fixture(params=["postgresql", "sqlite"])
def api_db(request, tmp_path):
    if request.param == "sqlite":  # where the default set-up keeps it: DREAMOPS_HOME/dreamops.db
        (tmp_path / ".dreamops").mkdir(exist_ok=True)
        yield f"sqlite:///{tmp_path / '.dreamops' / 'dreamops.db'}"
        return
    from tests.stack import postgres_database

    with postgres_database("dreamops_api") as url:
        yield url


WEBHOOK_SECRET = "api-test-secret"


def configure_api(api_db: str, monkeypatch) -> dict[str, str]:
    """Settings for an API on `api_db` (migrated), MLflow configured; returns a token per role."""
    from dreamops.api.auth import create_token
    from dreamops.db import session_factory
    from dreamops.registry import store
    from dreamops.settings import get_settings

    monkeypatch.setenv("DREAMOPS_DATABASE_URL", api_db)
    monkeypatch.setenv("DREAMOPS_CANARY_TICK_S", "0.2")
    # no background alias reconciler: a test calls reconcile_aliases() itself, and one firing on
    # its own (every 30 s, so on a loaded machine mid-test) races the test's own call
    monkeypatch.setenv("DREAMOPS_RECONCILE_INTERVAL_S", "0")
    monkeypatch.setenv("DREAMOPS_WEBHOOK_SECRET", WEBHOOK_SECRET)
    reset_api_caches()
    store.configure(get_settings())
    with session_factory(api_db)() as session:
        return {role: create_token(session, f"test-{role}", role) for role in ("engineer", "robot", "viewer")}


@pytest.fixture
def api(api_db, dreamops_home, monkeypatch):
    from dreamops.api.main import create_app

    tokens = configure_api(api_db, monkeypatch)
    with TestClient(create_app()) as client:
        yield Api(client, tokens)
    reset_api_caches()


@pytest.fixture
def registry(api):
    """(Promotions, MlflowClient) on the same stores as the API under test."""
    from mlflow import MlflowClient

    from dreamops.api.deps import promotions

    return promotions(), MlflowClient()
