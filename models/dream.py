"""Imagination: controllers acting inside M's dream, with M's own reward and done heads.

`dream_rollouts` steps every row (candidate x rollout) as one batch; `dream_rollouts_looped`
is the seed's one-candidate-at-a-time loop, kept as the reference for tests and benchmarks.
"""
from __future__ import annotations

from collections.abc import Callable

import torch

from dreamops.models.controller import Controller, squash_actions
from dreamops.models.mdnrnn import MDNRNN, sample_mixture

Noise = Callable[[int], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]


def generator_noise(rows: int, latent_dim: int, seed: int, dtype: torch.dtype = torch.float32,
                    device: torch.device | str | None = None) -> Noise:
    """Noise for step t: component picks u [rows, Z], offsets eps [rows, Z], done draws [rows].
    Drawn on the CPU from one seeded generator whatever the device (then moved there), so a dream
    on a GPU meets the same draws as on the CPU."""
    gen = torch.Generator().manual_seed(seed)
    move = device is not None and torch.device(device).type != "cpu"

    def draw(t: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out = (torch.rand(rows, latent_dim, generator=gen, dtype=dtype),
               torch.randn(rows, latent_dim, generator=gen, dtype=dtype),
               torch.rand(rows, generator=gen, dtype=dtype))
        return tuple(x.to(device, non_blocking=True) for x in out) if move else out
    return draw


Masks = tuple[torch.Tensor, torch.Tensor]  # on z entering M's LSTM [N, Z], on h entering M's heads [N, H]


def dropout_masks(rows: int, latent_dim: int, hidden_dim: int, p: float, seed: int,
                  dtype: torch.dtype = torch.float32, device: torch.device | str | None = None) -> Masks | None:
    """Inverted-dropout masks per dream row (kept units scaled by 1 / (1 - p)), fixed for the whole
    rollout, as in Dropout's Dream Land, at the places M was trained with dropout (MDNRNN.dropout);
    None when p == 0. The controller still reads the unmasked z and h."""
    if p <= 0:
        return None
    gen = torch.Generator().manual_seed(seed + 50_021)
    z_mask = (torch.rand(rows, latent_dim, generator=gen, dtype=dtype) >= p).to(dtype) / (1.0 - p)
    h_mask = (torch.rand(rows, hidden_dim, generator=gen, dtype=dtype) >= p).to(dtype) / (1.0 - p)
    if device is not None:  # drawn on the CPU (as the noise), then moved
        z_mask, h_mask = z_mask.to(device), h_mask.to(device)
    return z_mask, h_mask


ALIVE_CHECK_EVERY = 16  # off the CPU: steps between checks that any row is still alive (each one syncs)


@torch.inference_mode()
def dream_rollouts(mdnrnn: MDNRNN, genomes: torch.Tensor, z0: torch.Tensor, h0: torch.Tensor, c0: torch.Tensor,
                   steps: int, temperature: float, noise: Noise, keep_latents: bool = False,
                   masks: Masks | None = None, done_threshold: float | None = None,
                   alive_check_every: int | None = None) -> dict[str, torch.Tensor]:
    """Roll N = P x R dreams as one batch: genomes [P, 867], each acting in R consecutive rows;
    z0 [N, Z], h0/c0 [N, H]. Returns returns [N], alive_steps [N] and, if asked, latents
    [steps, N, Z]. A row stops collecting reward after its done: sampled from the done head's
    probability, or, with done_threshold, once that probability exceeds it. `masks`
    (dropout_masks) thin M's input z and the h its heads read: each row dreams in its own M.
    Runs on the device of M and z0 (every input on it). The early stop once every row is done is
    checked every `alive_check_every` steps (each check waits for the device; default: every step
    on the CPU, every ALIVE_CHECK_EVERY steps elsewhere); after every row is done nothing is added,
    so returns and alive_steps do not depend on it (with keep_latents it is every step)."""
    n, p = z0.shape[0], genomes.shape[0]
    if n % p or not (h0.shape[0] == c0.shape[0] == n):
        raise ValueError(f"z0/h0/c0 rows ({n}, {h0.shape[0]}, {c0.shape[0]}) must be equal and a multiple "
                         f"of the {p} genomes")
    r = n // p
    zdim, hdim = mdnrnn.latent_dim, mdnrnn.hidden_dim
    in_dim = zdim + hdim
    # controllers: one [288 -> 3] matrix per candidate, shared by its R rows
    c_weight = genomes[:, : 3 * in_dim].view(p, 3, in_dim).transpose(1, 2)  # [P, 288, 3]
    c_bias = genomes[:, 3 * in_dim:].unsqueeze(1)  # [P, 1, 3]
    # LSTM: one fused matmul on [z, a, h] instead of two
    lstm = mdnrnn.lstm
    w = torch.cat([lstm.weight_ih_l0, lstm.weight_hh_l0], dim=1).t().contiguous()
    b = lstm.bias_ih_l0 + lstm.bias_hh_l0
    z, h, c = z0, h0, c0
    total = torch.zeros(n, dtype=z0.dtype, device=z0.device)
    alive = torch.ones(n, dtype=torch.bool, device=z0.device)
    alive_steps = torch.zeros(n, dtype=torch.long, device=z0.device)
    if keep_latents:
        check_every = 1
    else:
        check_every = alive_check_every or (1 if z0.device.type == "cpu" else ALIVE_CHECK_EVERY)
    latents = []
    for t in range(steps):
        u, eps, u_done = noise(t)
        zh = torch.cat([z, h], dim=-1).view(p, r, in_dim)
        a = squash_actions(torch.tanh(torch.baddbmm(c_bias, zh, c_weight))).view(n, 3)
        gates = torch.addmm(b, torch.cat([z if masks is None else z * masks[0], a, h], dim=-1), w)
        i, f, g, o = gates.chunk(4, dim=-1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        logit_pi, mu, log_sigma, reward, done_logit = mdnrnn.heads(h if masks is None else h * masks[1])
        z = sample_mixture(logit_pi, mu, log_sigma, temperature, u, eps)
        total += torch.where(alive, reward, torch.zeros_like(reward))
        alive_steps += alive
        p_done = torch.sigmoid(done_logit)
        alive &= ~(p_done > done_threshold if done_threshold is not None else u_done < p_done)
        if keep_latents:
            latents.append(z)
        if (t + 1) % check_every == 0 and not alive.any():
            break
    out = {"returns": total, "alive_steps": alive_steps}
    if keep_latents:
        out["latents"] = torch.stack(latents)
    return out


@torch.no_grad()
def dream_rollouts_looped(mdnrnn: MDNRNN, genomes: torch.Tensor, z0: torch.Tensor, h0: torch.Tensor,
                          c0: torch.Tensor, steps: int, temperature: float, noise: Noise) -> torch.Tensor:
    """Reference: one candidate at a time, one rollout at a time, batch 1 (seed 000, 3.5c).
    Same layout as `dream_rollouts` (genomes [P, 867], R rows each). `noise(t)` gives the noise of
    all N rows; row i uses its own slice. Returns returns [N]."""
    n = z0.shape[0]
    r = n // genomes.shape[0]
    steps_noise = [noise(t) for t in range(steps)]
    controller = Controller(mdnrnn.latent_dim, mdnrnn.hidden_dim).to(z0.dtype)
    returns = torch.zeros(n, dtype=z0.dtype)
    for i in range(n):
        controller.set_flat(genomes[i // r])
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
