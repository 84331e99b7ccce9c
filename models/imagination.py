"""Learning in imagination, DreamerV3-style (Hafner et al. 2023; danijar/dreamerv3 agent.py):
lambda-returns, percentile return normalisation, a symlog critic, and a Gaussian actor around a
deterministic controller. Used to train carracing-vmc's linear controller in M's dream
(tasks/actor_critic.py), next to CMA-ES.
"""
from __future__ import annotations

import math

import torch
from torch import nn


def symlog(x: torch.Tensor) -> torch.Tensor:
    return torch.sign(x) * torch.log1p(x.abs())


def symexp(x: torch.Tensor) -> torch.Tensor:
    return torch.sign(x) * torch.expm1(x.abs())


def lambda_returns(rewards: torch.Tensor, values: torch.Tensor, cont: torch.Tensor, discount: float,
                   lam: float) -> torch.Tensor:
    """TD(lambda) targets. rewards [B, H] (r_t: after action t), cont [B, H] (1 while the episode goes
    on after step t), values [B, H + 1] (V(s_0) .. V(s_H)) ->
    R_t = r_t + discount * c_t * ((1 - lam) * V(s_{t+1}) + lam * R_{t+1}), R_H = V(s_H); [B, H]."""
    if values.shape[1] != rewards.shape[1] + 1 or rewards.shape != cont.shape:
        raise ValueError(f"need rewards/cont [B, H] and values [B, H + 1], got {tuple(rewards.shape)}, "
                         f"{tuple(cont.shape)}, {tuple(values.shape)}")
    out, last = [], values[:, -1]
    for t in reversed(range(rewards.shape[1])):
        last = rewards[:, t] + discount * cont[:, t] * ((1 - lam) * values[:, t + 1] + lam * last)
        out.append(last)
    return torch.stack(out[::-1], dim=1)


class ReturnNormalizer:
    """DreamerV3's return scale: an EMA of the 5th-95th percentile range of the lambda-returns,
    dividing advantages by max(1, range), so that large returns are scaled down and small ones are
    not blown up (sparse rewards keep their sign and size)."""

    def __init__(self, rate: float = 0.01, low: float = 5.0, high: float = 95.0, limit: float = 1.0):
        self.rate, self.low, self.high, self.limit = rate, low, high, limit
        self.lo = self.hi = None

    def update(self, returns: torch.Tensor) -> float:
        flat = returns.detach().flatten().float()
        lo, hi = torch.quantile(flat, self.low / 100), torch.quantile(flat, self.high / 100)
        if self.lo is None:
            self.lo, self.hi = lo, hi
        else:
            self.lo = self.lo + self.rate * (lo - self.lo)
            self.hi = self.hi + self.rate * (hi - self.hi)
        return self.scale

    @property
    def scale(self) -> float:
        return 1.0 if self.lo is None else max(self.limit, float(self.hi - self.lo))


class Critic(nn.Module):
    """V(s) on M's state [z, h]: an MLP predicting symlog(return) (DreamerV3 regresses a symlog
    twohot; the plain symlog regression keeps one output and the same scale robustness)."""

    def __init__(self, in_dim: int, hidden: int = 256):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.LayerNorm(hidden), nn.SiLU(),
                                 nn.Linear(hidden, hidden), nn.LayerNorm(hidden), nn.SiLU(), nn.Linear(hidden, 1))
        nn.init.zeros_(self.net[-1].weight)   # V = 0 at the start, as DreamerV3 zero-initialises its output
        nn.init.zeros_(self.net[-1].bias)

    def symlog_value(self, state: torch.Tensor) -> torch.Tensor:
        return self.net(state).squeeze(-1)

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        return symexp(self.symlog_value(state))


class GaussianActor(nn.Module):
    """A Gaussian around a deterministic policy's pre-squash output: the controller's tanh(W [z, h] +
    b) is the mean, a learned state-independent std (clamped to [min_std, max_std]) explores. The
    sample u is clipped to [-1, 1] before the controller's action squash; its log-probability is the
    unclipped Gaussian's (DreamerV3's bounded normal). Evaluation uses the mean: the controller."""

    def __init__(self, mean_net: nn.Module, action_dim: int, init_std: float = 0.3, min_std: float = 0.05,
                 max_std: float = 1.0):
        super().__init__()
        self.mean_net = mean_net
        self.min_std, self.max_std = min_std, max_std
        self.log_std = nn.Parameter(torch.full((action_dim,), math.log(init_std)))

    def std(self) -> torch.Tensor:
        return self.log_std.exp().clamp(self.min_std, self.max_std)

    def mean(self, state: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.mean_net(state))

    def sample(self, state: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        return self.mean(state) + self.std() * eps

    def log_prob_and_entropy(self, state: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        dist = torch.distributions.Normal(self.mean(state), self.std())
        return dist.log_prob(u).sum(-1), dist.entropy().sum(-1)
