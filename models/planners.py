"""Planners over pick-vla's action chunks, scored by imagining each candidate in the RSSM.

A candidate's score is the imagined probability of a firm grasp plus (weighted higher) of success
over the chunk's steps, minus (with a version's collision head) the imagined chance of a collision
anywhere in the chunk, weighted. With `futures` = 1 (the default) the RSSM imagines its prior's
mode; with more, every candidate meets the same `futures` sampled futures (drawn once per decision)
and is scored by their mean (`alpha` = 1, risk-neutral) or their CVaR at `alpha` (the mean of its
worst ceil(alpha * futures): risk-sensitive), as carracing-vmc's latent MPC scores its futures.
With `members` (an ensemble of world models, models.pick_ensemble) every candidate is imagined in
each member as well: the CVaR is over members x futures, minus `disagreement_weight` x the spread
of the members' scores, so a chunk that only one world model believes in loses.
- CEMPlanner: the first population comes from the flow-matching head (different noise), so
  candidates start on the demonstrations' manifold; later iterations refit a Gaussian to the elites.
- MPPIPlanner: MPPI (models.trajectory_opt) around the policy's own chunk at the version's
  temperature, so with nothing better imagined it returns what the policy would have done.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from dreamops.models.pick_vla import PickVLA, initial_state
from dreamops.models.trajectory_opt import MPPI, cvar


def draw_futures(model: PickVLA, futures: int, generator: torch.Generator | None = None) -> torch.Tensor | None:
    """The noise of `futures` imagined futures over a chunk, [H, futures, stoch, classes] uniform
    (the RSSM's Gumbel-max draws), or None for one future: the prior's mode, as before futures."""
    if futures < 1:
        raise ValueError(f"futures must be >= 1, got {futures}")
    if futures == 1:
        return None
    rssm = model.rssm
    return torch.rand(model.arch.horizon, futures, rssm.stoch, rssm.classes, generator=generator)


@torch.no_grad()
def imagined_score(model: PickVLA, cond: torch.Tensor, chunks: torch.Tensor, success_weight: float,
                   collision_weight: float = 0.0, futures: torch.Tensor | None = None,
                   alpha: float = 1.0, members: Sequence = (), disagreement_weight: float = 0.0) -> torch.Tensor:
    """Each chunk imagined in the RSSM from the observation's state: cond [1, E], chunks [K, H, A] ->
    the mean over its steps of P(grasp) + success_weight * P(success), minus collision_weight * P(a
    collision in any of its steps) when the version has a collision head [K]. `futures` (from
    draw_futures, [H, F, ...]): every chunk imagined in the same F futures. `members` (world models
    of an ensemble, models.pick_ensemble; the version's own when empty): every chunk imagined in
    each. The score is the CVaR at `alpha` of its scores over members x futures (alpha = 1: their
    mean), minus disagreement_weight x the standard deviation across members of their mean scores."""
    worlds = list(members) or [model]
    k = chunks.shape[0]
    if futures is None:
        per = torch.stack([_score_in_one_future(w, cond, chunks, success_weight, collision_weight)
                           for w in worlds])[..., None]                             # [M, K, 1]
    else:
        f = futures.shape[1]
        per = torch.stack([_score_in_one_future(w, cond, chunks.repeat_interleave(f, dim=0), success_weight,
                                                collision_weight, futures.repeat(1, k, 1, 1)).view(k, f)
                           for w in worlds])                                        # [M, K, F], chunk-major rows
    score = cvar(per.permute(1, 0, 2).reshape(k, -1), alpha, dim=1)
    if disagreement_weight and len(worlds) > 1:
        score = score - disagreement_weight * per.mean(dim=2).std(dim=0, unbiased=False)
    return score


def _score_in_one_future(model: PickVLA, cond: torch.Tensor, chunks: torch.Tensor, success_weight: float,
                         collision_weight: float, uniform: torch.Tensor | None = None) -> torch.Tensor:
    feats = model.rssm.imagine(initial_state(model, cond, chunks.shape[0]), chunks, uniform=uniform)   # [K, H, F]
    grasp = torch.sigmoid(model.grasp_head(feats).squeeze(-1))
    success = torch.sigmoid(model.rssm.success_head(feats).squeeze(-1))
    score = (grasp + success_weight * success).mean(dim=1)
    if model.collision_head is not None and collision_weight:
        clear = 1.0 - torch.sigmoid(model.collision_head(feats).squeeze(-1))   # per step, no collision
        score = score - collision_weight * (1.0 - clear.prod(dim=1))
    return score


@dataclass
class DreamScores:
    """PickVLAPolicy's `dream`: appends each executed chunk's imagined score in the version's own
    world model (the planners' objective at CEMPlanner's default weights, the prior's mode)."""
    scores: list[float] = field(default_factory=list)

    def __call__(self, model: PickVLA, cond: torch.Tensor, chunk: np.ndarray) -> None:
        default = CEMPlanner()
        self.scores.append(float(imagined_score(model, cond, torch.as_tensor(chunk)[None], default.success_weight,
                                                default.collision_weight)[0]))


@dataclass
class CEMPlanner:
    samples: int = 32
    elites: int = 4
    iterations: int = 2
    success_weight: float = 4.0
    collision_weight: float = 4.0
    futures: int = 1
    """Imagined futures per candidate (1: the prior's mode)."""
    alpha: float = 1.0
    """CVaR level over the futures (and members): 1 = their mean (risk-neutral)."""
    members: Sequence = field(default=(), repr=False)
    """World models of an ensemble to score in (models.pick_ensemble); the version's own when empty."""
    disagreement_weight: float = 0.0
    """Weight of the members' spread of a chunk's score, subtracted (with two members or more)."""

    def __post_init__(self):
        if not 1 <= self.elites <= self.samples or self.iterations < 1:
            raise ValueError(f"need 1 <= elites <= samples and iterations >= 1, got {self}")
        _check_futures(self.futures, self.alpha, self.disagreement_weight)

    def score(self, model: PickVLA, cond: torch.Tensor, chunks: torch.Tensor,
              futures: torch.Tensor | None = None) -> torch.Tensor:
        """cond [1, E], chunks [K, H, A] -> [K]; `futures` from draw_futures (None: the mode)."""
        return imagined_score(model, cond, chunks, self.success_weight, self.collision_weight, futures, self.alpha,
                              self.members, self.disagreement_weight)

    @torch.no_grad()
    def plan(self, model: PickVLA, cond: torch.Tensor, generator: torch.Generator | None = None,
             temperature: float | None = None) -> np.ndarray:
        """cond [1, E] -> the best chunk [H, A] found. The first population is sampled at temperature
        1 whatever the policy's (`temperature` is ignored): CEM needs its spread."""
        chunks = model.head.sample(cond.expand(self.samples, -1), generator=generator)
        futures = draw_futures(model, self.futures, generator)   # one draw a decision, for every candidate
        best, best_score = chunks[0], -float("inf")
        for it in range(self.iterations):
            scores = self.score(model, cond, chunks, futures)
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
    futures: int = 1
    """Imagined futures per candidate (1: the prior's mode)."""
    alpha: float = 1.0
    """CVaR level over the futures (and members): 1 = their mean (risk-neutral)."""
    members: Sequence = field(default=(), repr=False)
    """World models of an ensemble to score in (models.pick_ensemble); the version's own when empty."""
    disagreement_weight: float = 0.0
    """Weight of the members' spread of a chunk's score, subtracted (with two members or more)."""

    def __post_init__(self):
        if not self.std > 0:
            raise ValueError(f"std must be > 0, got {self.std}")
        _check_futures(self.futures, self.alpha, self.disagreement_weight)
        self.mppi = MPPI(samples=self.samples, iterations=self.iterations, temperature=self.temperature)

    @torch.no_grad()
    def plan(self, model: PickVLA, cond: torch.Tensor, generator: torch.Generator | None = None,
             temperature: float | None = None) -> np.ndarray:
        """cond [1, E] -> the chunk [H, A] MPPI settles on, started from the policy's own (at the
        policy's temperature; the version's when None)."""
        proposal = model.sample_chunks(cond, generator, temperature)[0]
        futures = draw_futures(model, self.futures, generator)
        best, _ = self.mppi.optimise(lambda chunks: imagined_score(model, cond, chunks, self.success_weight,
                                                                    self.collision_weight, futures, self.alpha,
                                                                    self.members, self.disagreement_weight),
                                     proposal, torch.full_like(proposal, self.std), generator)
        return best.numpy()


def _check_futures(futures: int, alpha: float, disagreement_weight: float) -> None:
    if futures < 1 or not 0 < alpha <= 1 or disagreement_weight < 0:
        raise ValueError(f"need futures >= 1, 0 < alpha <= 1 and disagreement_weight >= 0, got futures={futures}, "
                         f"alpha={alpha}, disagreement_weight={disagreement_weight}")


PLANNERS = {"cem": CEMPlanner, "mppi": MPPIPlanner}
