"""train_pick_vla: encoder + RSSM + flow-matching head + grasp head on demonstration windows.

A training sample is a window of `seq_len` consecutive frames of one demonstration. Every frame
carries the demonstrated next `horizon` actions (the flow head's target; past the episode's end the
last action is repeated, as the arm holds its lift) and the labels of its state: success and
"target held", which arrive with the step that entered the state.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from dreamops.models.pick_vla import LossWeights, PickArchitecture, PickVLA
from dreamops.models.encoders import WordTokenizer
from dreamops.sim.pick import PickConfig, project_to_image
from dreamops.tasks.common import MetricSink, no_metrics, progress, seed_everything
from dreamops.tasks.dataset import Dataset
from dreamops.tasks.device import CPU, Compute, adam
from dreamops.tasks.pick_config import PickModelConfig, PickTrainConfig

if TYPE_CHECKING:
    from dreamops.tasks.pick_grounding import Scenes


SEQUENCES = ("rgb", "depth", "proprio", "actions", "chunks", "success", "held", "collision", "target_uv")


def chunk_targets(actions: np.ndarray, horizon: int) -> np.ndarray:
    """actions [T, A] -> [T, horizon, A]: at step t the actions t .. t+horizon-1, the last action
    repeated past the end."""
    t_len = len(actions)
    idx = np.minimum(np.arange(t_len)[:, None] + np.arange(horizon)[None], t_len - 1)
    return actions[idx]


def state_labels(per_step: np.ndarray) -> np.ndarray:
    """A flag produced by step t (after action t) belongs to state t+1; state 0 has none."""
    out = np.zeros(len(per_step), dtype=np.float32)
    out[1:] = per_step[:-1]
    return out


@dataclass
class Demos:
    """Demonstration episodes in memory, as tensors ready for windows."""
    rgb: list[torch.Tensor]        # uint8 [T, 64, 64, 3]
    depth: list[torch.Tensor]      # float16 [T, 64, 64, 1]
    proprio: list[torch.Tensor]    # float32 [T, P]
    actions: list[torch.Tensor]    # float32 [T, A]
    chunks: list[torch.Tensor]     # float32 [T, H, A]
    success: list[torch.Tensor]    # float32 [T]
    held: list[torch.Tensor]       # float32 [T]
    collision: list[torch.Tensor]  # float32 [T], per action: a collision during step t
    target_uv: list[torch.Tensor]  # float32 [T, 2], the named object's image position: a label
    instructions: list[str]
    labelled: list[np.ndarray]     # bool [T]: states with a chunk label (all of a demonstration;
                                   # a DAgger episode's chunk queries, labelled by the expert)

    @classmethod
    def load(cls, data: Dataset, ids: list[str], horizon: int) -> "Demos":
        parts: dict[str, list] = {k: [] for k in SEQUENCES}
        instructions, labelled = [], []
        camera = PickConfig()   # demonstrations are recorded with the cell's default camera
        for _, ep in data.iter_episodes(ids):
            parts["rgb"].append(torch.from_numpy(ep["obs"]))
            parts["depth"].append(torch.from_numpy(ep["depth"].astype(np.float16)))
            parts["proprio"].append(torch.from_numpy(ep["proprio"].astype(np.float32)))
            parts["actions"].append(torch.from_numpy(ep["actions"].astype(np.float32)))
            if "label_chunks" in ep:   # DAgger: the expert's chunks, not the executed actions
                if ep["label_chunks"].shape[1] != horizon:
                    raise ValueError(f"DAgger labels have chunks of {ep['label_chunks'].shape[1]} actions, "
                                     f"the model {horizon}: relabel with this model.horizon")
                parts["chunks"].append(torch.from_numpy(ep["label_chunks"].astype(np.float32)))
                labelled.append(ep["labelled"].astype(bool))
            else:
                parts["chunks"].append(torch.from_numpy(chunk_targets(ep["actions"].astype(np.float32), horizon)))
                labelled.append(np.ones(len(ep["actions"]), bool))
            # per action (the RSSM's success head reads the state it led to); held is per state
            parts["success"].append(torch.from_numpy((ep["rewards"] > 0).astype(np.float32)))
            if "collisions" not in ep:
                raise ValueError("an episode without per-step `collisions` (recorded before they were): "
                                 "collect the data again with this code")
            parts["collision"].append(torch.from_numpy(ep["collisions"].astype(np.float32)))
            parts["held"].append(torch.from_numpy(state_labels(ep["held"])))
            parts["target_uv"].append(torch.from_numpy(project_to_image(ep["target_pos"], camera)))
            instructions.append(str(ep["instruction"]))
        return cls(**parts, instructions=instructions, labelled=labelled)

    def __len__(self) -> int:
        return len(self.actions)

    def windows(self, seq_len: int) -> np.ndarray:
        """Every (episode, start) with a full window -> [N, 2]."""
        out = [(e, s) for e, a in enumerate(self.actions) for s in range(len(a) - seq_len + 1)]
        if not out:
            raise ValueError(f"no demonstration has {seq_len} steps: lower train.seq_len")
        return np.array(out)

    def frame_index(self) -> np.ndarray:
        """Every labelled (episode, step) -> [N, 2]: the policy losses' frames."""
        return np.array([(e, t) for e, mask in enumerate(self.labelled) for t in np.flatnonzero(mask)])

    def frames(self, picked: np.ndarray, tokenizer: WordTokenizer) -> dict[str, torch.Tensor]:
        """Single frames (episode, step) -> the policy losses' inputs."""
        out = {k: torch.stack([getattr(self, k)[e][t] for e, t in picked])
               for k in ("rgb", "depth", "proprio", "chunks", "target_uv")}
        out["depth"] = out["depth"].float()
        out["tokens"] = tokenizer.encode([self.instructions[e] for e, _ in picked])
        return out

    def batch(self, windows: np.ndarray, seq_len: int, tokenizer: WordTokenizer) -> dict[str, torch.Tensor]:
        def stack(name):
            return torch.stack([getattr(self, name)[e][s: s + seq_len] for e, s in windows])
        batch = {k: stack(k) for k in SEQUENCES}
        batch["depth"] = batch["depth"].float()
        batch["tokens"] = tokenizer.encode([self.instructions[e] for e, _ in windows])
        return batch


@torch.no_grad()
def reference_scene_features(model: PickVLA, data: Dataset, ids: list[str], max_rows: int = 2000,
                             seed: int = 0) -> np.ndarray:
    """The model's scene features (ObservationEncoder.embed_and_scene) of a sample of frames from
    held-out episodes: the drift checks' latent reference for this version (what the fleet's robots
    report as latents)."""
    frames = [(ep["obs"][t], ep["depth"][t], ep["proprio"][t], str(ep["instruction"]))
              for _, ep in data.iter_episodes(ids) for t in range(len(ep["actions"]))]
    rows = np.sort(np.random.default_rng(seed).choice(len(frames), size=min(max_rows, len(frames)), replace=False))
    out = []
    for start in range(0, len(rows), 256):
        part = [frames[i] for i in rows[start:start + 256]]
        out.append(model.embed_and_scene(np.stack([f[0] for f in part]),
                                         np.stack([f[1] for f in part]).astype(np.float32),
                                         np.stack([f[2] for f in part]).astype(np.float32), [f[3] for f in part])[1])
    return torch.cat(out).numpy().astype(np.float32)


def architecture(cfg: PickModelConfig, vocab: tuple[str, ...], proprio_dim: int) -> PickArchitecture:
    """The model config's fields are the architecture's (models/ cannot import tasks/ configs); the
    proprioception's width is the data's."""
    return PickArchitecture(vocab=vocab, proprio_dim=proprio_dim, **asdict(cfg))


def _schedule(step: int, cfg: PickTrainConfig) -> float:
    """Linear warmup to 1, then cosine to 0 at the last step."""
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    span = max(1, cfg.steps - cfg.warmup_steps)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - cfg.warmup_steps) / span)))


def _weights(cfg: PickTrainConfig) -> LossWeights:
    return LossWeights(cfg.flow_weight, cfg.wm_weight, cfg.grasp_weight, cfg.target_weight, cfg.kl_dyn, cfg.kl_rep,
                       cfg.free_bits, cfg.collision_weight)


def train_pick_vla(data: Dataset, train_ids: list[str], holdout_ids: list[str], train_cfg: PickTrainConfig,
                   model_cfg: PickModelConfig, seed: int = 0, log: MetricSink = no_metrics,
                   show_progress: bool = True, compute: Compute = CPU, init: PickVLA | None = None,
                   desc: str = "train pick-vla", step_offset: int = 0,
                   grounding: "Scenes | None" = None) -> tuple[PickVLA, dict[str, float]]:
    """-> (the trained model in eval mode on the CPU, held-out report). Trains on `compute`'s
    device in fp32: the demonstrations stay on the host (uint8 images) and each step's windows and
    frames move there. `init`: warm start (a DAgger round fine-tunes the previous round's model; its
    vocabulary and proprioception statistics are kept, so its inputs mean the same). Metrics are
    logged at step_offset + step (rounds continue one curve). `grounding`: rendered scenes whose
    localisation loss joins every step (train.grounding_scenes; tasks.pick_grounding), and which a
    fresh model trains on alone first when train.grounding_steps > 0."""
    seed_everything(seed)
    demos = Demos.load(data, train_ids, model_cfg.horizon)
    if init is None:
        vocab = tuple(WordTokenizer.fit(demos.instructions).vocab)
        model = PickVLA(architecture(model_cfg, vocab, demos.proprio[0].shape[1]))
        proprio = torch.cat(demos.proprio)
        model.encoder.set_proprio_stats(proprio.mean(0), proprio.std(0))
        if grounding is not None and train_cfg.grounding_steps:
            from dreamops.tasks.pick_grounding import pretrain_grounding
            fit = pretrain_grounding(model.encoder, model.tokenizer, grounding, train_cfg.grounding_steps,
                                     train_cfg.grounding_batch_size, train_cfg.lr, seed, log)
            log({**fit, "grounding/pretrain_scenes": float(len(grounding))}, step_offset)
    else:
        model = PickVLA(init.arch)
        model.load_state_dict(init.state_dict())
    model = model.to(compute.device)
    windows, frame_index = demos.windows(train_cfg.seq_len), demos.frame_index()
    rng = np.random.default_rng(seed)
    opt = adam(model.parameters(), weight_decay_decoupled=True, lr=train_cfg.lr,
               weight_decay=train_cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _schedule(s, train_cfg))
    weights = _weights(train_cfg)
    if grounding is not None:
        from dreamops.tasks.pick_grounding import localisation_loss
        scene_cells = model.encoder.attention_cell(torch.as_tensor(grounding.target_uv))
        scene_rng = np.random.default_rng([seed, 1])   # its own draws: the windows' and frames' stay as without
    model.train()
    running: dict[str, float] = {}
    with progress(show_progress) as bar:
        task = bar.add_task(desc, total=train_cfg.steps, status="")
        for step in range(train_cfg.steps):
            picked = windows[rng.integers(len(windows), size=train_cfg.batch_size)]
            frames = frame_index[rng.integers(len(frame_index), size=train_cfg.frame_batch_size)]
            loss, metrics = model(compute.put_all(demos.batch(picked, train_cfg.seq_len, model.tokenizer)), weights,
                                  compute.put_all(demos.frames(frames, model.tokenizer)))
            if grounding is not None:
                scene_loss = localisation_loss(model.encoder, model.tokenizer, grounding,
                                               scene_rng.integers(len(grounding), size=train_cfg.grounding_batch_size),
                                               scene_cells, compute.device)
                loss = loss + weights.target * scene_loss
                metrics["grounding/ce"] = float(scene_loss.detach())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), train_cfg.grad_clip)
            opt.step()
            sched.step()
            for k, v in metrics.items():
                running[k] = running.get(k, 0.0) + v
            if (step + 1) % train_cfg.log_every == 0 or step + 1 == train_cfg.steps:
                n = train_cfg.log_every if (step + 1) % train_cfg.log_every == 0 else (step + 1) % train_cfg.log_every
                means = {f"pick/{k}": v / n for k, v in running.items()}
                log({**means, "pick/lr": sched.get_last_lr()[0], "pick/grad_norm": float(grad_norm)},
                    step_offset + step + 1)
                running = {}
                bar.update(task, status=f"loss {means['pick/train/loss']:.3f}")
            bar.advance(task)
    model.eval()
    report = holdout_metrics(model, Demos.load(data, holdout_ids, model_cfg.horizon), train_cfg, seed, compute)
    report["train/windows"] = float(len(windows))
    report["train/episodes"] = float(len(demos))
    report["train/labelled_frames"] = float(len(frame_index))
    if grounding is not None:
        report["train/grounding_scenes"] = float(len(grounding))
    log(report, step_offset + train_cfg.steps)
    return model.to("cpu"), report


@torch.no_grad()
def holdout_metrics(model: PickVLA, demos: Demos, cfg: PickTrainConfig, seed: int = 0,
                    compute: Compute = CPU) -> dict[str, float]:
    """Losses on held-out demonstrations with fixed noise, and the RSSM's one-step cosine (the
    world-model gate's figure): every held-out window of seq_len frames, in batches, on `compute`'s
    device (where `model` is). The flow noise is drawn on the host, the same on every device; the
    RSSM's latent samples use the device's generator, seeded."""
    seq_len = min(cfg.seq_len, min(len(a) for a in demos.actions))
    windows = demos.windows(seq_len)
    gen = torch.Generator().manual_seed(seed)
    sums: dict[str, float] = {}
    cosines = []
    for start in range(0, len(windows), 64):
        picked = windows[start: start + 64]
        batch = compute.put_all(demos.batch(picked, seq_len, model.tokenizer))
        n = len(picked) * seq_len
        h, a = model.arch.horizon, model.arch.action_dim
        noise = compute.put(torch.randn(n, h, a, generator=gen))
        t = compute.put(torch.rand(n, generator=gen))
        torch.manual_seed(seed)   # the RSSM's latent samples
        _, metrics = model(batch, _weights(cfg), None, noise, t)
        for k, v in metrics.items():
            sums[k] = sums.get(k, 0.0) + v * len(picked)
        cosines.append(model.rssm.one_step_cosine(model.embed_sequence(batch), batch["actions"]).flatten().cpu())
    out = {f"holdout/{k}": v / len(windows) for k, v in sums.items()}
    out["holdout/wm_cosine"] = float(torch.cat(cosines).mean())
    return out
