"""Pictures a person would rather look at than read: reconstructions, curves, dream vs real."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from dreamops.models.mdnrnn import MDNRNN, sample_mixture  # noqa: E402
from dreamops.models.vae import VAE  # noqa: E402


def _save_grid(rows: list[np.ndarray], path: Path, scale: int = 2) -> Path:
    """rows: each [N, 64, 64, 3] uint8 -> one image, rows stacked, 2 px gaps."""
    gap = 2
    n = rows[0].shape[0]
    canvas = np.full((len(rows) * (64 + gap), n * (64 + gap), 3), 255, np.uint8)
    for r, frames in enumerate(rows):
        for i, f in enumerate(frames):
            canvas[r * (64 + gap):r * (64 + gap) + 64, i * (64 + gap):i * (64 + gap) + 64] = f
    img = Image.fromarray(canvas)
    img.resize((img.width * scale, img.height * scale), Image.NEAREST).save(path)
    return path


def reconstruction_grid(vae: VAE, frames: np.ndarray, path: Path) -> Path:
    """Top: real frames; bottom: V's reconstructions through the latent mean."""
    recon = vae.reconstruct(torch.from_numpy(np.ascontiguousarray(frames))).numpy()
    return _save_grid([frames, recon], path)


@torch.no_grad()
def dream_vs_real_strip(vae: VAE, mdnrnn: MDNRNN, obs: np.ndarray, actions: np.ndarray, path: Path,
                        start: int = 50, horizon: int = 40, every: int = 5, temperature: float = 1.0,
                        seed: int = 0) -> Path:
    """Top: real frames; bottom: M dreaming forward from the real frame at `start` under the same
    actions, decoded by V. Shows how long the dream stays faithful."""
    start = min(start, max(0, len(obs) - horizon - 1))
    horizon = min(horizon, len(obs) - start - 1)
    gen = torch.Generator().manual_seed(seed)
    z_real = vae.encode(torch.from_numpy(np.ascontiguousarray(obs[: start + 1])))
    state = mdnrnn.initial_state(1)
    for t in range(start):
        state = mdnrnn.step(z_real[t:t + 1], torch.from_numpy(actions[t:t + 1]), state)
    z = z_real[start:start + 1]
    dream = []
    for t in range(start, start + horizon):
        state = mdnrnn.step(z, torch.from_numpy(actions[t:t + 1]), state)
        logit_pi, mu, log_sigma, _, _ = mdnrnn.heads(state[0])
        z = sample_mixture(logit_pi, mu, log_sigma, temperature, torch.rand(z.shape, generator=gen),
                           torch.randn(z.shape, generator=gen))
        dream.append(z)
    idx = list(range(every - 1, horizon, every))
    decoded = (vae.decode(torch.cat(dream)[idx]).clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()
    return _save_grid([obs[[start + 1 + i for i in idx]], decoded], path)


def reward_curves(history: dict[str, list[float]], eval_rewards: dict[str, list[float]], path: Path) -> Path:
    """Left: CMA-ES dream fitness per generation (or actor-critic's dream reward per step per
    update); right: real-env returns per policy."""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    if "best" in history:
        gens = np.arange(1, len(history["best"]) + 1)
        ax1.plot(gens, history["best"], label="best")
        ax1.plot(gens, history["mean"], label="mean")
        ax1.plot(gens, history["worst"], label="worst", alpha=0.5)
        ax1.set(xlabel="generation", ylabel="dream return", title="CMA-ES in the dream")
    else:
        ax1.plot(np.arange(1, len(history["dream_reward_per_step"]) + 1), history["dream_reward_per_step"],
                 label="dream reward per step")
        ax1.set(xlabel="update", ylabel="reward per step", title="actor-critic in the dream")
    ax1.legend()
    names = list(eval_rewards)
    ax2.boxplot([eval_rewards[n] for n in names])
    ax2.set_xticks(range(1, len(names) + 1), names)
    ax2.axhline(900, ls="--", c="grey", lw=1)
    ax2.set(ylabel="episode return", title="real CarRacing-v3")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def played_frames(point: dict) -> int:
    """Real frames a round point says were played so far: `total_frames` (data and validation,
    counted once), else the data's frames plus the validation frames, else the data's frames."""
    return point.get("total_frames") or point["real_frames"] + point.get("validation_frames", 0)


def learning_curve(points: list[dict], path: Path, score: str = "real return", target: float | None = 900.0) -> Path:
    """The data flywheel: per round, the real score (mean +/- std over its evaluation episodes) and
    the dream score, against the real simulator frames played so far (data and validation episodes,
    each frame counted once; the data alone for points that do not say)."""
    fig, ax = plt.subplots(figsize=(7, 4))
    frames = np.array([played_frames(p) for p in points], dtype=float) / 1000.0
    real = np.array([p["real_return"] for p in points])
    std = np.array([p["real_std"] for p in points])
    ax.errorbar(frames, real, yerr=std, marker="o", capsize=3, label=f"{score} (real simulator)")
    ax.plot(frames, [p["dream_return"] for p in points], marker="s", ls="--", label="dream return (in M)")
    for p, x, y in zip(points, frames, real):
        kept = "" if p.get("kept", True) else "\nbelow best"  # not the best round so far on validation
        ax.annotate(f"round {p['round']}\n{p['eval_episodes']} ep{kept}", (x, y), textcoords="offset points",
                    xytext=(4, 6), fontsize=7)
    if target is not None:
        ax.axhline(target, ls=":", c="grey", lw=1)
    ax.set(xlabel="real simulator frames played so far (thousands)", ylabel="return",
           title="learning curve over data rounds")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def success_curve(points: list[dict], path: Path) -> Path:
    """pick-vla's DAgger rounds: success of each round's policy against the episodes it trained on.
    A round's policy is measured on the next round's on-policy episodes (seen objects, new seeds,
    the policy driving), the last one on the evaluation episodes (seen and novel)."""
    fig, ax = plt.subplots(figsize=(7, 4))
    measured = [p for p in points if "on_policy_success" in p]
    if measured:
        ax.plot([p["episodes"] for p in measured], [100 * p["on_policy_success"] for p in measured], marker="o",
                label="seen, next round's on-policy episodes")
    last = points[-1]
    for key, marker, label in (("eval_seen_success", "s", "seen, evaluation episodes"),
                               ("eval_novel_success", "^", "novel, evaluation episodes")):
        if key in last:
            ax.plot([last["episodes"]], [100 * last[key]], marker=marker, ls="none", ms=8, label=label)
    for p in points:
        ax.annotate(f"round {p['round']}", (p["episodes"], 100 * p.get("on_policy_success",
                                                                        p.get("eval_seen_success", 0.0))),
                    textcoords="offset points", xytext=(4, -12), fontsize=7)
    ax.axhline(95, ls=":", c="grey", lw=1)
    ax.set(xlabel="episodes in the training data (demonstrations + labelled on-policy)", ylabel="success (%)",
           ylim=(0, 100), title="pick-vla over DAgger rounds")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def fidelity_curve(report: dict[str, float], path: Path, horizons: tuple[int, ...] = (1, 5, 15, 50),
                   trained_for: int | None = None) -> Path:
    """M's open-loop rollout fidelity against horizon k (tasks.fidelity): left, latent error (M vs
    persistence); right, decoded-frame PSNR (M, persistence, and V's own reconstruction: the ceiling)."""
    ks = [k for k in horizons if f"fidelity/k{k}/latent_nmse" in report]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for name, label, style in (("latent_nmse", "M open loop", "o-"), ("persistence_latent_nmse", "nothing changes", "s--")):
        ax1.plot(ks, [report[f"fidelity/k{k}/{name}"] for k in ks], style, label=label)
    ax1.axhline(1.0, ls=":", c="grey", lw=1, label="the average latent")
    ax1.set(xscale="log", xlabel="steps ahead k", ylabel="latent MSE / latent variance", title="latent error")
    for name, label, style in (("psnr", "M open loop", "o-"), ("persistence_psnr", "nothing changes", "s--"),
                               ("v_psnr", "V's reconstruction (ceiling)", "^:")):
        ax2.plot(ks, [report[f"fidelity/k{k}/{name}"] for k in ks], style, label=label)
    ax2.set(xscale="log", xlabel="steps ahead k", ylabel="PSNR (dB)", title="decoded frame")
    for ax in (ax1, ax2):
        if trained_for is not None:
            ax.axvline(trained_for, c="red", lw=1, alpha=0.5, label="gate horizon")
        ax.set_xticks(ks, [str(k) for k in ks])
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path

