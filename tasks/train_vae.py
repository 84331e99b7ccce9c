"""train_vae: fit V on the dataset's frames, streamed shard by shard (any dataset size)."""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from dreamops.models.vae import VAE, vae_kl
from dreamops.tasks.common import MetricSink, no_metrics, progress, seed_everything
from dreamops.tasks.config import VAEConfig
from dreamops.tasks.dataset import Dataset
from dreamops.tasks.device import CPU, Compute, adam

BUFFER_FRAMES = 20_000  # frames shuffled together in memory


def frame_batches(dataset: Dataset, episode_ids: list[str], batch_size: int, rng: np.random.Generator
                  ) -> Iterator[np.ndarray]:
    """Shuffled uint8 batches [B, 64, 64, 3]: shards in random order, frames shuffled within a buffer."""
    order = rng.permutation(len(episode_ids))
    buffer: list[np.ndarray] = []
    size = 0

    def drain(frames: np.ndarray) -> Iterator[np.ndarray]:
        frames = frames[rng.permutation(len(frames))]
        for i in range(0, len(frames), batch_size):
            yield frames[i:i + batch_size]
    for i in order:
        obs = dataset.load(episode_ids[i])["obs"]
        buffer.append(obs)
        size += len(obs)
        if size >= BUFFER_FRAMES:
            yield from drain(np.concatenate(buffer))
            buffer, size = [], 0
    if buffer:
        yield from drain(np.concatenate(buffer))


@torch.no_grad()
def vae_holdout_metrics(vae: VAE, dataset: Dataset, episode_ids: list[str], max_frames: int = 2000,
                        compute: Compute = CPU) -> dict[str, float]:
    """Per-frame summed-pixel reconstruction MSE (through the latent mean) and KL on held-out frames,
    in fp32 on `compute`'s device (where `vae` is)."""
    vae.eval()
    recon, kl, n = 0.0, 0.0, 0
    for _, ep in dataset.iter_episodes(episode_ids):
        x = VAE.to_input(compute.put(torch.from_numpy(ep["obs"][: max_frames - n])))
        mu, logvar = vae.encode_params(x)
        recon += ((vae.decode(mu) - x) ** 2).sum().item()
        kl += vae_kl(mu, logvar).sum().item()
        n += len(x)
        if n >= max_frames:
            break
    return {"vae/holdout_recon": recon / max(n, 1), "vae/holdout_kl": kl / max(n, 1)}


def train_vae(dataset: Dataset, train_ids: list[str], holdout_ids: list[str], cfg: VAEConfig, seed: int = 0,
              log: MetricSink = no_metrics, show_progress: bool = True,
              init: VAE | None = None, compute: Compute = CPU) -> tuple[VAE, dict[str, float]]:
    """`init` warm-starts from a parent version's V (cfg.epochs=0 then reuses it unchanged).
    Trains on `compute`'s device (uint8 batches move there one at a time; the forward under its
    bf16 autocast when enabled, the loss in fp32) and returns V on the CPU."""
    seed_everything(seed)
    rng = np.random.default_rng(seed)
    vae = VAE(cfg.latent_dim, cfg.beta, cfg.kl_tolerance)
    if init is not None:
        vae.load_state_dict(init.state_dict())
    vae = vae.to(compute.device)
    opt = adam(vae.parameters(), lr=cfg.lr)
    n_frames = int(dataset.manifest.set_index("episode_id").loc[train_ids, "length"].sum())
    steps_per_epoch = -(-n_frames // cfg.batch_size)
    step = 0
    epoch_metrics: dict[str, float] = {}
    with progress(show_progress) as bar:
        task = bar.add_task("train V (VAE)", total=cfg.epochs * steps_per_epoch, status="")
        for epoch in range(cfg.epochs):
            vae.train()
            sums: dict[str, float] = {}
            for batch in frame_batches(dataset, train_ids, cfg.batch_size, rng):
                x = VAE.to_input(compute.put(torch.from_numpy(batch)))
                with compute.autocast():
                    loss, m = vae(x)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                step += 1
                for k, v in m.items():
                    sums[k] = sums.get(k, 0.0) + v
                if step % 20 == 0:
                    log(m, step)
                bar.update(task, advance=1, status=f"epoch {epoch + 1} loss {m['vae/loss']:.1f}")
            epoch_metrics = {f"{k}_epoch": v / max(1, steps_per_epoch) for k, v in sums.items()}
            epoch_metrics.update(vae_holdout_metrics(vae, dataset, holdout_ids, compute=compute))
            log(epoch_metrics, epoch)
    vae.eval()
    if cfg.epochs == 0:  # a reused V: still measured on this data's holdout, for the gates
        epoch_metrics = vae_holdout_metrics(vae, dataset, holdout_ids, compute=compute)
    return vae.to("cpu"), {**epoch_metrics, "vae/steps": float(step)}
