"""judge() on telemetry frames, and the drift evaluation's real episodes: the same telemetry
whatever the number of worker processes."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dreamops.models.bundle import Architecture, VMCBundle
from dreamops.tasks.drift import calibration_and_success_signals, judge
from dreamops.tasks.drift_eval import DriftEvalConfig, RobotFactory, TelemetryCache, play_telemetry, split_windows
from tests.validation.test_drift_report import _telemetry


def test_judge_finds_no_drift_in_the_same_world():
    judgement = judge(_telemetry(0, 200), _telemetry(1, 20), np.zeros((2, 6), np.float32), min_reward=0.0)
    assert not judgement.decision.drift and judgement.decision.fired == []
    assert judgement.facts["reference_source"] == "fleet baseline"  # 200 x 8 latents >= 200


def test_judge_finds_drift_when_latents_shift_and_reward_drops():
    shifted = _telemetry(2, 20, shift=1.5)
    shifted["reward"] -= 150
    judgement = judge(_telemetry(0, 200), shifted, np.zeros((2, 6), np.float32), min_reward=0.0)
    assert judgement.decision.drift and set(judgement.decision.fired) == {"latents", "performance"}
    assert judgement.evidently.fired and judgement.snapshot is not None
    # the same window against a short baseline: only the latents are judged
    short = judge(_telemetry(0, 60), shifted, np.zeros((2, 6), np.float32), min_reward=0.0)
    assert short.decision.fired == ["latents"] and not short.decision.drift
    assert "fewer than 200" in short.decision.signals[2].detail["reason"]


def test_a_stored_reference_of_other_latents_is_not_compared():
    """A version registered before its family's robots reported other latents (pick-vla's stored
    observation embeddings, 64 wide; its cells now report scene features): with a short fleet
    baseline the latents are not judged, and say why, rather than the MMD failing on the shapes."""
    shifted = _telemetry(2, 20, shift=1.5)
    judgement = judge(_telemetry(0, 20), shifted, np.zeros((50, 64), np.float32), min_reward=0.0)
    latents = judgement.decision.signals[0]
    assert judgement.facts["reference_source"] == "model version" and not latents.fired and latents.figure is None
    assert latents.detail["reason"] == "the model version reference has 64 dimensions, the window's latents 6"
    # the same window against a reference of its own width is judged (and differs)
    assert judge(_telemetry(0, 20), shifted, np.zeros((50, 6), np.float32), min_reward=0.0).decision.fired == ["latents"]


def test_windows_are_disjoint_and_whole():
    frame = pd.DataFrame({"seed": range(45)})
    windows = split_windows(frame, 20)
    assert [len(w) for w in windows] == [20, 20] and windows[1]["seed"].iloc[0] == 20


def test_bad_config_is_refused():
    with pytest.raises(ValueError, match="window_episodes"):
        DriftEvalConfig(window_episodes=0)
    with pytest.raises(ValueError, match="required_signals"):
        DriftEvalConfig(required_signals=4)


@pytest.mark.e2e  # a whole process and its servers: the full tier only
def test_telemetry_does_not_depend_on_the_number_of_workers(tmp_path):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    factory = RobotFactory("carracing-vmc", VMCBundle.create(Architecture()).save(tmp_path / "bundle.pt"))
    seeds = [11, 12, 13]
    one = play_telemetry(factory, "night", seeds, max_steps=60, latent_sample=4, workers=1)
    cache = TelemetryCache(tmp_path / "cache", "v1")
    two = play_telemetry(factory, "night", seeds, max_steps=60, latent_sample=4, workers=2, cache=cache)
    assert list(one["seed"]) == seeds and len(one["latents"][0]) == 4
    pd.testing.assert_frame_equal(one, two)
    # a later run reads them back and plays only the seeds it lacks
    reopened = TelemetryCache(tmp_path / "cache", "v1")
    assert reopened.get("night", [12, 13, 14])[1] == [14] and reopened.get("day", [12])[1] == [12]
    again = play_telemetry(factory, "night", seeds, 60, 4, workers=1, cache=reopened)
    pd.testing.assert_frame_equal(again, one)
    assert again["latents"].tolist() == one["latents"].tolist()  # lists of vectors, as telemetry() gives them
    judge(again, one, np.zeros((2, 32), np.float32), min_reward=0.0)  # judged like live telemetry


def test_pick_telemetry_reports_the_success_heads_probability(tmp_path):
    """pick-vla's robot in drift-eval: novel objects, a success probability per episode, the encoder's
    scene features as latents, the same rows on 1 or 2 workers, judged with pick's own signals."""
    torch = pytest.importorskip("torch")
    from dreamops.models.pick_vla import PickArchitecture, PickVLA

    torch.manual_seed(0)
    model = PickVLA(PickArchitecture(vocab=("pick", "up", "the", "red", "box"), embed_dim=32, text_dim=16, deter=32,
                                     stoch=4, classes=4, horizon=4, execute=2, flow_steps=2, head_hidden=32))
    factory = RobotFactory("pick-vla", model.save(tmp_path / "pick_vla.pt"))
    one = play_telemetry(factory, "novel", [3, 4], max_steps=6, latent_sample=3, workers=1, show_progress=False)
    two = play_telemetry(factory, "novel", [3, 4], max_steps=6, latent_sample=3, workers=2, show_progress=False)
    pd.testing.assert_frame_equal(one, two)
    assert one["success_prob"].between(0, 1).all() and one["residual"].isna().all()
    scene = model.encoder.scene_dim
    assert np.asarray(one["latents"][0]).shape == (3, scene)
    judgement = judge(one, two, np.zeros((2, scene), np.float32), 0.0, min_baseline_episodes=2,
                      family_signals=calibration_and_success_signals)
    assert [s.name for s in judgement.decision.signals] == ["latents", "calibration", "performance"]


def test_pick_scene_features_find_dim_light_and_not_a_new_day(tmp_path):
    """Real cells, a barely trained (here: untrained) encoder: against 20 day episodes, a window of 8
    dim-light episodes fires the latents' MMD and a window of 8 more day episodes (other seeds) does
    not. drift-eval measures the rates (docs/results/drift.md: a smoke model, 1 false alarm in 20
    day windows, 5 of 5 dim windows found); this pins one of each."""
    torch = pytest.importorskip("torch")
    from dreamops.models.pick_vla import PickArchitecture, PickVLA

    torch.manual_seed(0)
    model = PickVLA(PickArchitecture(vocab=("pick", "up", "the", "red", "box"), embed_dim=32, text_dim=16, deter=32,
                                     stoch=4, classes=4, horizon=4, execute=2, flow_steps=2, head_hidden=32))
    factory = RobotFactory("pick-vla", model.save(tmp_path / "pick_vla.pt"))
    # 10 latents an episode: the baseline's 200 make the fleet's own reference
    day = play_telemetry(factory, "day", list(range(28)), max_steps=10, latent_sample=10, workers=1,
                         show_progress=False)
    dim = play_telemetry(factory, "dim", list(range(1000, 1008)), max_steps=10, latent_sample=10, workers=1,
                         show_progress=False)
    stored = np.zeros((2, model.encoder.scene_dim), np.float32)
    verdicts = {name: judge(day.iloc[:20], window, stored, 0.0, family_signals=calibration_and_success_signals)
                for name, window in (("day", day.iloc[20:]), ("dim", dim))}
    assert all(v.facts["reference_source"] == "fleet baseline" for v in verdicts.values())
    latents = {name: v.decision.signals[0] for name, v in verdicts.items()}
    assert latents["dim"].fired and latents["dim"].figure < 0.05, latents["dim"]
    assert not latents["day"].fired and latents["day"].figure > 0.05, latents["day"]


def test_telemetry_reads_the_window_in_time_order_and_at_most_the_latest_episodes(tmp_path):
    from datetime import datetime, timedelta, timezone

    from dreamops.db import TelemetryEpisode, session_factory
    from dreamops.tasks.drift import telemetry

    url = f"sqlite:///{tmp_path / 'dreamops.db'}"
    t0 = datetime(2026, 11, 2, tzinfo=timezone.utc)
    with session_factory(url)() as session:
        session.add_all(TelemetryEpisode(robot_id="r1", warehouse_id=wh, version="3", seed=i, reward=float(i),
                                         collisions=0, steps=300, latency_p50_ms=1.0, latency_p99_ms=2.0,
                                         residual=1.0, ended_at=t0 + timedelta(minutes=i), latents=[[0.0, 1.0]])
                        for i in range(10) for wh in ("WH-1", "WH-2"))
        session.commit()
    window = telemetry(url, "WH-1", "3", t0 + timedelta(minutes=2), t0 + timedelta(minutes=9))
    assert window["reward"].tolist() == [2, 3, 4, 5, 6, 7, 8]  # [since, until), oldest first, one warehouse
    assert telemetry(url, "WH-1", "3", t0, t0 + timedelta(hours=1), limit=3)["reward"].tolist() == [7, 8, 9]
    assert telemetry(url, "WH-1", "4", t0, t0 + timedelta(hours=1)).empty
    # version numbers repeat across models: a pick cell's version 3 is not carracing-vmc's version 3
    with session_factory(url)() as session:
        session.add(TelemetryEpisode(robot_id="c1", warehouse_id="WH-1", model="pick-vla", version="3", seed=0,
                                     reward=1.0, collisions=0, steps=40, latency_p50_ms=1.0, latency_p99_ms=2.0,
                                     success_prob=0.9, ended_at=t0 + timedelta(minutes=5), latents=[[0.0, 1.0]]))
        session.commit()
    assert len(telemetry(url, "WH-1", "3", t0, t0 + timedelta(hours=1))) == 10
    pick = telemetry(url, "WH-1", "3", t0, t0 + timedelta(hours=1), model="pick-vla")
    assert pick["success_prob"].tolist() == [0.9] and pick["residual"].isna().all()
