"""pick-vla's robot in the simulated fleet: one PyBullet pick cell and the version's policy.

What it reports per episode: success as the reward (1 or 0: the canary judges pick versions by a
two-proportion test of success), the collision (0 or 1), the steps, the latency of each chunk
generation in the playing thread's CPU time (simulated robots share a few cores), a sample of the
model's scene features (what its image path read from the camera, before the arm's joint angles and
the instruction join it: the drift checks' latents, ObservationEncoder.embed_and_scene), and the
success head's predicted probability that the episode succeeded (the drift checks compare it with
the observed success).
Its upload (validation.data_gate.PICK_UPLOAD_SCHEMA) is what the cell's sensors gave: camera,
depth, proprioception, the gripper's grasp signal, the actions and the instruction.
"""
from __future__ import annotations

import time
from datetime import datetime, timezone

import numpy as np
import torch

from dreamops.models.pick_vla import PickVLA, PickVLAPolicy
from dreamops.sim.pick import PickCell, PickConfig
from dreamops.tasks.robot_episode import EpisodeMeasures, MeasuredEpisode, RobotSetup, check_fault

# scenario -> (objects, light): "novel" objects and "dim" light are the shifted scenes
SCENES = {"day": ("seen", "default"), "novel": ("novel", "default"), "dim": ("seen", "dim")}


class BrokenGripper:
    """Closes the gripper and drives straight down into the tray, whatever the model says: the
    fingertips press on the floor within ~10 steps (a collision). The model still generates every
    chunk, so the version's latency is what is reported."""

    ACTION = np.array([0.0, 0.0, -1.0, 1.0], np.float32)

    def __init__(self, policy: PickVLAPolicy):
        self.policy = policy

    @property
    def queue(self) -> list:
        return self.policy.queue

    def reset(self, instruction: str, seed: int | None = None) -> None:
        self.policy.reset(instruction, seed)

    def act(self, obs: dict) -> np.ndarray:
        self.policy.act(obs)
        return self.ACTION.copy()


FAULTS = {"broken_controller": BrokenGripper}


class PickRobot:
    SCENARIOS = tuple(SCENES)
    SHIFTED_SCENARIO = "novel"          # what `dreamops drift-eval` plays as the shifted world by default
    EPISODE_STEPS = PickConfig().max_steps   # control steps per episode in drift-eval, by default
    LATENTS = "scene"                   # what the latents are: the encoder's scene features
    FAULTS = FAULTS

    def __init__(self, model: PickVLA, setup: RobotSetup):
        self.model, self.setup = model, setup
        policy = PickVLAPolicy(model)
        self.policy = FAULTS[check_fault(setup.fault, FAULTS)](policy) if setup.fault else policy
        objects, light = SCENES[setup.scenario]
        self.env = PickCell(PickConfig(object_set=objects, lighting=light, max_steps=setup.max_steps))

    def play(self, seed: int) -> MeasuredEpisode:
        obs, info = self.env.reset(seed=seed)
        self.policy.reset(self.env.instruction, seed)
        seconds, frames, actions, rewards, held, collisions, done = [], [], [], [], [], [], False
        while not done:
            generating = not self.policy.queue   # this call generates a chunk; the others pop the queue
            start = time.thread_time()
            action = self.policy.act(obs)
            if generating:
                seconds.append(time.thread_time() - start)
            frames.append(obs)
            actions.append(action)
            obs, reward, terminated, truncated, info = self.env.step(action)
            rewards.append(reward)
            held.append(self.env.target_held())   # the gripper's grasp signal
            collisions.append(info["collision"])   # the arm's contact reflex (a Franka's cartesian_collision)
            done = terminated or truncated
        embeds, scene = self._embed(frames + [obs])   # the observation after the last action too
        p50, p99 = np.percentile(np.asarray(seconds) * 1000.0, [50, 99])
        success_prob = self.model.success_probability(embeds, torch.from_numpy(np.stack(actions).astype(np.float32)))
        measures = EpisodeMeasures(seed=seed, reward=float(info["success"]), collisions=int(info["collided"]),
                                   steps=len(frames), latency_p50_ms=float(p50), latency_p99_ms=float(p99),
                                   residual=None, ended_at=datetime.now(timezone.utc), success_prob=success_prob)
        dones = np.zeros(len(actions), bool)
        dones[-1] = True
        upload = {"obs": np.stack([f["rgb"] for f in frames]), "depth": np.stack([f["depth"] for f in frames]),
                  "proprio": np.stack([f["proprio"] for f in frames]).astype(np.float32),
                  "actions": np.stack(actions).astype(np.float32), "rewards": np.asarray(rewards, np.float32),
                  "dones": dones, "held": np.asarray(held, bool), "collisions": np.asarray(collisions, bool),
                  "instruction": np.array(self.env.instruction, dtype=np.str_)}
        return MeasuredEpisode(None, measures, self._latent_sample(scene[:-1]), arrays=upload)

    @torch.no_grad()
    def _embed(self, frames: list[dict]) -> tuple[torch.Tensor, torch.Tensor]:
        """The model's observation embeddings (what its heads read) and scene features of every
        frame, in batches."""
        parts = [self.model.embed_and_scene(np.stack([f["rgb"] for f in part]), np.stack([f["depth"] for f in part]),
                                            np.stack([f["proprio"] for f in part]), [self.env.instruction] * len(part))
                 for part in (frames[i:i + 64] for i in range(0, len(frames), 64))]
        return torch.cat([e for e, _ in parts]), torch.cat([s for _, s in parts])

    def _latent_sample(self, scene: torch.Tensor) -> np.ndarray:
        """The scene features of frames spread over the episode: the drift checks' latents."""
        n = min(self.setup.latent_sample, len(scene))
        picked = np.unique(np.linspace(0, len(scene) - 1, n).round().astype(int)) if n else np.zeros(0, int)
        return scene[picked].numpy().astype(np.float32).reshape(len(picked), self.model.encoder.scene_dim)

    def close(self) -> None:
        self.env.close()
