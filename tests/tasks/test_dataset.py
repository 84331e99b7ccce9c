import numpy as np
import pytest

from dreamops.tasks import dataset as ds
from dreamops.tasks.collect import assign_policies, collect
from dreamops.tasks.config import CollectConfig


def _cfg(seed=0):
    return CollectConfig(episodes=2, max_steps=55, seed=seed)


def test_hash_is_stable_across_runs_and_changes_with_data(tmp_path):
    a = collect(_cfg(), tmp_path / "a", workers=1, show_progress=False)
    b = collect(_cfg(), tmp_path / "b", workers=1, use_cache=False, show_progress=False)
    c = collect(_cfg(seed=5), tmp_path / "a", workers=1, show_progress=False)
    assert a.hash == b.hash
    assert c.hash != a.hash
    assert a.n_episodes == 2 and a.n_frames == 110


def test_shards_round_trip_and_the_store_caches(tmp_path):
    d = collect(_cfg(), tmp_path, workers=1, show_progress=False)
    ep = d.load("ep_000000")
    assert ep["obs"].shape == (55, 64, 64, 3) and ep["obs"].dtype == np.uint8
    assert ep["actions"].shape == (55, 3) and ep["actions"].dtype == np.float32
    assert ds.arrays_hash(ep) == d.manifest.set_index("episode_id").loc["ep_000000", "sha256"]
    assert collect(_cfg(), tmp_path, workers=1, show_progress=False).path == d.path  # cached by spec
    assert ds.open_dataset(tmp_path, d.hash[:10]).hash == d.hash
    frames = d.frames()
    assert len(frames) == 110 and {"frac_black", "frac_white", "steer", "reward"} <= set(frames.columns)


def test_changing_one_value_changes_the_hash():
    arrays = {"obs": np.zeros((3, 64, 64, 3), np.uint8), "actions": np.zeros((3, 3), np.float32),
              "rewards": np.zeros(3, np.float32), "dones": np.zeros(3, bool)}
    before = ds.arrays_hash(arrays)
    arrays["rewards"][1] = 0.1
    assert ds.arrays_hash(arrays) != before


def test_unknown_dataset_is_a_clear_error(tmp_path):
    with pytest.raises(ds.DatasetNotFoundError, match="no dataset"):
        ds.open_dataset(tmp_path, "deadbeefdeadbeef")


def test_policy_mix_is_honoured_and_interleaved():
    cfg = CollectConfig(episodes=10, policy_mix={"correlated": 0.7, "noisy_baseline": 0.3})
    policies = assign_policies(cfg)
    assert policies.count("correlated") == 7 and policies.count("noisy_baseline") == 3
    assert set(policies[:4]) == {"correlated", "noisy_baseline"}
