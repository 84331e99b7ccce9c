"""The statistics a canary stage is promoted on: is the canary worse than the baseline? A one-sided
Welch t-test of episode reward (carracing-vmc), or a one-sided two-proportion z-test of success
(a family whose episode reward is its success, 1 or 0: pick-vla), each with the sample size per
arm the test needs for the wanted power against the smallest drop worth catching."""
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
    test: str = "welch"  # welch (t is Welch's t) | two_proportion (t is the z statistic; means are success rates)

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


def required_sample_size_proportions(baseline_rate: float, drop: float, alpha: float, power: float) -> int | None:
    """n per arm for the one-sided two-proportion z-test to detect a fall of the success rate from
    `baseline_rate` to `baseline_rate - drop` (Fleiss, without continuity correction):
    n = (z_{1-alpha} sqrt(2 p (1 - p)) + z_{power} sqrt(p_b (1 - p_b) + p_c (1 - p_c)))^2 / drop^2,
    p the mean of p_b and p_c. None while the baseline rate is unknown; a drop below 0 is cut at 0."""
    if drop <= 0 or not (0 < alpha < 1 and 0 < power < 1):
        raise ValueError("drop must be > 0 and alpha, power in (0, 1)")
    if not math.isfinite(baseline_rate):
        return None
    p_b = min(max(baseline_rate, 0.0), 1.0)
    p_c = max(p_b - drop, 0.0)
    if p_b - p_c <= 0:
        return None   # a baseline that never succeeds cannot get worse
    p = (p_b + p_c) / 2
    a = stats.norm.ppf(1 - alpha) * math.sqrt(2 * p * (1 - p))
    b = stats.norm.ppf(power) * math.sqrt(p_b * (1 - p_b) + p_c * (1 - p_c))
    return max(2, math.ceil((a + b) ** 2 / (p_b - p_c) ** 2))


def compare_proportions(c: Sample, b: Sample, alpha: float = 0.05, power: float = 0.8,
                        min_detectable_drop: float = 0.10) -> Comparison:
    """One-sided two-proportion z-test (pooled), H1: the canary's success rate < the baseline's.
    Each arm's Sample is of 1/0 successes, so its mean is its success rate."""
    z = p = None
    if c.n >= 1 and b.n >= 1:
        x_c, x_b = round(c.mean * c.n), round(b.mean * b.n)
        pooled = (x_c + x_b) / (c.n + b.n)
        if pooled in (0.0, 1.0):   # every episode failed, or every one succeeded: no difference to see
            p = 1.0
        else:
            z = (x_c / c.n - x_b / b.n) / math.sqrt(pooled * (1 - pooled) * (1 / c.n + 1 / b.n))
            p = float(stats.norm.cdf(z))
    spread = [math.sqrt(r * (1 - r)) if math.isfinite(r) else float("nan") for r in (c.mean, b.mean)]
    return Comparison(c.n, b.n, c.mean, b.mean, spread[0], spread[1], z, p,
                      regression=p is not None and p < alpha, alpha=alpha, power=power,
                      min_detectable_drop=min_detectable_drop,
                      required_n_per_arm=required_sample_size_proportions(b.mean, min_detectable_drop, alpha, power),
                      test="two_proportion")
