"""An ensemble of Ms for carracing-vmc: K MDN-RNNs, each trained on a bootstrap resample of the
training episodes, and their disagreement.

Where the data was, the members agree; off it, each extrapolates its own way, so the spread of
their predictions marks where the dream cannot be trusted (Chua et al. 2018, PETS; Sekar et al.
2020, Plan2Explore). Two uses: per-step disagreement as a signal (`disagreement`), and dreams
spread over the members (tasks.evolve with `ensemble`): a controller that exploits one M's
quirks scores well in one member's dreams only.
"""
from __future__ import annotations

import numpy as np
import torch

from dreamops.models.mdnrnn import MDNRNN
from dreamops.tasks.common import MetricSink, no_metrics
from dreamops.tasks.config import MDNConfig
from dreamops.tasks.encode import Latents
from dreamops.tasks.fidelity import mixture_mean
from dreamops.tasks.train_mdnrnn import train_mdnrnn


def bootstrap_ids(ids: list[str], seed: int) -> list[str]:
    """As many episodes as `ids`, drawn with replacement (about 63% of them distinct)."""
    rng = np.random.default_rng(seed)
    return [ids[i] for i in rng.integers(len(ids), size=len(ids))]


def train_members(latents: Latents, train_ids: list[str], holdout_ids: list[str], cfg: MDNConfig, k: int,
                  action_repeat: int = 1, seed: int = 0, log: MetricSink = no_metrics,
                  show_progress: bool = True) -> list[MDNRNN]:
    """k Ms, member j trained from scratch on bootstrap_ids(train_ids, seed + j) with seed + j."""
    if k < 1:
        raise ValueError(f"an ensemble needs at least one member, got k={k}")
    return [train_mdnrnn(latents, bootstrap_ids(train_ids, seed + j), holdout_ids, cfg, action_repeat, seed + j,
                         log, show_progress)[0] for j in range(k)]


@torch.no_grad()
def disagreement(members: list[MDNRNN], z: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """Each member reads the same sequence z [B, T, Z], actions [B, T, A] (teacher forcing) and
    predicts the next latent's mean -> the variance across members of that prediction, averaged over
    latent dimensions [B, T]."""
    if len(members) < 2:
        raise ValueError("disagreement needs at least two members")
    preds = []
    for m in members:
        h, _ = m.eval().lstm(torch.cat([z, actions], dim=-1))
        preds.append(mixture_mean(m, h))
    return torch.stack(preds).var(dim=0).mean(-1)
