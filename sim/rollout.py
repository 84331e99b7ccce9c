"""Play one episode of a policy in a simulator (tasks.parallel runs many at once)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from dreamops.sim.carracing import CarRacing


class Policy(Protocol):
    """reset(seed), then act(frame) once per simulator step. Optional attributes the rollout reads:
    `action_repeat` (the policy looks only at every n-th frame it is given, from the first, and
    repeats its action in between) and `uses_frames` (False: it never looks at them)."""
    def reset(self, seed: int) -> None: ...
    def act(self, frame: np.ndarray) -> np.ndarray: ...


def frame_needed(policy: Policy, call: int) -> bool:
    """Does the policy look at the frame passed to its `call`-th act() of an episode (from 0)?"""
    if not getattr(policy, "uses_frames", True):
        return False
    return call % getattr(policy, "action_repeat", 1) == 0


@dataclass
class Episode:
    """One episode; index t: frame seen, action taken, reward and done that followed."""
    seed: int
    obs: np.ndarray  # uint8 [T, 64, 64, 3]
    actions: np.ndarray  # float32 [T, 3]
    rewards: np.ndarray  # float32 [T]
    dones: np.ndarray  # bool [T]: terminated (lap finished or left the playfield)
    on_track: np.ndarray  # bool [T] after the step
    speed: np.ndarray  # float32 [T] after the step
    extras: dict[str, np.ndarray] = field(default_factory=dict)  # policy diagnostics per step
    env_frames: int = 0  # simulator frames played (> length when actions repeat)

    @property
    def length(self) -> int:
        return int(self.actions.shape[0])

    @property
    def total_reward(self) -> float:
        return float(self.rewards.sum())


def play_episode(env: CarRacing, policy: Policy, seed: int, keep_frames: bool = True) -> Episode:
    """Frames nobody will see (not kept, not looked at by the policy) are not drawn: the same
    episode, several times faster for a policy with a frame skip."""
    frame = env.reset(seed)
    policy.reset(seed)
    obs, actions, rewards, dones, on_track, speed = [], [], [], [], [], []
    extras: dict[str, list] = {}
    while True:
        action = np.asarray(policy.act(frame), dtype=np.float32)
        if keep_frames:
            obs.append(frame)
        for key, value in getattr(policy, "diagnostics", dict)().items():
            extras.setdefault(key, []).append(value)
        render = keep_frames or frame_needed(policy, len(actions) + 1)
        frame, reward, terminated, truncated = env.step(action, render=render)
        info = env.info()
        actions.append(action)
        rewards.append(reward)
        dones.append(terminated)
        on_track.append(info.on_track)
        speed.append(info.speed)
        if terminated or truncated:
            break
    return Episode(
        seed=seed,
        obs=np.stack(obs) if keep_frames else np.zeros((0, 64, 64, 3), np.uint8),
        actions=np.stack(actions).astype(np.float32),
        rewards=np.asarray(rewards, np.float32),
        dones=np.asarray(dones, bool),
        on_track=np.asarray(on_track, bool),
        speed=np.asarray(speed, np.float32),
        extras={k: np.asarray(v, np.float32) for k, v in extras.items()},
        env_frames=env.frames,
    )


def count_off_track_events(on_track: np.ndarray) -> int:
    """Times the car went from touching the track to all four wheels on grass."""
    on = np.concatenate([[True], on_track.astype(bool)])
    return int(np.sum(on[:-1] & ~on[1:]))
