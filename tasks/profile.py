"""profile_latency: p50/p95/p99 of V, M, C and the full V-M-C step on one CPU thread (seed 000, 3.8)."""
from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from dreamops.models.bundle import VMCBundle
from dreamops.models.vmc import VMCStep


def _percentiles(fn: Callable[[], object], iterations: int, warmup: int = 20) -> dict[str, float]:
    for _ in range(warmup):
        fn()
    times = np.empty(iterations)
    for i in range(iterations):
        t0 = time.perf_counter()
        fn()
        times[i] = (time.perf_counter() - t0) * 1000.0
    return {"p50_ms": float(np.percentile(times, 50)), "p95_ms": float(np.percentile(times, 95)),
            "p99_ms": float(np.percentile(times, 99)), "mean_ms": float(times.mean())}


@torch.inference_mode()
def profile_latency(bundle: VMCBundle, iterations: int = 500, torchscript: Path | None = None,
                    threads: int = 1) -> dict[str, dict[str, float]]:
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        rng = np.random.default_rng(0)
        frame = torch.from_numpy(rng.integers(0, 256, (1, 64, 64, 3), dtype=np.uint8))
        h, c = bundle.mdnrnn.initial_state(1)
        z = bundle.vae.encode(frame)
        a = bundle.controller(z, h)
        step = VMCStep(bundle.vae, bundle.mdnrnn, bundle.controller).eval()
        report = {
            "vae_encode": _percentiles(lambda: bundle.vae.encode(frame), iterations),
            "mdnrnn_step": _percentiles(lambda: bundle.mdnrnn.step(z, a, (h, c)), iterations),
            "controller": _percentiles(lambda: bundle.controller(z, h), iterations),
            "full_step": _percentiles(lambda: step(frame, h, c), iterations),
        }
        if torchscript is not None:
            scripted = torch.jit.load(str(torchscript))
            report["full_step_torchscript"] = _percentiles(lambda: scripted(frame, h, c), iterations)
        report["threads"] = {"torch_threads": float(threads)}
        return report
    finally:
        torch.set_num_threads(previous)


@torch.inference_mode()
def profile_chunk_latency(model, iterations: int = 200, threads: int = 1) -> dict[str, dict[str, float]]:
    """pick-vla: one observation -> one action chunk (encode + every Euler step), on `threads` threads."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        rng = np.random.default_rng(0)
        n = model.encoder.image_size
        rgb = rng.integers(0, 256, (1, n, n, 3), dtype=np.uint8)
        depth = rng.uniform(0.6, 1.2, (1, n, n, 1)).astype(np.float32)
        proprio = rng.normal(size=(1, model.arch.proprio_dim)).astype(np.float32)
        gen = torch.Generator().manual_seed(0)
        return {"chunk": _percentiles(lambda: model.generate(rgb, depth, proprio, ["pick up the red box"], gen),
                                      iterations, warmup=5),
                "threads": {"torch_threads": float(threads)}}
    finally:
        torch.set_num_threads(previous)
