"""pick-vla's fleet episodes (uploaded through the API, `uploads/<warehouse>/pick-vla/...npz`) as a
dataset of their own, for a retrain with `data_window_hours`.

A cell of the fleet uploads what its sensors gave (validation.data_gate.PICK_UPLOAD_SCHEMA): no
expert label and no privileged target position. So its episodes train what needs no label - the
RSSM, the success head and the grasp head, on the policy's own successes and failures - and not
the flow head or the localisation loss: every state is `labelled = False`, and the label arrays
(`label_chunks`, `target_pos`) hold zeros, as DAgger shards do for the states they do not label.
Each upload is verified against the sha256 in its key; one the data gate would refuse on its own
(too short, malformed) is skipped with its reason, so one bad robot does not block a retrain.
"""
from __future__ import annotations

import io
import logging

import numpy as np

from dreamops.storage import ObjectStore
from dreamops.tasks import dataset as ds
from dreamops.tasks.fleet_data import read_upload, window_keys
from dreamops.tasks.pick_data import pick_episode_result
from dreamops.uploads import upload_problem
from dreamops.validation.data_gate import PICK_UPLOAD_SCHEMA, episode_problem

FAMILY = "pick-vla"
log = logging.getLogger("dreamops.pick_fleet_data")


def as_shard(arrays: dict[str, np.ndarray], horizon: int) -> dict[str, np.ndarray]:
    """An upload's arrays -> a pick shard: the same arrays plus unlabelled placeholders."""
    n = len(arrays["actions"])
    return {**{k: arrays[k] for k in ("obs", "depth", "proprio", "actions", "rewards", "dones", "held",
                                      "collisions", "instruction")},
            "target_pos": np.zeros((n, 3), np.float32), "label_chunks": np.zeros((n, horizon, 4), np.float32),
            "labelled": np.zeros(n, bool)}


def fleet_dataset(objects: ObjectStore, store_root, warehouse_id: str, hours: float, horizon: int,
                  min_length: int) -> tuple[ds.Dataset | None, dict[str, str]]:
    """The warehouse's usable pick uploads of the last `hours` as one dataset (None when there are
    none), and the skipped uploads with the reason."""
    results, skipped = [], {}
    for key in window_keys(objects, warehouse_id, hours, model=FAMILY):
        body = read_upload(objects, key, store_root)
        why = upload_problem(key, body)
        if why is None:
            try:
                with np.load(io.BytesIO(body), allow_pickle=False) as npz:
                    arrays = {k: npz[k] for k in npz.files}
            except Exception as exc:  # verified but unreadable (the API checks; older uploads may differ)
                why = f"unreadable ({exc.__class__.__name__}: {exc})"
            else:
                why = episode_problem(arrays, PICK_UPLOAD_SCHEMA) or (
                    f"shorter than {min_length} steps ({len(arrays['actions'])})"
                    if len(arrays["actions"]) < min_length else None)
        if why:
            skipped[key] = why
            log.warning("fleet upload %s skipped: %s", key, why)
            continue
        robot = key.rsplit("/", 1)[-1].split("-")[1]
        shard = as_shard(arrays, horizon)
        results.append(pick_episode_result(f"fleet_{len(results):06d}", shard, {
            "seed": -1, "length": len(shard["actions"]), "success": bool((shard["rewards"] > 0).any()),
            "instruction": str(shard["instruction"]), "policy": f"fleet:{robot}", "round": -1,
            "labels": 0, "expert_chunks": 0, "upload": key}))
    if not results:
        return None, skipped
    staging = ds.new_staging_dir(store_root)
    rows, frames = [], []
    for row, summary, shard_bytes in results:
        (staging / "shards" / row["shard"]).write_bytes(shard_bytes)
        rows.append(row)
        frames.append(summary)
    spec = {"fleet": {"warehouse_id": warehouse_id, "family": FAMILY, "uploads": [r["upload"] for r in rows]}}
    return ds.finalize(staging, store_root, rows, frames, spec), skipped
