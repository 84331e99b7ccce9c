"""The torch stages' unit of work on the code issue 20 was filed against and on this code, measured
side by side: V's training step, M's training step (one truncated-BPTT window) and one CMA-ES
generation's dream, each as that code's training stage runs it (its model code and its optimiser).

The end-to-end bench (bench_end_to_end.py) times whole stages from their progress bars, to the
second, once per code; a stage of 30 s moves by several seconds from run to run on these shared
machines. Here each code runs in its own process (the old one from a `git archive` on PYTHONPATH,
as the end-to-end bench does), the processes alternate `--rounds` times, and each unit's median
over all its repeats is compared. Both codes build the same weights from the same seed and step
the same synthetic batch, so the work is the same; the results differ by float rounding only.

    python bench/bench_stage_steps.py                 # -> bench/results/stage-steps.json
    python bench/bench_stage_steps.py --quick         # a check that it runs
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "stage-steps.json"
BEFORE = "3f554a2"   # the code issue 20 was filed against (bench_end_to_end.BEFORE)
UNITS = ("V step", "M step", "dream generation")


def _optimiser():
    """The optimiser the importable code's training stages build: this code's fused Adam, or
    torch's default Adam in code older than tasks/device.py's adam()."""
    import torch
    try:
        from dreamops.tasks.device import adam
    except ImportError:
        return torch.optim.Adam
    return adam


def _median_ms(fn, repeats: int, warmup: int = 2) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return times


def worker(repeats: int) -> dict[str, list[float]]:
    """Times each unit with the dreamops on sys.path; -> per-unit lists of ms."""
    import torch

    import dreamops
    from dreamops.models.dream import dream_rollouts, generator_noise
    from dreamops.models.mdnrnn import MDNRNN
    from dreamops.models.vae import VAE

    optimiser = _optimiser()
    out: dict[str, list[float]] = {"_code": [str(Path(dreamops.__file__).parent)]}

    torch.manual_seed(0)   # V at VAEConfig's batch 64 and lr
    vae = VAE()
    x = torch.randint(0, 256, (64, 3, 64, 64), generator=torch.Generator().manual_seed(1)).float() / 255
    v_opt = optimiser(vae.parameters(), lr=1e-3)

    def v_step():
        loss, _ = vae(x)
        v_opt.zero_grad(set_to_none=True)
        loss.backward()
        v_opt.step()
    out["V step"] = _median_ms(v_step, repeats)

    torch.manual_seed(0)   # M at MDNConfig's batch 4 x 32-step window, as train_mdnrnn steps it
    m = MDNRNN()
    g = torch.Generator().manual_seed(1)
    z, z_next = torch.randn(4, 32, 32, generator=g), torch.randn(4, 32, 32, generator=g)
    a, r, d, mask = torch.rand(4, 32, 3, generator=g), torch.randn(4, 32, generator=g), torch.zeros(4, 32), torch.ones(4, 32)
    m_opt = optimiser(m.parameters(), lr=1e-3)

    def m_step():
        t = m.loss_terms(z, a, z_next, r, d, mask, mask, None, mask)
        loss = t["nll_sum"] / t["n_next"] + t["r_se_sum"] / t["n_reward"] + t["d_ce_sum"] / t["n"]
        m_opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
        m_opt.step()
    out["M step"] = _median_ms(m_step, repeats * 5)

    torch.manual_seed(0)   # CMAConfig's generation: 32 candidates x 8 dreams x 250 steps
    mdn = MDNRNN().eval()
    with torch.no_grad():
        mdn.done_head.bias.fill_(-30.0)   # no dream ends early: both codes step all 250 steps
    genomes = torch.randn(32, 867, generator=g) * 0.1
    z0, h0, c0 = torch.randn(256, 32, generator=g), torch.randn(256, 256, generator=g) * 0.1, torch.zeros(256, 256)
    out["dream generation"] = _median_ms(
        lambda: dream_rollouts(mdn, genomes, z0, h0, c0, 250, 1.0, generator_noise(256, 32, 0)), max(2, repeats // 4), 1)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--before", default=BEFORE)
    p.add_argument("--rounds", type=int, default=8, help="alternations of the two processes")
    p.add_argument("--repeats", type=int, default=16, help="V steps per process (M: 5x, dream: 1/4)")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--json", type=Path, default=RESULTS)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.repeats)))
        return 0
    sys.path.insert(0, str(ROOT / "bench"))
    from bench_api import _machine, archive_code
    from quality import run_header

    rounds, repeats = (1, 2) if args.quick else (args.rounds, args.repeats)
    header = run_header("bench/bench_stage_steps.py", argv)
    times: dict[str, dict[str, list[float]]] = {"before": {u: [] for u in UNITS}, "after": {u: [] for u in UNITS}}
    with tempfile.TemporaryDirectory(prefix="dreamops-stage-steps-") as tmp:
        old = archive_code(args.before, Path(tmp) / "before")
        for _ in range(rounds):
            for name, path in (("before", old), ("after", None)):
                env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
                if path is not None:
                    env["PYTHONPATH"] = str(path)
                res = subprocess.run([sys.executable, __file__, "--worker", "--repeats", str(repeats)], env=env,
                                     cwd=tmp, capture_output=True, text=True)
                if res.returncode != 0:
                    raise RuntimeError(f"{name} worker failed: {res.stderr[-2000:]}")
                got = json.loads(res.stdout.strip().splitlines()[-1])
                expected_old = path is not None
                if Path(got.pop("_code")[0]).is_relative_to(old) != expected_old:
                    raise RuntimeError(f"the {name} worker imported the wrong code")
                for u in UNITS:
                    times[name][u] += got[u]
    m = header["machine"]
    print(f"stage units, {args.before} vs this code ({header['commit'][:7]}): {m['cpu']}, torch {m['torch']} "
          f"on {m['torch_threads']} threads; medians over {rounds} alternations")
    print(f"{'unit':<20}{'before ms':>11}{'after ms':>10}{'ratio':>8}")
    rows = {}
    for u in UNITS:
        b, a = statistics.median(times["before"][u]), statistics.median(times["after"][u])
        rows[u] = {"before_ms": round(b, 2), "after_ms": round(a, 2), "ratio": round(b / a, 3),
                   "samples": {k: len(times[k][u]) for k in times}}
        print(f"{u:<20}{b:>11.2f}{a:>10.2f}{b / a:>7.2f}x")
    if not args.quick:
        result = {**header, "before_commit": args.before, "load": _machine(), "units": rows,
                  "times_ms": {k: {u: [round(t, 2) for t in v] for u, v in d.items()} for k, d in times.items()}}
        args.json.write_text(json.dumps(result, indent=1) + "\n")
        print(f"-> {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
