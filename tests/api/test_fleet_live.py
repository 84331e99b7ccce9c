"""The fleet against the real API served by uvicorn (in a thread): robots get their assignment,
load the version from MLflow, play real CarRacing episodes and report them; uploads land in the
object store; a wrong token is an error with the API's explanation."""
from __future__ import annotations

import json
import threading
import time

import pytest
import torch
import uvicorn

from dreamops.fleet.simulator import ApiError, FleetConfig, RobotApi, run_fleet
from tests.registry.conftest import MODEL, PASSED_GATES
from tests.stack import free_port


@pytest.fixture
def live_api(api):
    from dreamops.api.main import create_app

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started and time.time() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", api
    server.should_exit = True
    thread.join(10)


@pytest.fixture
def production_version(registry, tmp_path):
    """A registered version with real (random) weights, packaged as training does, in production."""
    import mlflow

    from dreamops.models.bundle import Architecture, VMCBundle
    from dreamops.registry import store
    from dreamops.registry.pyfunc import VMCPyfuncModel

    promotions, _ = registry
    torch.manual_seed(1)
    bundle = VMCBundle.create(Architecture(32, 256, 5, action_repeat=4))
    path = bundle.save(tmp_path / "vmc_bundle.pt")
    with mlflow.start_run():
        version = store.register_pyfunc(MODEL, VMCPyfuncModel(), {"bundle": str(path)}, store.frame_signature(),
                                        tags={"validation_status": "passed", **PASSED_GATES,
                                              **{f"weights.{k}": v for k, v in bundle.component_hashes().items()}},
                                        pip_requirements=["torch"]).version
    promotions.promote(MODEL, version, "production")
    return version


def test_fleet_runs_production_and_reports(live_api, production_version, api_db):
    import sqlalchemy as sa

    from dreamops.settings import get_settings

    url, api = live_api
    settings = get_settings()
    cfg = FleetConfig(api_url=url, token=api.tokens["robot"], warehouse_id="WH-7", robots=2, max_steps=40,
                      episodes_per_robot=2, poll_interval_s=0.2, mlflow_tracking_uri=settings.mlflow_tracking_uri,
                      mlflow_registry_uri=settings.mlflow_registry_uri)
    summary = run_fleet(cfg)
    assert summary.failed_episodes == 0 and summary.versions[production_version].episodes == 4
    with sa.create_engine(api_db).connect() as conn:
        rows = conn.execute(sa.text("select robot_id, version, steps, latency_p99_ms, latents from telemetry_episodes"
                                    )).all()
    assert {r.robot_id for r in rows} == {"WH-7-r001", "WH-7-r002"} and len(rows) == 4
    assert all(r.version == production_version and r.steps == 40 and r.latency_p99_ms > 0 for r in rows)
    latents = rows[0].latents  # a raw select: PostgreSQL's JSON column gives a list, SQLite's the JSON text
    latents = json.loads(latents) if isinstance(latents, str) else latents
    assert len(latents) == 8 and len(latents[0]) == 32
    uploads = list((settings.resolved_home / "uploads" / "WH-7").glob("*.npz"))
    assert len(uploads) == 4


def test_a_wrong_token_raises_with_the_apis_explanation(live_api):
    url, _ = live_api
    robot = RobotApi(url, "nope.nope")
    with pytest.raises(ApiError, match="401.*invalid or revoked token"):
        robot.assignment("WH-7-r001", "WH-7")
    robot.close()


def _register_pick(tmp_path, seed: int) -> str:
    """A pick-vla version with real (random) weights, registered as training registers them."""
    import mlflow

    from dreamops.models.pick_vla import PickArchitecture, PickVLA
    from dreamops.registry import store
    from dreamops.registry.pyfunc import PickVLAPyfuncModel

    torch.manual_seed(seed)
    model = PickVLA(PickArchitecture(vocab=("pick", "up", "the", "red", "box"), embed_dim=32, text_dim=16, deter=32,
                                     stoch=4, classes=4, head_hidden=64)).eval()
    path = model.save(tmp_path / f"v{seed}" / "pick_vla.pt")
    with mlflow.start_run():
        return store.register_pyfunc(PICK, PickVLAPyfuncModel(), {"bundle": str(path)}, store.pick_signature(),
                                     tags={"validation_status": "passed", **PASSED_GATES,
                                           **{f"weights.{k}": v for k, v in model.component_hashes().items()}},
                                     pip_requirements=["torch"]).version


PICK = "pick-vla"


def test_a_pick_fleet_plays_real_cells_and_rolls_back_a_broken_canary(live_api, registry, tmp_path, api_db):
    """pick-vla robots: the assigned version in a PyBullet cell, success as the reward, the
    collision, chunk latency and the encoder's scene features reported; a canary whose gripper drives
    into the tray is rolled back by the collision guardrail, and the fleet is back on production."""
    import sqlalchemy as sa

    from dreamops.settings import get_settings

    url, api = live_api
    promotions, client = registry
    v1, v2 = _register_pick(tmp_path, 1), _register_pick(tmp_path, 2)
    promotions.promote(PICK, v1, "production")
    settings = get_settings()
    cfg = FleetConfig(api_url=url, token=api.tokens["robot"], warehouse_id="WH-P", robots=2, model=PICK, max_steps=20,
                      episodes_per_robot=2, poll_interval_s=0.2, latent_sample=3, faults={v2: "broken_controller"},
                      mlflow_tracking_uri=settings.mlflow_tracking_uri, mlflow_registry_uri=settings.mlflow_registry_uri)
    summary = run_fleet(cfg)
    assert summary.failed_episodes == 0 and summary.versions[v1].episodes == 4
    with sa.create_engine(api_db).connect() as conn:
        rows = conn.execute(sa.text("select reward, collisions, steps, latency_p99_ms, latents, success_prob "
                                    "from telemetry_episodes")).all()
    assert len(rows) == 4 and all(r.reward in (0.0, 1.0) and r.collisions in (0, 1) and r.latency_p99_ms > 0
                                  and 0.0 <= r.success_prob <= 1.0 for r in rows)
    latents = json.loads(rows[0].latents) if isinstance(rows[0].latents, str) else rows[0].latents
    assert len(latents) == 3 and len(latents[0]) == 130   # the encoder's scene features (ObservationEncoder.scene_dim)
    # every episode uploaded for pick retrains, in pick-vla's own folder of the warehouse
    from dreamops.storage import open_store
    from dreamops.tasks.fleet_data import window_keys

    assert len(window_keys(open_store(settings), "WH-P", hours=1, model=PICK)) == 4
    assert window_keys(open_store(settings), "WH-P", hours=1) == []

    answer = api.post(f"/models/{v2}/deploy?model={PICK}", json={"warehouse_id": "WH-P", "stages": [50, 100],
                                                                "bake_seconds": 3600, "max_latency_p99_ms": 10_000})
    assert answer.status_code == 202, answer.text
    deployment = answer.json()["deployment_id"]
    summary = run_fleet(FleetConfig(**{**cfg.__dict__, "episodes_per_robot": 3}))
    final = api.get(f"/deployments/{deployment}").json()
    assert final["status"] == "rolled_back" and "collision" in final["reason"], final
    assert summary.versions[v2].collisions >= 1
    assert str(client.get_registered_model(PICK).aliases["production"]) == v1
    assert api.get(f"/robots/WH-P-r001/assignment?warehouse_id=WH-P&model={PICK}", role="robot").json()["version"] == v1
