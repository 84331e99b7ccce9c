"""pick_grounding: does the encoder look at the named object? Rendered scenes for its localisation.

The encoder's attention over the image (ObservationEncoder.visual) is trained to land on the named
object (train.target_weight). Measured on DAgger versions' first frames, when it lands on another
object the arm goes there: most of the "collisions" of those versions were the fingers closing on,
or descending onto, the wrong object (docs/results, session 19).

A demonstration is one scene (one arrangement, one instruction) seen ~20 times as the arm moves:
600 demonstrations teach the localisation 600 scenes. The simulator renders a new scene in one
reset, so `collect_scenes` gives as many labelled scenes as asked (the named object's image position
is privileged, like the demonstrations' `target_pos`), `localisation_loss` is the training's target
loss on a batch of them (train_pick adds it to every step with train.grounding_scenes),
`pretrain_grounding` trains the attention on them alone, and `grounding_accuracy` measures how often
the attention's nearest object is the named one.
"""
from __future__ import annotations

import hashlib
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from dreamops.tasks.device import adam
from dreamops.tasks.parallel import map_jobs

SCENE_SEED = 500_000   # apart from the demonstrations' (0+), the DAgger rounds' (300000+) and the evaluation's (100000+)


def grounding_seeds(n: int) -> list[int]:
    return list(range(SCENE_SEED, SCENE_SEED + n))


@dataclass
class Scenes:
    """First frames of seeded scenes, with where each object is in the image."""
    seeds: list[int]
    rgb: np.ndarray             # uint8 [N, 64, 64, 3]
    depth: np.ndarray           # float32 [N, 64, 64, 1]
    instructions: list[str]
    objects_uv: list[np.ndarray]   # per scene float32 [n_objects, 2], image position in [-1, 1]
    target: np.ndarray          # int [N]: which of objects_uv is named

    def __len__(self) -> int:
        return len(self.seeds)

    def subset(self, n: int) -> "Scenes":
        """The first n scenes."""
        return Scenes(self.seeds[:n], self.rgb[:n], self.depth[:n], self.instructions[:n], self.objects_uv[:n],
                      self.target[:n])

    @property
    def target_uv(self) -> np.ndarray:
        return np.stack([uv[t] for uv, t in zip(self.objects_uv, self.target)]).astype(np.float32)


def _render(job: tuple[str, list[int]]) -> list[tuple]:
    from dreamops.sim.pick import PickCell, PickConfig, project_to_image

    object_set, seeds = job
    env = PickCell(PickConfig(object_set=object_set))
    out = []
    try:
        for s in seeds:
            obs, _ = env.reset(seed=s)
            points = np.stack([env.object_position(i) for i in range(len(env.objects))])
            out.append((s, obs["rgb"], obs["depth"], env.instruction,
                        project_to_image(points, env.cfg).astype(np.float32), env.target_index))
    finally:
        env.close()
    return out


def scenes_key(object_set: str, seeds: list[int]) -> str:
    """What determines the rendered scenes: the object set, the seeds and the simulator's source."""
    from dreamops.sim import pick
    from dreamops.tasks.dataset import source_hash

    return hashlib.sha256(json.dumps([object_set, list(seeds), source_hash(pick)]).encode()).hexdigest()[:16]


def _save(scenes: Scenes, path: Path) -> None:
    counts = np.array([len(uv) for uv in scenes.objects_uv])
    tmp = path.with_name(path.name + ".tmp")   # written whole, then renamed: a killed run leaves no half file
    with open(tmp, "wb") as f:
        np.savez_compressed(f, seeds=np.array(scenes.seeds), rgb=scenes.rgb, depth=scenes.depth,
                            instructions=np.array(scenes.instructions), objects_uv=np.concatenate(scenes.objects_uv),
                            counts=counts, target=scenes.target)
    tmp.replace(path)


def _load(path: Path) -> Scenes:
    with np.load(path) as z:
        splits = np.cumsum(z["counts"])[:-1]
        return Scenes([int(s) for s in z["seeds"]], z["rgb"], z["depth"], [str(i) for i in z["instructions"]],
                      list(np.split(z["objects_uv"], splits)), z["target"])


def collect_scenes(object_set: str, seeds: list[int], workers: int, show_progress: bool = True,
                   chunk: int = 50, cache_dir: Path | None = None) -> Scenes:
    """Reset the cell at each seed and keep its first frame (the arm at its start pose). With
    `cache_dir`, scenes rendered before by the same simulator code are read back (3000 take ~6 min
    to render on 2 cores, a few seconds to read)."""
    path = None if cache_dir is None else Path(cache_dir) / f"scenes-{object_set}-{scenes_key(object_set, seeds)}.npz"
    if path is not None and path.exists():
        try:
            return _load(path)
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            pass   # an unreadable cache entry is rendered again and rewritten
    jobs = [(object_set, seeds[i:i + chunk]) for i in range(0, len(seeds), chunk)]
    rows = [r for done in map_jobs(_render, jobs, workers, f"render {object_set} scenes",
                                   show_progress=show_progress) for r in done.result]
    scenes = Scenes([r[0] for r in rows], np.stack([r[1] for r in rows]), np.stack([r[2] for r in rows]),
                    [r[3] for r in rows], [r[4] for r in rows], np.array([r[5] for r in rows]))
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        _save(scenes, path)
    return scenes


@torch.no_grad()
def attended_uv(encoder, tokenizer, scenes: Scenes, batch: int = 256) -> np.ndarray:
    """Where the attention looks in each scene, [-1, 1] image coordinates -> [N, 2]."""
    from dreamops.models.encoders import spatial_softmax

    out = []
    g = encoder.attention_grid
    for i in range(0, len(scenes), batch):
        _, logits = encoder.visual(torch.as_tensor(scenes.rgb[i:i + batch]), torch.as_tensor(scenes.depth[i:i + batch]),
                                   tokenizer.encode(scenes.instructions[i:i + batch]))
        out.append(spatial_softmax(logits.view(-1, 1, g, g)).numpy())
    return np.concatenate(out)


def grounding_accuracy(encoder, tokenizer, scenes: Scenes) -> dict[str, float]:
    """Share of scenes whose attended point is nearer the named object than any other (all scenes,
    and those with more than one object, where it can be wrong), and the attention's distance to the
    named object in pixels (median, 90th percentile)."""
    was_training = encoder.training
    encoder.eval()
    where = attended_uv(encoder, tokenizer, scenes)
    encoder.train(was_training)
    right, errors, several = [], [], []
    half = encoder.image_size / 2   # [-1, 1] spans the image
    for uv, t, w in zip(scenes.objects_uv, scenes.target, where):
        d = np.linalg.norm(uv - w[None], axis=1)
        right.append(int(np.argmin(d)) == t)
        errors.append(d[t] * half)
        several.append(len(uv) > 1)
    right, several = np.array(right), np.array(several)
    return {"accuracy": float(right.mean()),
            "accuracy_several_objects": float(right[several].mean()) if several.any() else float("nan"),
            "error_px_median": float(np.median(errors)), "error_px_p90": float(np.percentile(errors, 90)),
            "scenes": float(len(scenes))}


def localisation_loss(encoder, tokenizer, scenes: Scenes, idx: np.ndarray, target_cells: torch.Tensor,
                      device: torch.device | str = "cpu") -> torch.Tensor:
    """Cross-entropy of the attention over the grid cell of the named object (the training's target
    loss) on scenes `idx`; target_cells = encoder.attention_cell(scenes.target_uv), computed once."""
    _, logits = encoder.visual(torch.as_tensor(scenes.rgb[idx]).to(device), torch.as_tensor(scenes.depth[idx]).to(device),
                               tokenizer.encode([scenes.instructions[i] for i in idx]).to(device))
    return F.cross_entropy(logits, target_cells[idx].to(device))


def pretrain_grounding(encoder, tokenizer, scenes: Scenes, steps: int, batch_size: int = 64, lr: float = 1e-3,
                       seed: int = 0, log=None) -> dict[str, float]:
    """Train the image path and the instruction's FiLM (encoder.visual) on the localisation loss
    alone: cross-entropy of the attention over the grid cell of the named object, as the training's
    target loss. -> the last 50 steps' mean loss."""
    params = [p for name, p in encoder.named_parameters() if not name.startswith(("proprio", "head"))]
    opt = adam(params, weight_decay_decoupled=True, lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + np.cos(np.pi * min(1.0, s / max(1, steps)))))
    rng = np.random.default_rng(seed)
    target_cells = encoder.attention_cell(torch.as_tensor(scenes.target_uv))
    encoder.train()
    recent: list[float] = []
    for step in range(steps):
        loss = localisation_loss(encoder, tokenizer, scenes, rng.integers(len(scenes), size=batch_size), target_cells)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        recent = (recent + [float(loss.detach())])[-50:]
        if log is not None and (step + 1) % 100 == 0:
            log({"grounding/ce": float(np.mean(recent))}, step + 1)
    return {"grounding/ce": float(np.mean(recent))}
