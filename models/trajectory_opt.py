"""Sampling-based optimisers over action sequences, and the risk measure a planner scores with.

Both families' planners search the same kind of object: a batch of action sequences [K, H, A],
scored by imagining them in a world model (higher is better). Two optimisers share one contract,
`optimise(score, mean, std, generator) -> (best sequence, its score)`:

- CEM (the cross-entropy method): sample a Gaussian, refit it to the `elites` best, repeat.
- MPPI (model-predictive path integral, Williams et al. 2016): sample a Gaussian, move its mean to
  the average of the samples weighted by exp(score / temperature), repeat. Every sample counts,
  the better ones more; no hard elite cut.

`cvar` is the risk-sensitive objective: the mean of the worst `alpha` share of outcomes (over
sampled futures or ensemble members), so a plan is judged by its bad cases, not its average.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

ScoreFn = Callable[[torch.Tensor], torch.Tensor]   # sequences [K, H, A] -> scores [K], higher is better


def cvar(values: torch.Tensor, alpha: float, dim: int = -1) -> torch.Tensor:
    """Conditional value at risk of outcomes where higher is better: the mean of the lowest
    ceil(alpha * n) values along `dim` (alpha = 1: the plain mean)."""
    if not 0.0 < alpha <= 1.0:
        raise ValueError(f"alpha must be in (0, 1], got {alpha}")
    n = values.shape[dim]
    k = max(1, int(torch.ceil(torch.tensor(alpha * n)).item()))
    worst = values.topk(k, dim=dim, largest=False).values
    return worst.mean(dim=dim)


@dataclass
class CEM:
    samples: int = 64
    elites: int = 8
    iterations: int = 4
    min_std: float = 0.05
    """Floor on the refitted standard deviation, so the search never collapses to one point early."""
    low: float = -1.0
    high: float = 1.0

    def __post_init__(self):
        if not 1 <= self.elites <= self.samples or self.iterations < 1:
            raise ValueError(f"need 1 <= elites <= samples and iterations >= 1, got {self}")

    def optimise(self, score: ScoreFn, mean: torch.Tensor, std: torch.Tensor,
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, float]:
        """mean, std [H, A] -> (the best of the starting mean and every sample [H, A], its score)."""
        best, best_score = mean.clone(), float(score(mean[None])[0])
        for _ in range(self.iterations):
            x = (mean + std * torch.randn(self.samples, *mean.shape, generator=generator)).clamp(self.low, self.high)
            s = score(x)
            top = s.topk(self.elites).indices
            if float(s[top[0]]) > best_score:
                best, best_score = x[top[0]].clone(), float(s[top[0]])
            elite = x[top]
            mean, std = elite.mean(0), elite.std(0, unbiased=False).clamp(min=self.min_std)
        return best, best_score


@dataclass
class MPPI:
    samples: int = 64
    iterations: int = 4
    temperature: float = 0.1
    """lambda: how sharply the weights prefer better samples (in score units)."""
    std_decay: float = 0.7
    """The sampling spread shrinks by this factor each iteration (MPPI keeps it fixed within a
    step; over iterations a shrinking spread refines like CEM's refit does)."""
    low: float = -1.0
    high: float = 1.0

    def __post_init__(self):
        if self.samples < 1 or self.iterations < 1 or not self.temperature > 0 or not 0 < self.std_decay <= 1:
            raise ValueError(f"need samples, iterations >= 1, temperature > 0, 0 < std_decay <= 1, got {self}")

    def optimise(self, score: ScoreFn, mean: torch.Tensor, std: torch.Tensor,
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, float]:
        """mean, std [H, A] -> (the best of the starting mean, every sample and the final mean [H, A],
        its score)."""
        best, best_score = mean.clone(), float(score(mean[None])[0])
        for _ in range(self.iterations):
            x = (mean + std * torch.randn(self.samples, *mean.shape, generator=generator)).clamp(self.low, self.high)
            s = score(x)
            i = int(s.argmax())
            if float(s[i]) > best_score:
                best, best_score = x[i].clone(), float(s[i])
            w = torch.softmax((s - s.max()) / self.temperature, dim=0)
            mean = (w[:, None, None] * x).sum(0)
            std = std * self.std_decay
        final = float(score(mean[None])[0])
        return (mean, final) if final >= best_score else (best, best_score)
