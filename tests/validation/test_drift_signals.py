"""The residual, performance (rolling mean + CUSUM) signals and the two-of-three decision."""
from __future__ import annotations

import numpy as np

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
