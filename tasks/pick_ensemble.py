"""Train an ensemble of world models for a pick-vla version: K members (models.pick_ensemble), member j
trained from scratch, with seed + j, on a bootstrap resample of the episodes (as many, drawn with
replacement: about 63% of them distinct), on the version's embeddings of every frame.

The encoder is frozen: the members model how the version's own embeddings evolve, which is what its
planners imagine, and encoding each frame once makes a member cost only its RSSM's steps. The
losses are the version's world-model terms with its weights (models.pick_vla.world_model_terms).
"""
from __future__ import annotations

import numpy as np
import torch

from dreamops.models.pick_ensemble import WorldModelMember
from dreamops.models.pick_vla import PickArchitecture, PickVLA, world_model_terms
from dreamops.tasks.common import MetricSink, no_metrics, progress, seed_everything
from dreamops.tasks.dataset import Dataset
from dreamops.tasks.device import adam
from dreamops.tasks.ensemble import bootstrap_ids
from dreamops.tasks.pick_config import PickTrainConfig
from dreamops.tasks.train_pick import Demos, _weights

WINDOW_KEYS = ("actions", "success", "held", "collision")


@torch.no_grad()
def embed_demos(model: PickVLA, demos: Demos, batch: int = 256) -> list[torch.Tensor]:
    """Every frame of every episode through the version's encoder -> [T, E] per episode."""
    out = []
    for e in range(len(demos)):
        frames = len(demos.actions[e])
        tokens = model.tokenizer.encode([demos.instructions[e]])
        parts = [model.encoder(demos.rgb[e][s:s + batch], demos.depth[e][s:s + batch].float(),
                               demos.proprio[e][s:s + batch], tokens.expand(min(batch, frames - s), -1))
                 for s in range(0, frames, batch)]
        out.append(torch.cat(parts))
    return out


def train_member(arch: PickArchitecture, embeds: list[torch.Tensor], demos: Demos, episodes: list[int],
                 cfg: PickTrainConfig, steps: int, seed: int, log: MetricSink = no_metrics, show_progress: bool = True,
                 desc: str = "world model member") -> WorldModelMember:
    """One member from scratch on windows of the given episodes (repeats count: a bootstrap), the
    version's world-model losses and weights, AdamW at cfg.lr with its gradient clip."""
    seed_everything(seed)
    member = WorldModelMember(arch)
    windows = np.array([(e, s) for e in episodes for s in range(len(demos.actions[e]) - cfg.seq_len + 1)])
    if not len(windows):
        raise ValueError(f"no episode has {cfg.seq_len} steps: lower train.seq_len")
    rng = np.random.default_rng(seed)
    opt = adam(member.parameters(), weight_decay_decoupled=True, lr=cfg.lr, weight_decay=cfg.weight_decay)
    weights = _weights(cfg)
    member.train()
    with progress(show_progress) as bar:
        task = bar.add_task(desc, total=steps, status="")
        for step in range(steps):
            picked = windows[rng.integers(len(windows), size=cfg.batch_size)]
            batch = {k: torch.stack([getattr(demos, k)[e][s:s + cfg.seq_len] for e, s in picked]) for k in WINDOW_KEYS}
            e = torch.stack([embeds[e][s:s + cfg.seq_len] for e, s in picked])
            wm, grasp, collision, metrics = world_model_terms(member, e, batch, weights)
            loss = weights.wm * wm + weights.grasp * grasp + weights.collision * collision
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(member.parameters(), cfg.grad_clip)
            opt.step()
            if (step + 1) % cfg.log_every == 0 or step + 1 == steps:
                log({f"ensemble/{k}": v for k, v in metrics.items()}, step + 1)
                bar.update(task, status=f"rssm {metrics['wm/loss']:.3f}")
            bar.advance(task)
    return member.eval()


def train_pick_members(model: PickVLA, data: Dataset, ids: list[str], cfg: PickTrainConfig, k: int,
                       steps: int | None = None, seed: int = 0, log: MetricSink = no_metrics,
                       show_progress: bool = True) -> list[WorldModelMember]:
    """k members for `model` on bootstrap resamples of the episodes `ids`; `steps` per member
    (cfg.steps when None)."""
    if k < 1:
        raise ValueError(f"an ensemble needs at least one member, got k={k}")
    demos = Demos.load(data, ids, model.arch.horizon)
    embeds = embed_demos(model.eval(), demos)
    index = {episode: i for i, episode in enumerate(ids)}
    members = []
    for j in range(k):
        episodes = [index[e] for e in bootstrap_ids(ids, seed + j)]
        members.append(train_member(model.arch, embeds, demos, episodes, cfg, steps or cfg.steps, seed + j, log,
                                    show_progress, f"world model member {j + 1}/{k}"))
    return members
