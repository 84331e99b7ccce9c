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


def test_merge_names_the_union_by_its_own_hash_and_refuses_clashing_ids(tmp_path):
    a = collect(_cfg(), tmp_path, workers=1, show_progress=False)
    b = collect(_cfg(seed=5), tmp_path, workers=1, show_progress=False)
    with pytest.raises(ValueError, match="more than one"):
        ds.merge([a, b], tmp_path, {"rounds": [a.hash, b.hash]})  # both have ep_000000, ep_000001
    assert not list(tmp_path.glob(".staging-*"))  # nothing half-made left behind
    c = collect(CollectConfig(episodes=4, max_steps=55, seed=5), tmp_path, workers=1, show_progress=False)
    late = ds.open_dataset(tmp_path, c.hash)
    renamed = tmp_path / "renamed"
    (renamed / "shards").mkdir(parents=True)
    rows = []
    for row in late.manifest.to_dict("records")[2:]:  # two episodes under round-1 ids
        arrays = late.load(row["episode_id"])
        shard, digest = ds.write_shard(renamed / "shards", "r01_" + row["episode_id"], arrays)
        rows.append({**row, "episode_id": "r01_" + row["episode_id"], "shard": shard, "sha256": digest})
    frames = late.frames().iloc[: 2 * 55].assign(episode_id=[r["episode_id"] for r in rows for _ in range(55)])
    r1 = ds.finalize(renamed, tmp_path, rows, [frames], {"round": 1})
    merged = ds.merge([a, r1], tmp_path, {"rounds": [a.hash, r1.hash]})
    assert merged.hash not in (a.hash, r1.hash)
    assert set(merged.manifest["episode_id"]) == set(a.manifest["episode_id"]) | set(r1.manifest["episode_id"])
    assert merged.hash == ds.compute_dataset_hash(list(a.manifest["sha256"]) + list(r1.manifest["sha256"]))
    assert len(merged.frames()) == merged.n_frames == 4 * 55
    np.testing.assert_array_equal(merged.load("r01_ep_000002")["obs"], late.load("ep_000002")["obs"])


def test_round_jobs_use_fresh_seeds_and_the_round_mix():
    from dreamops.tasks.collect import round_jobs

    cfg = CollectConfig(episodes=8, seed=3, episodes_per_round=4, round_policy_mix={"controller": 3, "correlated": 1})
    r1, r2 = round_jobs(cfg, 1), round_jobs(cfg, 2)
    assert [j.seed for j in r1] == [11, 12, 13, 14] and [j.seed for j in r2] == [15, 16, 17, 18]
    assert sorted(j.policy for j in r1) == ["controller"] * 3 + ["correlated"]
    assert all(j.episode_id.startswith("r02_") for j in r2)


def test_an_on_policy_round_is_driven_by_the_given_controller(tmp_path):
    import io

    import torch

    from dreamops.models.bundle import Architecture, VMCBundle
    from dreamops.tasks.collect import collect_round

    torch.manual_seed(0)
    bundle = VMCBundle.create(Architecture(action_repeat=4))
    with torch.no_grad():  # a controller that always steers hard left at full throttle
        bundle.controller.fc.weight.zero_()
        bundle.controller.fc.bias.copy_(torch.tensor([-5.0, 5.0, -5.0]))
    buf = io.BytesIO()
    torch.save(bundle.state(), buf)
    cfg = CollectConfig(episodes=2, max_steps=55, episodes_per_round=2, round_policy_mix={"controller": 1.0},
                        controller_noise=0.0)
    r1 = collect_round(cfg, 1, buf.getvalue(), tmp_path, workers=1, show_progress=False)
    assert list(r1.manifest["policy"]) == ["controller", "controller"]
    actions = r1.load("r01_ep_000000")["actions"]
    np.testing.assert_allclose(actions, np.tile([-1.0, 1.0, 0.0], (55, 1)), atol=1e-3)
    assert collect_round(cfg, 1, buf.getvalue(), tmp_path, workers=1, show_progress=False).path == r1.path  # cached
    with pytest.raises(ValueError, match="round 0"):
        collect_round(cfg, 0, buf.getvalue(), tmp_path, workers=1, show_progress=False)


def test_noisy_policy_stays_in_range_and_repeats_per_seed():
    from dreamops.sim.policies import NoisyPolicy, RuleBasedPolicy

    frame = np.full((64, 64, 3), 102, np.uint8)
    def run(seed):
        p = NoisyPolicy(RuleBasedPolicy(), noise_std=2.0)
        p.reset(seed)
        return np.stack([p.act(frame) for _ in range(200)])
    a = run(1)
    assert (a[:, 0] >= -1).all() and (a[:, 0] <= 1).all() and (a[:, 1] >= 0).all() and (a[:, 1] <= 1).all()
    np.testing.assert_array_equal(a, run(1))
    assert not np.array_equal(a, run(2))
    assert a[:, 0].std() > 0.05  # the noise is there


def _copy(dataset, to):
    import shutil

    shutil.copytree(dataset.path, to)
    return to


def test_every_read_checks_the_content_hash(tmp_path):
    """A shard changed after the fact is refused when it is loaded (training reads this way);
    a dataset.json that disagrees with the manifest is refused when the dataset is opened."""
    import json

    d = collect(_cfg(), tmp_path / "store", workers=1, show_progress=False)
    changed = _copy(d, tmp_path / "changed")
    shard = changed / "shards" / "ep_000001.npz"
    with np.load(shard) as data:
        arrays = {k: data[k] for k in data.files}
    np.savez_compressed(shard, **{**arrays, "rewards": arrays["rewards"] * 2})
    opened = ds.open_dataset(tmp_path, str(changed))
    opened.load("ep_000000")  # untouched episodes still load
    with pytest.raises(ds.DatasetIntegrityError, match=r"episode ep_000001 \(shards/ep_000001.npz\).*changed after"):
        opened.load("ep_000001")

    relabelled = _copy(d, tmp_path / "relabelled")
    info = json.loads((relabelled / "dataset.json").read_text())
    (relabelled / "dataset.json").write_text(json.dumps({**info, "hash": "0" * 64}))
    with pytest.raises(ds.DatasetIntegrityError, match="the manifest's shard hashes give"):
        ds.open_dataset(tmp_path, str(relabelled))
    (relabelled / "dataset.json").write_text("[1, 2")
    with pytest.raises(ds.DatasetIntegrityError, match="cannot be read"):
        ds.open_dataset(tmp_path, str(relabelled))


def test_a_manifest_shard_path_cannot_leave_the_dataset(tmp_path):
    import pandas as pd

    d = collect(_cfg(), tmp_path / "store", workers=1, show_progress=False)
    escaped = _copy(d, tmp_path / "escaped")
    manifest = pd.read_parquet(escaped / "manifest.parquet")
    manifest.loc[0, "shard"] = "../../store/" + d.path.name + "/shards/ep_000000.npz"  # a real file, elsewhere
    manifest.to_parquet(escaped / "manifest.parquet", index=False)
    with pytest.raises(ds.DatasetIntegrityError, match="not a file in the dataset's shards folder"):
        ds.open_dataset(tmp_path, str(escaped)).load("ep_000000")


def test_a_dataset_given_by_path_is_published_and_fetched_back_by_its_content_hash(tmp_path):
    """`--dataset <path>`: the version's data_hash must fetch it back, whatever the folder was called;
    what comes back from the object store is checked shard by shard."""
    import shutil

    from dreamops.storage import LocalStore

    d = collect(_cfg(), tmp_path / "store", workers=1, show_progress=False)
    named = _copy(d, tmp_path / "my-favourite-data")
    objects = LocalStore(tmp_path / "objects")
    assert ds.publish(objects, named).endswith(d.hash[:16])
    fetched = ds.fetch(objects, tmp_path / "elsewhere", d.hash)
    assert ds.open_dataset(tmp_path, str(fetched)).hash == d.hash

    tampered = tmp_path / "objects" / "datasets" / d.hash[:16] / "shards" / "ep_000000.npz"
    shutil.copyfile(d.path / "shards" / "ep_000001.npz", tampered)
    with pytest.raises(ds.DatasetIntegrityError, match="episode ep_000000"):
        ds.fetch(objects, tmp_path / "third-machine", d.hash)
    assert not [p for p in (tmp_path / "third-machine").iterdir()]  # nothing half-fetched left behind


def test_validation_recorded_as_data_scores_what_evaluate_scores(tmp_path):
    """collect.validation_as_data: a checkpoint's validation episodes, played in the collectors'
    format (one row per agent step), give the same real return per seed as `evaluate` playing the
    same bundle frame by frame, so the round's choice does not change when its episodes become data."""
    import io

    import torch

    from dreamops.models.bundle import Architecture, BundlePolicyFactory, VMCBundle
    from dreamops.tasks.collect import collect_validation
    from dreamops.tasks.evaluate import evaluate, report_from_episodes

    torch.manual_seed(3)
    bundle = VMCBundle.create(Architecture(action_repeat=4))
    with torch.no_grad():  # throttle on, steering from the latents: a policy that earns tiles and varies by seed
        bundle.controller.fc.bias.copy_(torch.tensor([0.0, 2.0, -3.0]))
    path = bundle.save(tmp_path / "b" / "vmc_bundle.pt")
    cfg = CollectConfig(episodes=2, max_steps=40)
    seeds = [50_000, 50_001]
    played = collect_validation(cfg, 2, "g015", path.read_bytes(), seeds, tmp_path / "data", workers=1,
                                show_progress=False)
    assert list(played.manifest["episode_id"]) == ["r02_vg015_ep_000000", "r02_vg015_ep_000001"]
    assert list(played.manifest["policy"]) == ["controller", "controller"]
    recorded = report_from_episodes("validation", played)
    played_frame_by_frame = evaluate(BundlePolicyFactory(str(path)), "eval", seeds, 160, workers=1,
                                     show_progress=False)
    assert recorded.seeds == seeds and recorded.lengths == [160, 160]
    np.testing.assert_allclose(recorded.rewards, played_frame_by_frame.rewards, atol=1e-3)
    assert max(recorded.rewards) > 0  # it drove over tiles: the equality is not two zeros
