"""How often the drift decision fires: on held-out windows of the simulator's normal (day) world,
where every alarm is false, and on windows of a shifted world (carracing-vmc's night, pick-vla's
novel objects), where every window should fire. The telemetry is played for real by the family's
fleet robot (Family.robot) with the registered version, episode by episode, exactly as the fleet
reports it; the windows are then judged by the same `judge` and the family's signals that the
drift flow uses. Engineers run this before they trust a model's drift thresholds
(`dreamops drift-eval`).
"""
from __future__ import annotations

import io
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from dreamops.families import family
from dreamops.tasks.drift import FamilySignals, judge
from dreamops.tasks.parallel import map_jobs
from dreamops.tasks.robot_episode import RobotSetup

# seeds far from training collection's (which count up from the run's seed): held-out tracks
DAY_SEED_BASE, SHIFTED_SEED_BASE = 7_000_000, 8_000_000


@dataclass(frozen=True)
class DriftEvalConfig:
    baseline_episodes: int = 200  # the normal period every window is compared with
    window_episodes: int = 20  # one drift check's window
    holdout_windows: int = 10  # normal windows, after the baseline: any alarm is false
    shifted_windows: int = 5  # windows of the shifted scenario: every one should fire
    shifted_scenario: str = "night"
    max_steps: int = 300  # per episode, as the fleet plays them (simulator frames or control steps)
    latent_sample: int = 8
    min_reward: float = 0.0
    alpha: float = 0.05
    permutations: int = 200
    required_signals: int = 2
    workers: int = 2

    def __post_init__(self) -> None:
        for name in ("baseline_episodes", "window_episodes", "holdout_windows", "shifted_windows", "max_steps",
                     "workers", "permutations"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 1 <= self.required_signals <= 3:
            raise ValueError(f"required_signals must be 1, 2 or 3, got {self.required_signals}")


class RobotFactory:
    """Picklable: a family's fleet robot with one registered version (the weights file's bytes, so
    a worker needs no access to this machine's files), built inside a worker per scenario."""

    def __init__(self, agent: str, bundle_path: str | Path):
        self.agent, self.data = agent, Path(bundle_path).read_bytes()
        family(agent).require("drift_eval")

    def robot(self, scenario: str, max_steps: int, latent_sample: int):
        fam = family(self.agent)
        return fam.load("robot")(fam.load("bundle").load(io.BytesIO(self.data)),
                                 RobotSetup(max_steps, scenario, latent_sample))


_worker: tuple[RobotFactory, dict, int, int] | None = None


def _init_worker(factory: RobotFactory, max_steps: int, latent_sample: int) -> None:
    global _worker
    torch.set_num_threads(1)  # one episode per core
    _worker = (factory, {}, max_steps, latent_sample)


def _play(job: tuple[str, int]) -> dict:
    scenario, seed = job
    factory, robots, max_steps, latent_sample = _worker
    if scenario not in robots:
        robots[scenario] = factory.robot(scenario, max_steps, latent_sample)
    run = robots[scenario].play(seed)
    m = run.measures
    return {"seed": seed, "scenario": scenario, "reward": m.reward, "residual": m.residual,
            "success_prob": m.success_prob, "collisions": m.collisions, "latents": run.latents.tolist()}


class TelemetryCache:
    """Played episodes of one version, kept by (scenario, seed) in a parquet file: a re-run with
    more windows or other thresholds plays only the episodes it has not played yet."""

    def __init__(self, folder: Path | None, version_key: str):
        self.path = folder / f"{version_key}.parquet" if folder else None
        self.frame = pd.DataFrame()
        if self.path and self.path.exists():
            self.frame = pd.read_parquet(self.path)
            # parquet gives back arrays of arrays; telemetry rows hold lists of latent vectors
            self.frame["latents"] = [np.stack(z).tolist() if len(z) else [] for z in self.frame["latents"]]

    def get(self, scenario: str, seeds: list[int]) -> tuple[pd.DataFrame, list[int]]:
        """(the cached rows of these seeds, the seeds still to play)."""
        if self.frame.empty:
            return self.frame, list(seeds)
        hit = self.frame[(self.frame["scenario"] == scenario) & self.frame["seed"].isin(seeds)]
        return hit, sorted(set(seeds) - set(hit["seed"]))

    def add(self, rows: pd.DataFrame) -> None:
        self.frame = pd.concat([self.frame, rows], ignore_index=True)
        if self.path:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.frame.to_parquet(self.path)


def play_telemetry(factory: RobotFactory, scenario: str, seeds: list[int], max_steps: int,
                   latent_sample: int, workers: int, cache: TelemetryCache | None = None,
                   show_progress: bool = True) -> pd.DataFrame:
    """One telemetry row per episode (telemetry()'s columns), one episode per seed, played on
    `workers` processes; the result does not depend on the number of workers."""
    cache = cache or TelemetryCache(None, "")
    cached, todo = cache.get(scenario, seeds)
    if todo:
        done = map_jobs(_play, [(scenario, s) for s in todo], min(workers, len(todo)), f"drift-eval {scenario}",
                        initializer=_init_worker, initargs=(factory, max_steps, latent_sample),
                        show_progress=show_progress)
        cache.add(pd.DataFrame([d.result for d in done]))
        cached, _ = cache.get(scenario, seeds)
    return cached.sort_values("seed", kind="stable").reset_index(drop=True)


@dataclass(frozen=True)
class WindowVerdict:
    kind: str  # "holdout" or "shifted"
    index: int
    drift: bool
    fired: list[str]
    figures: dict[str, float | None]


def judge_windows(base: pd.DataFrame, windows: list[pd.DataFrame], kind: str, reference: np.ndarray,
                  config: DriftEvalConfig, family_signals: FamilySignals) -> list[WindowVerdict]:
    verdicts = []
    for i, window in enumerate(windows):
        judgement = judge(base, window, reference, config.min_reward, config.alpha, config.permutations, seed=i,
                          required=config.required_signals, family_signals=family_signals)
        decision, evidently = judgement.decision, judgement.evidently
        verdicts.append(WindowVerdict(kind, i, decision.drift, decision.fired + ["evidently"] * evidently.fired,
                                      {s.name: s.figure for s in [*decision.signals, evidently]}))
    return verdicts


def split_windows(frame: pd.DataFrame, size: int) -> list[pd.DataFrame]:
    return [frame.iloc[i:i + size] for i in range(0, len(frame) - size + 1, size)]


def evaluate(factory: RobotFactory, reference: np.ndarray, config: DriftEvalConfig,
             cache: TelemetryCache | None = None, show_progress: bool = True) -> dict:
    """Play the baseline, the held-out windows and the shifted windows; judge every window."""
    n_day = config.baseline_episodes + config.holdout_windows * config.window_episodes
    day = play_telemetry(factory, "day", list(range(DAY_SEED_BASE, DAY_SEED_BASE + n_day)), config.max_steps,
                         config.latent_sample, config.workers, cache, show_progress)
    n_shifted = config.shifted_windows * config.window_episodes
    shifted = play_telemetry(factory, config.shifted_scenario,
                             list(range(SHIFTED_SEED_BASE, SHIFTED_SEED_BASE + n_shifted)), config.max_steps,
                             config.latent_sample, config.workers, cache, show_progress)
    base = day.iloc[:config.baseline_episodes]
    signals = family(factory.agent).load("drift_signals")
    verdicts = (judge_windows(base, split_windows(day.iloc[config.baseline_episodes:], config.window_episodes),
                              "holdout", reference, config, signals)
                + judge_windows(base, split_windows(shifted, config.window_episodes), "shifted", reference, config,
                                signals))
    return summarize(verdicts, day, shifted, config)


def _rate(verdicts: list[WindowVerdict], kind: str, signal: str | None = None) -> float:
    chosen = [v for v in verdicts if v.kind == kind]
    hits = [v.drift if signal is None else signal in v.fired for v in chosen]
    return float(np.mean(hits)) if hits else float("nan")


def _describe(frame: pd.DataFrame) -> dict:
    """Mean and std of the reward and of what the family reports besides (residual, success_prob)."""
    out: dict = {"episodes": len(frame)}
    for name in ("reward", "residual", "success_prob"):
        values = pd.to_numeric(frame[name], errors="coerce") if name in frame else pd.Series(dtype=float)
        if values.notna().any():
            out |= {f"{name}_mean": float(values.mean()), f"{name}_std": float(values.std())}
    return out


def summarize(verdicts: list[WindowVerdict], day: pd.DataFrame, shifted: pd.DataFrame,
              config: DriftEvalConfig) -> dict:
    signals = [*dict.fromkeys(name for v in verdicts for name in v.figures)]  # the family's, in judge's order
    return {
        "config": asdict(config),
        "false_alarm_rate": _rate(verdicts, "holdout"),
        "detection_rate": _rate(verdicts, "shifted"),
        "signal_rates": {kind: {s: _rate(verdicts, kind, s) for s in signals} for kind in ("holdout", "shifted")},
        "day": _describe(day.iloc[:config.baseline_episodes]),
        "holdout": _describe(day.iloc[config.baseline_episodes:]),
        config.shifted_scenario: _describe(shifted),
        "windows": [asdict(v) for v in verdicts],
    }


def format_summary(summary: dict) -> str:
    c = summary["config"]
    lines = [f"windows of {c['window_episodes']} episodes against a {c['baseline_episodes']}-episode day baseline; "
             f"decision: {c['required_signals']} of 3 signals",
             f"held-out day windows: {c['holdout_windows']}, 2-of-3 fired in {summary['false_alarm_rate']:.0%} "
             f"(false alarms)",
             f"{c['shifted_scenario']} windows: {c['shifted_windows']}, fired in {summary['detection_rate']:.0%}",
             "signal fired in        " + "".join(f"{s:>13}" for s in summary["signal_rates"]["holdout"])]
    for kind, rates in summary["signal_rates"].items():
        lines.append(f"  {kind:<21}" + "".join(f"{r:>13.0%}" for r in rates.values()))
    for name in ("day", "holdout", c["shifted_scenario"]):
        d = summary[name]
        figures = "   ".join(f"{k} {d[k + '_mean']:.3f} ± {d[k + '_std']:.3f}" for k in ("reward", "residual", "success_prob")
                             if k + "_mean" in d)
        lines.append(f"{name:<8} {figures}   ({d['episodes']} episodes)")
    return "\n".join(lines)
