"""Batched dream rollouts (all candidates x rollouts as one tensor) vs the seed's loop that runs one
candidate and one rollout at a time. Same M, controllers, start states, steps and noise."""
from __future__ import annotations

import time

import torch

from dreamops.models.dream import dream_rollouts, dream_rollouts_looped, generator_noise
from dreamops.models.mdnrnn import MDNRNN


def run(population: int = 64, rollouts: int = 16, steps: int = 25) -> dict:
    torch.manual_seed(0)
    m = MDNRNN().eval()
    with torch.no_grad():
        m.done_head.bias.fill_(-20.0)  # no early ends: both sides do all the steps
    n = population * rollouts
    genomes = torch.randn(population, 867) * 0.1
    z0, h0, c0 = torch.randn(n, 32), torch.zeros(n, 256), torch.zeros(n, 256)
    # warm both paths up (thread pools, allocator), then: batched best of 3, looped once (seconds long)
    dream_rollouts(m, genomes, z0, h0, c0, 2, 1.15, generator_noise(n, 32, 0))
    dream_rollouts_looped(m, genomes[:2], z0[: 2 * rollouts], h0[: 2 * rollouts], c0[: 2 * rollouts], 2, 1.15,
                          generator_noise(2 * rollouts, 32, 0))
    t_batched = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        batched = dream_rollouts(m, genomes, z0, h0, c0, steps, 1.15, generator_noise(n, 32, 0))["returns"]
        t_batched = min(t_batched, time.perf_counter() - t0)
    t0 = time.perf_counter()
    looped = dream_rollouts_looped(m, genomes, z0, h0, c0, steps, 1.15, generator_noise(n, 32, 0))
    t_looped = time.perf_counter() - t0
    return {"rows": n, "steps": steps, "batched_s": t_batched, "looped_s": t_looped,
            "speedup": t_looped / t_batched, "max_abs_diff": float((batched - looped).abs().max())}


def main() -> dict:
    r = run()
    print(f"dream rollouts, population 64 x 16 rollouts = {r['rows']} dreams x {r['steps']} steps, "
          f"torch threads {torch.get_num_threads()}")
    print(f"  one at a time {r['looped_s']:.2f} s | batched {r['batched_s']:.3f} s | "
          f"speedup {r['speedup']:.1f}x (goal >= 25x) | max |return diff| {r['max_abs_diff']:.1e}")
    return r


if __name__ == "__main__":
    main()
