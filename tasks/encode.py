"""encode: every episode's frames -> latent mean and log-variance, cached by (dataset, V weights)."""
from __future__ import annotations

import numpy as np
import torch

from dreamops.models.bundle import module_hash
from dreamops.models.vae import VAE
from dreamops.tasks.dataset import Dataset
from dreamops.tasks.device import CPU, Compute

Latents = dict[str, dict[str, np.ndarray]]  # episode id -> {"mu", "logvar", "actions", "rewards", "dones"}


@torch.no_grad()
def encode(vae: VAE, dataset: Dataset, batch_size: int = 512, use_cache: bool = True,
           compute: Compute = CPU) -> Latents:
    """Every episode through V (a CPU module) on `compute`'s device, in fp32 (the latents are M's
    training data); uint8 frames move there a batch at a time, latents come back as numpy."""
    cache = dataset.path / "latents" / f"{module_hash(vae)[:16]}.npz"
    if use_cache and cache.exists():
        with np.load(cache) as data:
            return _unflatten({k: data[k] for k in data.files})
    vae.eval()
    model = compute.module(vae)
    out: Latents = {}
    for eid, ep in dataset.iter_episodes():
        mus, logvars = [], []
        for i in range(0, len(ep["obs"]), batch_size):
            mu, logvar = model.encode_params(VAE.to_input(compute.put(torch.from_numpy(ep["obs"][i:i + batch_size]))))
            mus.append(mu.cpu().numpy())
            logvars.append(logvar.cpu().numpy())
        out[eid] = {"mu": np.concatenate(mus), "logvar": np.concatenate(logvars), "actions": ep["actions"],
                    "rewards": ep["rewards"], "dones": ep["dones"]}
    cache.parent.mkdir(exist_ok=True)
    tmp = cache.with_suffix(".tmp.npz")
    np.savez(tmp, **{f"{eid}/{k}": v for eid, d in out.items() for k, v in d.items()})
    tmp.rename(cache)
    return out


def _unflatten(flat: dict[str, np.ndarray]) -> Latents:
    out: Latents = {}
    for key, value in flat.items():
        eid, name = key.split("/")
        out.setdefault(eid, {})[name] = value
    return out
