"""End to end on the production parts (PostgreSQL, S3, mlflow server, Prefect server + serve, the
API as a process): a training trigger starts a real flow run that registers a version; a simulated
fleet of real CarRacing robots takes a good version to 100%; a faulty version is rolled back
automatically (its rollback time measured); an API restart mid-rollout resumes it."""
from __future__ import annotations

import os
import threading
import time

import httpx
import pytest

from dreamops.fleet.simulator import FleetConfig, run_fleet
from dreamops.flows.cli import main

pytestmark = pytest.mark.e2e
WH = "WH-E2E"


@pytest.fixture(scope="module")
def e2e(stack):
    """Tokens for an engineer and the robots, and the stack's settings in this process."""
    from dreamops.api.auth import create_token
    from dreamops.db import session_factory
    from dreamops.settings import get_settings

    saved = dict(os.environ)
    os.environ.update(stack.env)
    get_settings.cache_clear()
    with session_factory(stack.env["DREAMOPS_DATABASE_URL"])() as session:
        tokens = {role: create_token(session, f"e2e-{role}", role) for role in ("engineer", "robot")}
    try:
        yield stack, tokens
    finally:
        os.environ.clear()
        os.environ.update(saved)
        get_settings.cache_clear()


def _client(stack, token: str) -> httpx.Client:
    return httpx.Client(base_url=f"{stack.api_url}/api/v1", headers={"Authorization": f"Bearer {token}"}, timeout=60)


def _until(check, timeout: float, what: str):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = check()
        if value:
            return value
        time.sleep(1.0)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _finished_job(api: httpx.Client, job_id: str) -> dict:
    def done():
        job = api.get(f"/training/{job_id}").json()
        assert job["status"] not in ("failed", "cancelled"), job
        return job if job["status"] == "completed" else None
    return _until(done, 420, f"training job {job_id}")


class Fleet:
    """The simulated fleet in background threads, stopped on exit."""

    def __init__(self, stack, token: str, faults: dict | None = None, robots: int = 4, warehouse: str = WH,
                 scenario: str = "day", model: str = "carracing-vmc", max_steps: int = 150, latent_sample: int = 4,
                 seed: int = 0):
        self.config = FleetConfig(api_url=stack.api_url, token=token, warehouse_id=warehouse, robots=robots,
                                  model=model, max_steps=max_steps, faults=faults or {}, poll_interval_s=1.0,
                                  latent_sample=latent_sample, seed=seed, scenario=scenario,
                                  mlflow_tracking_uri=stack.tracking_uri, mlflow_registry_uri=stack.tracking_uri)
        self.stop, self.summary = threading.Event(), None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        self.summary = run_fleet(self.config, self.stop)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(120)


def _deploy(api: httpx.Client, version: str, **policy) -> dict:
    body = {"warehouse_id": WH, "stages": [50, 100], "bake_seconds": 0, "min_episodes": 3,
            "min_mean_reward": -100.0, "min_detectable_drop": 1000.0, **policy}
    answer = api.post(f"/models/{version}/deploy", json=body)
    assert answer.status_code == 202, answer.text
    return answer.json()


def _ended(api: httpx.Client, deployment_id: str, timeout: float = 300) -> dict:
    return _until(lambda: (d := api.get(f"/deployments/{deployment_id}").json())["status"] != "rolling_out" and d,
                  timeout, f"deployment {deployment_id} to end")


def test_trigger_canary_rollback_and_restart_on_a_simulated_fleet(e2e):
    stack, tokens = e2e
    api, robots = _client(stack, tokens["engineer"]), _client(stack, tokens["robot"])

    # training: returns at once; a second trigger for the warehouse returns the running job
    first = api.post("/training/trigger", json={"warehouse_id": WH, "profile": "smoke"})
    assert first.status_code == 202 and first.json()["status"] == "queued"
    again = api.post("/training/trigger", json={"warehouse_id": WH, "profile": "smoke"})
    assert again.status_code == 200 and again.json()["job_id"] == first.json()["job_id"]
    baseline = _finished_job(api, first.json()["job_id"])["version"]
    info = api.get(f"/models/{baseline}").json()
    assert "version" in info, info
    assert info["validation_status"] == "passed" and info["lineage"]["data"]["uri"].startswith("s3://")
    for ref in (f"v{info['semver']}", info["semver"]):
        assert api.get(f"/models/{ref}").json()["version"] == baseline

    keyed = api.post("/training/trigger", json={"warehouse_id": WH, "profile": "smoke", "data_window_hours": 1},
                     headers={"Idempotency-Key": "e2e-retrain-1"})
    assert keyed.status_code == 202
    repeat = api.post("/training/trigger", json={"warehouse_id": "WH-OTHER", "profile": "smoke"},
                      headers={"Idempotency-Key": "e2e-retrain-1"})
    assert repeat.status_code == 200 and repeat.json()["job_id"] == keyed.json()["job_id"]
    candidate = _finished_job(api, keyed.json()["job_id"])["version"]
    assert candidate != baseline
    assert api.get("/models/staging").json()["version"] == candidate  # by alias: the newest passed version
    assert main(["promote", baseline, "--to", "production", "--reason", "e2e baseline"]) == 0

    # a good version goes to 100% on the fleet and becomes production
    good = _deploy(api, candidate, alpha=0.001)  # about the mechanics: two smoke models may differ a little
    with Fleet(stack, tokens["robot"]):
        done = _ended(api, good["deployment_id"])
    assert done["status"] == "completed", done["reason"]
    assert done["statistics"]["welch"]["canary_n"] >= 3
    assert api.get("/models").json()["aliases"]["production"] == candidate
    assigned = robots.get(f"/robots/{WH}-r001/assignment", params={"warehouse_id": WH}).json()
    assert assigned["version"] == candidate and assigned["arm"] == "production"

    # a faulty version (broken controller on the robots) is rolled back at once
    bad = _deploy(api, baseline, stages=[50, 100], min_episodes=20)
    with Fleet(stack, tokens["robot"], faults={baseline: "broken_controller"}):
        rolled = _ended(api, bad["deployment_id"], timeout=180)
    assert rolled["status"] == "rolled_back" and "collision" in rolled["reason"]
    print(f"\nrollback time (breaching episode -> assignments back on {candidate}): {rolled['rollback_seconds']:.3f} s")
    assert rolled["rollback_seconds"] <= 10.0
    assert api.get("/models").json()["aliases"]["production"] == candidate
    assert robots.get(f"/robots/{WH}-r001/assignment", params={"warehouse_id": WH}).json()["version"] == candidate

    # the API restarts mid-rollout; the rollout resumes from the database
    resumed = _deploy(api, baseline, bake_seconds=8, min_episodes=3)
    with Fleet(stack, tokens["robot"]):
        _until(lambda: api.get(f"/deployments/{resumed['deployment_id']}").json()["statistics"]
               .get("episodes", {}).get("canary_stage", 0) >= 1, 120, "the first canary episodes")
        before = api.get(f"/deployments/{resumed['deployment_id']}").json()
        assert before["status"] == "rolling_out" and before["stage_index"] == 0
        down = stack.restart_api()
        api = _client(stack, tokens["engineer"])
        finished = _ended(api, resumed["deployment_id"])
    assert finished["status"] == "completed", finished["reason"]
    print(f"API was down {down:.1f} s mid-rollout; the rollout completed after the restart")
    assert api.get("/models").json()["aliases"]["production"] == baseline

    # the robots' episodes are in S3 for the next retrain (tests/tasks/test_fleet_data.py joins them)
    from dreamops.settings import get_settings
    from dreamops.storage import open_store
    from dreamops.tasks.fleet_data import window_keys

    uploads = window_keys(open_store(get_settings()), WH, hours=1)
    assert len(uploads) >= 10 and all(k.startswith(f"uploads/{WH}/") for k in uploads)
