"""V's and M's training steps with torch's fused Adam (the training stages' optimiser since session 26)
against torch's default Adam (on the CPU a Python loop over the parameters, several elementwise passes
over each: torch turns its multi-tensor "foreach" path on by default on CUDA only), measured side by
side in one run.

Each model is copied into two arms with the same weights, batch and noise; the arms differ only in
the optimiser. Steps alternate between the arms, and each arm's median is reported, so that load on
the shared machine falls on both. Also timed: the optimiser step alone on each model's gradients,
and how far the arms' parameters are apart after one step (float rounding) and at the end (where
training's own dynamics have amplified that rounding).

    python bench/bench_fused_adam.py            # -> bench/results/fused-adam.json
    python bench/bench_fused_adam.py --quick    # a check that it runs
"""
from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "fused-adam.json"
ARMS = ("default", "fused")


def v_case(batch: int):
    """V at its training batch: (model, loss function of the model)."""
    from dreamops.models.vae import VAE

    torch.manual_seed(0)
    frames = torch.randint(0, 256, (batch, 64, 64, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    x = VAE.to_input(frames)
    return VAE(), lambda vae: vae(x)[0]


def m_case(batch: int, window: int):
    """M at its training batch and truncated-BPTT window (MDNConfig's): (model, loss function)."""
    from dreamops.models.mdnrnn import MDNRNN

    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    z, z_next = torch.randn(batch, window, 32, generator=g), torch.randn(batch, window, 32, generator=g)
    a, r = torch.rand(batch, window, 3, generator=g), torch.randn(batch, window, generator=g)
    d = torch.zeros(batch, window)
    return MDNRNN(), lambda m: m(z, a, z_next, r, d)[0]


def step_fn(model: torch.nn.Module, loss_of: Callable, fused: bool, lr: float
            ) -> tuple[Callable[[int], float], torch.optim.Optimizer]:
    from dreamops.tasks.device import adam   # what the training stages build

    opt = adam(model.parameters(), lr=lr) if fused else torch.optim.Adam(model.parameters(), lr=lr)

    def step(seed: int) -> float:
        torch.manual_seed(seed)   # V's latent noise: the same in both arms
        t0 = time.perf_counter()
        loss = loss_of(model)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return time.perf_counter() - t0
    return step, opt


@torch.no_grad()
def _gap(models: dict[str, torch.nn.Module]) -> float:
    """The largest difference between the arms' parameters."""
    return max(float((p - q).abs().max()) for p, q in zip(*(m.parameters() for m in models.values())))


def compare(model: torch.nn.Module, loss_of: Callable, steps: int, lr: float) -> dict:
    models = {arm: copy.deepcopy(model) for arm in ARMS}
    fns = {arm: step_fn(models[arm], loss_of, arm == "fused", lr) for arm in ARMS}
    times: dict[str, list[float]] = {arm: [] for arm in ARMS}
    gaps = []
    for step in range(steps + 3):            # the first three steps of each arm are warm-up
        for arm in ARMS:
            t = fns[arm][0](step)
            if step >= 3:
                times[arm].append(t)
        if step == 0:
            gaps.append(_gap(models))
    gaps.append(_gap(models))
    alone = {}
    for arm in ARMS:                         # the optimiser step alone, on the last step's gradients
        opt = fns[arm][1]
        ts = []
        for _ in range(max(3, steps // 2)):
            t0 = time.perf_counter()
            opt.step()
            ts.append(time.perf_counter() - t0)
        alone[arm] = statistics.median(ts) * 1000
    step_ms = {arm: statistics.median(times[arm]) * 1000 for arm in ARMS}
    return {"parameters": sum(p.numel() for p in model.parameters()), "steps": steps, "step_ms": step_ms,
            "ratio": step_ms["default"] / step_ms["fused"], "optimizer_step_ms": alone,
            "max_parameter_gap": {"after 1 step": gaps[0], f"after {steps + 3} steps": gaps[1]},
            "step_times_ms": {a: [round(t * 1000, 2) for t in ts] for a, ts in times.items()}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=40, help="training steps per arm and model")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--json", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    sys.path.insert(0, str(ROOT / "bench"))
    from quality import run_header

    from dreamops.tasks.config import MDNConfig, VAEConfig

    steps = 4 if args.quick else args.steps
    header = run_header("bench/bench_fused_adam.py", argv)
    v_cfg, m_cfg = VAEConfig(), MDNConfig()
    cases = {f"V (batch {v_cfg.batch_size})": (*v_case(v_cfg.batch_size), v_cfg.lr, steps),
             f"M (batch {m_cfg.batch_size} x {m_cfg.seq_len} steps)": (*m_case(m_cfg.batch_size, m_cfg.seq_len),
                                                                      m_cfg.lr, steps * 5)}
    m = header["machine"]
    print(f"training steps, torch's default vs fused Adam: {m['cpu']}, torch {m['torch']} on {m['torch_threads']} threads")
    print(f"{'model':<26}{'params':>10}{'default ms':>12}{'fused ms':>10}{'ratio':>7}"
          f"{'Adam alone ms':>18}{'param gap after 1 step / all':>31}")
    out = {}
    for name, (model, loss_of, lr, n) in cases.items():
        r = out[name] = compare(model, loss_of, n, lr)
        alone = r["optimizer_step_ms"]
        print(f"{name:<26}{r['parameters']:>10,}{r['step_ms']['default']:>12.2f}{r['step_ms']['fused']:>10.2f}"
              f"{r['ratio']:>6.2f}x{alone['default']:>9.2f} -> {alone['fused']:<6.2f}"
              f"{'{:.1e} / {:.1e}'.format(*r['max_parameter_gap'].values()):>31}")
    if not args.quick:
        args.json.write_text(json.dumps({**header, "cases": out}, indent=1) + "\n")
        print(f"-> {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
