"""The canary's two-proportion z-test of success (the statistic for a family whose episode reward
is its success): its value against an independent formula, its false-alarm rate and its power at
the sample size it asks for, by simulation."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from dreamops.api.stats import Sample, compare_proportions, required_sample_size_proportions


def _arm(successes: int, n: int) -> Sample:
    return Sample(n, successes / n, float("nan"))   # what the canary's SQL gives for 1/0 rewards (the std unused)


def test_the_z_statistic_is_the_square_root_of_pearsons_chi_square():
    test = compare_proportions(_arm(40, 100), _arm(60, 100))
    chi2, two_sided, _, _ = stats.chi2_contingency([[40, 60], [60, 40]], correction=False)
    assert test.test == "two_proportion" and test.t < 0
    assert test.t ** 2 == pytest.approx(chi2) and 2 * test.p_value == pytest.approx(two_sided)
    assert test.p_value == pytest.approx(0.00234, abs=1e-5) and test.regression
    assert compare_proportions(_arm(60, 100), _arm(40, 100)).p_value > 0.99   # better is never a regression


def test_no_evidence_when_every_episode_agrees_or_an_arm_is_empty():
    assert compare_proportions(_arm(20, 20), _arm(30, 30)).p_value == 1.0
    assert compare_proportions(_arm(0, 20), _arm(0, 30)).regression is False
    empty = compare_proportions(Sample.of([]), _arm(5, 10))
    assert Sample.of([1.0, 0.0, 1.0, 1.0]).mean == _arm(3, 4).mean
    assert empty.p_value is None and not empty.regression


def test_the_sample_size_follows_the_drop_and_the_baseline():
    n = required_sample_size_proportions(0.8, 0.10, 0.05, 0.8)
    assert required_sample_size_proportions(0.8, 0.20, 0.05, 0.8) < n < required_sample_size_proportions(0.8, 0.05, 0.05, 0.8)
    assert required_sample_size_proportions(0.0, 0.10, 0.05, 0.8) is None   # nothing to fall from
    assert required_sample_size_proportions(float("nan"), 0.10, 0.05, 0.8) is None
    with pytest.raises(ValueError):
        required_sample_size_proportions(0.8, 0.0, 0.05, 0.8)


def test_false_alarms_stay_at_alpha_and_power_is_what_the_sample_size_promised():
    rng, trials, alpha, power = np.random.default_rng(0), 4000, 0.05, 0.8
    n = required_sample_size_proportions(0.8, 0.10, alpha, power)
    same = [compare_proportions(_arm(a, n), _arm(b, n), alpha).regression
            for a, b in zip(rng.binomial(n, 0.8, trials), rng.binomial(n, 0.8, trials))]
    worse = [compare_proportions(_arm(a, n), _arm(b, n), alpha).regression
             for a, b in zip(rng.binomial(n, 0.7, trials), rng.binomial(n, 0.8, trials))]
    se = math.sqrt(alpha * (1 - alpha) / trials)
    assert np.mean(same) <= alpha + 3 * se
    assert abs(np.mean(worse) - power) < 0.04
