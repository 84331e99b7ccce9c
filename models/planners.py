"""Planners over pick-vla's action chunks, scored by imagining each candidate in the RSSM.

A candidate's score is the imagined probability of a firm grasp plus (weighted higher) of success
over the chunk's steps, minus (with a version's collision head) the imagined chance of a collision
anywhere in the chunk, weighted.
- CEMPlanner: the first population comes from the flow-matching head (different noise), so
  candidates start on the demonstrations' manifold; later iterations refit a Gaussian to the elites.
- MPPIPlanner: MPPI (models.trajectory_opt) around the policy's own chunk at the version's
  temperature, so with nothing better imagined it returns what the policy would have done.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from dreamops.models.pick_vla import PickVLA, initial_state
from dreamops.models.trajectory_opt import MPPI


@torch.no_grad()
def imagined_score(model: PickVLA, cond: torch.Tensor, chunks: torch.Tensor, success_weight: float,
                   collision_weight: float = 0.0) -> torch.Tensor:
    """Each chunk imagined in the RSSM from the observation's state: cond [1, E], chunks [K, H, A] ->
    the mean over its steps of P(grasp) + success_weight * P(success), minus collision_weight * P(a
    collision in any of its steps) when the version has a collision head [K]."""
    state = initial_state(model, cond)
    k = chunks.shape[0]
    state = type(state)(state.h.expand(k, -1), state.z.expand(k, -1))
    feats = model.rssm.imagine(state, chunks)                               # [K, H, F]
    grasp = torch.sigmoid(model.grasp_head(feats).squeeze(-1))
    success = torch.sigmoid(model.rssm.success_head(feats).squeeze(-1))
    score = (grasp + success_weight * success).mean(dim=1)
    if model.collision_head is not None and collision_weight:
        clear = 1.0 - torch.sigmoid(model.collision_head(feats).squeeze(-1))   # per step, no collision
        score = score - collision_weight * (1.0 - clear.prod(dim=1))
    return score


@dataclass
class CEMPlanner:
    samples: int = 32
    elites: int = 4
    iterations: int = 2
    success_weight: float = 4.0
    collision_weight: float = 4.0

    def __post_init__(self):
        if not 1 <= self.elites <= self.samples or self.iterations < 1:
            raise ValueError(f"need 1 <= elites <= samples and iterations >= 1, got {self}")

    def score(self, model: PickVLA, cond: torch.Tensor, chunks: torch.Tensor) -> torch.Tensor:
        """cond [1, E], chunks [K, H, A] -> [K]."""
        return imagined_score(model, cond, chunks, self.success_weight, self.collision_weight)

    @torch.no_grad()
    def plan(self, model: PickVLA, cond: torch.Tensor, generator: torch.Generator | None = None,
             temperature: float | None = None) -> np.ndarray:
        """cond [1, E] -> the best chunk [H, A] found. The first population is sampled at temperature
        1 whatever the policy's (`temperature` is ignored): CEM needs its spread."""
        chunks = model.head.sample(cond.expand(self.samples, -1), generator=generator)
        best, best_score = chunks[0], -float("inf")
        for it in range(self.iterations):
            scores = self.score(model, cond, chunks)
            top = scores.topk(self.elites).indices
            if float(scores[top[0]]) > best_score:
                best, best_score = chunks[top[0]], float(scores[top[0]])
            if it + 1 < self.iterations:
                elite = chunks[top]
                mean, std = elite.mean(0), elite.std(0, unbiased=False) + 0.05
                noise = torch.randn(self.samples, *mean.shape, generator=generator)
                chunks = (mean + std * noise).clamp(-1.0, 1.0)
        return best.numpy()


@dataclass
class MPPIPlanner:
    samples: int = 32
    iterations: int = 2
    temperature: float = 0.05
    """MPPI's lambda, in units of the score (grasp + success_weight * success, averaged over the chunk)."""
    std: float = 0.2
    """Spread of the candidates around the policy's chunk, in action units."""
    success_weight: float = 4.0
    collision_weight: float = 4.0

    def __post_init__(self):
        if not self.std > 0:
            raise ValueError(f"std must be > 0, got {self.std}")
        self.mppi = MPPI(samples=self.samples, iterations=self.iterations, temperature=self.temperature)

    @torch.no_grad()
    def plan(self, model: PickVLA, cond: torch.Tensor, generator: torch.Generator | None = None,
             temperature: float | None = None) -> np.ndarray:
        """cond [1, E] -> the chunk [H, A] MPPI settles on, started from the policy's own (at the
        policy's temperature; the version's when None)."""
        proposal = model.sample_chunks(cond, generator, temperature)[0]
        best, _ = self.mppi.optimise(lambda chunks: imagined_score(model, cond, chunks, self.success_weight,
                                                                    self.collision_weight), proposal,
                                     torch.full_like(proposal, self.std), generator)
        return best.numpy()


PLANNERS = {"cem": CEMPlanner, "mppi": MPPIPlanner}
