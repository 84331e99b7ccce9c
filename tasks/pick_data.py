"""pick_data: scripted-expert demonstrations in the PyBullet pick cell -> a dataset in the store.

One shard per episode (obs[t] is the observation before actions[t]):
  obs uint8 [T,64,64,3] (rgb), depth f32 [T,64,64,1], proprio f32 [T,15], actions f32 [T,4],
  rewards f32 [T] (1.0 at the success step), dones bool [T] (True at the last step),
  held bool [T] (after step t the target is between both fingers), collisions bool [T] (a collision,
  sim.pick's, during step t: what the world model's collision head learns), target_pos f32 [T,3] (the target's
  centre in metres, world frame, at obs t: a training label only), instruction (0-d unicode array).
Failed episodes are kept (they hold the expert's recoveries); the manifest says which succeeded.
"""
from __future__ import annotations

import io
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from dreamops.tasks import dataset as ds
from dreamops.validation.data_gate import PICK_SCHEMA, DataGateReport, DataGateThresholds, frame_summaries, run_data_gate

ENV_ID = "PickCell"
# The simulator (pybullet) is imported where it runs, not here: configs import this module.


@dataclass
class PickDataConfig:
    episodes: int = 600
    """Demonstration episodes to collect."""
    object_set: str = "seen"
    """Object set the scenes draw from: `seen` (training) or `novel` (held-out combos and shapes)."""
    seed: int = 0
    """Seed of the first episode; episode i uses seed + i (scene, instruction and expert noise)."""
    max_steps: int = 80
    """Control steps per episode (10 Hz) before it is cut off."""
    expert_noise: float = 0.1
    """Std of the Gaussian noise on the expert's normalised xyz action (0.1 = 3 mm per step)."""
    min_objects: int = 1
    """Fewest objects in a scene."""
    max_objects: int = 6
    """Most objects in a scene (the cell holds at most 6)."""

    def validate(self) -> None:
        for name in ("episodes", "max_steps", "min_objects", "max_objects"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"data.{name} must be a positive integer, got {value!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"data.seed must be a non-negative integer, got {self.seed!r}")
        if self.object_set not in ("seen", "novel"):
            raise ValueError(f"data.object_set must be 'seen' or 'novel', got {self.object_set!r}")
        if not self.expert_noise >= 0:
            raise ValueError(f"data.expert_noise must be >= 0, got {self.expert_noise!r}")
        if self.max_objects > 6:
            raise ValueError(f"data.max_objects must be at most 6, got {self.max_objects!r}")
        if self.min_objects > self.max_objects:
            raise ValueError(f"data.min_objects ({self.min_objects}) must not exceed data.max_objects "
                             f"({self.max_objects})")


@dataclass(frozen=True)
class DemoJob:
    episode_id: str
    seed: int
    cfg: PickDataConfig


def _demo_one(job: DemoJob) -> ds.EpisodeJobResult:
    """One expert episode -> (manifest row, frame summaries, compressed shard)."""
    from dreamops.sim.pick_expert import ExpertConfig, play_episodes

    c = job.cfg
    (r,) = play_episodes(1, c.object_set, seed=job.seed, expert=ExpertConfig(noise=c.expert_noise), record=True,
                         max_steps=c.max_steps, min_objects=c.min_objects, max_objects=c.max_objects)
    length = len(r.actions)
    dones = np.zeros(length, bool)
    dones[-1] = True
    arrays = {"obs": r.frames["rgb"], "depth": r.frames["depth"], "proprio": r.frames["proprio"],
              "actions": r.actions.astype(np.float32), "rewards": r.rewards, "dones": dones, "held": r.held,
              "collisions": r.collisions, "target_pos": r.frames["target_pos"],
              "instruction": np.array(r.instruction, dtype=np.str_)}
    return pick_episode_result(job.episode_id, arrays, {
        "seed": job.seed, "length": length, "success": r.success, "collision": r.collision,
        "cycle_time": r.cycle_time, "n_objects": r.n_objects, "instruction": r.instruction,
        "target_colour": r.target_colour, "target_shape": r.target_shape, "regrasps": r.regrasps})


def pick_episode_result(episode_id: str, arrays: dict[str, np.ndarray], row: dict) -> ds.EpisodeJobResult:
    """One pick episode's arrays -> (manifest row with shard and hash, frame summaries, compressed
    shard): the same for demonstrations and DAgger episodes."""
    shard, digest = f"{episode_id}.npz", ds.arrays_hash(arrays)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    frames = frame_summaries(arrays["obs"], arrays["actions"], arrays["rewards"], schema=PICK_SCHEMA,
                             extras={"depth": arrays["depth"]})
    frames.insert(0, "episode_id", episode_id)
    return {"episode_id": episode_id, "shard": shard, "sha256": digest, **row}, frames, buf.getvalue()


def demo_spec(cfg: PickDataConfig) -> dict:
    """What determines the demonstrations; the cache key of `collect_demos`."""
    import dreamops.sim.pick
    import dreamops.sim.pick_expert

    return {"env": ENV_ID, **asdict(cfg), "code": ds.source_hash(dreamops.sim.pick, dreamops.sim.pick_expert)}


def collect_demos(cfg: PickDataConfig, store: Path, workers: int, use_cache: bool = True,
                  show_progress: bool = True, ray_address: str | None = None) -> ds.Dataset:
    """Collect cfg.episodes expert demonstrations in `workers` processes, or on the Ray cluster at
    `ray_address` (the same data either way: episodes are seeded). A dataset with the same spec
    already in the store is reused."""
    cfg.validate()
    jobs = [DemoJob(f"ep_{i:06d}", cfg.seed + i, cfg) for i in range(cfg.episodes)]
    dataset, _ = ds.collect_jobs(_demo_one, jobs, store, demo_spec(cfg), workers, "collect pick demos", use_cache,
                                 show_progress, ray_address)
    return dataset


def validate_demos(path: Path, thresholds: DataGateThresholds, docs_dir: Path | None = None) -> DataGateReport:
    """The data gate with the pick schema (rgb, 4 actions in [-1, 1], depth / proprio / held,
    instruction, depth within the camera's range)."""
    return run_data_gate(path, thresholds, docs_dir, schema=PICK_SCHEMA)


def validate_dataset(path: Path, cfg, docs_dir: Path | None = None) -> DataGateReport:
    """The family's data gate (dreamops.families) for a PickVLAConfig run: `dreamops validate`."""
    return validate_demos(path, cfg.gate.data, docs_dir)

