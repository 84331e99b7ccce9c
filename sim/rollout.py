"""Play episodes, one at a time or many in parallel processes (one simulator per process)."""
from __future__ import annotations

import multiprocessing as mp
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from dreamops.sim.carracing import CarRacing


class Policy(Protocol):
    def reset(self, seed: int) -> None: ...
    def act(self, frame: np.ndarray) -> np.ndarray: ...


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
        frame, reward, terminated, truncated = env.step(action)
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


T = TypeVar("T")
R = TypeVar("R")


def parallel_map(fn: Callable[[T], R], items: Iterable[T], workers: int, desc: str,
                 initializer: Callable[..., Any] | None = None, initargs: tuple = (),
                 show_progress: bool = True) -> list[R]:
    """fn over items in `workers` spawned processes (in-process when workers == 1), results in
    input order, with a progress bar. A failing item raises in the caller."""
    items = list(items)
    results: list[Any] = [None] * len(items)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), disable=not show_progress, transient=False) as progress:
        task = progress.add_task(desc, total=len(items))
        if workers <= 1:
            if initializer:
                initializer(*initargs)
            for i, item in enumerate(items):
                results[i] = fn(item)
                progress.advance(task)
            return results
        with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"),
                                 initializer=initializer, initargs=initargs) as pool:
            futures = {pool.submit(fn, item): i for i, item in enumerate(items)}
            for fut in as_completed(futures):
                results[futures[fut]] = fut.result()
                progress.advance(task)
    return results
