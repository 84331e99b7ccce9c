"""Pick-and-place demonstrations: collected into the store with their extras, content-addressed,
cached by spec, and gated by the pick schema (each corruption named by its check)."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from dreamops.tasks.pick_data import PickDataConfig, collect_demos, validate_demos
from dreamops.validation.data_gate import DataGateThresholds
from tests.validation.corpus import edit_shard

CFG = PickDataConfig(episodes=3, seed=0, max_steps=40)
THRESHOLDS = DataGateThresholds(min_episodes=3, min_frames=30, min_episode_length=5)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return tmp_path_factory.mktemp("pick-store")


@pytest.fixture(scope="module")
def demos(store):
    return collect_demos(CFG, store, workers=1, show_progress=False)


def test_demos_hold_every_array_with_its_dtype_and_shape(demos):
    from dreamops.sim.pick import PickCell

    assert demos.n_episodes == 3
    m = demos.manifest
    assert {"episode_id", "shard", "sha256", "seed", "length", "success", "collision", "cycle_time", "n_objects",
            "instruction", "target_colour", "target_shape", "regrasps"} <= set(m.columns)
    assert list(m["seed"]) == [0, 1, 2] and m["success"].any()
    for (eid, a), (_, row) in zip(demos.iter_episodes(), m.iterrows()):
        T = row["length"]
        expected = {"obs": (np.uint8, (T, 64, 64, 3)), "depth": (np.float32, (T, 64, 64, 1)),
                    "proprio": (np.float32, (T, 21)), "actions": (np.float32, (T, 4)),
                    "rewards": (np.float32, (T,)), "dones": (np.bool_, (T,)), "held": (np.bool_, (T,)),
                    "collisions": (np.bool_, (T,))}
        for name, (dtype, shape) in expected.items():
            assert a[name].dtype == dtype and a[name].shape == shape, (eid, name, a[name].dtype, a[name].shape)
        assert a["instruction"].shape == () and a["instruction"].dtype.kind == "U"
        assert str(a["instruction"]) == row["instruction"] and row["target_colour"] and row["target_shape"]
        assert a["dones"][-1] and not a["dones"][:-1].any()
        assert a["collisions"].any() == row["collision"]   # the per-step flags and the episode's agree
        assert np.all(np.abs(a["actions"]) <= 1)
        if row["success"]:
            assert a["rewards"][-1] == 1.0 and a["rewards"][:-1].sum() == 0
            assert a["held"].any()  # the target is between the fingers while it is lifted
    # obs[0] is the observation before the first action: the scene the env resets to
    env = PickCell(max_steps=CFG.max_steps)
    try:
        first, _ = env.reset(seed=0)
    finally:
        env.close()
    ep0 = demos.load("ep_000000")
    assert np.array_equal(ep0["obs"][0], first["rgb"]) and np.array_equal(ep0["proprio"][0], first["proprio"])


def test_same_spec_same_content_hash_and_the_cache_returns_it(demos, store, tmp_path):
    again = collect_demos(CFG, tmp_path / "other-store", workers=2, use_cache=False, show_progress=False)
    assert again.hash == demos.hash and again.path != demos.path
    cached = collect_demos(CFG, store, workers=1, show_progress=False)
    assert cached.path == demos.path and cached.hash == demos.hash


def test_the_pick_gate_passes_on_the_demos(demos, tmp_path):
    report = validate_demos(demos.path, THRESHOLDS, tmp_path / "docs")
    assert report.passed, report.summary()
    names = {c.name for c in report.checks}
    assert {"dx_range", "grip_range", "extras_ok", "instruction_present", "depth_max_range"} <= names
    assert "steer_range" not in names and (tmp_path / "docs" / "index.html").exists()


def _out_of_range(actions):
    actions = actions.copy()
    actions[2:4, 0] = 1.7
    return actions


def _nan_proprio(proprio):
    proprio = proprio.copy()
    proprio[3, 5] = np.nan
    return proprio


BAD = {
    "actions out of range": ({"actions": _out_of_range}, "dx_range", "dx action outside [-1, 1]"),
    "no depth": ({"depth": lambda a: None}, "extras_ok", "ep_000001: depth missing"),
    "NaN proprio": ({"proprio": _nan_proprio}, "extras_ok", "ep_000001: NaN or inf in proprio"),
    "empty instruction": ({"instruction": lambda a: np.array("")}, "instruction_present", "empty instruction"),
    "depth beyond the far plane": ({"depth": lambda a: a * 3}, "depth_max_range", "depth outside [0.05, 2]"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_the_pick_gate_names_each_corruption(demos, tmp_path, case):
    changes, check, words = BAD[case]
    bad = tmp_path / "bad"
    shutil.copytree(demos.path, bad)
    edit_shard(bad, "ep_000001", **changes)
    report = validate_demos(bad, THRESHOLDS)
    failed = {c.name: c.message for c in report.failures}
    assert check in failed, report.summary()
    assert words in failed[check]


@pytest.mark.parametrize("field, value", [("episodes", 0), ("max_steps", -1), ("object_set", "other"),
                                          ("expert_noise", -0.1), ("min_objects", 0), ("max_objects", 7),
                                          ("seed", -1), ("episodes", 2.5)])
def test_bad_config_values_are_named(field, value):
    with pytest.raises(ValueError, match=f"data.{field}"):
        PickDataConfig(**{field: value}).validate()
    with pytest.raises(ValueError, match="data.min_objects"):
        PickDataConfig(min_objects=4, max_objects=3).validate()
