"""evaluate: a policy in the real simulator over N seeded episodes, in parallel processes or on Ray."""
from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dreamops.sim.carracing import CarRacing
from dreamops.sim.policies import BASELINE_POLICIES
from dreamops.sim.rollout import Episode, Policy, count_off_track_events, play_episode
from dreamops.tasks.common import VersionReport
from dreamops.tasks.parallel import map_jobs

_worker_policy: Policy | None = None
_worker_env: CarRacing | None = None


def _init_worker(factory: Callable[[], Policy], max_steps: int) -> None:
    global _worker_policy, _worker_env
    _worker_policy, _worker_env = factory(), CarRacing(max_steps=max_steps)


def _run_seed(seed: int) -> Episode:
    return play_episode(_worker_env, _worker_policy, seed, keep_frames=False)


@dataclass
class EvalReport:
    policy: str
    seeds: list[int]
    rewards: list[float]
    lengths: list[int]
    off_track_events: list[int]
    episodes: list[Episode] = field(repr=False, default_factory=list)
    nodes: list[str] = field(default_factory=list)  # the node that played each seed

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
             show_progress: bool = True, ray_address: str | None = None) -> EvalReport:
    """Play one episode per seed in `workers` processes, or on the Ray cluster at `ray_address`;
    `factory` (picklable) builds the policy inside each worker (BundlePolicyFactory carries the
    weights themselves, so a node needs none of this machine's files)."""
    if not seeds:
        raise ValueError("evaluate needs at least one seed")
    done = map_jobs(_run_seed, seeds, min(workers, len(seeds)), f"evaluate {name} (real env)",
                    initializer=_init_worker, initargs=(factory, max_steps), show_progress=show_progress,
                    ray_address=ray_address)
    episodes = [d.result for d in done]
    return EvalReport(name, list(seeds), [e.total_reward for e in episodes], [e.length for e in episodes],
                      [count_off_track_events(e.on_track) for e in episodes], episodes, [d.node for d in done])


def report_from_episodes(name: str, data) -> EvalReport:
    """The evaluation report of recorded on-policy episodes (tasks.collect.collect_validation): each
    manifest row's total_reward is the episode's real return. No per-step episodes and no
    off-track counts (the manifest keeps the off-track fraction only)."""
    m = data.manifest
    return EvalReport(name, [int(s) for s in m["seed"]], [float(r) for r in m["total_reward"]],
                      [int(f) for f in m["env_frames"]], [], [], ["data"] * len(m))


def baseline_code_hash() -> str:
    """What a baseline's returns depend on: the simulator wrapper, the policies and the rollout."""
    import dreamops.sim.carracing
    import dreamops.sim.policies
    import dreamops.sim.rollout
    from dreamops.tasks.dataset import source_hash

    return source_hash(dreamops.sim.carracing, dreamops.sim.policies, dreamops.sim.rollout)


def evaluate_baseline(name: str, seeds: list[int], max_steps: int, workers: int, cache_dir: Path | None,
                      show_progress: bool = True, ray_address: str | None = None) -> EvalReport:
    """A baseline policy's evaluation, cached under `cache_dir` by (policy, seeds, max_steps, code):
    the baselines are deterministic per seed, so a retrain on the same evaluation seeds replays
    nothing. The cached report has no per-step episodes (nothing downstream reads a baseline's)."""
    key = hashlib.sha256(json.dumps([name, list(seeds), max_steps, baseline_code_hash()]).encode()).hexdigest()[:16]
    path = None if cache_dir is None else Path(cache_dir) / f"{name}-{key}.json"
    if path is not None and path.exists():
        try:
            c = json.loads(path.read_text())
            return EvalReport(name, list(seeds), c["rewards"], c["lengths"], c["off_track_events"], [],
                              ["cache"] * len(seeds))
        except (ValueError, KeyError, TypeError):
            pass  # an unreadable cache entry is replayed and rewritten
    report = evaluate(baseline_factory(name), name, seeds, max_steps, workers, show_progress, ray_address)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")  # written whole, then renamed: a killed run leaves no half file
        tmp.write_text(json.dumps({"policy": name, "seeds": list(seeds), "max_steps": max_steps,
                                   "rewards": report.rewards, "lengths": report.lengths,
                                   "off_track_events": report.off_track_events}))
        tmp.replace(path)
    return report


def baseline_factory(name: str) -> Callable[[], Policy]:
    if name not in BASELINE_POLICIES:
        raise ValueError(f"unknown baseline {name!r}; choose one of {', '.join(BASELINE_POLICIES)}")
    return BASELINE_POLICIES[name]


def evaluate_version(source: Path | str, name: str, seeds: list[int], max_steps: int | None, workers: int,
                     ray_address: str | None = None, show_progress: bool = True) -> VersionReport:
    """`dreamops evaluate` for carracing-vmc: a registered version's bundle file, or a baseline by
    name, over one real episode per seed (1000 frames unless max_steps says otherwise)."""
    from dreamops.models.bundle import BundlePolicyFactory
    from dreamops.tasks.failures import analyze_failures

    factory = baseline_factory(source) if isinstance(source, str) else BundlePolicyFactory(str(source))
    report = evaluate(factory, name, seeds, max_steps or 1000, workers, show_progress, ray_address)
    summary = report.summary()
    lines = [f"{name}: mean return {report.mean:.1f} +/- {report.std:.1f} over {len(seeds)} episodes "
             f"(seeds {seeds[0]}..{seeds[-1]}), mean length {summary['mean_length']:.0f}, "
             f"off-track events {summary['off_track_events']}"]
    if not isinstance(source, str):
        summary["failures"] = analyze_failures(report.episodes)["counts"]
        lines.append(f"  failures: {summary['failures']}")
    return VersionReport(lines, summary)
