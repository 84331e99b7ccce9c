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
                 {"warehouse_id": "WH-1", "agent": "pick-vla", "profile": "Quick"}):
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


def test_a_pick_cells_upload_is_checked_against_its_familys_schema_and_kept_apart(api):
    import io

    import numpy as np

    t = 12
    arrays = {"obs": np.zeros((t, 64, 64, 3), np.uint8), "depth": np.full((t, 64, 64, 1), 0.5, np.float32),
              "proprio": np.zeros((t, 21), np.float32), "actions": np.zeros((t, 4), np.float32),
              "rewards": np.zeros(t, np.float32), "dones": np.eye(1, t, t - 1, dtype=bool)[0],
              "held": np.zeros(t, bool), "collisions": np.zeros(t, bool),
              "instruction": np.array("pick up the red box")}

    def upload(model: str, **changed):
        buf = io.BytesIO()
        np.savez_compressed(buf, **{k: v for k, v in {**arrays, **changed}.items() if v is not None})
        return api.post(f"/robots/c1/episodes?warehouse_id=WH-1&version=2&model={model}", role="robot",
                        content=buf.getvalue())

    ok = upload("pick-vla")
    assert ok.status_code == 201 and ok.json()["frames"] == t and ok.json()["key"].startswith("uploads/WH-1/pick-vla/")
    no_depth = upload("pick-vla", depth=None)
    assert no_depth.status_code == 422 and "depth missing" in no_depth.json()["message"]
    # a pick episode is not a carracing-vmc one (4 actions, not 3), and an unknown family is named
    assert "actions [T,3]" in upload("carracing-vmc").json()["message"]
    unknown = upload("humanoid")
    assert unknown.status_code == 422 and "unknown agent 'humanoid'" in unknown.json()["message"]


def _episode(**changes) -> dict:
    return {"seed": 1, "reward": 10.0, "collisions": 0, "steps": 100, "latency_p50_ms": 2.0, "latency_p99_ms": 4.0,
            "ended_at": "2026-01-01T00:00:00Z", **changes}


@pytest.mark.parametrize("body, words", [
    ({"warehouse_id": "WH-1", "version": "1", "episodes": [_episode(reward=1e308)]}, "reward"),
    ({"warehouse_id": "WH-1", "version": "1", "episodes": [_episode(reward="Infinity")]}, "reward"),
    ({"warehouse_id": "WH-1", "version": "1", "episodes": [_episode(latency_p99_ms=float("nan"))]}, "latency_p99_ms"),
    ({"warehouse_id": "WH-1", "version": "1", "episodes": [_episode(seed=2 ** 64)]}, "seed"),
    ({"warehouse_id": "WH-1", "version": "1", "episodes": [_episode(collisions=2 ** 63)]}, "collisions"),
    ({"warehouse_id": "WH-1", "version": "1", "episodes": [_episode()], "latents": [[1e308, 1.0]]}, "latents"),
    ({"warehouse_id": "W" * 65, "version": "1", "episodes": [_episode()]}, "warehouse_id"),
    ({"warehouse_id": "WH-1", "version": "1" * 17, "episodes": [_episode()]}, "version"),
    ({"warehouse_id": "WH-1", "version": "1", "deployment_id": "d" * 33, "episodes": [_episode()]}, "deployment_id"),
])
def test_out_of_range_telemetry_is_refused_before_it_reaches_a_column(api, body, words):
    import json

    answer = api.client.post("/api/v1/robots/r1/telemetry", content=json.dumps(body),
                             headers={**api.as_("robot"), "Content-Type": "application/json"})
    assert answer.status_code == 422, answer.text
    assert words in answer.json()["message"]


def test_int64_telemetry_fits_its_columns_on_both_stores(api, api_db):
    """Found by the fuzz test: PostgreSQL's INTEGER (int32) refused a seed the schema allows (500)."""
    import sqlalchemy as sa

    big = {"seed": 2 ** 63 - 1, "collisions": 2 ** 40, "steps": 2 ** 32}
    answer = api.post("/robots/r1/telemetry", role="robot", json={"warehouse_id": "WH-1", "version": "1",
                                                                  "episodes": [_episode(**big)]})
    assert answer.status_code == 200, answer.text
    engine = sa.create_engine(api_db)
    with engine.connect() as conn:
        row = conn.execute(sa.text("select seed, collisions, steps from telemetry_episodes")).one()
    engine.dispose()
    assert tuple(row) == tuple(big.values())


def test_nul_characters_are_422_on_both_stores(api):
    """Found by the fuzz test: PostgreSQL text cannot hold NUL, even as a query parameter (500)."""
    telemetry = api.post("/robots/r1/telemetry", role="robot",
                         json={"warehouse_id": "WH-1", "version": "1\x00", "episodes": [_episode()]})
    assert telemetry.status_code == 422 and "version" in telemetry.json()["message"]
    for path in ("/deployments?status=%00", "/deployments/a%00b", "/training/a%00b", "/models/1%00"):
        assert api.get(path).status_code == 422, path
    assert api.post("/training/trigger", json={"warehouse_id": "WH-1"},
                    headers={"Idempotency-Key": "a\x00b"}).status_code in (422, 400)


def test_bad_strings_and_bodies_are_4xx_never_500(api, registry):
    import json
    import time
    import uuid

    from dreamops.registry.webhooks import sign

    add_version()
    quoted = api.get("/models", params={"model": "a'b"})
    assert quoted.status_code == 200 and quoted.json()["versions"] == []
    assert api.get("/models/1", params={"model": "a'b\""}).status_code == 404
    assert api.get("/models", params={"model": "m" * 257}).status_code == 422
    assert api.post("/models/1/deploy", json={"warehouse_id": "W" * 65}).status_code == 422
    assert api.post("/models/1/deploy", json={"robot_ids": ["r" * 65]}).status_code == 422
    assert api.get("/robots/r1/assignment", params={"warehouse_id": "WH-1", "model": "m" * 257},
                   role="robot").status_code == 422
    not_utf8 = api.client.post("/api/v1/training/trigger", content=b'{"warehouse_id": "\xff\xfe"}',
                               headers={**api.as_("engineer"), "Content-Type": "application/json"})
    assert not_utf8.status_code == 422 and set(not_utf8.json()) >= {"status", "message"}
    for data in ([1, 2], "text", None):
        body = json.dumps({"entity": "model_version_alias", "action": "created", "data": data})
        delivery, ts = str(uuid.uuid4()), str(int(time.time()))
        hook = api.client.post("/api/v1/webhooks/mlflow", content=body, headers={
            "X-MLflow-Delivery-Id": delivery, "X-MLflow-Timestamp": ts, "Content-Type": "application/json",
            "X-MLflow-Signature": sign("api-test-secret", delivery, ts, body)})
        assert hook.status_code == 400 and "not an MLflow webhook event" in hook.json()["message"], data


def test_zero_dimensional_arrays_in_an_upload_are_422(api):
    import io

    import numpy as np

    buf = io.BytesIO()
    np.savez_compressed(buf, obs=np.uint8(0), actions=np.float32(0), rewards=np.float32(0), dones=np.bool_(False))
    answer = api.post("/robots/r1/episodes?warehouse_id=WH-1&version=1", role="robot", content=buf.getvalue())
    assert answer.status_code == 422 and "episode arrays must be" in answer.json()["message"]


def test_simultaneous_first_contacts_of_a_robot_register_it_once(api):
    from concurrent.futures import ThreadPoolExecutor

    def ask(_):
        return api.get("/robots/newbie/assignment?warehouse_id=WH-7", role="robot").status_code

    with ThreadPoolExecutor(16) as pool:
        assert set(pool.map(ask, range(16))) == {200}


def test_every_error_response_is_documented(api):
    spec = api.client.get("/openapi.json").json()
    deploy = spec["paths"]["/api/v1/models/{version}/deploy"]["post"]["responses"]
    assert {"202", "401", "403", "404", "409", "422"} <= set(deploy)
    assert deploy["409"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorOut")
    assert {"400", "401", "409"} <= set(spec["paths"]["/api/v1/webhooks/mlflow"]["post"]["responses"])
    assert "503" in spec["paths"]["/api/v1/training/trigger"]["post"]["responses"]
    for path, methods in spec["paths"].items():
        for method, op in methods.items():
            if path.startswith("/api/v1/") and not path.startswith("/api/v1/webhooks"):
                assert "401" in op["responses"], (method, path)
