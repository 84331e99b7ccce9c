"""collect: real CarRacing episodes with exploration policies -> a dataset in the store."""
from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from dreamops.sim.carracing import ENV_ID, CarRacing
from dreamops.sim.policies import EXPLORATION_POLICIES
from dreamops.sim.rollout import Policy, play_episode
from dreamops.tasks import dataset as ds
from dreamops.tasks.config import ON_POLICY, CollectConfig
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
    return split_by_mix(cfg.policy_mix, cfg.episodes)


def split_by_mix(mix: dict[str, float], episodes: int) -> list[str]:
    """`episodes` policy names in proportion to `mix` (largest remainder), interleaved."""
    names = sorted(mix)
    total = sum(mix.values())
    exact = {n: mix[n] / total * episodes for n in names}
    counts = {n: int(exact[n]) for n in names}
    for n in sorted(names, key=lambda n: exact[n] - counts[n], reverse=True)[: episodes - sum(counts.values())]:
        counts[n] += 1
    # interleave (policy k's j-th episode at position j / count_k) so every prefix mixes policies
    return [n for _, n in sorted((j / counts[n], n) for n in names for j in range(counts[n]))]


@dataclass
class Collected(ds.Dataset):
    """A dataset plus the node that collected each episode (empty when it came from the cache)."""
    nodes: dict[str, str] = field(default_factory=dict)  # episode_id -> node


_worker_on_policy: Callable[[], Policy] | None = None  # set in each worker of an on-policy round


def _init_on_policy(factory: Callable[[], Policy] | None) -> None:
    global _worker_on_policy
    _worker_on_policy = factory


def _policy(name: str) -> Policy:
    if name == ON_POLICY:
        if _worker_on_policy is None:
            raise RuntimeError("an on-policy episode needs the round's controller (collect_round sets it)")
        return _worker_on_policy()
    return EXPLORATION_POLICIES[name]()


def _collect_one(job: EpisodeJob) -> tuple[dict, pd.DataFrame, bytes]:
    """One episode -> (manifest row, frame summaries, compressed shard). The shard comes back as
    bytes because the worker may run on another machine than the dataset store."""
    env = CarRacing(max_steps=job.max_steps, action_repeat=job.action_repeat)
    try:
        episode = play_episode(env, _policy(job.policy), job.seed)
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


class OnPolicyFactory:
    """Picklable: builds, inside a collection worker, a round's on-policy driver: the previous
    round's V-M-C policy deciding at every agent step (the environment repeats the action), with
    NoisyPolicy's action noise. It carries the bundle's bytes, so a Ray node needs no local files."""

    def __init__(self, bundle_bytes: bytes, noise_std: float):
        self.bundle_bytes, self.noise_std = bundle_bytes, noise_std

    def __call__(self) -> Policy:
        import torch

        from dreamops.models.bundle import VMCBundle
        from dreamops.models.vmc import VMCPolicy
        from dreamops.sim.policies import NoisyPolicy

        torch.set_num_threads(1)
        b = VMCBundle.load(io.BytesIO(self.bundle_bytes))
        return NoisyPolicy(VMCPolicy(b.vae, b.mdnrnn, b.controller, action_repeat=1), self.noise_std, name=ON_POLICY)


def round_jobs(cfg: CollectConfig, round_index: int) -> list[EpisodeJob]:
    """Round k >= 1: collect.episodes_per_round episodes on seeds no earlier round used (round 0 has
    seed .. seed + episodes - 1), ids prefixed by the round so datasets merge without clashes."""
    first = cfg.seed + cfg.episodes + (round_index - 1) * cfg.episodes_per_round
    return [EpisodeJob(f"r{round_index:02d}_ep_{i:06d}", first + i, policy, cfg.max_steps, cfg.action_repeat)
            for i, policy in enumerate(split_by_mix(cfg.round_policy_mix, cfg.episodes_per_round))]


def collect_round(cfg: CollectConfig, round_index: int, bundle_bytes: bytes, store: Path, workers: int,
                  use_cache: bool = True, show_progress: bool = True, ray_address: str | None = None) -> Collected:
    """The new episodes of data round `round_index` (>= 1), driven by the previous round's
    controller (`bundle_bytes`, a saved VMCBundle) and the round's exploration policies, as a
    dataset of their own; `dataset.merge` adds them to the data so far. Cached by spec, which
    includes the controller's weights."""
    if round_index < 1:
        raise ValueError(f"round 0 collects with the exploration policies (collect); got round {round_index}")
    spec = {"episodes": cfg.episodes_per_round, "round": round_index,
            "policy_mix": dict(sorted(cfg.round_policy_mix.items())), "controller_noise": cfg.controller_noise}
    return _collect_on_policy(cfg, round_jobs(cfg, round_index), spec, bundle_bytes, cfg.controller_noise, store,
                              workers, f"collect round {round_index} (on-policy)", use_cache, show_progress,
                              ray_address)


def collect_validation(cfg: CollectConfig, round_index: int, tag: str, bundle_bytes: bytes, seeds: list[int],
                       store: Path, workers: int, use_cache: bool = True, show_progress: bool = True,
                       ray_address: str | None = None) -> Collected:
    """A controller's validation episodes recorded as data (collect.validation_as_data): the
    bundle drives without noise, one episode per seed, in the collectors' format (one row per agent
    step), ids `r<round>_v<tag>_...` so they merge into later rounds. Each episode's total_reward
    is its real return over the same frames as `evaluate` plays."""
    spec = {"episodes": len(seeds), "round": round_index, "validation": tag, "seeds": list(seeds),
            "policy_mix": {ON_POLICY: 1.0}, "controller_noise": 0.0}
    jobs = [EpisodeJob(f"r{round_index:02d}_v{tag}_ep_{i:06d}", s, ON_POLICY, cfg.max_steps, cfg.action_repeat)
            for i, s in enumerate(seeds)]
    return _collect_on_policy(cfg, jobs, spec, bundle_bytes, 0.0, store, workers,
                              f"validate round {round_index} {tag} (recorded as data)", use_cache, show_progress,
                              ray_address)


def _collect_on_policy(cfg: CollectConfig, jobs: list[EpisodeJob], spec: dict, bundle_bytes: bytes, noise: float,
                       store: Path, workers: int, label: str, use_cache: bool, show_progress: bool,
                       ray_address: str | None) -> Collected:
    import hashlib

    spec = {**collection_spec(cfg), **spec, "bundle_sha256": hashlib.sha256(bundle_bytes).hexdigest()}
    dataset, nodes = ds.collect_jobs(_collect_one, jobs, store, spec, workers, label, use_cache, show_progress,
                                     ray_address, initializer=_init_on_policy,
                                     initargs=(OnPolicyFactory(bundle_bytes, noise),))
    return Collected(**vars(dataset), nodes=nodes)
