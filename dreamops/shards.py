"""The one reader of dataset shards, shared by the data gate (validation) and every other read of a
dataset (training, fetches from the object store, merges): a shard is found only inside its
dataset's `shards/` folder, and its arrays must hash to the content hash the manifest recorded.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

# The arrays every episode shard holds (collected, uploaded by a robot, or merged).
SHARD_ARRAYS = ("obs", "actions", "rewards", "dones")


class DatasetIntegrityError(ValueError):
    """A dataset's files do not match its manifest or its content hash: changed after the fact, a
    shard path out of the dataset, or a missing or garbled dataset.json."""


def arrays_hash(arrays: dict[str, np.ndarray]) -> str:
    """sha256 over names, dtypes, shapes and bytes (not file bytes, which carry zip timestamps)."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def dataset_hash(shard_hashes: list[str]) -> str:
    return hashlib.sha256("".join(sorted(shard_hashes)).encode()).hexdigest()


def shard_path(dataset: Path, shard: object, episode_id: object = "?") -> Path:
    """`<dataset>/shards/<shard>`, refusing names that lead anywhere else (`../..`, absolute paths,
    sub-folders, links out of the folder)."""
    shards = (dataset / "shards").resolve()
    name = str(shard)
    path = (shards / name).resolve()
    if not name or Path(name).name != name or path.parent != shards:
        raise DatasetIntegrityError(f"episode {episode_id}: shard path {name!r} is not a file in the dataset's "
                                    f"shards folder")
    return path


def read_shard(dataset: Path, shard: object, expected_hash: str | None, episode_id: object = "?"
               ) -> dict[str, np.ndarray]:
    """Every array of one shard, checked against the manifest's content hash (None: not checked).
    OSError / ValueError from numpy mean an unreadable file; DatasetIntegrityError a changed one."""
    path = shard_path(dataset, shard, episode_id)
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    if expected_hash is not None:
        digest = arrays_hash(arrays)
        if digest != expected_hash:
            raise DatasetIntegrityError(f"episode {episode_id} (shards/{shard}): content hash {digest[:12]} differs "
                                        f"from the manifest's {str(expected_hash)[:12]}: changed after the dataset "
                                        f"was made")
    return arrays


def read_info(dataset: Path) -> dict:
    """dataset.json, which must be there and be a JSON object with a 64-hex `hash`."""
    import json

    try:
        info = json.loads((dataset / "dataset.json").read_text())
    except FileNotFoundError:
        raise DatasetIntegrityError(f"{dataset} has no dataset.json") from None
    except (OSError, ValueError) as exc:
        raise DatasetIntegrityError(f"{dataset}/dataset.json cannot be read: {exc}") from None
    digest = info.get("hash") if isinstance(info, dict) else None
    if not (isinstance(digest, str) and len(digest) == 64 and all(c in "0123456789abcdef" for c in digest)):
        raise DatasetIntegrityError(f"{dataset}/dataset.json has no content hash (a 64-hex 'hash')")
    return info


def info_problem(info: dict, shard_hashes: list, lengths: list) -> str:
    """'' when dataset.json agrees with the manifest: its hash is the hash over the manifest's shard
    hashes, its episode and frame counts are the manifest's; else what disagrees."""
    if any(not isinstance(h, str) for h in shard_hashes):
        return "the manifest lacks a content hash for some episodes"
    recomputed = dataset_hash(list(shard_hashes))
    if recomputed != info["hash"]:
        return (f"dataset.json names content hash {info['hash'][:12]}, the manifest's shard hashes give "
                f"{recomputed[:12]}")
    if info.get("episodes") != len(shard_hashes):
        return f"dataset.json counts {info.get('episodes')} episodes, the manifest lists {len(shard_hashes)}"
    if info.get("frames") != int(sum(int(n) for n in lengths)):
        return f"dataset.json counts {info.get('frames')} frames, the manifest's lengths sum to {int(sum(lengths))}"
    return ""
