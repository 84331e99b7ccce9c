"""Fleet episodes uploaded through the API (`uploads/<warehouse>/<ms>-<robot>-<version>-<sha256>.npz`
in the object store) joined to a collected dataset for the next retrain.

The key carries the sha256 of the bytes the API accepted: every read checks it, so an upload
changed in the object store afterwards (or put there without the API) is skipped, with the reason
and its key, and never trained on.

Uploads are per simulator frame, as the robot saw them; training data is per agent step (one
decision per `action_repeat` frames), so each upload is folded: the frame the decision was made
on, its action, the reward summed over the repeated frames, done if any frame was terminal.
Robots are untrusted sources: an upload the data gate would reject on its own (too short, or too
many corrupt frames, e.g. a car that left the map) is left out and counted, so that one bad robot
does not block every retrain; the gate still judges the joined dataset.
"""
from __future__ import annotations

import io
import logging
import shutil
import time
import uuid

import numpy as np
import pandas as pd

from dreamops.shards import SHARD_ARRAYS
from dreamops.storage import ObjectStore
from dreamops.tasks import dataset as ds
from dreamops.uploads import DEFAULT_UPLOADS, upload_prefix, upload_problem
from dreamops.validation.data_gate import DataGateThresholds, frame_summaries


log = logging.getLogger("dreamops.fleet_data")
def window_keys(objects: ObjectStore, warehouse_id: str, hours: float, now: float | None = None,
                model: str = DEFAULT_UPLOADS) -> list[str]:
    """Upload keys of one family's robots in a warehouse from the last `hours` (by the upload time
    in the key); another family's uploads (in a folder below) are not listed."""
    since_ms = ((now or time.time()) - hours * 3600) * 1000
    prefix = upload_prefix(warehouse_id, model)
    keys = []
    for key in objects.list(prefix):
        name = key[len(prefix):]
        stamp = name.split("-", 1)[0]
        if "/" not in name and key.endswith(".npz") and stamp.isdigit() and int(stamp) >= since_ms:
            keys.append(key)
    return sorted(keys)


def fold(arrays: dict[str, np.ndarray], action_repeat: int) -> dict[str, np.ndarray]:
    """Per-frame arrays -> per-decision arrays (see the module docstring)."""
    n = len(arrays["actions"]) // action_repeat * action_repeat
    if n == 0:
        raise ValueError(f"episode shorter than one decision ({action_repeat} frames)")
    k = action_repeat
    return {"obs": arrays["obs"][:n:k], "actions": arrays["actions"][:n:k].astype(np.float32),
            "rewards": arrays["rewards"][:n].reshape(-1, k).sum(1).astype(np.float32),
            "dones": arrays["dones"][:n].reshape(-1, k).any(1)}


def rejection(arrays: dict[str, np.ndarray], thresholds: DataGateThresholds) -> str | None:
    """Why the data gate would refuse this (folded) episode on its own, or None."""
    n = len(arrays["actions"])
    if n < thresholds.min_episode_length:
        return f"shorter than {thresholds.min_episode_length} steps ({n})"
    frames = frame_summaries(arrays["obs"], arrays["actions"], arrays["rewards"], thresholds.skip_start_steps)
    corrupt = ((frames["frac_black"] > thresholds.corrupt_pixel_fraction)
               | (frames["frac_white"] > thresholds.corrupt_pixel_fraction)).mean()
    if corrupt > thresholds.max_corrupt_frame_fraction:
        return f"{corrupt:.0%} corrupt frames (black or white playfield)"
    return None


def with_fleet_episodes(base: ds.Dataset, objects: ObjectStore, store_root, warehouse_id: str, hours: float,
                        action_repeat: int, thresholds: DataGateThresholds) -> tuple[ds.Dataset, int, dict[str, str]]:
    """A new dataset: `base` plus the warehouse's usable uploads of the window (folded). Returns it,
    the number of fleet episodes added (0: `base` itself is returned) and the skipped uploads with
    the reason."""
    keys = window_keys(objects, warehouse_id, hours)
    accepted, skipped = [], {}
    for key in keys:
        body = read_upload(objects, key, store_root)
        why = upload_problem(key, body)
        if why is None:
            try:
                with np.load(io.BytesIO(body), allow_pickle=False) as npz:
                    arrays = fold({name: npz[name] for name in SHARD_ARRAYS}, action_repeat)
            except Exception as exc:  # verified but unusable (the API checks shapes; older uploads may differ)
                why = f"unreadable ({exc.__class__.__name__}: {exc})"
            else:
                why = rejection(arrays, thresholds)
        if why:
            skipped[key] = why
            log.warning("fleet upload %s skipped: %s", key, why)
        else:
            accepted.append((key, arrays))
    if not accepted:
        return base, 0, skipped
    staging = ds.new_staging_dir(store_root)
    rows = base.manifest.to_dict("records")
    for row in rows:
        shutil.copyfile(base.path / "shards" / row["shard"], staging / "shards" / row["shard"])
    frames = [base.frames()]
    for i, (key, arrays) in enumerate(accepted):
        episode_id = f"fleet_{i:06d}"
        shard, digest = ds.write_shard(staging / "shards", episode_id, arrays)
        summary = frame_summaries(arrays["obs"], arrays["actions"], arrays["rewards"])
        summary.insert(0, "episode_id", episode_id)
        frames.append(summary)
        length = len(arrays["actions"])
        rows.append({"episode_id": episode_id, "shard": shard, "sha256": digest, "seed": -1,
                     "policy": "fleet:" + key.rsplit("/", 1)[-1].split("-")[1], "length": length,
                     "env_frames": length * action_repeat, "total_reward": float(arrays["rewards"].sum()),
                     "off_track_frac": float("nan"), "terminated": bool(arrays["dones"].any())})
    spec = {**base.info["spec"], "fleet": {"warehouse_id": warehouse_id, "uploads": [k for k, _ in accepted]}}
    merged = ds.finalize(staging, store_root, rows, [pd.concat(frames, ignore_index=True)], spec)
    return merged, len(accepted), skipped


def read_upload(objects: ObjectStore, key: str, scratch) -> bytes:
    """The bytes of one upload, through a scratch file in `scratch` (the object store reads files)."""
    scratch.mkdir(parents=True, exist_ok=True)
    path = scratch / f".download-{uuid.uuid4().hex[:8]}.npz"
    objects.get_file(key, path)
    data = path.read_bytes()
    path.unlink()
    return data
