"""Rollout fidelity: how many steps ahead carracing-vmc's M can be trusted.

M is trained on one-step likelihoods (mdn_nll), but the controller is trained on M's own rollouts
hundreds of steps long. A model trusted 50 steps ahead is a different model from one trusted for 1.
From real held-out situations (M has read the episode up to t0 from the real frames), M rolls open
loop under the real actions, feeding back its own prediction of the next latent (the mixture's mean:
the predictable part; the dream samples around it), and is compared k steps later with what happened:
- latent error: mean squared error to V's latent of the real frame, over the real latents' variance
  (1.0 = no better than predicting the average latent);
- decoded frame: V's decoding of the prediction against the real frame, PSNR and SSIM.
Reference rows on the same starts: "persistence" (nothing changes: z_{t0} for every k, decoded by V)
and V's own reconstruction of the real frame (the best any prediction decoded by this V can score).
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from dreamops.models.mdnrnn import MDNRNN
from dreamops.models.vae import VAE
from dreamops.tasks.dataset import Dataset

HORIZONS = (1, 5, 15, 50)


def psnr(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio of images in [0, 1], [B, C, H, W] -> [B] in dB."""
    mse = (x - y).pow(2).flatten(1).mean(1).clamp(min=1e-10)
    return 10.0 * torch.log10(1.0 / mse)


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    g = torch.exp(-((torch.arange(size, dtype=torch.float32) - (size - 1) / 2) ** 2) / (2 * sigma ** 2))
    g = g / g.sum()
    return torch.outer(g, g)


def ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Structural similarity (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5, K1 0.01, K2 0.03,
    valid region) of images in [0, 1], [B, C, H, W] -> [B], averaged over channels and positions."""
    c = x.shape[1]
    w = _gaussian_window().to(x)[None, None].expand(c, 1, -1, -1)

    def blur(t):
        return F.conv2d(t, w, groups=c)

    mx, my = blur(x), blur(y)
    vx, vy, cov = blur(x * x) - mx ** 2, blur(y * y) - my ** 2, blur(x * y) - mx * my
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    s = ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2))
    return s.flatten(1).mean(1)


def mixture_mean(mdnrnn: MDNRNN, h: torch.Tensor) -> torch.Tensor:
    """E[z_next] under M's mixture at hidden state h [B, H] -> [B, Z]."""
    logit_pi, mu, _, _, _ = mdnrnn.heads(h)
    return (torch.softmax(logit_pi, dim=-1) * mu).sum(-1)


@torch.no_grad()
def open_loop(mdnrnn: MDNRNN, z: torch.Tensor, actions: torch.Tensor, starts: list[int], horizon: int) -> torch.Tensor:
    """One episode's latents z [T, Z] and actions [T, A]: from each start t0, M reads the real z_0..z_t0
    (teacher forcing), then predicts z_{t0+1} .. z_{t0+horizon} feeding back its own predictions
    under the real actions -> [S, horizon, Z]."""
    states = [mdnrnn.initial_state(1)]   # states[t]: after reading steps 0 .. t-1
    for t in range(max(starts)):
        states.append(mdnrnn.step(z[t:t + 1], actions[t:t + 1], states[-1]))
    h = torch.cat([states[t][0] for t in starts])
    c = torch.cat([states[t][1] for t in starts])
    zt, out = z[starts], []
    for k in range(horizon):
        idx = [t + k for t in starts]
        h, c = mdnrnn.step(zt, actions[idx], (h, c))
        zt = mixture_mean(mdnrnn, h)
        out.append(zt)
    return torch.stack(out, dim=1)


@torch.no_grad()
def mdn_rollout_fidelity(vae: VAE, mdnrnn: MDNRNN, data: Dataset, ids: list[str],
                         horizons: tuple[int, ...] = HORIZONS, starts_per_episode: int = 8, skip_steps: int = 0,
                         seed: int = 0) -> dict[str, float]:
    """Open-loop fidelity of M (decoded by V) on held-out episodes `ids` at each horizon k, from
    `starts_per_episode` random starts per episode at t0 >= skip_steps (past the zoom-in; earlier in an
    episode too short for that) with k real steps after them. -> {"fidelity/k{k}/{latent_nmse, psnr, ssim, persistence_latent_nmse,
    persistence_psnr, persistence_ssim, v_psnr, v_ssim}", "fidelity/starts"}; horizons no episode
    is long enough for are left out."""
    if not ids:
        raise ValueError("rollout fidelity needs at least one held-out episode")
    vae.eval()
    mdnrnn.eval()
    rng = np.random.default_rng(seed)
    horizon = max(horizons)
    preds, real_z, start_z, frames, all_z = [], [], [], [], []
    for _, ep in data.iter_episodes(ids):
        obs = torch.from_numpy(np.ascontiguousarray(ep["obs"]))
        z = vae.encode(obs)
        all_z.append(z)
        n = len(z)
        lo = min(skip_steps, max(0, n - 1 - horizon))   # past the zoom-in where the episode allows
        longest = min(horizon, n - 1 - lo)
        if longest < min(horizons):
            continue
        span = np.arange(lo, n - longest)
        starts = sorted(int(t) for t in rng.choice(span, size=min(starts_per_episode, len(span)), replace=False))
        pred = open_loop(mdnrnn, z, torch.from_numpy(ep["actions"].astype(np.float32)), starts, longest)
        pad = horizon - longest   # horizons beyond this episode are masked out below
        preds.append(F.pad(pred, (0, 0, 0, pad), value=float("nan")))
        target_idx = np.minimum(np.array(starts)[:, None] + np.arange(1, horizon + 1)[None], n - 1)
        real = z[target_idx]
        real[:, longest:] = float("nan")
        real_z.append(real)
        start_z.append(z[starts])
        frames.append(obs[target_idx])
    if not preds:
        raise ValueError(f"no held-out episode is longer than {min(horizons)} steps")
    pred, real, z0 = torch.cat(preds), torch.cat(real_z), torch.cat(start_z)
    frames = torch.cat(frames)
    variance = torch.cat(all_z).var(0).mean().clamp(min=1e-8)
    out: dict[str, float] = {"fidelity/starts": float(len(pred))}
    for k in horizons:
        valid = ~torch.isnan(real[:, k - 1, 0])
        if not valid.any():
            continue
        p, r, f = pred[valid, k - 1], real[valid, k - 1], VAE.to_input(frames[valid, k - 1])
        rows = {
            "latent_nmse": (p - r).pow(2).mean(1) / variance,
            "persistence_latent_nmse": (z0[valid] - r).pow(2).mean(1) / variance,
        }
        decoded = {"": vae.decode(p).clamp(0, 1), "persistence_": vae.decode(z0[valid]).clamp(0, 1),
                   "v_": vae.decode(r).clamp(0, 1)}
        for prefix, image in decoded.items():
            rows[f"{prefix}psnr"], rows[f"{prefix}ssim"] = psnr(image, f), ssim(image, f)
        for name, values in rows.items():
            out[f"fidelity/k{k}/{name}"] = float(values.mean())
        out[f"fidelity/k{k}/starts"] = float(valid.sum())
    return out


def trusted_horizon(report: dict[str, float], horizons: tuple[int, ...] = HORIZONS) -> int:
    """The longest measured horizon k at which M's latent error is below persistence's (0 if none):
    how far ahead M predicts better than "nothing changes"."""
    trusted = 0
    for k in horizons:
        ours, still = report.get(f"fidelity/k{k}/latent_nmse"), report.get(f"fidelity/k{k}/persistence_latent_nmse")
        if ours is None or still is None or not math.isfinite(ours) or ours >= still:
            break
        trusted = k
    return trusted


def gate_horizon(steps: int, measured: tuple[int, ...] = HORIZONS) -> int:
    """The longest measured horizon up to `steps` (the smallest measured one if none is): the one the
    model gate judges, or the one the controller's dreams reach."""
    if not measured:
        raise ValueError("no horizon was measured")
    return max([k for k in measured if k <= steps] or [min(measured)])


def fidelity_ratio(report: dict[str, float], k: int) -> float:
    """M's latent error at horizon k over persistence's (< 1: M predicts better than "nothing
    changes"); nan when horizon k was not measured."""
    ours, still = report.get(f"fidelity/k{k}/latent_nmse"), report.get(f"fidelity/k{k}/persistence_latent_nmse")
    return float("nan") if ours is None or still is None else ours / max(still, 1e-12)



PICK_HORIZONS = (1, 4, 8, 16)   # up to a chunk: the planners imagine one chunk (model.horizon) ahead


@torch.no_grad()
def rssm_rollout_fidelity(model, demos, horizons: tuple[int, ...] = PICK_HORIZONS, bins: int = 10
                          ) -> dict[str, float]:
    """pick-vla's world model as its planners use it, on held-out episodes (tasks.train_pick.Demos):
    from the state of one observation (models.pick_vla.initial_state), the RSSM imagines the real
    next actions. -> "fidelity/k{k}/cosine": cosine between the imagined prior at k steps and the
    posterior that encodes the real frame k steps later (probability vectors; k=1 is the gate's
    one-step cosine from a single frame); and the success head's calibration for the event the
    planners score, "the task succeeds within the next model.horizon actions": P = 1 - prod(1 - p_j)
    over the imagined steps, against what happened (Brier score, expected calibration error over
    `bins` equal-width bins, the base rate)."""
    from dreamops.models.pick_vla import initial_state

    model.eval()
    rssm, chunk = model.rssm, model.arch.horizon
    cosines: dict[int, list[torch.Tensor]] = {k: [] for k in horizons}
    predicted, happened = [], []
    for e in range(len(demos)):
        t_len = len(demos.actions[e])
        batch = demos.batch(np.array([(e, 0)]), t_len, model.tokenizer)
        embeds = model.embed_sequence(batch)                                     # [1, T, E]
        post = rssm.observe(embeds, batch["actions"], sample=False)["post_logits"][0].softmax(-1).flatten(-2)
        starts = torch.arange(t_len)   # the last state too: its chunk holds the last action
        state = initial_state(model, embeds[0, starts])                         # one state per start
        idx = torch.minimum(starts[:, None] + torch.arange(chunk)[None], torch.tensor(t_len - 1))
        actions = batch["actions"][0][idx]                                       # [S, H, A], the last one held
        p_clear = torch.ones(len(starts))
        for j in range(chunk):
            state, prior = rssm.img_step(state, actions[:, j], sample=False)
            p_clear = p_clear * (1 - torch.sigmoid(rssm.success_head(rssm.feature(state)).squeeze(-1)))
            k = j + 1
            if k in cosines:
                inside = starts + k < t_len
                if inside.any():
                    target = post[starts[inside] + k]
                    cosines[k].append(F.cosine_similarity(prior[inside].softmax(-1).flatten(-2), target, dim=-1))
        success = batch["success"][0]
        predicted.append(1 - p_clear)
        happened.append(torch.stack([success[s:s + chunk].max() for s in starts.tolist()]))
    if not predicted:
        raise ValueError("rollout fidelity needs at least one held-out episode")
    p, y = torch.cat(predicted), torch.cat(happened).float()
    out = {f"fidelity/k{k}/cosine": float(torch.cat(c).mean()) for k, c in cosines.items() if c}
    out["fidelity/success_brier"] = float((p - y).pow(2).mean())
    out["fidelity/success_ece"] = expected_calibration_error(p, y, bins)
    out["fidelity/success_base_rate"] = float(y.mean())
    out["fidelity/starts"] = float(len(p))
    return out


def expected_calibration_error(p: torch.Tensor, y: torch.Tensor, bins: int = 10) -> float:
    """sum over equal-width probability bins of (share of predictions in the bin) x |mean predicted -
    observed frequency| (Naeini et al. 2015)."""
    which = (p * bins).long().clamp(max=bins - 1)
    ece = 0.0
    for b in range(bins):
        inside = which == b
        if inside.any():
            ece += float(inside.float().mean() * (p[inside].mean() - y[inside].mean()).abs())
    return ece
