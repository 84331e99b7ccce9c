"""pick_dagger: on-policy rounds for pick-vla (DAgger, Ross et al. 2011) -> a dataset of their own.

Round k >= 1 plays round k-1's policy in the cell on seeds no earlier round used. At every state
where the policy asks for a chunk (every `model.execute` steps; every step with
`label_every_step`), the scripted expert, with the privileged state, labels it with the chunk it would execute from there (`expert_chunk`: it resumes
from the state, recovering from misses and wrong grasps). With probability `beta` the expert's
chunk is executed instead of the policy's (the mixture of the DAgger paper; 0 = pure on-policy).

The shards have the demonstrations' arrays (obs[t] is the observation before actions[t], actions
the EXECUTED actions: the world model learns what really happened, failures included) plus
  label_chunks f32 [T, H, 4]: the expert's chunk at the labelled states (zeros elsewhere),
  labelled bool [T]: which states carry a label (the policy's flow loss trains on these only).
"""
from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np

from dreamops.tasks import dataset as ds
from dreamops.tasks.config import _positive
from dreamops.tasks.pick_data import PickDataConfig, demo_spec, pick_episode_result

if TYPE_CHECKING:   # configs import this module: the simulator and torch load where episodes run
    from dreamops.tasks.evaluate_pick import PickPolicyFactory


@dataclass
class DaggerConfig:
    episodes_per_round: int = 200
    """On-policy episodes each round k >= 1 collects (seen objects, new seeds)."""
    beta: float = 0.0
    """Share of chunks the expert executes in rounds >= 1 (0: the policy drives every chunk)."""
    steps: int = 2000
    """Fine-tuning steps per round k >= 1, on all data so far, warm-started from round k-1."""
    lr: float = 5e-4
    """Peak learning rate of a fine-tuning round (warmup, then cosine to 0)."""
    warmup_steps: int = 50
    """Linear warmup steps of a fine-tuning round."""
    label_every_step: bool = False
    """Label every visited state, not only those where the policy asks for a chunk (every
    `model.execute` steps): `execute` times the labels from the same episodes, ~55 ms each."""
    retreat_first: bool = False
    """The labelling expert lifts straight up to its pre-grasp height before it moves sideways, from
    a state low and off the target (ExpertConfig.retreat_first); the demonstrations are unchanged."""
    seed: int = 300_000
    """Seed of round 1's first episode; round k starts at seed + (k - 1) * episodes_per_round (apart
    from the demonstrations' seeds and the evaluation seeds 100000+)."""

    def validate(self) -> None:
        _positive(self, "episodes_per_round", "steps", "lr")
        if not 0.0 <= self.beta <= 1.0:
            raise ValueError(f"dagger.beta must be in [0, 1], got {self.beta!r}")
        if self.warmup_steps < 0 or self.seed < 0:
            raise ValueError("dagger.warmup_steps and dagger.seed must be >= 0")


@dataclass(frozen=True)
class DaggerJob:
    episode_id: str
    seed: int
    round_index: int
    beta: float
    data: PickDataConfig
    label_every_step: bool = False
    retreat_first: bool = False


_policy = None  # the driver in this worker (evaluate_pick.PickPolicyFactory builds it)


def _init(factory) -> None:
    global _policy
    _policy = factory()


def _dagger_one(job: DaggerJob) -> ds.EpisodeJobResult:
    """One on-policy episode, every chunk query labelled by the expert -> (row, frames, shard)."""
    from dreamops.sim.pick import PickCell, PickConfig
    from dreamops.sim.pick_expert import ExpertConfig, ScriptedExpert, expert_chunk

    c = job.data
    env = PickCell(PickConfig(object_set=c.object_set, max_steps=c.max_steps, min_objects=c.min_objects,
                              max_objects=c.max_objects))
    try:
        obs, info = env.reset(seed=job.seed)
        labeller = ScriptedExpert(ExpertConfig(noise=0.0, retreat_first=job.retreat_first))
        labeller.reset(env, job.seed)
        _policy.reset(env.instruction, job.seed)
        rng = np.random.default_rng([job.seed, job.round_index, 29])
        horizon, execute = _policy.model.arch.horizon, _policy.execute
        keep: dict[str, list] = {k: [] for k in ("obs", "depth", "proprio", "target_pos", "actions", "rewards",
                                                 "held", "collisions", "label_chunks", "labelled")}
        queue: list[np.ndarray] = []
        expert_chunks = 0
        done = False
        while not done:
            query = not queue   # the policy asks for a chunk here
            labelled = query or job.label_every_step
            if labelled:   # the expert labels the state with the chunk it would execute from here
                label = expert_chunk(env, horizon, labeller)
            if query:
                if rng.random() < job.beta:
                    queue, expert_chunks = list(label[:execute]), expert_chunks + 1
                else:
                    queue = list(_policy.plan(obs)[:execute])
            keep["obs"].append(obs["rgb"])
            keep["depth"].append(obs["depth"])
            keep["proprio"].append(obs["proprio"])
            keep["target_pos"].append(env.object_position(env.target_index).astype(np.float32))
            keep["label_chunks"].append(label if labelled else np.zeros((horizon, 4), np.float32))
            keep["labelled"].append(labelled)
            a = np.asarray(queue.pop(0), np.float32)
            obs, reward, term, trunc, info = env.step(a)
            keep["actions"].append(a)
            keep["rewards"].append(reward)
            keep["held"].append(env.target_held())
            keep["collisions"].append(info["collision"])
            done = term or trunc
        instruction = env.instruction
    finally:
        env.close()
    arrays = {k: np.stack(v) for k, v in keep.items()}
    arrays["rewards"] = arrays["rewards"].astype(np.float32)
    arrays["dones"] = np.zeros(len(arrays["actions"]), bool)
    arrays["dones"][-1] = True
    arrays["instruction"] = np.array(instruction, dtype=np.str_)
    return pick_episode_result(job.episode_id, arrays, {
        "seed": job.seed, "length": len(arrays["actions"]), "success": bool(info["success"]),
        "collision": bool(info["collided"]), "cycle_time": float(info["cycle_time"]), "n_objects": info["n_objects"],
        "instruction": instruction, "target_colour": info["target_colour"], "target_shape": info["target_shape"],
        "regrasps": 0, "round": job.round_index, "expert_chunks": expert_chunks,
        "labels": int(arrays["labelled"].sum())})


def dagger_jobs(data: PickDataConfig, cfg: DaggerConfig, round_index: int) -> list[DaggerJob]:
    first = cfg.seed + (round_index - 1) * cfg.episodes_per_round
    return [DaggerJob(f"r{round_index:02d}_ep_{i:06d}", first + i, round_index, cfg.beta, data, cfg.label_every_step,
                      cfg.retreat_first)
            for i in range(cfg.episodes_per_round)]


def collect_dagger_round(data: PickDataConfig, cfg: DaggerConfig, round_index: int, policy: PickPolicyFactory,
                         store, workers: int, use_cache: bool = True, show_progress: bool = True,
                         ray_address: str | None = None) -> ds.Dataset:
    """Round `round_index` (>= 1)'s labelled on-policy episodes, driven by `policy` (round k-1's
    model, without a planner), as a dataset of their own (merged with the data so far by the flow).
    Cached by spec, which includes the policy's weights."""
    import dreamops.tasks.pick_dagger

    if round_index < 1:
        raise ValueError(f"round 0 is the demonstrations (collect_demos); got round {round_index}")
    if policy.planner is not None:
        raise ValueError("DAgger rounds are driven by the policy alone (no planner)")
    spec = {**demo_spec(data), "round": round_index, "dagger": asdict(cfg),
            "dagger_code": ds.source_hash(dreamops.tasks.pick_dagger),
            "policy_sha256": hashlib.sha256(policy.data).hexdigest()}
    dataset, _ = ds.collect_jobs(_dagger_one, dagger_jobs(data, cfg, round_index), store, spec, workers,
                                 f"collect pick round {round_index} (DAgger)", use_cache, show_progress, ray_address,
                                 initializer=_init, initargs=(policy,))
    return dataset
