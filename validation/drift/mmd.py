"""Maximum mean discrepancy between reference latents (stored with a model version) and recent
fleet latents, with a permutation test, in torch.

RBF kernel k(x, y) = exp(-|x - y|^2 / (2 s^2)) with the median heuristic s^2 = median |x - y|^2
over the pooled sample; unbiased MMD^2 (Gretton et al. 2012). The permutation test does not
rebuild or reindex the kernel matrix per permutation: with S the n x P matrix of "is in the first
sample" indicators of P permutations and T = 1 - S, every permuted statistic comes from one
product K @ S:  Sxx = diag(S^T K S), Sxy = diag(T^T K S), Syy = diag(T^T (K 1 - K S)).

Samples from one episode are not independent (frames of one drive look alike), and a test that
permutes single frames then calls ordinary episode-to-episode variation drift. With `groups`
(an episode id per row) the test permutes whole episodes instead: a block permutation test.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class MMDResult:
    mmd2: float
    p_value: float
    sigma: float
    n_reference: int
    n_current: int
    permutations: int

    def drift(self, alpha: float = 0.05) -> bool:
        return self.p_value < alpha


def median_sigma(pooled: torch.Tensor, max_points: int = 2000, generator: torch.Generator | None = None) -> float:
    """sqrt of the median squared pairwise distance (on at most max_points points, for speed)."""
    if len(pooled) > max_points:
        pooled = pooled[torch.randperm(len(pooled), generator=generator)[:max_points]]
    d2 = torch.cdist(pooled, pooled).pow(2)
    off_diagonal = d2[~torch.eye(len(pooled), dtype=torch.bool)]
    return float(off_diagonal.median().clamp_min(1e-12).sqrt())


def _stat(sxx: torch.Tensor, sxy: torch.Tensor, syy: torch.Tensor, n: torch.Tensor, m: torch.Tensor
          ) -> torch.Tensor:
    # the kernel's diagonal is 1 (k(x, x) = 1): the unbiased estimate leaves it out
    return (sxx - n) / (n * (n - 1)) + (syy - m) / (m * (m - 1)) - 2 * sxy / (n * m)


def _split_indicators(groups: torch.Tensor, n: int, permutations: int, generator: torch.Generator) -> torch.Tensor:
    """[n + m, P + 1] 0/1: column 0 the observed split (the first n rows), then P random splits that
    move whole groups, each putting as many groups in the first sample as the observed split has."""
    _, labels = torch.unique(groups, return_inverse=True)
    n_groups = int(labels.max()) + 1
    first = torch.unique(labels[:n])
    if torch.isin(first, torch.unique(labels[n:])).any():
        raise ValueError("a group has rows in both samples; groups must not straddle reference and current")
    indicators = torch.zeros(len(labels), permutations + 1)
    indicators[:n, 0] = 1
    for p in range(1, permutations + 1):
        chosen = torch.zeros(n_groups, dtype=torch.bool)
        chosen[torch.randperm(n_groups, generator=generator)[:len(first)]] = True
        indicators[chosen[labels], p] = 1
    return indicators


def mmd_test(reference: torch.Tensor, current: torch.Tensor, permutations: int = 100, seed: int = 0,
             sigma: float | None = None, groups: torch.Tensor | None = None) -> MMDResult:
    """Unbiased MMD^2 of reference [n, d] vs current [m, d] and its permutation-test p-value.
    groups: optional [n + m] labels (reference rows first); permutations then move whole groups."""
    if reference.ndim != 2 or current.ndim != 2 or reference.shape[1] != current.shape[1]:
        raise ValueError(f"need [n, d] and [m, d] samples, got {tuple(reference.shape)} and {tuple(current.shape)}")
    n, m = len(reference), len(current)
    if n < 2 or m < 2:
        raise ValueError("each sample needs at least 2 points")
    generator = torch.Generator().manual_seed(seed)
    pooled = torch.cat([reference, current]).float()
    sigma = sigma or median_sigma(pooled, generator=generator)
    kernel = torch.cdist(pooled, pooled).pow_(2).div_(-2 * sigma ** 2).exp_()
    row_sums = kernel.sum(1, dtype=torch.float64)

    # column 0: the observed split; columns 1..P: random relabelings (of rows, or of whole groups)
    if groups is None:
        groups = torch.arange(n + m)
    elif groups.shape != (n + m,):
        raise ValueError(f"groups needs one label per row ({n + m}), got shape {tuple(groups.shape)}")
    indicators = _split_indicators(groups, n, permutations, generator)
    # the product in float32 (memory, speed), the sums in float64: MMD^2 is a small difference of
    # large sums, and float32 sums lose it at n = 5000
    k_s = (kernel @ indicators).double()
    s, t = indicators.double(), 1 - indicators.double()
    sxx = (s * k_s).sum(0)
    sxy = (t * k_s).sum(0)
    syy = (t * (row_sums[:, None] - k_s)).sum(0)
    n_p = indicators.double().sum(0)  # equal to n, unless groups differ in size
    stats = _stat(sxx, sxy, syy, n_p, n + m - n_p)
    observed = stats[0]
    p_value = (1 + int((stats[1:] >= observed).sum())) / (permutations + 1)
    return MMDResult(float(observed), p_value, sigma, n, m, permutations)


def mmd2_direct(reference: torch.Tensor, current: torch.Tensor, sigma: float) -> float:
    """The textbook estimate from three kernel blocks; the reference the fast path is checked against."""
    def k(a, b):
        return torch.exp(-torch.cdist(a, b).pow(2) / (2 * sigma ** 2))
    n, m = len(reference), len(current)
    kxx, kyy, kxy = k(reference, reference), k(current, current), k(reference, current)
    return float((kxx.sum() - kxx.diag().sum()) / (n * (n - 1)) + (kyy.sum() - kyy.diag().sum()) / (m * (m - 1))
                 - 2 * kxy.mean())
