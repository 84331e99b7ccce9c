"""encode: every episode's frames -> latent mean and log-variance, cached by (dataset, V weights);
episodes a previous call already encoded with the same V are taken from its answer (a round whose V
was not fine-tuned encodes only its new episodes)."""
from __future__ import annotations

import numpy as np
import torch

from dreamops.models.bundle import module_hash
from dreamops.models.vae import VAE, for_cpu_inference
from dreamops.tasks.dataset import Dataset
from dreamops.tasks.device import CPU, Compute

Latents = dict[str, dict[str, np.ndarray]]  # episode id -> {"mu", "logvar", "actions", "rewards", "dones"}
Encoded = tuple[str, Latents]  # (V's module_hash, what that V gave)


@torch.no_grad()
def encode(vae: VAE, dataset: Dataset, batch_size: int = 512, use_cache: bool = True,
           compute: Compute = CPU, known: Encoded | None = None) -> Latents:
    """Every episode through V (a CPU module) on `compute`'s device, in fp32 (the latents are M's
    training data); uint8 frames move there a batch at a time, latents come back as numpy.
    `known`: an earlier answer and the hash of the V that gave it; used only if it is this V's
    (an episode's latents depend on its frames and V alone, so they are the same bits)."""
    v_hash = module_hash(vae)
    cache = dataset.path / "latents" / f"{v_hash[:16]}.npz"
    if use_cache and cache.exists():
        with np.load(cache) as data:
            return _unflatten({k: data[k] for k in data.files})
    reusable = known[1] if known is not None and known[0] == v_hash else {}
    vae.eval()
    model = for_cpu_inference(vae) if compute.is_cpu else compute.module(vae)
    out: Latents = {}
    for eid in dataset.manifest["episode_id"]:
        if eid in reusable:
            out[eid] = reusable[eid]
            continue
        ep = dataset.load(eid)
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
