"""A corpus of bad datasets, each made from a good one by one corruption:
case -> (corrupt(path), the check that must fail, words its message must contain).
CORPUS: carracing-vmc's datasets; PICK_CORPUS: pick-vla's demonstrations (their own schema: 4
actions, depth / proprio / held / target_pos extras and an instruction)."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from dreamops.tasks.collect import collect
from dreamops.tasks.config import CollectConfig
from dreamops.validation.data_gate import DataGateThresholds

SMOKE_LIKE = DataGateThresholds(min_episodes=4, min_frames=200, skip_start_steps=13)


def make_good(store: Path) -> Path:
    """4 real episodes x 60 steps: passes the `smoke` profile's data gate."""
    return collect(CollectConfig(episodes=4, max_steps=60, seed=0), store, workers=1, show_progress=False).path


def edit_shard(path: Path, episode: str, **changes) -> None:
    """Rewrite one shard of the dataset at `path`: each change maps an array to its new value
    (None drops the array)."""
    shard = path / "shards" / f"{episode}.npz"
    with np.load(shard) as data:
        arrays = {k: data[k] for k in data.files}
    for key, fn in changes.items():
        arrays[key] = fn(arrays[key])
    np.savez_compressed(shard, **{k: a for k, a in arrays.items() if a is not None})


def _set_frames(value):
    def fn(obs):
        obs = obs.copy()
        obs[:] = value
        return obs
    return fn


def _set_action(index, value):
    def fn(actions):
        actions = actions.copy()
        actions[5:10, index] = value
        return actions
    return fn


def _empty(path: Path) -> None:
    manifest = pd.read_parquet(path / "manifest.parquet")
    manifest.iloc[0:0].to_parquet(path / "manifest.parquet", index=False)
    shutil.rmtree(path / "shards")


def _duplicate_ids(path: Path) -> None:
    manifest = pd.read_parquet(path / "manifest.parquet")
    pd.concat([manifest, manifest.iloc[[0]]]).to_parquet(path / "manifest.parquet", index=False)


def _edit_manifest(**columns):
    """Set manifest columns of the first episode; keep dataset.json in step (frames) so only the
    manifest's disagreement with the shard remains."""
    def fn(path: Path) -> None:
        import json

        manifest = pd.read_parquet(path / "manifest.parquet")
        for column, value in columns.items():
            manifest.loc[0, column] = value
        manifest.to_parquet(path / "manifest.parquet", index=False)
        info = json.loads((path / "dataset.json").read_text())
        info["frames"] = int(manifest["length"].sum())
        (path / "dataset.json").write_text(json.dumps(info))
    return fn


def _scale(factor):
    return lambda a: (a * factor).astype(a.dtype)


CORPUS = {
    "black frames": (lambda p: edit_shard(p, "ep_000001", obs=_set_frames(0)), "black_frames", "black"),
    "white frames": (lambda p: edit_shard(p, "ep_000001", obs=_set_frames(255)), "white_frames", "white"),
    "NaN actions": (lambda p: edit_shard(p, "ep_000002", actions=_set_action(1, np.nan)), "throttle_not_nan", "NaN throttle"),
    "out-of-range actions": (lambda p: edit_shard(p, "ep_000000", actions=_set_action(0, 1.7)), "steer_range",
                             "steer action outside [-1, 1]"),
    "truncated episode": (lambda p: edit_shard(p, "ep_000003", **{k: (lambda a: a[:30]) for k in
                                                                    ("obs", "actions", "rewards", "dones")}),
                          "episode_length", "truncated episode"),
    "wrong image shape": (lambda p: edit_shard(p, "ep_000000", obs=lambda o: np.zeros((len(o), 96, 96, 3), np.uint8)),
                          "image_shape", "wrong image shape"),
    "wrong dtype": (lambda p: edit_shard(p, "ep_000000", obs=lambda o: o.astype(np.float32) / 255),
                    "image_dtype", "wrong image dtype"),
    "empty dataset": (_empty, "dataset_not_empty", "empty dataset"),
    "corrupt shard file": (lambda p: (p / "shards" / "ep_000002.npz").write_bytes(b"PK\x03\x04 not a zip"),
                           "shards_readable", "corrupt shard"),
    "duplicated episode ids": (_duplicate_ids, "episode_ids_unique", "duplicated episode ids"),
    # integrity: the content hash, dataset.json and the manifest are checked, not trusted
    "shard changed after the fact": (lambda p: edit_shard(p, "ep_000001", rewards=_scale(0.5)), "shard_hashes",
                                     "changed after the dataset was made) in episode ep_000001 (shards/ep_000001.npz)"),
    "NaN dones": (lambda p: edit_shard(p, "ep_000002", dones=lambda d: np.where(d, 1.0, np.nan).astype(np.float32)),
                  "dones_valid", "(or finite 0/1) in episode ep_000002"),
    "shard path outside the dataset": (_edit_manifest(shard="../../ep_000000.npz"), "shard_paths",
                                       "outside the dataset's shards folder in episode ep_000000"),
    "missing dataset.json": (lambda p: (p / "dataset.json").unlink(), "dataset_info", "no dataset.json"),
    "garbage dataset.json": (lambda p: (p / "dataset.json").write_text("{not json"), "dataset_info", "cannot be read"),
    "manifest length differs from the shard": (_edit_manifest(length=61), "manifest_lengths",
                                               "length differs from the shard's in episode ep_000000"),
}


PICK_SMOKE_LIKE = DataGateThresholds(min_episodes=4, min_frames=20, min_episode_length=5)  # the pick `smoke` gate


def make_good_pick(store: Path) -> Path:
    """4 real scripted-expert demonstrations x <= 40 steps in the PyBullet cell: pass PICK_SMOKE_LIKE."""
    from dreamops.tasks.pick_data import PickDataConfig, collect_demos

    return collect_demos(PickDataConfig(episodes=4, seed=0, max_steps=40), store, workers=1, show_progress=False).path


def _nan_at(index, column=None):
    def fn(a):
        a = a.astype(np.float32) if a.dtype == np.bool_ else a.copy()
        if column is None:
            a[index] = np.nan
        else:
            a[index, column] = np.nan
        return a
    return fn


PICK_CORPUS = {
    "shard changed after the fact": (lambda p: edit_shard(p, "ep_000001", actions=_scale(0.5)), "shard_hashes",
                                     "changed after the dataset was made) in episode ep_000001 (shards/ep_000001.npz)"),
    "NaN actions": (lambda p: edit_shard(p, "ep_000002", actions=_nan_at(slice(2, 4), 3)), "grip_not_nan",
                    "NaN grip actions in episode ep_000002"),
    "out-of-range actions": (lambda p: edit_shard(p, "ep_000000", actions=_set_action(0, 1.7)), "dx_range",
                             "dx action outside [-1, 1] in episode ep_000000"),
    "NaN dones": (lambda p: edit_shard(p, "ep_000002", dones=lambda d: np.where(d, 1.0, np.nan).astype(np.float32)),
                  "dones_valid", "(or finite 0/1) in episode ep_000002"),
    "NaN target_pos": (lambda p: edit_shard(p, "ep_000001", target_pos=_nan_at(3, 1)), "extras_ok",
                       "ep_000001: NaN or inf in target_pos"),
    "depth beyond the far plane": (lambda p: edit_shard(p, "ep_000000", depth=_scale(3.0)), "depth_max_range",
                                   "depth outside [0.05, 2] (per-frame maximum) in episode ep_000000"),
    "shard path outside the dataset": (_edit_manifest(shard="../../ep_000000.npz"), "shard_paths",
                                       "outside the dataset's shards folder in episode ep_000000"),
    "missing dataset.json": (lambda p: (p / "dataset.json").unlink(), "dataset_info", "no dataset.json"),
    "garbage dataset.json": (lambda p: (p / "dataset.json").write_text("{not json"), "dataset_info", "cannot be read"),
    "manifest length differs from the shard": (_edit_manifest(length=41), "manifest_lengths",
                                               "length differs from the shard's in episode ep_000000"),
    "corrupt shard file": (lambda p: (p / "shards" / "ep_000002.npz").write_bytes(b"PK\x03\x04 not a zip"),
                           "shards_readable", "corrupt shard: file cannot be read in episode ep_000002"),
    "missing instruction": (lambda p: edit_shard(p, "ep_000001", instruction=lambda a: None), "instruction_present",
                            "in episode ep_000001"),
}


def make_bad(good: Path, tmp: Path, case: str, corpus: dict = CORPUS) -> Path:
    bad = tmp / case.replace(" ", "_")
    shutil.copytree(good, bad)
    corpus[case][0](bad)
    return bad
