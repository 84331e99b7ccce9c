"""Scaling figures, each measured side by side in this run:
- collection and real-env evaluation throughput (episodes/s) with 1, 2 and more workers than cores;
- the cost of one CMA-ES generation in the dream (ask, batched dreams, tell) vs population size.
The API under concurrent clients is bench_api.py (assignments, model lookups, telemetry; both stores;
the code before its caches side by side)."""
from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np

CORES = os.cpu_count() or 1


def _worker_counts() -> list[int]:
    return sorted({1, 2, 2 * CORES})


def _label(workers: int) -> str:
    return f"{workers}" + (" (oversubscribed)" if workers > CORES else "")


# --- rollouts: collection and evaluation ---

def rollouts(episodes: int, collect_steps: int, eval_steps: int) -> dict:
    """Episodes/s per worker count (1 worker runs in this process; more spawn processes, whose
    start-up is counted). Also checks that every worker count gives the same data and rewards."""
    from dreamops.tasks.collect import assign_policies, collect
    from dreamops.tasks.config import CollectConfig
    from dreamops.tasks.evaluate import baseline_factory, evaluate
    from dreamops.tasks.parallel import map_jobs

    cfg = CollectConfig(episodes=episodes, max_steps=collect_steps)
    seeds = list(range(100, 100 + episodes))
    out: dict = {"load": os.getloadavg()[0], "collect": {}, "evaluate": {}, "startup": {}, "hashes": set(),
                 "rewards": set()}
    for n in _worker_counts():
        # what every pooled call pays before its first episode: n processes importing the collection
        # code (a trivial job of that module, so nothing else is timed)
        t0 = time.perf_counter()
        map_jobs(assign_policies, [CollectConfig(episodes=1)] * n, n, "start-up", show_progress=False)
        out["startup"][n] = time.perf_counter() - t0
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            data = collect(cfg, Path(tmp), workers=n, use_cache=False, show_progress=False)
            out["collect"][n] = episodes / (time.perf_counter() - t0)
            out["hashes"].add(data.hash)
        t0 = time.perf_counter()
        report = evaluate(baseline_factory("rule_based"), "rule_based", seeds, eval_steps, n, show_progress=False)
        out["evaluate"][n] = episodes / (time.perf_counter() - t0)
        out["rewards"].add(tuple(report.rewards))
    return out


# --- CMA-ES in the dream ---

def cma_generations(populations=(16, 32, 64, 128), rollouts: int = 16, steps: int = 25,
                    rounds: int = 2) -> dict[int, float]:
    """Seconds of one generation per population size (best of `rounds` after a warm-up). Dream time is
    linear in steps: a profile's 250 (quick) or 1000 (full) steps cost 10x or 40x the dreams here."""
    import cma
    import torch

    from dreamops.models.mdnrnn import MDNRNN
    from dreamops.tasks.evolve import dream_fitness

    torch.manual_seed(0)
    m = MDNRNN().eval()
    with torch.no_grad():
        m.done_head.bias.fill_(-20.0)  # no early ends: every dream runs all its steps
    starts = {"z0": torch.randn(256, 32), "h0": torch.zeros(256, 256), "c0": torch.zeros(256, 256)}
    dream_fitness(m, torch.zeros(4, 867), starts, 2, 2, 1.45, 0)  # warm-up (thread pools, allocator)
    strategies = {p: cma.CMAEvolutionStrategy(np.zeros(867), 0.1, {"popsize": p, "seed": 1, "verbose": -9})
                  for p in populations}
    seconds = {p: float("inf") for p in populations}
    for g in range(rounds):  # sizes interleaved: load from other jobs spreads over all of them
        for p, es in strategies.items():
            t0 = time.perf_counter()
            solutions = es.ask()
            fitness = dream_fitness(m, torch.as_tensor(np.asarray(solutions), dtype=torch.float32), starts,
                                    rollouts, steps, 1.45, seed=g).numpy()
            es.tell(solutions, (-fitness).tolist())
            seconds[p] = min(seconds[p], time.perf_counter() - t0)
    return seconds


def main(episodes: int = 8, collect_steps: int = 200, eval_steps: int = 300, dream_steps: int = 25) -> dict:
    r = rollouts(episodes, collect_steps, eval_steps)
    print(f"rollout throughput, episodes/s on {CORES} cores, {episodes} episodes per cell (the start-up of "
          f"worker processes counts; 1 worker runs in this process)")
    print(f"  {'workers':<20} {f'collect ({collect_steps} steps)':>22} {f'evaluate ({eval_steps} frames)':>22}"
          f" {'pool start-up s':>16}")
    for n in _worker_counts():
        print(f"  {_label(n):<20} {r['collect'][n]:>22.2f} {r['evaluate'][n]:>22.2f} {r['startup'][n]:>16.1f}")
    busy = {n: episodes / r["collect"][n] - r["startup"][n] for n in (1, 2)}  # seconds after the start-up
    steady = f"{busy[1] / busy[2]:.2f}x" if min(busy.values()) > 0 else "n/a"
    print(f"  2 workers / 1: collect {r['collect'][2] / r['collect'][1]:.2f}x ({steady} without the start-up), "
          f"evaluate {r['evaluate'][2] / r['evaluate'][1]:.2f}x | identical dataset hash: "
          f"{len(r['hashes']) == 1}, identical rewards: {len(r['rewards']) == 1} | load average at start "
          f"{r['load']:.1f} on {CORES} cores")

    g = cma_generations(steps=dream_steps)
    print(f"\none CMA-ES generation in the dream (ask + population x 16 dreams x {dream_steps} steps, batched + "
          f"tell)")
    print(f"  {'population':<12} {'seconds':>8} {'ms per candidate':>18} {'vs 16':>7}")
    for p, sec in g.items():
        print(f"  {p:<12} {sec:>8.2f} {1000 * sec / p:>18.1f} {sec / g[16]:>6.2f}x")

    return {"rollouts": r, "cma": g}


if __name__ == "__main__":
    main()
