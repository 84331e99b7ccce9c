"""Flow-matching action head: generates a chunk of H actions from noise, conditioned on an observation.

Conditional flow matching with the linear (rectified-flow) path: x_t = (1 - t) x0 + t x1 with
x0 ~ N(0, I) and x1 the demonstrated chunk, so the target velocity is x1 - x0 for every t. At
inference, `steps` Euler steps carry noise at t=0 to a chunk at t=1; actions are then clipped to
the action space.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

VelocityFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]  # (x [B,H,A], t [B], cond) -> v


def sinusoidal_embedding(t: torch.Tensor, dim: int, max_period: float = 1000.0) -> torch.Tensor:
    """t [B] in [0, 1] -> [B, dim] (sin and cos at geometric frequencies, as in transformers)."""
    if dim % 2:
        raise ValueError(f"time embedding dim must be even, got {dim}")
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    angles = 1000.0 * t.float()[:, None] * freqs[None]   # t in [0, 1]: scale so the fastest wave turns
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)


def interpolate(noise: torch.Tensor, actions: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The point at time t [B] on the straight path from noise to actions ([B, H, A] each)."""
    tt = t.view(-1, *([1] * (actions.dim() - 1)))
    return (1.0 - tt) * noise + tt * actions


def flow_matching_loss(velocity: VelocityFn, actions: torch.Tensor, cond: torch.Tensor,
                       noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Mean squared error between the predicted and the target velocity (actions - noise)."""
    x_t = interpolate(noise, actions, t)
    return ((velocity(x_t, t, cond) - (actions - noise)) ** 2).mean()


def euler_integrate(velocity: VelocityFn, noise: torch.Tensor, cond: torch.Tensor, steps: int) -> torch.Tensor:
    """Integrate dx/dt = v(x, t, cond) from t=0 (noise) to t=1 in `steps` equal Euler steps."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    x, dt = noise, 1.0 / steps
    for i in range(steps):
        t = torch.full((x.shape[0],), i * dt, dtype=x.dtype, device=x.device)
        x = x + dt * velocity(x, t, cond)
    return x


class FlowMatchingActionHead(nn.Module):
    """v(x_t, t, cond): an MLP over the flattened chunk, with the time embedding and the condition
    added to every hidden layer (FiLM-free, cheap on a CPU)."""

    def __init__(self, cond_dim: int, action_dim: int = 4, horizon: int = 16, hidden: int = 512,
                 time_dim: int = 64, steps: int = 10, layers: int = 3):
        super().__init__()
        self.action_dim, self.horizon, self.steps, self.time_dim = action_dim, horizon, steps, time_dim
        flat = horizon * action_dim
        self.inp = nn.Linear(flat, hidden)
        self.context = nn.Sequential(nn.Linear(time_dim + cond_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.blocks = nn.ModuleList(nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, hidden), nn.SiLU())
                                    for _ in range(layers))
        self.out = nn.Linear(hidden, flat)
        nn.init.zeros_(self.out.weight)  # start at v = 0: the first steps do not fling samples around
        nn.init.zeros_(self.out.bias)

    def velocity(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        if x.shape[1:] != (self.horizon, self.action_dim):
            raise ValueError(f"chunk must be [B, {self.horizon}, {self.action_dim}], got {tuple(x.shape)}")
        ctx = self.context(torch.cat([sinusoidal_embedding(t, self.time_dim), cond], dim=-1))
        h = self.inp(x.reshape(b, -1)) + ctx
        for block in self.blocks:
            h = h + block(h) + ctx
        return self.out(h).view(b, self.horizon, self.action_dim)

    def forward(self, actions: torch.Tensor, cond: torch.Tensor, noise: torch.Tensor | None = None,
                t: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        """actions [B, H, A] (demonstrated chunks), cond [B, C] -> (CFM loss, metrics)."""
        noise = torch.randn_like(actions) if noise is None else noise
        t = torch.rand(actions.shape[0], device=actions.device) if t is None else t
        loss = flow_matching_loss(self.velocity, actions, cond, noise, t)
        return loss, {"flow/loss": float(loss.detach())}

    @torch.no_grad()
    def sample(self, cond: torch.Tensor, noise: torch.Tensor | None = None, steps: int | None = None,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """cond [B, C] -> action chunks [B, H, A] in [-1, 1]."""
        if noise is None:
            noise = torch.randn(cond.shape[0], self.horizon, self.action_dim, generator=generator)
        return euler_integrate(self.velocity, noise, cond, steps or self.steps).clamp(-1.0, 1.0)
