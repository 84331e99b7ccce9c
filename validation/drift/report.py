"""Evidently 0.7 data-drift report on one window of fleet telemetry against its baseline.

Rows are episodes, not frames: each row holds the episode's mean latent (z0..z{d-1}) and its
reward, M residual (carracing-vmc), collisions and the success head's probability (pick-vla).
Frames of one drive are not independent, and Evidently's
per-column tests (K-S for samples this small) assume independent rows. The report's own test
"share of drifted columns < drift_share" is the machine-readable verdict.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from dreamops.validation.drift.signals import SignalResult

EPISODE_METRICS = ("reward", "residual", "collisions", "success_prob")  # a family reports some


def episode_table(frame: pd.DataFrame) -> pd.DataFrame:
    """telemetry() rows -> one row per episode: mean latent per dimension and the episode metrics."""
    means = [np.asarray(z, np.float64).mean(0) if len(z) else None for z in frame["latents"]]
    dim = max((len(m) for m in means if m is not None), default=0)
    latents = np.array([m if m is not None else np.full(dim, np.nan) for m in means]).reshape(len(frame), dim)
    table = pd.DataFrame(latents, columns=[f"z{i}" for i in range(dim)])
    for name in EPISODE_METRICS:
        table[name] = (pd.to_numeric(frame[name], errors="coerce").to_numpy(np.float64) if name in frame
                       else np.full(len(frame), np.nan))
    return table


def evidently_report(base: pd.DataFrame, recent: pd.DataFrame, drift_share: float = 0.5):
    """-> (SignalResult named "evidently", the Evidently snapshot to save as HTML)."""
    from evidently import Report  # imported here: ~6 s, and only the drift jobs need it
    from evidently.presets import DataDriftPreset

    reference, current = episode_table(base), episode_table(recent)
    # a column needs values on both sides, and one value everywhere (no collisions at all) says nothing
    columns = [c for c in reference.columns if reference[c].notna().sum() >= 2 and current[c].notna().sum() >= 2
               and pd.concat([reference[c], current[c]]).nunique() > 1]
    if len(current) < 2 or not columns:
        return SignalResult("evidently", False, None, drift_share, {"reason": "not enough episodes"}), None
    # current first: Evidently 0.7's Report.run(current_data, reference_data)
    snapshot = Report([DataDriftPreset(columns=columns, drift_share=drift_share)], include_tests=True).run(
        current[columns], reference[columns])
    return verdict(snapshot.dict(), drift_share), snapshot


def verdict(snapshot: dict, drift_share: float) -> SignalResult:
    """The report's verdict from its machine-readable form (Snapshot.dict())."""
    share_tests = [t for t in snapshot["tests"]
                   if t["metric_config"]["params"]["type"].endswith("DriftedColumnsCount")]
    if len(share_tests) != 1:
        raise ValueError(f"expected one drifted-columns test in the Evidently report, found {len(share_tests)}")
    drifted = sorted(t["metric_config"]["params"]["column"] for t in snapshot["tests"]
                     if t["metric_config"]["params"]["type"].endswith("ValueDrift") and t["status"] == "FAIL")
    share = next(m["value"]["share"] for m in snapshot["metrics"]
                 if m["config"]["type"].endswith("DriftedColumnsCount"))
    return SignalResult("evidently", share_tests[0]["status"] == "FAIL", float(share), drift_share,
                        {"drifted_columns": drifted})


def save_html(snapshot, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    snapshot.save_html(str(path))
    return path
