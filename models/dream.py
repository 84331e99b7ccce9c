"""Imagination: controllers acting inside M's dream, with M's own reward and done heads.

`dream_rollouts` steps every row (candidate x rollout) as one batch; `dream_rollouts_looped`
is the seed's one-candidate-at-a-time loop, kept as the reference for tests and benchmarks.
"""
from __future__ import annotations

from collections.abc import Callable

import torch

from dreamops.models.controller import Controller, batched_controller_actions
from dreamops.models.mdnrnn import MDNRNN, sample_mixture

Noise = Callable[[int], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]


def generator_noise(rows: int, latent_dim: int, seed: int, dtype: torch.dtype = torch.float32) -> Noise:
    """Noise for step t: component picks u [rows, Z], offsets eps [rows, Z], done draws [rows]."""
    gen = torch.Generator().manual_seed(seed)

    def draw(t: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return (torch.rand(rows, latent_dim, generator=gen, dtype=dtype),
                torch.randn(rows, latent_dim, generator=gen, dtype=dtype),
                torch.rand(rows, generator=gen, dtype=dtype))
    return draw


@torch.no_grad()
def dream_rollouts(mdnrnn: MDNRNN, genomes: torch.Tensor, z0: torch.Tensor, h0: torch.Tensor, c0: torch.Tensor,
                   steps: int, temperature: float, noise: Noise, keep_latents: bool = False
                   ) -> dict[str, torch.Tensor]:
    """Roll N dreams at once. genomes [N, P] (row i acts with its own controller), z0 [N, Z],
    h0/c0 [N, H]. Returns returns [N], alive_steps [N] and, if asked, latents [steps, N, Z].
    A row stops collecting reward after its sampled done."""
    n = genomes.shape[0]
    if not (z0.shape[0] == h0.shape[0] == c0.shape[0] == n):
        raise ValueError(f"genomes, z0, h0, c0 must share the batch dim, got {n}, {z0.shape[0]}, "
                         f"{h0.shape[0]}, {c0.shape[0]}")
    z, h, c = z0, h0, c0
    total = torch.zeros(n, dtype=z0.dtype)
    alive = torch.ones(n, dtype=torch.bool)
    alive_steps = torch.zeros(n, dtype=torch.long)
    latents = []
    for t in range(steps):
        u, eps, u_done = noise(t)
        a = batched_controller_actions(genomes, z, h, mdnrnn.latent_dim, mdnrnn.hidden_dim)
        h, c = mdnrnn.step(z, a, (h, c))
        logit_pi, mu, log_sigma, reward, done_logit = mdnrnn.heads(h)
        z = sample_mixture(logit_pi, mu, log_sigma, temperature, u, eps)
        total += torch.where(alive, reward, torch.zeros_like(reward))
        alive_steps += alive.long()
        alive &= ~(u_done < torch.sigmoid(done_logit))
        if keep_latents:
            latents.append(z)
        if not alive.any():
            break
    out = {"returns": total, "alive_steps": alive_steps}
    if keep_latents:
        out["latents"] = torch.stack(latents)
    return out


@torch.no_grad()
def dream_rollouts_looped(mdnrnn: MDNRNN, genomes: torch.Tensor, z0: torch.Tensor, h0: torch.Tensor,
                          c0: torch.Tensor, steps: int, temperature: float, noise: Noise) -> torch.Tensor:
    """Reference: one candidate at a time, one rollout at a time, batch 1 (seed 000, 3.5c).
    `noise(t)` must give the noise for all N rows; row i uses its own slice. Returns returns [N]."""
    n = genomes.shape[0]
    steps_noise = [noise(t) for t in range(steps)]
    controller = Controller(mdnrnn.latent_dim, mdnrnn.hidden_dim).to(z0.dtype)
    returns = torch.zeros(n, dtype=z0.dtype)
    for i in range(n):
        controller.set_flat(genomes[i])
        z, state = z0[i:i + 1], (h0[i:i + 1], c0[i:i + 1])
        for t in range(steps):
            u, eps, u_done = (x[i:i + 1] for x in steps_noise[t])
            a = controller(z, state[0])
            state = mdnrnn.step(z, a, state)
            logit_pi, mu, log_sigma, reward, done_logit = mdnrnn.heads(state[0])
            z = sample_mixture(logit_pi, mu, log_sigma, temperature, u, eps)
            returns[i] += reward[0]
            if bool(u_done[0] < torch.sigmoid(done_logit[0])):
                break
    return returns
