"""collect: real CarRacing episodes with exploration policies -> a dataset in the store."""
from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from dreamops.sim.carracing import ENV_ID, CarRacing
from dreamops.sim.policies import EXPLORATION_POLICIES
from dreamops.sim.rollout import play_episode
from dreamops.tasks import dataset as ds
from dreamops.tasks.config import CollectConfig
from dreamops.validation.data_gate import frame_summaries


@dataclass(frozen=True)
class EpisodeJob:
    episode_id: str
    seed: int
    policy: str
    max_steps: int
    action_repeat: int


def assign_policies(cfg: CollectConfig) -> list[str]:
    """Deterministic policy per episode in proportion to policy_mix (largest remainder)."""
    names = sorted(cfg.policy_mix)
    total = sum(cfg.policy_mix.values())
    exact = {n: cfg.policy_mix[n] / total * cfg.episodes for n in names}
    counts = {n: int(exact[n]) for n in names}
    for n in sorted(names, key=lambda n: exact[n] - counts[n], reverse=True)[: cfg.episodes - sum(counts.values())]:
        counts[n] += 1
    # interleave (policy k's j-th episode at position j / count_k) so every prefix mixes policies
    return [n for _, n in sorted((j / counts[n], n) for n in names for j in range(counts[n]))]


@dataclass
class Collected(ds.Dataset):
    """A dataset plus the node that collected each episode (empty when it came from the cache)."""
    nodes: dict[str, str] = field(default_factory=dict)  # episode_id -> node


def _collect_one(job: EpisodeJob) -> tuple[dict, pd.DataFrame, bytes]:
    """One episode -> (manifest row, frame summaries, compressed shard). The shard comes back as
    bytes because the worker may run on another machine than the dataset store."""
    env = CarRacing(max_steps=job.max_steps, action_repeat=job.action_repeat)
    try:
        episode = play_episode(env, EXPLORATION_POLICIES[job.policy](), job.seed)
    finally:
        env.close()
    arrays = {"obs": episode.obs, "actions": episode.actions, "rewards": episode.rewards, "dones": episode.dones}
    shard, digest = f"{job.episode_id}.npz", ds.arrays_hash(arrays)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)  # in the worker: compression is the costly part of writing
    frames = frame_summaries(episode.obs, episode.actions, episode.rewards)
    frames.insert(0, "episode_id", job.episode_id)
    row = {"episode_id": job.episode_id, "shard": shard, "sha256": digest, "seed": job.seed,
           "policy": job.policy, "length": episode.length, "env_frames": episode.env_frames, "total_reward": episode.total_reward,
           "off_track_frac": float(1 - episode.on_track.mean()), "terminated": bool(episode.dones.any())}
    return row, frames, buf.getvalue()


def collection_code_hash() -> str:
    """The simulator wrapper's and the exploration policies' source: changing either changes the data."""
    import dreamops.sim.carracing
    import dreamops.sim.policies

    return ds.source_hash(dreamops.sim.carracing, dreamops.sim.policies)


def collection_spec(cfg: CollectConfig) -> dict:
    """What determines the collected data; the cache key of `collect`."""
    return {"env": ENV_ID, "episodes": cfg.episodes, "max_steps": cfg.max_steps, "seed": cfg.seed,
            "policy_mix": dict(sorted(cfg.policy_mix.items())), "action_repeat": cfg.action_repeat,
            "code": collection_code_hash()}


def collect(cfg: CollectConfig, store: Path, workers: int, use_cache: bool = True,
            show_progress: bool = True, ray_address: str | None = None) -> Collected:
    """Collect cfg.episodes episodes in `workers` processes, or on the Ray cluster at `ray_address`
    (the same data either way: episodes are seeded). A dataset with the same spec already in the
    store is reused (collection is deterministic given the spec)."""
    jobs = [EpisodeJob(f"ep_{i:06d}", cfg.seed + i, policy, cfg.max_steps, cfg.action_repeat)
            for i, policy in enumerate(assign_policies(cfg))]
    dataset, nodes = ds.collect_jobs(_collect_one, jobs, store, collection_spec(cfg), workers, "collect episodes",
                                     use_cache, show_progress, ray_address)
    return Collected(**vars(dataset), nodes=nodes)
