"""Full V-M-C step latency on one CPU thread: eager and TorchScript, against the 5 ms goal and 80 ms gate."""
from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from dreamops.models.bundle import Architecture, VMCBundle
from dreamops.models.vmc import VMCStep, export_torchscript
from dreamops.tasks.profile import profile_latency


def run(iterations: int = 2000) -> dict:
    torch.manual_seed(0)
    bundle = VMCBundle.create(Architecture())
    with tempfile.TemporaryDirectory() as tmp:
        ts = export_torchscript(VMCStep(bundle.vae, bundle.mdnrnn, bundle.controller), Path(tmp) / "step.pt")
        return profile_latency(bundle, iterations, torchscript=ts, threads=1)


def main() -> dict:
    r = run()
    print("V-M-C step latency, 1 CPU thread, 2000 iterations")
    for part in ("vae_encode", "mdnrnn_step", "controller", "full_step", "full_step_torchscript"):
        s = r[part]
        print(f"  {part:<22} p50 {s['p50_ms']:6.3f} ms  p99 {s['p99_ms']:6.3f} ms")
    p99 = r["full_step"]["p99_ms"]
    print(f"  full step p99 / 5 ms goal = {p99 / 5:.2f} | / 80 ms gate = {p99 / 80:.3f} | "
          f"eager p50 / TorchScript p50 = {r['full_step']['p50_ms'] / r['full_step_torchscript']['p50_ms']:.2f}x")
    return r


if __name__ == "__main__":
    main()
