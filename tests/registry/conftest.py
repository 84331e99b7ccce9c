"""Registry tests on a real MLflow store (SQLite in a temp folder); versions are created directly
with their tags, since the promotion rules read nothing else."""
from __future__ import annotations

import pytest
from mlflow import MlflowClient

MODEL = "carracing-vmc"
PASSED_GATES = {"gate.vae_recon": "passed: 0.01 < 0.02", "gate.latency_p99": "passed: 3.1 < 80"}


def add_version(status: str = "passed", gates: dict | None = None, model: str = MODEL, **tags) -> str:
    client = MlflowClient()
    if not client.search_registered_models(f"name='{model}'"):
        client.create_registered_model(model)
    gates = PASSED_GATES if gates is None else gates
    mv = client.create_model_version(model, source="file:///dev/null", tags={"validation_status": status, **gates,
                                                                             **tags})
    return str(mv.version)


@pytest.fixture
def registry(dreamops_home):
    """(Promotions, MlflowClient) on an empty embedded store."""
    from dreamops.registry import store
    from dreamops.registry.promotion import Promotions
    from dreamops.settings import get_settings

    client = store.configure(get_settings())
    return Promotions.from_settings(get_settings(), actor="alice"), client


def alias(client, name: str) -> str | None:
    return {a: str(v) for a, v in client.get_registered_model(MODEL).aliases.items()}.get(name)
