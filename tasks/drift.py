"""drift: the fleet's telemetry of one warehouse -> the three signals -> the two-of-three decision.

The latents' MMD test is every family's; the other two signals are the family's own
(`Family.drift_signals`): the M residual and the reward for carracing-vmc, the success head's
calibration and the success rate for pick-vla."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import sqlalchemy as sa
import torch

from dreamops.db import TelemetryEpisode, session_factory
from dreamops.validation.drift.mmd import mmd_test
from dreamops.validation.drift.report import evidently_report
from dreamops.validation.drift.signals import (DriftDecision, SignalResult, calibration_signal, decide, mmd_signal,
                                               performance_signal, residual_signal, success_signal)

MIN_REFERENCE_LATENTS = 200
# measured with `dreamops drift-eval` (README): against 100 baseline episodes the reward CUSUM fired
# in 2 of 20 held-out windows, against 200 in none of 15
MIN_BASELINE_EPISODES = 200
MMD_MAX_EPISODES = 400  # per side: 3,200 latents (bench_mmd: 5,000 a side take 0.6-1.2 s)
BASELINE_MAX_EPISODES = 5000  # the latest episodes of the baseline period that are read
RECENT_MAX_EPISODES = 2000  # the latest episodes of the window (200 robots x 4 h are ~48,000)

TELEMETRY_COLUMNS = ["ended_at", "reward", "residual", "success_prob", "collisions", "latents"]


@dataclass
class DriftWindow:
    """What one check looks at: `recent` is the window judged, `baseline` the time before it."""
    warehouse_id: str
    version: str
    now: datetime
    window: timedelta
    baseline: timedelta
    model: str = "carracing-vmc"   # the registered model `version` is of


def telemetry(database_url: str, warehouse_id: str, version: str, since: datetime, until: datetime,
              limit: int | None = None, model: str = "carracing-vmc") -> pd.DataFrame:
    """Episodes of [since, until) in time order; with `limit`, only the latest `limit` of them (a
    30-day baseline of 200 robots is millions of episodes: the latest few thousand describe it)."""
    with session_factory(database_url)() as session:
        rows = list(session.scalars(sa.select(TelemetryEpisode).where(
            TelemetryEpisode.warehouse_id == warehouse_id, TelemetryEpisode.model == model,
            TelemetryEpisode.version == version,
            TelemetryEpisode.ended_at >= since, TelemetryEpisode.ended_at < until)
            .order_by(TelemetryEpisode.ended_at.desc()).limit(limit)))[::-1]
        return pd.DataFrame([{"ended_at": r.ended_at, "reward": r.reward, "residual": r.residual,
                              "success_prob": r.success_prob, "collisions": r.collisions, "latents": r.latents or []}
                             for r in rows], columns=TELEMETRY_COLUMNS)


def residual_and_reward_signals(base: pd.DataFrame, recent: pd.DataFrame, min_reward: float) -> list[SignalResult]:
    """carracing-vmc's: M's residual and the episode return (rolling floor and CUSUM)."""
    return [residual_signal(base["residual"].dropna().to_numpy(), recent["residual"].dropna().to_numpy()),
            performance_signal(base["reward"].to_numpy(), recent["reward"].to_numpy(), min_reward)]


def calibration_and_success_signals(base: pd.DataFrame, recent: pd.DataFrame, min_reward: float) -> list[SignalResult]:
    """pick-vla's (reward is success, 1 or 0): the success head's calibration against the observed
    success, and the success rate (floor `min_reward`, Bernoulli CUSUM)."""
    return [calibration_signal(base["success_prob"].to_numpy(float), base["reward"].to_numpy(float),
                               recent["success_prob"].to_numpy(float), recent["reward"].to_numpy(float)),
            success_signal(base["reward"].to_numpy(), recent["reward"].to_numpy(), min_reward)]


FamilySignals = Callable[[pd.DataFrame, pd.DataFrame, float], list[SignalResult]]


def _latents(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """All latents of the frame's episodes, and the episode (row position) each came from."""
    rows, episodes = [], []
    for i, batch in enumerate(frame["latents"]):
        rows.extend(batch)
        episodes.extend([i] * len(batch))
    return np.asarray(rows, np.float32).reshape(len(rows), -1), np.asarray(episodes, np.int64)


@dataclass
class Judgement:
    decision: DriftDecision
    facts: dict
    evidently: SignalResult  # the Evidently report's verdict
    snapshot: object | None  # the Evidently report (save_html), None when there was too little data


def _sample_episodes(frame: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    """At most n whole episodes, drawn at random (the MMD kernel matrix grows with the square)."""
    return frame if len(frame) <= n else frame.sample(n, random_state=seed).sort_index()


def judge(base: pd.DataFrame, recent: pd.DataFrame, version_reference: np.ndarray, min_reward: float,
          alpha: float = 0.05, permutations: int = 100, seed: int = 0, required: int = 2,
          mmd_max_episodes: int = MMD_MAX_EPISODES, min_baseline_episodes: int = MIN_BASELINE_EPISODES,
          family_signals: FamilySignals = residual_and_reward_signals) -> Judgement:
    """The decision on one window of telemetry (`recent`) against the time before it (`base`); both
    frames have telemetry()'s columns. The latent reference is the version's own fleet latents from
    the baseline period when there are enough: the reference stored with the version comes from
    exploration episodes, whose states differ from the deployed policy's. Fleet latents are tested
    episode by episode (a block permutation test): frames of one drive are not independent. The
    other two signals are `family_signals`' (the family's Family.drift_signals)."""
    fleet_reference, reference_episodes = _latents(_sample_episodes(base, mmd_max_episodes, seed))
    current, current_episodes = _latents(_sample_episodes(recent, mmd_max_episodes, seed + 1))
    if len(fleet_reference) >= MIN_REFERENCE_LATENTS:
        reference, reference_source = fleet_reference, "fleet baseline"
        groups = np.concatenate([reference_episodes, current_episodes + reference_episodes.max() + 1])
    else:
        # the stored reference has no episode ids: its rows count as single samples
        reference, reference_source = version_reference, "model version"
        groups = np.concatenate([np.arange(len(reference)), current_episodes + len(reference)])
    signals = []
    if len(current) >= 2 and len(reference) >= 2 and reference.shape[1] != current.shape[1]:
        # a version registered before its family's robots reported other latents (pick-vla's stored
        # observation embeddings; its robots now report scene features): nothing to compare with
        signals.append(SignalResult("latents", False, None, alpha, {
            "reason": f"the {reference_source} reference has {reference.shape[1]} dimensions, the window's latents "
                      f"{current.shape[1]}"}))
    elif len(current) >= 2 and len(reference) >= 2:
        signals.append(mmd_signal(mmd_test(torch.from_numpy(reference), torch.from_numpy(current), permutations,
                                           seed, groups=torch.from_numpy(groups)), alpha))
    judged = family_signals(base, recent, min_reward)
    if len(base) < min_baseline_episodes:  # a short baseline misjudges the spread: no verdict rather than a false one
        why = {"reason": f"baseline has {len(base)} episodes, fewer than {min_baseline_episodes}"}
        judged = [SignalResult(s.name, False, None, None, why) for s in judged]
    signals += judged
    evidently, snapshot = evidently_report(base, recent)
    facts = {"recent_episodes": len(recent), "baseline_episodes": len(base), "recent_latents": len(current),
             "reference_latents": len(reference), "reference_source": reference_source}
    return Judgement(decide(signals, required), facts, evidently, snapshot)


def check(w: DriftWindow, database_url: str, version_reference: np.ndarray, min_reward: float,
          alpha: float = 0.05, permutations: int = 100, seed: int = 0, required: int = 2,
          family_signals: FamilySignals = residual_and_reward_signals) -> Judgement:
    """judge() on the warehouse's telemetry of the window and of the baseline period before it."""
    recent = telemetry(database_url, w.warehouse_id, w.version, w.now - w.window, w.now, limit=RECENT_MAX_EPISODES,
                       model=w.model)
    base = telemetry(database_url, w.warehouse_id, w.version, w.now - w.window - w.baseline, w.now - w.window,
                     limit=BASELINE_MAX_EPISODES, model=w.model)
    return judge(base, recent, version_reference, min_reward, alpha, permutations, seed, required,
                 family_signals=family_signals)
