"""The residual, performance (rolling mean + CUSUM) and calibration signals and the two-of-three decision."""
from __future__ import annotations

import numpy as np
import pytest

from dreamops.validation.drift.mmd import mmd_test
from dreamops.validation.drift.signals import (CUSUM_H, cusum_lower, cusum_threshold, decide, mmd_signal,
                                               performance_signal, residual_signal)

rng = np.random.default_rng(0)
BASE_RESIDUAL = rng.normal(1.0, 0.1, 500)
BASE_REWARD = rng.normal(300, 50, 500)


def test_residual_fires_only_on_a_sustained_rise():
    assert not residual_signal(BASE_RESIDUAL, rng.normal(1.0, 0.1, 40)).fired
    one_spike = np.r_[rng.normal(1.0, 0.1, 39), 5.0]
    assert not residual_signal(BASE_RESIDUAL, one_spike).fired
    risen = residual_signal(BASE_RESIDUAL, rng.normal(1.4, 0.1, 40))
    assert risen.fired and risen.figure > risen.threshold
    assert not residual_signal(BASE_RESIDUAL, [1.5, 1.6]).fired  # too few episodes to say


def test_cusum_catches_a_small_sustained_drop_the_rolling_mean_misses():
    small_drop = rng.normal(260, 50, 100)  # -0.8 std: the rolling mean stays above a 200 threshold
    result = performance_signal(BASE_REWARD, small_drop, min_reward=200)
    assert result.figure > 200 and result.detail["cusum_alarm"] and result.fired
    assert not performance_signal(BASE_REWARD, rng.normal(300, 50, 100), min_reward=200).fired
    assert performance_signal(BASE_REWARD, rng.normal(100, 50, 20), min_reward=200).fired


def test_cusum_false_alarms_are_rare_without_a_shift():
    alarms = sum(cusum_lower(rng.normal(300, 50, 100), 300, 50)[0] for _ in range(200))
    assert alarms <= 10  # k=0.5, h=7: about 2% of 100-episode windows (4 of 200 expected)


def test_two_of_three():
    import torch

    same = mmd_signal(mmd_test(torch.randn(200, 8), torch.randn(200, 8), 50))
    shifted = mmd_signal(mmd_test(torch.randn(200, 8), torch.randn(200, 8) + 0.5, 50))
    quiet_res = residual_signal(BASE_RESIDUAL, rng.normal(1.0, 0.1, 40))
    loud_res = residual_signal(BASE_RESIDUAL, rng.normal(1.5, 0.1, 40))
    quiet_perf = performance_signal(BASE_REWARD, rng.normal(300, 50, 100), min_reward=200)
    assert not decide([shifted, quiet_res, quiet_perf]).drift
    decision = decide([shifted, loud_res, quiet_perf])
    assert decision.drift and decision.fired == ["latents", "residual"]
    assert not decide([same, quiet_res, quiet_perf]).drift
    assert decision.to_dict()["signals"][0]["name"] == "latents"


def test_cusum_limit_is_calibrated_on_heavy_tailed_rewards():
    """A policy that crashes now and then: most episodes near 100, one in ten at -30. Windows drawn
    from that same world must not alarm more than ~1% of the time with the calibrated limit."""
    g = np.random.default_rng(3)
    crashes = lambda n: np.where(g.random(n) < 0.1, -30.0, g.normal(100, 10, n))  # noqa: E731
    baseline = crashes(200)
    h = cusum_threshold(baseline, 20)
    assert h > CUSUM_H  # the textbook limit is too tight for this tail
    alarms = [cusum_lower(crashes(20), baseline.mean(), baseline.std(ddof=1), h=h)[0] for _ in range(500)]
    textbook = [cusum_lower(crashes(20), baseline.mean(), baseline.std(ddof=1))[0] for _ in range(500)]
    assert np.mean(alarms) <= 0.03 < np.mean(textbook)
    # normal rewards: the calibrated limit stays at the textbook floor's order
    assert cusum_threshold(BASE_REWARD, 20) < 1.5 * CUSUM_H


def test_expected_calibration_error_known_answers():
    from dreamops.validation.drift.signals import expected_calibration_error

    assert expected_calibration_error([0.25] * 4, [1, 0, 0, 0]) == pytest.approx(0.0)   # 25% said, 25% seen
    # half the episodes said 0.9 and all failed, half said 0.1 and all failed: (0.9 * 0.5 + 0.1 * 0.5)
    assert expected_calibration_error([0.9, 0.9, 0.1, 0.1], [0, 0, 0, 0]) == pytest.approx(0.5)


def _calibrated(rng, n, success_rate):
    """A head that knows: predictions near the truth, as a trained one on the scenes it saw."""
    outcomes = (rng.random(n) < success_rate).astype(float)
    probs = np.clip(np.where(outcomes == 1, 0.85, 0.15) + rng.normal(0, 0.05, n), 0, 1)
    return probs, outcomes


def test_calibration_fires_on_confident_misses_not_on_a_predicted_drop():
    from dreamops.validation.drift.signals import calibration_signal

    rng = np.random.default_rng(0)
    base_p, base_y = _calibrated(rng, 400, 0.7)
    alarms = sum(calibration_signal(base_p, base_y, *_calibrated(rng, 20, 0.7)).fired for _ in range(200))
    assert alarms <= 8   # false_alarm 0.01: about 2 of 200
    # success drops to 30% but the head still tells failures apart: performance's business, not this one's
    assert not calibration_signal(base_p, base_y, *_calibrated(rng, 20, 0.3)).fired
    # the head says "success" (0.85) on novel objects where most picks fail
    outcomes = (rng.random(20) < 0.3).astype(float)
    fired = calibration_signal(base_p, base_y, np.full(20, 0.85), outcomes)
    assert fired.fired and fired.figure > fired.threshold and fired.detail["recent_ece"] > 0.4
    short = calibration_signal(base_p, base_y, [0.5, np.nan], [1, 0])
    assert not short.fired and short.figure is None and "not enough" in short.detail["reason"]


def test_bernoulli_cusum_known_answers():
    from dreamops.validation.drift.signals import bernoulli_cusum

    up, down = np.log(0.8 / 0.6), np.log(0.2 / 0.4)   # p0 0.4 -> p1 0.2: a failure adds up, a success down
    assert bernoulli_cusum([0, 0, 0], 0.4, 0.2) == pytest.approx(3 * up)
    assert bernoulli_cusum([0, 1, 1, 0], 0.4, 0.2) == pytest.approx(up)   # reset to 0 by the successes
    assert down < 0 < up


def test_success_signal_fires_on_a_collapsed_success_rate_not_on_the_baselines():
    """pick-vla's windows are 20 binary outcomes: the standardized CUSUM (limit >= 7) cannot fire
    there even at 0% success, the Bernoulli CUSUM does, within its false-alarm rate."""
    from dreamops.validation.drift.signals import success_signal

    rng = np.random.default_rng(1)
    base = (rng.random(200) < 0.42).astype(float)
    same = sum(success_signal(base, (rng.random(20) < 0.42).astype(float), seed=i).fired for i in range(100))
    collapsed = sum(success_signal(base, (rng.random(20) < 0.05).astype(float), seed=i).fired for i in range(20))
    assert same <= 4 and collapsed >= 15
    assert not performance_signal(base, np.zeros(20), min_reward=0.0).fired   # why the old one did not do
    assert success_signal(base, np.zeros(20)).detail["cusum"] == "bernoulli"
