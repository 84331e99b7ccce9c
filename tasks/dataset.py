"""The dataset store: episodes in compressed shards, a manifest, per-frame summaries, a content hash.

Layout of one dataset (named by its content hash):
  <store>/<hash[:16]>/shards/ep_000000.npz   obs uint8 [T,64,64,3], actions f32 [T,3], rewards f32 [T], dones bool [T]
                                              (+ family extras: pick demos add depth, proprio, held, instruction)
  <store>/<hash[:16]>/manifest.parquet        one row per episode
  <store>/<hash[:16]>/frames.parquet          one row per frame: the data gate's summary columns
  <store>/<hash[:16]>/dataset.json            hash, spec, counts
The hash is sha256 over the episodes' content hashes (array bytes, dtypes and shapes; not file
bytes, which carry zip timestamps), so the same data always gets the same name. Every read checks
it (dreamops.shards): opening checks dataset.json against the manifest, loading an episode checks
its shard's hash, a fetch from the object store checks every shard before the folder is used.
"""
from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import shutil
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd

from dreamops.shards import SHARD_ARRAYS, DatasetIntegrityError, arrays_hash, info_problem, read_info, read_shard
from dreamops.shards import dataset_hash as compute_dataset_hash
from dreamops.storage import ObjectStore

class DatasetNotFoundError(LookupError):
    pass


__all__ = ["DatasetIntegrityError", "arrays_hash", "compute_dataset_hash"]  # re-exported from dreamops.shards


def write_shard(shard_dir: Path, episode_id: str, arrays: dict[str, np.ndarray]) -> tuple[str, str]:
    """Save one episode compressed; returns (file name, content hash)."""
    missing = set(SHARD_ARRAYS) - set(arrays)
    if missing:
        raise ValueError(f"episode {episode_id} lacks arrays {sorted(missing)}")
    shard_dir.mkdir(parents=True, exist_ok=True)
    name = f"{episode_id}.npz"
    np.savez_compressed(shard_dir / name, **arrays)
    return name, arrays_hash(arrays)


@dataclass
class Dataset:
    path: Path
    hash: str
    manifest: pd.DataFrame
    info: dict

    @property
    def n_frames(self) -> int:
        return int(self.manifest["length"].sum())

    @property
    def n_episodes(self) -> int:
        return len(self.manifest)

    def frames(self) -> pd.DataFrame:
        return pd.read_parquet(self.path / "frames.parquet")

    def load(self, episode_id: str) -> dict[str, np.ndarray]:
        row = self.manifest.loc[self.manifest["episode_id"] == episode_id]
        if row.empty:
            raise DatasetNotFoundError(f"episode {episode_id} not in dataset {self.hash[:16]}")
        return read_shard(self.path, row["shard"].iloc[0], row["sha256"].iloc[0], episode_id)

    def iter_episodes(self, episode_ids: list[str] | None = None) -> Iterator[tuple[str, dict[str, np.ndarray]]]:
        for eid in episode_ids if episode_ids is not None else list(self.manifest["episode_id"]):
            yield eid, self.load(eid)

    def split(self, holdout_fraction: float, seed: int = 0) -> tuple[list[str], list[str]]:
        """Deterministic episode-level split -> (train ids, holdout ids); holdout has >= 1 episode."""
        ids = sorted(self.manifest["episode_id"])
        order = np.random.default_rng(seed).permutation(len(ids))
        n_hold = min(len(ids) - 1, max(1, round(holdout_fraction * len(ids)))) if len(ids) > 1 else 0
        hold = sorted(ids[i] for i in order[:n_hold])
        return [i for i in ids if i not in set(hold)], hold


def new_staging_dir(store: Path) -> Path:
    path = store / f".staging-{uuid.uuid4().hex[:12]}"
    (path / "shards").mkdir(parents=True)
    return path


def finalize(staging: Path, store: Path, rows: list[dict], frames: list[pd.DataFrame], spec: dict) -> Dataset:
    """Write the tables, name the dataset by its hash and move it into place (atomic rename).
    If the same content already exists, the staging copy is dropped and the existing one returned."""
    if not rows:
        raise ValueError("a dataset needs at least one episode")
    manifest = pd.DataFrame(rows).sort_values("episode_id").reset_index(drop=True)
    if manifest["episode_id"].duplicated().any():
        raise ValueError("duplicated episode ids in dataset")
    digest = compute_dataset_hash(list(manifest["sha256"]))
    info = {"hash": digest, "spec": spec, "spec_key": spec_key(spec), "episodes": len(manifest),
            "frames": int(manifest["length"].sum())}
    manifest.to_parquet(staging / "manifest.parquet", index=False)
    pd.concat(frames, ignore_index=True).to_parquet(staging / "frames.parquet", index=False)
    (staging / "dataset.json").write_text(json.dumps(info, indent=2))
    final = store / digest[:16]
    if final.exists():
        shutil.rmtree(staging)
    else:
        staging.rename(final)
    return open_dataset(store, str(final))


def source_hash(*modules: ModuleType) -> str:
    """The modules' source: for a collection spec, since changing the simulator or the policy changes the data."""
    h = hashlib.sha256()
    for module in modules:
        h.update(inspect.getsource(module).encode())
    return h.hexdigest()[:16]


EpisodeJobResult = tuple[dict, pd.DataFrame, bytes]  # manifest row, frame summaries, compressed shard


def collect_jobs(fn: Callable[..., EpisodeJobResult], jobs: Sequence, store: Path, spec: dict, workers: int,
                 desc: str, use_cache: bool = True, show_progress: bool = True, ray_address: str | None = None,
                 initializer: Callable[..., None] | None = None, initargs: tuple = ()
                 ) -> tuple[Dataset, dict[str, str]]:
    """Run one job per episode (imap_jobs: local processes or Ray) into a new dataset with `spec`
    -> (dataset, node that ran each episode). fn returns the manifest row (with `shard` and
    `episode_id`), the frame summaries and the shard's bytes, compressed in the worker, which may
    be on another machine than the store. A dataset with the same spec in the store is returned
    instead when use_cache (no nodes then)."""
    from dreamops.tasks.parallel import imap_jobs  # here: it imports torch, which collection workers do not need

    if use_cache and (cached := find_by_spec(store, spec)) is not None:
        return cached, {}
    staging = new_staging_dir(store)
    rows: list = [None] * len(jobs)
    frames: list = [None] * len(jobs)
    nodes = {}
    try:
        for done in imap_jobs(fn, jobs, workers, desc, initializer, initargs, show_progress=show_progress,
                              ray_address=ray_address):
            row, frames[done.index], shard = done.result
            (staging / "shards" / row["shard"]).write_bytes(shard)  # as they come: never all in memory
            rows[done.index], nodes[row["episode_id"]] = row, done.node
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)  # a retry starts a new staging folder
        raise
    return finalize(staging, store, rows, frames, spec), nodes  # in job order, wherever each job ran


def merge(parts: Sequence[Dataset], store: Path, spec: dict) -> Dataset:
    """One new dataset holding every episode of `parts` (episode ids must not repeat), named by its
    own content hash. Shards are hard-linked where the file system allows (datasets are immutable),
    else copied."""
    staging = new_staging_dir(store)
    rows: list[dict] = []
    try:
        for part in parts:
            for row in part.manifest.to_dict("records"):
                source, target = part.path / "shards" / row["shard"], staging / "shards" / row["shard"]
                if target.exists():
                    raise ValueError(f"episode shard {row['shard']} is in more than one of the datasets to merge")
                try:
                    target.hardlink_to(source)
                except OSError:
                    shutil.copyfile(source, target)
                rows.append(row)
        return finalize(staging, store, rows, [part.frames() for part in parts], spec)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def spec_key(spec: dict) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def find_by_spec(store: Path, spec: dict) -> Dataset | None:
    """A dataset already collected with exactly this spec (the collection cache)."""
    key = spec_key(spec)
    for info_file in sorted(store.glob("*/dataset.json")) if store.exists() else []:
        if _info_or_empty(info_file).get("spec_key") == key:
            return open_dataset(store, str(info_file.parent))
    return None


def _info_or_empty(info_file: Path) -> dict:
    """A dataset.json for lookups: a garbled one (reported when that dataset is opened) hides no other."""
    try:
        info = json.loads(info_file.read_text())
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def find_path(store: Path, ref: str) -> Path:
    """The folder of a dataset given by path, content hash or unique hash prefix (>= 8 chars),
    without reading its tables (they may be what is broken)."""
    path = Path(ref)
    if path.is_dir():
        return path
    matches = [p.parent for p in store.glob("*/dataset.json")
               if len(ref) >= 8 and str(_info_or_empty(p).get("hash", "")).startswith(ref)] if store.exists() else []
    if len(matches) != 1:
        raise DatasetNotFoundError(f"no dataset {ref!r} in {store}" if not matches else f"dataset prefix {ref!r} is ambiguous")
    return matches[0]


def open_dataset(store: Path, ref: str) -> Dataset:
    """Open by content hash (or a unique prefix of >= 8 chars) or by path; dataset.json must agree
    with the manifest (each episode's shard is checked when it is loaded)."""
    path = find_path(store, ref)
    if not (path / "dataset.json").exists():
        raise DatasetNotFoundError(f"{path} is not a dataset (no dataset.json)")
    info = read_info(path)
    try:
        manifest = pd.read_parquet(path / "manifest.parquet")
        problem = info_problem(info, list(manifest["sha256"]), list(manifest["length"]))
    except (OSError, ValueError, KeyError) as exc:
        raise DatasetIntegrityError(f"{path}: the manifest cannot be read: {exc}") from None
    if problem:
        raise DatasetIntegrityError(f"{path}: {problem}")
    return Dataset(path=path, hash=info["hash"], manifest=manifest, info=info)


def verify(path: Path) -> Dataset:
    """Open the dataset at `path` and check every shard against its content hash and length."""
    data = open_dataset(path.parent, str(path))
    for row in data.manifest.itertuples():
        arrays = read_shard(path, row.shard, row.sha256, row.episode_id)
        if len(arrays.get("actions", ())) != row.length:
            raise DatasetIntegrityError(f"episode {row.episode_id} (shards/{row.shard}): {len(arrays.get('actions', ()))} "
                                        f"steps, the manifest says {row.length}")
    return data


# --- the object store (local folder or S3): datasets are published by hash, fetched on demand ---

def publish(store: ObjectStore, dataset_path: Path) -> str:
    """Copy a dataset to the object store under its content hash (whatever its local folder is
    called: `--dataset <path>`), once. dataset.json goes last, so a half-uploaded dataset is never
    seen as one. Returns the dataset's URI there."""
    prefix = f"datasets/{read_info(dataset_path)['hash'][:16]}"
    if not store.exists(f"{prefix}/dataset.json"):
        for path in sorted(p for p in dataset_path.rglob("*") if p.is_file() and p.name != "dataset.json"):
            store.put_file(path, f"{prefix}/{path.relative_to(dataset_path).as_posix()}")
        store.put_file(dataset_path / "dataset.json", f"{prefix}/dataset.json")
    return store.uri(prefix)


def fetch(store: ObjectStore, local_root: Path, ref: str) -> Path:
    """The local folder of dataset `ref` (hash or prefix of >= 8 chars), downloaded from the object
    store when this machine does not have it yet."""
    with contextlib.suppress(DatasetNotFoundError):
        return find_path(local_root, ref)
    names = {k.split("/")[1] for k in store.list("datasets/") if k.endswith("/dataset.json")}
    matches = sorted(n for n in names if len(ref) >= 8 and (n.startswith(ref) or ref.startswith(n)))
    if len(matches) != 1:
        where = store.uri("datasets/")
        raise DatasetNotFoundError(f"no dataset {ref!r} here ({local_root}) or in {where}" if not matches
                                   else f"dataset prefix {ref!r} is ambiguous in {where}")
    local_root.mkdir(parents=True, exist_ok=True)
    staging = local_root / f".fetch-{uuid.uuid4().hex[:12]}"
    store.get_dir(f"datasets/{matches[0]}", staging)
    try:  # what came back must be the dataset it is named after, shard by shard
        fetched = verify(staging)
        if not fetched.hash.startswith(matches[0]):
            raise DatasetIntegrityError(f"{store.uri('datasets/' + matches[0])} holds dataset {fetched.hash[:16]}")
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    final = local_root / matches[0]
    if final.exists():
        shutil.rmtree(staging)
    else:
        staging.rename(final)
    return final
