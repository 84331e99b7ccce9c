"""Each training stage on the CPU and on the GPU, side by side in one run: the same synthetic data,
the same code (the tasks' functions, given a `Compute`), the same configs. V: one epoch at quick's
batch 64; encoding; M: one epoch at batch 4 (quick) and 8 (gpu); the CMA-ES fitness: one generation
of quick's 32 x 8 and the gpu profile's 64 x 16 dreams of 250 steps. On the GPU each stage runs in
fp32 and with the bf16 autocast where the stage has one. Then: what the `gpu` profile's training
stages would take at the measured GPU rates (the simulator stages are not measured here).

    python bench/bench_gpu.py                        # cpu and cuda (needs a CUDA device)
    python bench/bench_gpu.py --devices cpu --episodes 4 --cpu-episodes 2   # a dry run anywhere

Needs torch, numpy, pandas, pyarrow, pyyaml, rich and pydantic-settings (what the tasks import),
not MLflow, Prefect or the simulators: it runs on a bare GPU image with a few wheels.
"""
from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parent.parent
STEPS = 250  # agent steps per collected episode (collect.max_steps)


class MemoryDataset:
    """Synthetic episodes in memory with the Dataset interface the stages read (manifest, load,
    iter_episodes, path): frames are random uint8, so only the cost is measured, not learning."""

    def __init__(self, n: int, path: Path, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.path = path
        self.episodes = {f"ep_{i:06d}": {
            "obs": rng.integers(0, 256, (STEPS, 64, 64, 3), dtype=np.uint8),
            "actions": rng.uniform(-1, 1, (STEPS, 3)).astype(np.float32),
            "rewards": rng.normal(0, 1, STEPS).astype(np.float32),
            "dones": np.arange(STEPS) == STEPS - 1} for i in range(n)}
        self.manifest = pd.DataFrame({"episode_id": list(self.episodes), "length": STEPS})

    def load(self, episode_id: str) -> dict[str, np.ndarray]:
        return self.episodes[episode_id]

    def iter_episodes(self, episode_ids=None):
        for eid in episode_ids if episode_ids is not None else list(self.episodes):
            yield eid, self.episodes[eid]


def _timed(fn):
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    out = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return out, time.perf_counter() - t0


def measure(compute, data: MemoryDataset, n_train: int) -> dict:
    """One device's rates: V frames/s, encoding frames/s, M steps/s (batch 4 and 8), dream
    generations/s (32 x 8 and 64 x 16 rows x 250 steps). The first call of each stage is a warm-up."""
    from dreamops.tasks.config import MDNConfig, VAEConfig
    from dreamops.tasks.encode import encode
    from dreamops.tasks.evolve import dream_fitness
    from dreamops.tasks.train_mdnrnn import dream_start_states, train_mdnrnn
    from dreamops.tasks.train_vae import train_vae

    ids = list(data.episodes)[:n_train]
    hold = list(data.episodes)[n_train:n_train + 1]
    out: dict[str, float] = {}
    v_cfg = VAEConfig(epochs=1, batch_size=64)
    train_vae(data, ids[:1], hold, v_cfg, show_progress=False, compute=compute)  # warm-up
    (vae, _), t = _timed(lambda: train_vae(data, ids, hold, v_cfg, show_progress=False, compute=compute))
    out["v_frames_per_s"] = n_train * STEPS / t
    latents, t = _timed(lambda: encode(vae, data, use_cache=False, compute=compute))
    out["encode_frames_per_s"] = len(data.episodes) * STEPS / t
    for b in (4, 8):
        m_cfg = MDNConfig(epochs=1, batch_size=b)
        train_mdnrnn(latents, ids[:b], hold, m_cfg, action_repeat=4, show_progress=False, compute=compute)
        (m, report), t = _timed(lambda: train_mdnrnn(latents, ids, hold, m_cfg, action_repeat=4,
                                                        show_progress=False, compute=compute))
        out[f"m_b{b}_steps_per_s"] = report["mdn/steps"] / t
    starts = dream_start_states(m, latents, ids[:8], skip_steps=50)
    dream_m = compute.module(copy.deepcopy(m))
    with torch.no_grad():
        dream_m.done_head.bias.fill_(-20.0)  # no early ends: every dream runs its 250 steps
    for p, r in ((32, 8), (64, 16)):
        genomes = torch.randn(p, 867) * 0.1
        dream_fitness(dream_m, genomes, starts, r, 10, 1.45, seed=0)
        _, t = _timed(lambda: dream_fitness(dream_m, genomes, starts, r, STEPS, 1.45, seed=1))
        out[f"c_{p}x{r}_generations_per_s"] = 1.0 / t
    return out


def gpu_profile_work() -> dict[str, float]:
    """The `gpu` profile's training work, every episode at full length: V frames (round 0 only when
    vae.round_epochs is 0), encoded frames (all data, every round), M optimiser steps, CMA-ES generations."""
    from dreamops.tasks.config import resolve_config

    cfg = resolve_config("gpu")
    windows = math.ceil(cfg.collect.max_steps / cfg.mdn.seq_len)
    v_frames = enc_frames = m_steps = gens = 0.0
    episodes = train = 0
    for k in range(cfg.rounds):
        new = cfg.collect.episodes if k == 0 else cfg.collect.episodes_per_round
        episodes += new
        train += new - min(new - 1, max(1, round(cfg.vae.holdout_fraction * new)))  # Dataset.split
        r = cfg.for_round(k)
        v_frames += r.vae.epochs * train * cfg.collect.max_steps
        enc_frames += episodes * cfg.collect.max_steps
        m_steps += r.mdn.epochs * math.ceil(train / cfg.mdn.batch_size) * windows
        gens += r.cma.generations
    return {"v_frames": v_frames, "encode_frames": enc_frames, "m_steps": m_steps, "c_generations": gens,
            "m_batch": cfg.mdn.batch_size, "c_rows": f"{cfg.cma.population}x{cfg.cma.rollouts}"}


def _commit() -> str:
    try:  # a copy of the tree on a GPU machine may have no .git, or no git
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    except OSError:
        return ""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--devices", default="cpu,cuda", help="comma-separated: cpu, cuda")
    p.add_argument("--episodes", type=int, default=64, help="synthetic episodes of 250 steps (GPU side)")
    p.add_argument("--cpu-episodes", type=int, default=16, help="of them, trained on by the CPU side (time)")
    p.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "gpu-stages.json")
    args = p.parse_args(argv)
    from dreamops.tasks.device import Compute

    devices = args.devices.split(",")
    if "cuda" in devices and not torch.cuda.is_available():
        print("bench_gpu: no CUDA device (torch sees none): run with --devices cpu for a dry run", file=sys.stderr)
        return 1
    rows: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        data = MemoryDataset(args.episodes + 1, Path(tmp))
        for name in devices:
            variants = [("fp32", False)] + ([("bf16", True)] if name == "cuda" else [])
            for label, bf16 in variants:
                compute = Compute(torch.device(name), bf16=bf16)
                n = args.cpu_episodes if name == "cpu" else args.episodes
                key = f"{name}-{label}"
                print(f"[{key}] training stages on {n} episodes of {STEPS} steps ...", flush=True)
                rows[key] = measure(compute, data, n)
    keys = list(next(iter(rows.values())))
    cols = list(rows)
    print(f"\ntraining stages, torch {torch.__version__}, {torch.get_num_threads()} CPU threads"
          + (f", {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""))
    print(f"{'stage (higher is faster)':<28}" + "".join(f"{c:>13}" for c in cols)
          + ("".join(f"{c + '/cpu':>16}" for c in cols if not c.startswith("cpu")) if "cpu-fp32" in rows else ""))
    for k in keys:
        line = f"{k:<28}" + "".join(f"{rows[c][k]:>13.2f}" for c in cols)
        if "cpu-fp32" in rows:
            line += "".join(f"{rows[c][k] / rows['cpu-fp32'][k]:>15.1f}x" for c in cols if not c.startswith("cpu"))
        print(line)
    work = gpu_profile_work()
    plan = {}
    for c in cols:
        r = rows[c]
        plan[c] = {"v_s": work["v_frames"] / r["v_frames_per_s"], "encode_s": work["encode_frames"] / r["encode_frames_per_s"],
                   "m_s": work["m_steps"] / r[f"m_b{work['m_batch']}_steps_per_s"],
                   "c_s": work["c_generations"] / r[f"c_{work['c_rows']}_generations_per_s"]}
        plan[c]["total_s"] = sum(plan[c].values())
    print(f"\nthe gpu profile's training stages at these rates ({work['v_frames']:.0f} V frames, "
          f"{work['encode_frames']:.0f} encoded, {work['m_steps']:.0f} M steps at batch {work['m_batch']}, "
          f"{work['c_generations']:.0f} generations of {work['c_rows']} x {STEPS} steps); simulators not included")
    for c in cols:
        print(f"  {c:<10}" + "  ".join(f"{k.removesuffix('_s')} {v:7.1f} s" for k, v in plan[c].items()))
    result = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "commit": _commit(),
              "command": " ".join(["python", "bench/bench_gpu.py", *(argv if argv is not None else sys.argv[1:])]),
              "torch": torch.__version__, "threads": torch.get_num_threads(),
              "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
              "episodes": {"gpu": args.episodes, "cpu": args.cpu_episodes}, "rates": rows,
              "gpu_profile_work": work, "gpu_profile_training_s": plan}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1) + "\n")
    print(f"-> {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
