"""The Evidently 0.7 report on episode telemetry: one row per episode, and a verdict read from the
report's machine-readable form that says no drift for the same world and drift for a shifted one."""
from __future__ import annotations

import numpy as np
import pandas as pd

from dreamops.validation.drift.report import episode_table, evidently_report, save_html


def _telemetry(seed: int, episodes: int, shift: float = 0.0, dim: int = 6) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "reward": rng.normal(300, 40, episodes), "residual": rng.normal(1.0, 0.1, episodes),
        "collisions": rng.poisson(1.0, episodes),
        # 8 frames per episode around the episode's own mean, as a drive's frames are
        "latents": [(rng.normal(shift, 1, dim) + 0.1 * rng.normal(size=(8, dim))).tolist() for _ in range(episodes)]})


def test_episode_table_has_one_row_per_episode():
    table = episode_table(_telemetry(0, 5))
    assert table.shape == (5, 6 + 4)
    assert list(table.columns[:2]) == ["z0", "z1"] and {"reward", "residual", "collisions"} <= set(table.columns)
    assert table["success_prob"].isna().all()   # a family that does not report it (carracing-vmc): empty


def test_same_world_is_not_drift_and_a_shifted_world_is(tmp_path):
    base = _telemetry(0, 100)
    same, _ = evidently_report(base, _telemetry(1, 20))
    assert not same.fired and same.figure < 0.5
    shifted, snapshot = evidently_report(base, _telemetry(2, 20, shift=1.5))
    assert shifted.fired and shifted.figure >= 0.5
    assert {"z0", "z1", "z2"} <= set(shifted.detail["drifted_columns"])
    assert "reward" not in shifted.detail["drifted_columns"]  # only the latents moved
    html = save_html(snapshot, tmp_path / "report.html")
    assert html.stat().st_size > 10_000 and "Drift" in html.read_text()


def test_too_little_telemetry_gives_no_verdict():
    result, snapshot = evidently_report(_telemetry(0, 50), _telemetry(1, 1))
    assert not result.fired and result.figure is None and snapshot is None
