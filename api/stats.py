"""The statistics a canary stage is promoted on: a one-sided Welch t-test of episode reward (is
the canary worse than the baseline?) and the sample size that test needs for the wanted power."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class Comparison:
    canary_n: int
    baseline_n: int
    canary_mean: float
    baseline_mean: float
    canary_std: float
    baseline_std: float
    t: float | None
    p_value: float | None  # H1: canary mean < baseline mean
    regression: bool
    alpha: float
    power: float
    min_detectable_drop: float
    required_n_per_arm: int | None  # for `power` against a drop of min_detectable_drop

    def to_dict(self) -> dict:
        """JSON-safe (NaN, e.g. the std of one episode, becomes None)."""
        return {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in asdict(self).items()}


def required_sample_size(std_canary: float, std_baseline: float, drop: float, alpha: float, power: float) -> int | None:
    """n per arm for a one-sided test to detect a mean drop of `drop` (normal approximation of the
    Welch test): n = (z_{1-alpha} + z_{power})^2 (s_c^2 + s_b^2) / drop^2."""
    if drop <= 0 or not (0 < alpha < 1 and 0 < power < 1):
        raise ValueError("drop must be > 0 and alpha, power in (0, 1)")
    variance = std_canary ** 2 + std_baseline ** 2
    if not math.isfinite(variance):
        return None
    z = stats.norm.ppf(1 - alpha) + stats.norm.ppf(power)
    return max(2, math.ceil(z ** 2 * variance / drop ** 2))


@dataclass(frozen=True)
class Sample:
    """What the test needs of one arm's rewards: count, mean and the sample std (ddof=1); NaN where
    undefined (no values; one value). The canary computes it in SQL, without loading the episodes."""
    n: int
    mean: float
    std: float

    @classmethod
    def of(cls, values) -> "Sample":
        x = np.asarray(values, float)
        return cls(len(x), float(x.mean()) if len(x) else float("nan"), float(x.std(ddof=1)) if len(x) > 1
                   else float("nan"))


def compare(canary: list[float], baseline: list[float], alpha: float = 0.05, power: float = 0.8,
            min_detectable_drop: float = 50.0) -> Comparison:
    return compare_samples(Sample.of(canary), Sample.of(baseline), alpha, power, min_detectable_drop)


def compare_samples(c: Sample, b: Sample, alpha: float = 0.05, power: float = 0.8,
                    min_detectable_drop: float = 50.0) -> Comparison:
    """The one-sided Welch test from each arm's count, mean and std (the same test as on the values)."""
    t = p = None
    if c.n >= 2 and b.n >= 2:
        if c.std == 0 and b.std == 0:  # identical constants: no evidence either way unless the means differ
            p = 0.0 if c.mean < b.mean else 1.0
        else:
            result = stats.ttest_ind_from_stats(c.mean, c.std, c.n, b.mean, b.std, b.n, equal_var=False,
                                                alternative="less")
            t, p = float(result.statistic), float(result.pvalue)
    return Comparison(c.n, b.n, c.mean, b.mean, c.std, b.std, t, p,
                      regression=p is not None and p < alpha, alpha=alpha, power=power,
                      min_detectable_drop=min_detectable_drop,
                      required_n_per_arm=required_sample_size(c.std, b.std, min_detectable_drop, alpha, power))
