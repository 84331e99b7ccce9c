"""Auth, model lookup and bad requests: clear 4xx JSON answers, never a 500."""
from __future__ import annotations

import pytest

from tests.registry.conftest import MODEL, add_version


def test_tokens_and_roles(api):
    no_token = api.client.get("/api/v1/models")
    assert no_token.status_code == 401 and "missing bearer token" in no_token.json()["message"]
    forged = api.client.get("/api/v1/models", headers={"Authorization": "Bearer abc.def"})
    assert forged.status_code == 401 and forged.json()["message"] == "invalid or revoked token"
    token_id = api.tokens["viewer"].split(".")[0]
    wrong_secret = api.client.get("/api/v1/models", headers={"Authorization": f"Bearer {token_id}.nope"})
    assert wrong_secret.status_code == 401
    assert api.client.get("/api/v1/models", headers={"Authorization": "Basic x"}).status_code == 401
    assert api.get("/models", role="viewer").status_code == 200
    robot_trains = api.post("/training/trigger", role="robot", json={"warehouse_id": "WH-1"})
    assert robot_trains.status_code == 403 and "may not train" in robot_trains.json()["message"]
    assert api.post("/models/1/deploy", role="viewer", json={"warehouse_id": "WH-1"}).status_code == 403
    assert api.get("/robots/r1/assignment?warehouse_id=WH-1", role="viewer").status_code == 403


def test_tokens_are_stored_hashed(api, api_db):
    import sqlalchemy as sa

    with sa.create_engine(api_db).connect() as conn:
        stored = [r.secret_hash for r in conn.execute(sa.text("select secret_hash from api_tokens"))]
    secrets = [t.split(".", 1)[1] for t in api.tokens.values()]
    assert len(stored) == 3 and not set(stored) & set(secrets)


def test_lookup_by_number_semver_and_alias(api, registry):
    promotions, _ = registry
    v1 = add_version(semver="1.0.0")
    v2 = add_version(semver="1.1.0")
    promotions.promote(MODEL, v2, "production")
    listing = api.get("/models", role="viewer").json()
    assert [v["version"] for v in listing["versions"]] == [v2, v1] and listing["aliases"]["production"] == v2
    for ref in (v2, "1.1.0", "v1.1.0", "production"):
        body = api.get(f"/models/{ref}", role="viewer").json()
        assert body["version"] == v2 and body["semver"] == "1.1.0" and body["aliases"] == ["production"]
        assert body["validation_status"] == "passed" and "vae_recon" in body["gates"]
    missing = api.get("/models/v9.9.9")
    assert missing.status_code == 404 and "no version" in missing.json()["message"]


def test_lookup_of_a_version_registered_outside_dreamops(api):
    """A version made in the MLflow UI from any run has no config.yaml or evaluation report: its
    lookup says so with empty lineage fields instead of failing."""
    import mlflow

    with mlflow.start_run() as run:
        mlflow.log_param("made_by", "hand")
    add_version(semver="1.0.0")  # the registered model exists
    client = mlflow.MlflowClient()
    mv = client.create_model_version(MODEL, source="file:///dev/null", run_id=run.info.run_id,
                                     tags={"validation_status": "pending"})
    for _ in range(2):  # the second lookup reads the run's record from the cache
        body = api.get(f"/models/{mv.version}", role="viewer")
        assert body.status_code == 200, body.json()
        lineage = body.json()["lineage"]
        assert lineage["run_id"] == run.info.run_id and lineage["config"] is None and lineage["evaluation"] == {}


@pytest.mark.parametrize("body, status, words", [
    ({"warehouse_id": "WH-1", "rollout_percent": 0}, 422, "rollout_percent"),
    ({"warehouse_id": "WH-1", "rollout_percent": 101}, 422, "rollout_percent"),
    ({"warehouse_id": "WH-1", "robot_ids": ["a"]}, 422, "exactly one of"),
    ({}, 422, "exactly one of"),
    ({"warehouse_id": "WH-1", "stages": [50, 10]}, 422, "stages must be increasing"),
    ({"warehouse_id": "WH-1", "stages": [10, 50]}, 422, "ending at 100"),
    ({"warehouse_id": "WH-1", "alpha": 2}, 422, "alpha"),
])
def test_bad_deploy_requests(api, registry, body, status, words):
    add_version()
    answer = api.post("/models/1/deploy", json=body)
    assert answer.status_code == status and words in answer.json()["message"]


def test_deploy_refuses_unknown_failed_and_current_versions(api, registry):
    promotions, _ = registry
    good = add_version()
    failed = add_version(status="failed", gates={"gate.vae_recon": "failed: 0.3"})
    assert api.post("/models/42/deploy", json={"warehouse_id": "WH-1"}).status_code == 404
    refused = api.post(f"/models/{failed}/deploy", json={"warehouse_id": "WH-1"})
    assert refused.status_code == 409 and "validation_status=failed" in refused.json()["message"]
    promotions.promote(MODEL, good, "production")
    current = api.post(f"/models/{good}/deploy", json={"warehouse_id": "WH-1"})
    assert current.status_code == 409 and "already in production" in current.json()["message"]


def test_malformed_and_invalid_bodies(api):
    raw = api.client.post("/api/v1/training/trigger", content=b"{not json", headers={
        **api.as_("engineer"), "Content-Type": "application/json"})
    assert raw.status_code == 422 and raw.json()["message"].startswith("invalid request")
    for body in ({"warehouse_id": ""}, {"warehouse_id": "WH 1"}, {"warehouse_id": "WH-1", "data_window_hours": -1},
                 {"warehouse_id": "WH-1", "profile": "huge"}, {"warehouse_id": "WH-1", "agent": "doom"},
                 {"warehouse_id": "WH-1", "agent": "pick-vla", "data_window_hours": 24}):
        answer = api.post("/training/trigger", json=body)
        assert answer.status_code == 422, body
        assert answer.json()["message"]
    assert api.get("/training/nope").status_code == 404
    assert api.get("/deployments/nope").status_code == 404
    bad_robot = api.get("/robots/has%20space/assignment?warehouse_id=WH-1", role="robot")
    assert bad_robot.status_code == 422


def test_trigger_without_prefect_is_503_not_500(api, monkeypatch):
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")  # nothing listens there
    answer = api.post("/training/trigger", json={"warehouse_id": "WH-9", "profile": "smoke"})
    assert answer.status_code == 503 and "could not start the flow run" in answer.json()["message"]
    jobs = api.post("/training/trigger", json={"warehouse_id": "WH-9", "profile": "smoke"})
    assert jobs.status_code == 503  # the failed job does not block a new attempt


def test_episode_upload_validates_and_stores(api):
    import io

    import numpy as np

    t = 12
    arrays = {"obs": np.zeros((t, 64, 64, 3), np.uint8), "actions": np.zeros((t, 3), np.float32),
              "rewards": np.zeros(t, np.float32), "dones": np.zeros(t, bool)}
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    ok = api.post("/robots/r1/episodes?warehouse_id=WH-1&version=1", role="robot", content=buf.getvalue(),
                  headers={"Content-Type": "application/octet-stream"})
    assert ok.status_code == 201 and ok.json()["frames"] == t and ok.json()["key"].startswith("uploads/WH-1/")
    assert api.post("/robots/r1/episodes?warehouse_id=WH-1&version=1", role="robot",
                    content=b"garbage").status_code == 422
    buf = io.BytesIO()
    np.savez_compressed(buf, obs=arrays["obs"])
    lacking = api.post("/robots/r1/episodes?warehouse_id=WH-1&version=1", role="robot", content=buf.getvalue())
    assert lacking.status_code == 422 and "lacks" in lacking.json()["message"]
