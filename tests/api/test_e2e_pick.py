"""pick-vla end to end on the production parts (PostgreSQL, S3, mlflow server, Prefect server + serve,
the API as a process), as carracing-vmc's e2e tests do it: two versions trained through the
training trigger; a pick fleet (PyBullet cells) takes the second to 100% through the canary
stages, judged by the two-proportion test; a broken version is rolled back (its rollback time
measured); then the cells' light is dimmed, the served pick drift check finds it in the cells'
telemetry (the latents' MMD on the encoder's scene features, against the fleet's own baseline), the
automation starts pick-vla's own retrain-on-drift on the cells' uploads, and the cells fall back to
last-known-good."""
from __future__ import annotations

import asyncio
import time

import pytest

from tests.api.test_e2e_fleet import Fleet, _client, _ended, _finished_job, _until
from tests.api.test_e2e_drift import _latest_drift_summary, on_the_stack
from tests.stack import DRIFT_WAREHOUSE as WH

pytestmark = pytest.mark.e2e
PICK = "pick-vla"
STEPS = 40   # control steps per episode (4 s at 10 Hz): a smoke model rarely finishes a pick


def _cells(stack, tokens, seed: int, **kw) -> Fleet:
    """Four pick cells; each phase plays its own seeds (a new fleet starts its robots' episode seeds
    at `seed`: without it, phases would replay the same scenes and the baseline repeat itself), 8
    scene-feature latents an episode (the fleet's default: ~25 episodes give the 200 baseline
    latents that the fleet's own reference needs)."""
    return Fleet(stack, tokens["robot"], warehouse=WH, model=PICK, max_steps=STEPS, latent_sample=8, seed=seed, **kw)


@pytest.fixture(scope="module")
def pick_stack(stack):
    with on_the_stack(stack, "pick") as tokens:
        yield stack, tokens


def _deploy(api, version: str, **policy) -> dict:
    body = {"warehouse_id": WH, "stages": [50, 100], "bake_seconds": 0, "min_episodes": 3, "min_mean_reward": -1.0,
            "max_latency_p99_ms": 10_000, "min_detectable_success_drop": 0.9, **policy}
    answer = api.post(f"/models/{version}/deploy", params={"model": PICK}, json=body)
    assert answer.status_code == 202, answer.text
    return answer.json()


def test_pick_canary_rollback_and_the_served_drift_check(pick_stack):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName
    from prefect.deployments import run_deployment

    from dreamops.flows.cli import main

    stack, tokens = pick_stack
    api, robots = _client(stack, tokens["engineer"]), _client(stack, tokens["robot"])
    versions = []
    for _ in range(2):   # the serve process runs one training at a time
        job = api.post("/training/trigger", json={"warehouse_id": WH, "profile": "smoke", "agent": PICK})
        assert job.status_code == 202, job.text
        versions.append(_finished_job(api, job.json()["job_id"])["version"])
    first, second = versions
    assert api.get(f"/models/{second}", params={"model": PICK}).json()["validation_status"] == "passed"
    assert main(["promote", first, "--to", "production", "--model", PICK]) == 0

    # a good version through both stages: smoke models collide now and then, so the collision
    # guardrail is off here (a pick episode has 0 or 1 collision); success is the test's statistic
    good = _deploy(api, second, max_collisions_per_episode=1)
    with _cells(stack, tokens, seed=0):
        done = _ended(api, good["deployment_id"], timeout=300)
    assert done["status"] == "completed", done["reason"]
    assert done["statistics"]["test"]["test"] == "two_proportion" and done["statistics"]["test"]["canary_n"] >= 3
    aliases = api.get("/models", params={"model": PICK}).json()["aliases"]
    assert aliases["production"] == second and aliases["last-known-good"] == first

    # a broken gripper (driven into the tray) is rolled back by the collision guardrail
    bad = _deploy(api, first, min_episodes=20)
    with _cells(stack, tokens, seed=1000, faults={first: "broken_controller"}):
        rolled = _ended(api, bad["deployment_id"], timeout=180)
    assert rolled["status"] == "rolled_back" and "collision" in rolled["reason"], rolled
    print(f"\npick rollback time (breaching episode -> assignments back on {second}): "
          f"{rolled['rollback_seconds']:.3f} s")
    assert rolled["rollback_seconds"] <= 10.0
    assert api.get("/models", params={"model": PICK}).json()["aliases"]["production"] == second

    # the cell as trained (the baseline), then with its light dimmed
    with _cells(stack, tokens, seed=2000):
        time.sleep(45)
    dim_started = time.time()
    with _cells(stack, tokens, seed=3000, scenario="dim"):
        time.sleep(45)
    window_hours = (time.time() - dim_started + 5) / 3600
    # one required signal, as carracing-vmc's e2e asks of its smoke model
    run = run_deployment(f"drift-check/drift-check-{WH}-{PICK}", parameters={
        "window_hours": window_hours, "required_signals": 1}, timeout=300)
    assert run.state.is_completed(), run.state
    summary = _latest_drift_summary()
    print(f"pick drift check: fired {summary['fired']}, recent {summary['recent_episodes']} episodes, baseline "
          f"{summary['baseline_episodes']}, latent reference: {summary['reference_source']}")
    for s in summary["signals"]:
        print(f"  {s['name']}: fired={s['fired']} figure={s['figure']} threshold={s['threshold']}")
    # the served check judged pick-vla's own telemetry with pick's signals, against the fleet's own
    # baseline (the version's stored reference is demonstration frames, whose states no fleet visits)
    assert [s["name"] for s in summary["signals"]] == ["latents", "calibration", "performance"]
    assert summary["version"] == second and summary["recent_episodes"] >= 5
    assert summary["reference_source"] == "fleet baseline", summary
    # ... and found the dimmed light in the scene features (measured with drift-eval on a smoke model:
    # docs/results/drift.md). Calibration and success need 200 baseline episodes (45 s give fewer),
    # hence one required signal, as carracing-vmc's e2e asks of its smoke model.
    latents = summary["signals"][0]
    assert summary["drift"] and "latents" in summary["fired"] and latents["figure"] < latents["threshold"], latents

    async def retrain_runs():
        async with get_client() as client:
            return await client.read_flow_runs(deployment_filter=DeploymentFilter(
                name=DeploymentFilterName(any_=[f"retrain-on-drift-{PICK}"])))

    retrains = _until(lambda: asyncio.run(retrain_runs()), 120, "pick's retrain-on-drift run")
    assert retrains[0].parameters["agent"] == PICK and retrains[0].parameters["warehouse_id"] == WH
    assert retrains[0].parameters["data_window_hours"] == 24.0   # the cells' uploads join its data
    cell = robots.get(f"/robots/{WH}-r001/assignment", params={"warehouse_id": WH, "model": PICK}).json()
    assert cell["arm"] == "fallback" and cell["version"] == first
