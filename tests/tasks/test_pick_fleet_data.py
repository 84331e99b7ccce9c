"""pick-vla's fleet uploads: what a PickRobot of the fleet uploads passes the API's check, becomes a
dataset of unlabelled episodes (world model only) that the data gate accepts merged with the
demonstrations, and a bad upload is skipped naming its key; another family never reads it."""
from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from dreamops.models.pick_vla import PickArchitecture, PickVLA
from dreamops.storage import LocalStore
from dreamops.tasks.dataset import merge
from dreamops.tasks.fleet_data import window_keys
from dreamops.tasks.pick_data import PickDataConfig, collect_demos, validate_demos
from dreamops.tasks.pick_fleet_data import fleet_dataset
from dreamops.tasks.pick_robot import PickRobot
from dreamops.tasks.robot_episode import RobotSetup, encode_arrays
from dreamops.tasks.train_pick import Demos
from dreamops.uploads import upload_key
from dreamops.validation.data_gate import PICK_UPLOAD_SCHEMA, DataGateThresholds, episode_problem

HORIZON = 4


def _put(objects, tmp_path, key: str, body: bytes) -> None:
    path = tmp_path / "upload.npz"
    path.write_bytes(body)
    objects.put_file(path, key)


@pytest.fixture(scope="module")
def robot_uploads():
    """Two episodes played by a fleet robot (a small untrained model) in the cell, as it uploads them."""
    torch.manual_seed(0)
    model = PickVLA(PickArchitecture(vocab=("pick", "up", "the", "red", "box"), embed_dim=32, text_dim=16, deter=32,
                                     stoch=4, classes=4, horizon=HORIZON, execute=2, flow_steps=2,
                                     head_hidden=32)).eval()
    robot = PickRobot(model, RobotSetup(max_steps=24, scenario="day", latent_sample=2))
    try:
        return [robot.play(seed) for seed in (5, 6)]
    finally:
        robot.close()


def test_a_robots_upload_meets_the_upload_schema_and_names_what_is_wrong(robot_uploads):
    arrays = robot_uploads[0].arrays
    assert episode_problem(arrays, PICK_UPLOAD_SCHEMA) == "" and len(arrays["actions"]) == 24
    assert "target_pos" not in arrays   # a cell does not know where the target is: that is a demo's label
    assert robot_uploads[0].measures.success_prob is not None
    without_depth = {k: v for k, v in arrays.items() if k != "depth"}
    assert episode_problem(without_depth, PICK_UPLOAD_SCHEMA) == "depth missing"
    wrong_actions = {**arrays, "actions": arrays["actions"][:, :3]}
    assert "actions [T,4]" in episode_problem(wrong_actions, PICK_UPLOAD_SCHEMA)
    assert "instruction" in episode_problem({**arrays, "instruction": np.array("")}, PICK_UPLOAD_SCHEMA)


def test_fleet_uploads_become_unlabelled_episodes_the_gate_accepts(robot_uploads, tmp_path):
    objects, store = LocalStore(tmp_path / "objects"), tmp_path / "datasets"
    now = time.time()
    keys = []
    for i, run in enumerate(robot_uploads):
        body = run.upload_body()
        keys.append(upload_key("WH-1", f"r00{i}", "3", body, now=now + i / 100, model="pick-vla"))
        _put(objects, tmp_path, keys[-1], body)
    short = encode_arrays({k: (v[:3] if v.ndim else v) for k, v in robot_uploads[0].arrays.items()})
    short_key = upload_key("WH-1", "r009", "3", short, now=now + 0.05, model="pick-vla")
    _put(objects, tmp_path, short_key, short)
    changed_key = upload_key("WH-1", "r010", "3", robot_uploads[1].upload_body(), now=now + 0.06, model="pick-vla")
    _put(objects, tmp_path, changed_key, robot_uploads[0].upload_body())   # not the bytes the API hashed

    # the default family's listing of the warehouse does not see pick-vla's folder, and vice versa
    assert window_keys(objects, "WH-1", hours=1) == []
    assert window_keys(objects, "WH-1", hours=1, model="pick-vla") == sorted([*keys, short_key, changed_key])

    fleet, skipped = fleet_dataset(objects, store, "WH-1", hours=1, horizon=HORIZON, min_length=10)
    assert fleet.n_episodes == 2 and fleet.info["spec"]["fleet"]["uploads"] == keys
    assert skipped[short_key] == "shorter than 10 steps (3)" and "content hash" in skipped[changed_key]
    assert list(fleet.manifest["policy"]) == ["fleet:r000", "fleet:r001"]

    demos = collect_demos(PickDataConfig(episodes=2, seed=0, max_steps=24), store, workers=1, show_progress=False)
    merged = merge([demos, fleet], store, {"fleet": [demos.hash, fleet.hash]})
    thresholds = DataGateThresholds(min_episodes=4, min_frames=10, min_episode_length=10)
    report = validate_demos(merged.path, thresholds)
    assert report.passed, report.summary()
    loaded = Demos.load(merged, list(fleet.manifest["episode_id"]), HORIZON)
    # world-model data only: no state carries a chunk label, the executed actions are the robot's
    assert not any(mask.any() for mask in loaded.labelled)
    np.testing.assert_array_equal(loaded.actions[0].numpy(), robot_uploads[0].arrays["actions"])
    assert fleet_dataset(objects, store, "WH-2", 1, HORIZON, 10) == (None, {})
