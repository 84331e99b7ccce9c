"""evaluate: a policy in the real simulator over N seeded episodes, in parallel processes."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from dreamops.sim.carracing import CarRacing
from dreamops.sim.policies import BASELINE_POLICIES
from dreamops.sim.rollout import Episode, Policy, parallel_map, play_episode

_worker_policy: Policy | None = None
_worker_env: CarRacing | None = None


def _init_worker(factory: Callable[[], Policy], max_steps: int) -> None:
    global _worker_policy, _worker_env
    _worker_policy, _worker_env = factory(), CarRacing(max_steps=max_steps)


def _run_seed(seed: int) -> Episode:
    return play_episode(_worker_env, _worker_policy, seed, keep_frames=False)


def count_off_track_events(on_track: np.ndarray) -> int:
    """Times the car went from touching the track to all four wheels on grass."""
    on = np.concatenate([[True], on_track.astype(bool)])
    return int(np.sum(on[:-1] & ~on[1:]))


@dataclass
class EvalReport:
    policy: str
    seeds: list[int]
    rewards: list[float]
    lengths: list[int]
    off_track_events: list[int]
    episodes: list[Episode] = field(repr=False, default_factory=list)

    @property
    def mean(self) -> float:
        return float(np.mean(self.rewards))

    @property
    def std(self) -> float:
        return float(np.std(self.rewards))

    def summary(self) -> dict:
        return {"policy": self.policy, "episodes": len(self.rewards), "mean_reward": self.mean,
                "std_reward": self.std, "min_reward": float(np.min(self.rewards)),
                "max_reward": float(np.max(self.rewards)), "mean_length": float(np.mean(self.lengths)),
                "off_track_events": int(np.sum(self.off_track_events)), "seeds": self.seeds,
                "rewards": [round(r, 2) for r in self.rewards], "lengths": self.lengths}


def evaluate(factory: Callable[[], Policy], name: str, seeds: list[int], max_steps: int, workers: int,
             show_progress: bool = True) -> EvalReport:
    """Play one episode per seed; `factory` (picklable) builds the policy inside each worker."""
    if not seeds:
        raise ValueError("evaluate needs at least one seed")
    episodes = parallel_map(_run_seed, seeds, min(workers, len(seeds)), f"evaluate {name} (real env)",
                            initializer=_init_worker, initargs=(factory, max_steps), show_progress=show_progress)
    return EvalReport(name, list(seeds), [e.total_reward for e in episodes], [e.length for e in episodes],
                      [count_off_track_events(e.on_track) for e in episodes], episodes)


def baseline_factory(name: str) -> Callable[[], Policy]:
    if name not in BASELINE_POLICIES:
        raise ValueError(f"unknown baseline {name!r}; choose one of {', '.join(BASELINE_POLICIES)}")
    return BASELINE_POLICIES[name]
