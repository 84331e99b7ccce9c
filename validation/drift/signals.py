"""The three drift signals and the two-of-three decision.

1. latents: MMD permutation test of recent fleet latents against the version's reference latents;
2. residual: M's prediction error (|predicted next z - encoded next z|) stays more than `k` baseline
   standard deviations above the baseline mean for a sustained window;
3. performance: the rolling mean reward of the last `window` episodes falls below a threshold, or
   a one-sided CUSUM on standardized reward signals a small sustained drop.

Families choose their signals (dreamops.families, `drift_signals`): carracing-vmc takes the three
above; pick-vla, whose world model has no per-frame residual, takes the latents, `calibration`
(the success head's predicted probability against the observed success: the window's mean Brier
score above what the baseline's calibration allows) and the performance CUSUM on success.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np


@dataclass(frozen=True)
class SignalResult:
    name: str
    fired: bool
    figure: float | None  # the number the verdict rests on
    threshold: float | None
    detail: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def residual_signal(baseline: np.ndarray, recent: np.ndarray, k: float = 2.0, min_recent: int = 5) -> SignalResult:
    """Fires when the median per-episode residual of the sustained window is more than k baseline
    standard deviations above the baseline mean (the median: one odd episode does not fire it)."""
    baseline, recent = np.asarray(baseline, float), np.asarray(recent, float)
    baseline, recent = baseline[np.isfinite(baseline)], recent[np.isfinite(recent)]
    if len(baseline) < 2 or len(recent) < min_recent:
        return SignalResult("residual", False, None, None, {"reason": "not enough episodes",
                                                            "baseline_n": len(baseline), "recent_n": len(recent)})
    limit = float(baseline.mean() + k * baseline.std(ddof=1))
    figure = float(np.median(recent))
    return SignalResult("residual", figure > limit, figure, limit,
                        {"baseline_mean": float(baseline.mean()), "baseline_std": float(baseline.std(ddof=1)),
                         "recent_n": len(recent)})


# h = 7 with k = 0.5, simulated over 100-episode windows (2000 windows each, seed 1): false alarm
# in 1.9% of windows without a shift, alarm in 95% with a -0.6 std shift (h = 5: 9.8% / 99%).
CUSUM_K, CUSUM_H = 0.5, 7.0


def cusum_lower(rewards: np.ndarray, mean: float, std: float, k: float = CUSUM_K, h: float = CUSUM_H
                ) -> tuple[bool, float]:
    """One-sided (downward) CUSUM on standardized rewards: S_t = max(0, S_{t-1} + (mean - x_t)/std - k);
    alarm when S_t > h. Returns (alarm, the largest S_t)."""
    s, peak = 0.0, 0.0
    for x in np.asarray(rewards, float):
        s = max(0.0, s + (mean - x) / max(std, 1e-9) - k)
        peak = max(peak, s)
    return peak > h, peak


def cusum_threshold(baseline: np.ndarray, n: int, k: float = CUSUM_K, floor: float = CUSUM_H,
                    false_alarm: float = 0.01, resamples: int = 2000, seed: int = 0) -> float:
    """The CUSUM limit h at which a window of n episodes alarms in at most `false_alarm` of cases
    when nothing changed (and never below `floor`), found by resampling the baseline: each resample
    draws a baseline of the same size (its mean and std are estimates too) and an independent
    window. Rewards are not normal: a crash lands many standard deviations below the mean, and the
    textbook h (set for normal data and a known mean) fired in 2 of 10 held-out windows of a
    quick-trained model."""
    baseline = np.asarray(baseline, float)
    rng = np.random.default_rng(seed)
    base = rng.choice(baseline, size=(resamples, len(baseline)))
    mean, std = base.mean(1, keepdims=True), np.maximum(base.std(1, ddof=1, keepdims=True), 1e-9)
    steps = (mean - rng.choice(baseline, size=(resamples, n))) / std - k
    s, peak = np.zeros(resamples), np.zeros(resamples)
    for t in range(n):  # all resamples at once, one episode at a time
        s = np.maximum(0.0, s + steps[:, t])
        peak = np.maximum(peak, s)
    return max(floor, float(np.quantile(peak, 1 - false_alarm)))


def performance_signal(baseline: np.ndarray, recent: np.ndarray, min_reward: float, window: int = 100,
                       cusum_k: float = CUSUM_K, cusum_h: float | None = None) -> SignalResult:
    """Fires when the rolling mean of the last `window` rewards is below `min_reward`, or when the
    CUSUM (against the baseline's mean and std) alarms. cusum_h None: calibrated on the baseline
    (cusum_threshold)."""
    baseline, recent = np.asarray(baseline, float), np.asarray(recent, float)
    if len(recent) == 0 or len(baseline) < 2:
        return SignalResult("performance", False, None, min_reward, {"reason": "not enough episodes"})
    rolling = float(recent[-window:].mean())
    if cusum_h is None:
        cusum_h = cusum_threshold(baseline, len(recent), cusum_k)
    alarm, peak = cusum_lower(recent, float(baseline.mean()), float(baseline.std(ddof=1)), cusum_k, cusum_h)
    return SignalResult("performance", rolling < min_reward or alarm, rolling, min_reward,
                        {"cusum_peak": peak, "cusum_h": cusum_h, "cusum_alarm": alarm, "rolling_window": window,
                         "baseline_mean": float(baseline.mean())})


def bernoulli_cusum(outcomes: np.ndarray, p0: float, p1: float) -> float:
    """The largest value of the log-likelihood-ratio CUSUM for a success rate falling from p0 to p1
    (Page's CUSUM for Bernoulli data): S_t = max(0, S_{t-1} + log(P1(x_t) / P0(x_t)))."""
    p0, p1 = min(max(p0, 1e-3), 1 - 1e-3), min(max(p1, 1e-3), 1 - 1e-3)
    up, down = np.log((1 - p1) / (1 - p0)), np.log(p1 / p0)   # a failure adds up > 0, a success down < 0
    s, peak = 0.0, 0.0
    for x in np.asarray(outcomes, float):
        s = max(0.0, s + (down if x > 0.5 else up))
        peak = max(peak, s)
    return peak


def success_signal(baseline: np.ndarray, recent: np.ndarray, min_rate: float = 0.0, relative_drop: float = 0.5,
                   false_alarm: float = 0.01, resamples: int = 2000, seed: int = 0) -> SignalResult:
    """For a family whose episode reward is success (1 or 0): fires when the window's success rate
    is below `min_rate`, or when a Bernoulli CUSUM tuned to a fall from the baseline's rate p0 to
    p0 * (1 - relative_drop) passes the limit that windows of the same size, drawn from the
    baseline (with a baseline redrawn too: p0 is an estimate), pass in at most `false_alarm` of
    cases. The standardized CUSUM of `performance_signal` cannot fire on 20 binary outcomes: its
    limit of at least 7 needs more than 20 failures in a row at p0 = 0.42 (measured in drift-eval:
    success 42% -> 5% under dim light, no alarm)."""
    baseline, recent = np.asarray(baseline, float), np.asarray(recent, float)
    if len(recent) == 0 or len(baseline) < 2:
        return SignalResult("performance", False, None, min_rate, {"reason": "not enough episodes"})
    p0 = float(baseline.mean())
    rng = np.random.default_rng(seed)
    peaks = []
    for _ in range(resamples):
        rate = rng.choice(baseline, size=len(baseline)).mean()
        window = rng.random(len(recent)) < p0   # a window as the baseline's world gives it
        peaks.append(bernoulli_cusum(window, rate, rate * (1 - relative_drop)))
    limit = float(np.quantile(peaks, 1 - false_alarm))
    peak = bernoulli_cusum(recent, p0, p0 * (1 - relative_drop))
    rate = float(recent.mean())
    alarm = peak > limit
    return SignalResult("performance", rate < min_rate or alarm, rate, min_rate,
                        {"cusum_peak": peak, "cusum_h": limit, "cusum_alarm": alarm, "baseline_success": p0,
                         "cusum": "bernoulli", "relative_drop": relative_drop})


def expected_calibration_error(probs: np.ndarray, outcomes: np.ndarray, bins: int = 10) -> float:
    """ECE: the |mean predicted - observed| gap of equal-width probability bins, weighted by the
    bin's share of episodes."""
    probs, outcomes = np.asarray(probs, float), np.asarray(outcomes, float)
    which = np.minimum((probs * bins).astype(int), bins - 1)
    return float(sum(abs(probs[which == b].mean() - outcomes[which == b].mean()) * (which == b).mean()
                     for b in range(bins) if (which == b).any()))


def brier_threshold(probs: np.ndarray, outcomes: np.ndarray, n: int, false_alarm: float = 0.01,
                    resamples: int = 2000, seed: int = 0) -> float:
    """The mean Brier score that a window of n episodes, calibrated as the baseline is, exceeds in
    at most `false_alarm` of cases: windows resampled from the baseline's (prediction, outcome)
    pairs. Per-episode Brier scores are far from normal (most near 0, a confident miss near 1), so
    the limit is read off the resampled distribution, not from a normal approximation."""
    scores = (np.asarray(probs, float) - np.asarray(outcomes, float)) ** 2
    rng = np.random.default_rng(seed)
    return float(np.quantile(rng.choice(scores, size=(resamples, n)).mean(1), 1 - false_alarm))


def calibration_signal(base_probs: np.ndarray, base_outcomes: np.ndarray, recent_probs: np.ndarray,
                       recent_outcomes: np.ndarray, false_alarm: float = 0.01, min_recent: int = 5) -> SignalResult:
    """Fires when the window's mean Brier score (predicted success probability vs observed success)
    is above brier_threshold() of the baseline: the model's judgement of its own outcomes no longer
    holds. A drop in success that the head predicts (low probabilities on the failures) does not
    fire it; the performance signal sees that."""
    def finite(p, y):
        p, y = np.asarray(p, float), np.asarray(y, float)
        keep = np.isfinite(p) & np.isfinite(y)
        return p[keep], y[keep]
    base_p, base_y = finite(base_probs, base_outcomes)
    p, y = finite(recent_probs, recent_outcomes)
    if len(base_p) < 2 or len(p) < min_recent:
        return SignalResult("calibration", False, None, None, {"reason": "not enough episodes with a prediction",
                                                               "baseline_n": len(base_p), "recent_n": len(p)})
    limit = brier_threshold(base_p, base_y, len(p), false_alarm)
    figure = float(np.mean((p - y) ** 2))
    return SignalResult("calibration", figure > limit, figure, limit,
                        {"baseline_brier": float(np.mean((base_p - base_y) ** 2)),
                         "baseline_ece": expected_calibration_error(base_p, base_y),
                         "recent_ece": expected_calibration_error(p, y), "recent_n": len(p),
                         "recent_success": float(y.mean()), "recent_mean_prob": float(p.mean())})


def mmd_signal(result, alpha: float = 0.05) -> SignalResult:
    """From a validation.drift.mmd.MMDResult."""
    return SignalResult("latents", result.p_value < alpha, result.p_value, alpha,
                        {"mmd2": result.mmd2, "sigma": result.sigma, "n_reference": result.n_reference,
                         "n_current": result.n_current, "permutations": result.permutations})


@dataclass(frozen=True)
class DriftDecision:
    drift: bool
    fired: list[str]
    signals: list[SignalResult]
    required: int = 2

    def to_dict(self) -> dict:
        return {"drift": self.drift, "fired": self.fired, "required": self.required,
                "signals": [s.to_dict() for s in self.signals]}


def decide(signals: list[SignalResult], required: int = 2) -> DriftDecision:
    """Drift when at least `required` of the signals fired in the same window (the seed: two of three)."""
    fired = [s.name for s in signals if s.fired]
    return DriftDecision(len(fired) >= required, fired, signals, required)
