"""Each training and simulator stage against this machine's own limit, measured in one run.

Issue 20 asks for every stage "near its limit on this machine". The limits are measured here, in
the same process and the same minutes as the stages, because the machines are shared and noisy:

- torch stages (V training, encoding, M training, the CMA-ES dream) against the best fp32 matmul
  and convolution throughput torch reaches on this machine at the same thread count (a large GEMM
  and a large 3x3 convolution: the roofline). A stage's FLOPs are counted by torch itself
  (`torch.utils.flop_counter.FlopCounterMode` over one step), but for nn.LSTM's fused kernel, which
  the counter cannot see: its matmuls by hand. M and the dream are recurrences: each step needs the
  last, so their matmuls are as small as their batch. Each is also timed against its own LSTM alone
  at the same shapes (M: the LSTM's forward and backward over one training window; the dream: its
  cell steps at the dream's batch), the part no implementation of the same training can skip.
- the data loader (shards -> shuffled uint8 batches) in frames/s next to what V consumes.
- the simulator stages (collection, validation/evaluation with the V-M-C policy) against the
  simulator's own single-core speed on the same frames (the same seeds, actions and drawn frames,
  without a policy or worker pool) times the workers. The stage's time includes starting the
  worker pool, as a training run pays it once.

    python bench/bench_roofline.py                    # -> bench/results/roofline.json
    python bench/bench_roofline.py --quick            # smaller sizes: a check that it runs

Prints one table: stage, rate, work per unit, achieved rate of the limiting resource, the limit,
and the fraction of it.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "roofline.json"


def _best_of(fn, repeats: int) -> float:
    """Seconds of the fastest of `repeats` calls (after one warm-up): the machine at its best."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def flops_of(fn) -> int:
    """FLOPs torch counts for one call of fn (matmuls and convolutions, forward and backward)."""
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return int(counter.get_total_flops())


def gemm_gflops(n: int, repeats: int) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    return 2 * n ** 3 / _best_of(lambda: torch.mm(a, b), repeats) / 1e9


def conv_gflops(batch: int, channels: int, size: int, repeats: int) -> float:
    conv = torch.nn.Conv2d(channels, channels, 3, padding=1)
    x = torch.randn(batch, channels, size, size)
    with torch.no_grad():
        f = flops_of(lambda: conv(x))
        return f / _best_of(lambda: conv(x), repeats) / 1e9


def lstm_train_flops(batch: int, steps: int, inputs: int, hidden: int) -> int:
    """nn.LSTM's fused CPU kernel is invisible to FlopCounterMode: its matmuls by hand, forward
    2*B*T*(I+H)*4H, backward twice that (gradients of the inputs and of the weights)."""
    return 3 * 2 * batch * steps * (inputs + hidden) * 4 * hidden


def torch_stages(data, n_train: int, population: int, rollouts: int, dream_steps: int) -> dict:
    """The tasks' own functions, timed on synthetic episodes (bench_gpu's MemoryDataset, 250 steps
    each); FLOPs per unit counted on one step of the same modules."""
    from bench_gpu import STEPS, _timed
    from dreamops.models.mdnrnn import MDNRNN
    from dreamops.models.vae import VAE
    from dreamops.tasks.config import CMAConfig, MDNConfig, VAEConfig
    from dreamops.tasks.encode import encode
    from dreamops.tasks.evolve import dream_fitness
    from dreamops.tasks.train_mdnrnn import dream_start_states, train_mdnrnn
    from dreamops.tasks.train_vae import train_vae

    ids = list(data.episodes)[:n_train]
    hold = list(data.episodes)[n_train:n_train + 1]
    out = {}
    v_cfg = VAEConfig(epochs=1)
    vae = VAE()
    frames = torch.randint(0, 256, (v_cfg.batch_size, 64, 64, 3), dtype=torch.uint8)
    f = flops_of(lambda: vae(VAE.to_input(frames))[0].backward()) / v_cfg.batch_size
    train_vae(data, ids[:1], hold, v_cfg, show_progress=False)  # warm-up
    (vae, _), t = _timed(lambda: train_vae(data, ids, hold, v_cfg, show_progress=False))
    out["V training"] = {"unit": f"frame (batch {v_cfg.batch_size})", "per_s": n_train * STEPS / t, "flops_per_unit": f}
    f = flops_of(lambda: vae.encode(frames)) / len(frames)
    latents, t = _timed(lambda: encode(vae, data, use_cache=False))
    out["encoding"] = {"unit": "frame (batch 512)", "per_s": len(data.episodes) * STEPS / t, "flops_per_unit": f}
    m_cfg = MDNConfig(epochs=1)
    b, sl = m_cfg.batch_size, m_cfg.seq_len
    m = MDNRNN(hidden_dim=m_cfg.hidden_dim, n_gaussians=m_cfg.n_gaussians)
    h = torch.randn(b, sl, m_cfg.hidden_dim, requires_grad=True)
    heads = flops_of(lambda: sum(x.sum() for x in m.heads(h)).backward())
    f = heads + lstm_train_flops(b, sl, 35, m_cfg.hidden_dim)
    train_mdnrnn(latents, ids[:b], hold, m_cfg, action_repeat=4, show_progress=False)
    (m, report), t = _timed(lambda: train_mdnrnn(latents, ids, hold, m_cfg, action_repeat=4, show_progress=False))
    out["M training"] = {"unit": f"optimiser step (batch {b} x {sl})", "per_s": report["mdn/steps"] / t,
                         "flops_per_unit": f, "recurrence_alone_per_s": 1 / lstm_alone_s(m, b, sl)}
    c_cfg = CMAConfig()
    starts = dream_start_states(m, latents, ids[:8], skip_steps=50)
    with torch.no_grad():
        m.done_head.bias.fill_(-20.0)  # no early ends: every dream runs all its steps
    genomes = torch.randn(population, 867) * 0.1
    f = flops_of(lambda: dream_fitness(m, genomes, starts, rollouts, 1, c_cfg.temperature, seed=0)) * dream_steps
    dream_fitness(m, genomes, starts, rollouts, 10, c_cfg.temperature, seed=0)
    _, t = _timed(lambda: dream_fitness(m, genomes, starts, rollouts, dream_steps, c_cfg.temperature, seed=1))
    out["CMA-ES dream"] = {"unit": f"generation ({population} x {rollouts} x {dream_steps})", "per_s": 1 / t,
                           "flops_per_unit": f,
                           "recurrence_alone_per_s": 1 / lstm_cell_alone_s(m, population * rollouts, dream_steps)}
    for row in out.values():
        row["gflops"] = row["per_s"] * row["flops_per_unit"] / 1e9
        if "recurrence_alone_per_s" in row:
            row["fraction_of_recurrence"] = row["per_s"] / row["recurrence_alone_per_s"]
    return out


def lstm_alone_s(m, batch: int, steps: int, repeats: int = 5) -> float:
    """Seconds of M's own LSTM forward and backward over one training window ([batch, steps] of
    [z, a]), nothing else: the sequential part of an M training step, which no batching of the
    same window removes (M's limit at its own shapes)."""
    lstm = copy.deepcopy(m.lstm).train()
    x = torch.randn(batch, steps, lstm.input_size, requires_grad=True)
    return _best_of(lambda: lstm(x)[0].sum().backward(), repeats)


@torch.no_grad()
def dream_cell_steps(m, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor, steps: int
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """`steps` LSTM cell steps of M's LSTM as models.dream steps it (one fused [z, a, h] matmul and
    the gates) on a fixed input x [rows, I]."""
    lstm = m.lstm
    w = torch.cat([lstm.weight_ih_l0, lstm.weight_hh_l0], dim=1).t().contiguous()
    b = lstm.bias_ih_l0 + lstm.bias_hh_l0
    for _ in range(steps):
        i, f, g, o = torch.addmm(b, torch.cat([x, h], dim=-1), w).chunk(4, dim=-1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
    return h, c


def lstm_cell_alone_s(m, rows: int, steps: int, repeats: int = 3) -> float:
    """Seconds of the dream's recurrence alone at its own shapes: `steps` cell steps of its batch,
    without the heads, the sampling or the controllers."""
    x, h0 = torch.randn(rows, m.lstm.input_size), torch.zeros(rows, m.lstm.hidden_size)
    return _best_of(lambda: dream_cell_steps(m, x, h0, h0, steps), repeats)


class Replay:
    """Plays back recorded actions: the simulator's own cost on exactly a stage's frames (the same
    seeds, actions and drawn frames), with no policy to speak of."""

    def __init__(self, actions: dict[int, np.ndarray], action_repeat: int = 1):
        self.actions, self.action_repeat = actions, action_repeat

    def reset(self, seed: int) -> None:
        self.queue, self.t = self.actions[seed], 0

    def act(self, frame: np.ndarray) -> np.ndarray:
        self.t += 1
        return self.queue[self.t - 1]


def simulator_alone(actions: dict[int, np.ndarray], max_steps: int, env_repeat: int, policy_repeat: int,
                    keep_frames: bool) -> float:
    """Simulator frames/s on one core, replaying `actions` per seed (best of 2 passes)."""
    from dreamops.sim.carracing import CarRacing
    from dreamops.sim.rollout import play_episode

    env = CarRacing(max_steps=max_steps, action_repeat=env_repeat)
    frames = [0]

    def run():
        frames[0] = sum(play_episode(env, Replay(actions, policy_repeat), s, keep_frames).env_frames for s in actions)
    t = _best_of(run, 1)
    env.close()
    return frames[0] / t


def simulator_stages(episodes: int, workers: int, store: Path) -> dict:
    """Collection (the exploration policies, shards compressed in the workers) and evaluation of a
    V-M-C policy (random weights: the cost of deciding, not its quality), each in `workers`
    processes as the flow runs them, against the simulator alone on one core x workers."""
    from dreamops.models.bundle import Architecture, BundlePolicyFactory, VMCBundle
    from dreamops.tasks.collect import collect
    from dreamops.tasks.config import CollectConfig
    from dreamops.tasks.evaluate import evaluate

    out = {}
    cfg = CollectConfig(episodes=episodes, seed=900_000)
    t0 = time.perf_counter()
    data = collect(cfg, store, workers, use_cache=False, show_progress=False)
    t = time.perf_counter() - t0
    frames = int(data.manifest["env_frames"].sum())
    recorded = {int(row.seed): data.load(row.episode_id)["actions"] for row in data.manifest.itertuples()}
    alone = simulator_alone(recorded, cfg.max_steps, cfg.action_repeat, 1, keep_frames=True)
    out["collection"] = {"unit": "simulator frame (1 in 4 drawn)", "per_s": frames / t,
                         "limit_per_s": alone * workers, "limit": f"simulator alone, 1 core x {workers}"}
    bundle = VMCBundle.create(Architecture(action_repeat=cfg.action_repeat)).save(store / "random.pt")
    seeds = list(range(900_100, 900_100 + episodes))
    t0 = time.perf_counter()
    report = evaluate(BundlePolicyFactory(bundle), "vmc", seeds, 1000, workers, show_progress=False)
    t = time.perf_counter() - t0
    frames = sum(e.env_frames for e in report.episodes)
    alone = simulator_alone({s: e.actions for s, e in zip(seeds, report.episodes)}, 1000, 1, cfg.action_repeat,
                            keep_frames=False)
    out["evaluation (V-M-C)"] = {"unit": "simulator frame (1 in 4 drawn)", "per_s": frames / t,
                                 "limit_per_s": alone * workers, "limit": f"simulator alone, 1 core x {workers}"}
    return out, data


def _load() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small sizes: checks that the bench runs")
    p.add_argument("--workers", type=int, default=int(os.environ.get("DREAMOPS_WORKERS", os.cpu_count() or 1)))
    p.add_argument("--json", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    sys.path.insert(0, str(ROOT / "bench"))
    from bench_gpu import MemoryDataset
    from quality import run_header

    from dreamops.tasks.train_vae import frame_batches

    n_train, sim_episodes, gemm_n, reps = (2, 2, 512, 2) if args.quick else (16, 8, 2048, 5)
    header, load_start = run_header("bench/bench_roofline.py", argv), _load()
    m = header["machine"]
    print(f"roofline bench: {m['cpu']}, {m['cores']} cores, torch {m['torch']} on {m['torch_threads']} threads; "
          f"{load_start}", flush=True)
    limits = {"gemm_gflops": gemm_gflops(gemm_n, reps), "conv_gflops": conv_gflops(32, 64, 32, reps)}
    print(f"  limits: fp32 GEMM {gemm_n}^3 {limits['gemm_gflops']:.1f} GFLOP/s, 3x3 convolution 64 ch "
          f"{limits['conv_gflops']:.1f} GFLOP/s", flush=True)
    with tempfile.TemporaryDirectory(prefix="dreamops-roofline-") as tmp:
        stages = torch_stages(MemoryDataset(n_train + 1, Path(tmp)), n_train, 32, 8, 50 if args.quick else 250)
        for name, row in stages.items():
            kind = "convolution" if name in ("V training", "encoding") else "GEMM"
            limit = limits["conv_gflops" if kind == "convolution" else "gemm_gflops"]
            row.update(limit=f"{kind} roofline", limit_gflops=limit, fraction=row["gflops"] / limit)
        sims, data = simulator_stages(sim_episodes, args.workers, Path(tmp) / "store")
        for row in sims.values():
            row["fraction"] = row["per_s"] / row["limit_per_s"]
        stages.update(sims)
        ids = list(data.manifest["episode_id"])
        t = _best_of(lambda: sum(len(b) for b in frame_batches(data, ids, 64, np.random.default_rng(0))), 3)
        loader = {"unit": "frame (batch 64, from compressed shards)", "per_s": int(data.manifest["length"].sum()) / t}
        loader.update(limit="V training's consumption", limit_per_s=stages["V training"]["per_s"])
        loader["fraction"] = loader["limit_per_s"] / loader["per_s"]  # the share of V's time spent waiting for data
        stages["data loader"] = loader
    print(f"\n{'stage':<22}{'rate /s':>12}  {'unit':<38}{'GFLOP/s':>9}{'limit':>12}  {'fraction':>8}")
    for name, row in stages.items():
        gf = f"{row['gflops']:.1f}" if "gflops" in row else "-"
        lim = f"{row['limit_gflops']:.1f}" if "limit_gflops" in row else f"{row['limit_per_s']:.0f}/s"
        print(f"{name:<22}{row['per_s']:>12.1f}  {row['unit']:<38}{gf:>9}{lim:>12}  {row['fraction']:>8.2f}")
    print("fraction: of the limit (GFLOP/s against the roofline, frames/s against the simulator alone x "
          "workers); for the data loader, the share of V's training time it would take.")
    for name, row in stages.items():
        if "recurrence_alone_per_s" in row:
            print(f"{name}: {row['per_s']:.1f}/s against its LSTM alone at the same shapes "
                  f"{row['recurrence_alone_per_s']:.1f}/s: {row['fraction_of_recurrence']:.2f}")
    result = {**header, "load": {"start": load_start, "end": _load()}, "workers": args.workers, "limits": limits,
              "stages": stages}
    if not args.quick:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
        print(f"-> {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
