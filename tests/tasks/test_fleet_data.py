"""Fleet uploads (per simulator frame) are folded to agent steps and joined to a dataset for the
next retrain; the result still passes the data gate."""
from __future__ import annotations

import io
import time
from dataclasses import replace

import numpy as np
import torch

from dreamops.models.bundle import Architecture, VMCBundle
from dreamops.sim.carracing import CarRacing
from dreamops.storage import LocalStore
from dreamops.tasks.config import resolve_config
from dreamops.tasks.dataset import open_dataset
from dreamops.tasks.fleet_data import fold, window_keys, with_fleet_episodes
from dreamops.tasks.gate import validate_data
from dreamops.tasks.robot_episode import encode_episode, play_and_measure
from dreamops.tasks.train_mdnrnn import zoom_steps
from dreamops.uploads import upload_key


def _put(objects, tmp_path, key: str, body: bytes) -> None:
    path = tmp_path / "upload.npz"
    path.write_bytes(body)
    objects.put_file(path, key)


def _episode_npz(seed: int, frames: int = 240, reward: float = 1.0) -> bytes:
    """A per-frame upload the gate accepts on its own: textured frames (no black or white playfield)."""
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    np.savez_compressed(buf, obs=rng.integers(40, 200, (frames, 64, 64, 3), dtype=np.uint8),
                        actions=np.zeros((frames, 3), np.float32), rewards=np.full(frames, reward, np.float32),
                        dones=np.eye(1, frames, frames - 1, dtype=bool)[0])
    return buf.getvalue()


def test_a_tampered_upload_is_skipped_naming_its_key_and_never_trained_on(good_dataset, tmp_path, caplog):
    base = open_dataset(good_dataset.parent, str(good_dataset))
    objects = LocalStore(tmp_path / "objects")
    now = time.time()
    honest_body, later_body = _episode_npz(1), _episode_npz(2)
    honest = upload_key("WH-1", "r001", "1", honest_body, now=now)
    tampered = upload_key("WH-1", "r002", "1", later_body, now=now + 0.01)
    _put(objects, tmp_path, honest, honest_body)
    _put(objects, tmp_path, tampered, _episode_npz(2, reward=50.0))  # rewrote the rewards in the store
    unhashed = f"uploads/WH-1/{int(now * 1000) + 20}-r003-1-0a1b2c3d.npz"  # not put there by the API
    _put(objects, tmp_path, unhashed, _episode_npz(3))
    garbage_body = b"PK\x03\x04 not a zip"  # hashed right, but no npz: skipped, not a crashed retrain
    garbage = upload_key("WH-1", "r004", "1", garbage_body, now=now + 0.03)
    _put(objects, tmp_path, garbage, garbage_body)

    thresholds = replace(resolve_config("smoke").gate.data, min_episode_length=20)
    with caplog.at_level("WARNING", logger="dreamops.fleet_data"):
        merged, added, skipped = with_fleet_episodes(base, objects, tmp_path / "store", "WH-1", hours=1,
                                                     action_repeat=4, thresholds=thresholds)
    assert added == 1 and merged.info["spec"]["fleet"]["uploads"] == [honest]
    assert set(skipped) == {tampered, unhashed, garbage}
    assert "differs from the" in skipped[tampered] and "changed since" in skipped[tampered]
    assert "no content hash" in skipped[unhashed] and "unreadable" in skipped[garbage]
    assert all(key in caplog.text for key in skipped)  # each skip is logged with its key
    fleet = merged.load("fleet_000000")
    assert fleet["rewards"].tolist() == [4.0] * 60  # the honest upload's, folded (4 frames per step)


def test_fold_keeps_decision_frames_and_sums_rewards():
    t = 10
    arrays = {"obs": np.arange(t, dtype=np.uint8)[:, None, None, None] * np.ones((1, 64, 64, 3), np.uint8),
              "actions": np.arange(t * 3, dtype=np.float32).reshape(t, 3), "rewards": np.ones(t, np.float32),
              "dones": np.eye(1, t, 9, dtype=bool)[0]}
    folded = fold(arrays, action_repeat=4)  # 10 frames -> 2 decisions; the last 2 frames are dropped
    assert folded["obs"][:, 0, 0, 0].tolist() == [0, 4]
    assert folded["actions"].tolist() == [arrays["actions"][0].tolist(), arrays["actions"][4].tolist()]
    assert folded["rewards"].tolist() == [4.0, 4.0] and folded["dones"].tolist() == [False, False]


def test_window_selects_by_upload_time(tmp_path):
    objects = LocalStore(tmp_path)
    now = time.time()
    for age_h, name in ((0.5, "fresh"), (30, "old")):
        (tmp_path / "uploads" / "WH-1").mkdir(parents=True, exist_ok=True)
        (tmp_path / "uploads" / "WH-1" / f"{int((now - age_h * 3600) * 1000)}-{name}-1-x.npz").write_bytes(b"")
    assert [k.split("-")[2] for k in window_keys(objects, "WH-1", hours=24, now=now)] == ["fresh"]


def test_fleet_episodes_join_the_dataset_and_pass_the_gate(good_dataset, tmp_path):
    base = open_dataset(good_dataset.parent, str(good_dataset))
    store_root = tmp_path / "store"  # the merged dataset goes to its own store
    objects = LocalStore(tmp_path / "objects")
    torch.manual_seed(0)
    bundle = VMCBundle.create(Architecture(32, 256, 5, action_repeat=4))
    env = CarRacing(max_steps=240)
    for i, seed in enumerate((11, 12, 13, 14)):
        run = play_and_measure(env, bundle.policy(), bundle.vae, seed, latent_sample=2)
        body = encode_episode(run.episode)
        _put(objects, tmp_path, upload_key("WH-1", "r001", "1", body, now=time.time() + i / 1000), body)
    env.close()

    cfg = resolve_config("smoke")
    thresholds = replace(cfg.gate.data, skip_start_steps=zoom_steps(4))
    merged, added, skipped = with_fleet_episodes(base, objects, store_root, "WH-1", hours=1, action_repeat=4,
                                                 thresholds=thresholds)
    # the random model drives some cars off the map: those uploads are left out, with the reason
    assert added + len(skipped) == 4 and added >= 1
    assert all("shorter than" in why or "corrupt frames" in why for why in skipped.values())
    assert merged.n_episodes == base.n_episodes + added and merged.hash != base.hash
    fleet_rows = merged.manifest[merged.manifest["episode_id"].str.startswith("fleet_")]
    # 240 frames at frame skip 4 -> at most 60 steps (an episode ends early when the car leaves the map)
    assert all(0 < n <= 60 for n in fleet_rows["length"]) and set(fleet_rows["policy"]) == {"fleet:r001"}
    assert merged.info["spec"]["fleet"]["warehouse_id"] == "WH-1"
    with np.load(io.BytesIO((merged.path / "shards" / "fleet_000000.npz").read_bytes())) as shard:
        assert shard["obs"].shape == (fleet_rows["length"].iloc[0], 64, 64, 3)
    report = validate_data(merged.path, cfg.gate, cfg.collect.action_repeat)
    assert report.passed, report.summary()
