"""V's training step with its first transposed convolution as a matrix product, against the same
step through oneDNN's transposed convolution, measured side by side in one run.

The first layer of V's decoder is a 1024 -> 128 channel, 5x5 transposed convolution on a 1x1 input:
the same function as [B, 1024] x [1024, 128 * 5 * 5] plus a bias per channel. `VAE.decode` now
computes it so; the "before" arm is the same VAE (same weights, same frames, same noise) with
decode through `vae.decoder` as the code before it did. Repeats alternate between the arms, and
each arm's median is reported, so that load on the shared machine falls on both.

    python bench/bench_vae_decoder.py            # -> bench/results/vae-decoder.json
    python bench/bench_vae_decoder.py --quick    # a check that it runs
"""
from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
import types
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "vae-decoder.json"


def as_transposed_convolution(vae):
    """The decode of the code before: every layer of `vae.decoder` as nn.ConvTranspose2d."""
    def decode(self, z):
        return self.decoder(self.fc_dec(z).view(-1, 1024, 1, 1))
    vae.decode = types.MethodType(decode, vae)
    return vae


def training_step(vae, opt, x: torch.Tensor, seed: int) -> float:
    torch.manual_seed(seed)   # the same latent noise in both arms
    t0 = time.perf_counter()
    loss, _ = vae(x)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return time.perf_counter() - t0


def layer_time(vae, h: torch.Tensor, repeats: int) -> dict:
    """The first layer alone, forward and backward, each way (ms, best of `repeats`)."""
    first = vae.decoder[0]
    def convolution():
        first(h.view(-1, 1024, 1, 1)).sum().backward()
    def matmul():
        ((h @ first.weight.flatten(1)).view(-1, 128, 5, 5) + first.bias.view(1, -1, 1, 1)).sum().backward()
    out = {}
    for name, fn in (("transposed convolution", convolution), ("matmul", matmul)):
        fn()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        out[name] = min(times) * 1000
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=64, help="V's training batch (VAEConfig's)")
    p.add_argument("--steps", type=int, default=40, help="training steps per arm")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--json", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    sys.path.insert(0, str(ROOT / "bench"))
    from quality import run_header

    from dreamops.models.vae import VAE
    from dreamops.tasks.config import VAEConfig

    steps = 4 if args.quick else args.steps
    header = run_header("bench/bench_vae_decoder.py", argv)
    torch.manual_seed(0)
    fast = VAE()
    slow = as_transposed_convolution(copy.deepcopy(fast))
    arms = {"before (transposed convolution)": slow, "after (matmul)": fast}
    opts = {name: torch.optim.Adam(vae.parameters(), lr=VAEConfig().lr) for name, vae in arms.items()}
    frames = torch.randint(0, 256, (args.batch, 64, 64, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    x = VAE.to_input(frames)
    times: dict[str, list[float]] = {name: [] for name in arms}
    for step in range(steps + 2):            # the first two steps of each arm are warm-up
        for name, vae in arms.items():
            t = training_step(vae, opts[name], x, seed=step)
            if step >= 2:
                times[name].append(t)
    with torch.no_grad():
        gap = float((fast.decode(torch.zeros(4, 32) + 0.3) - slow.decode(torch.zeros(4, 32) + 0.3)).abs().max())
    before, after = (statistics.median(times[n]) * 1000 for n in arms)
    layer = layer_time(fast, torch.randn(args.batch, 1024, requires_grad=True), 5 if args.quick else 20)
    m = header["machine"]
    print(f"V training step, batch {args.batch}, {m['cpu']}, torch {m['torch']} on {m['torch_threads']} threads")
    print(f"  before (transposed convolution): {before:7.1f} ms median of {steps}")
    print(f"  after (matmul):                  {after:7.1f} ms median of {steps}")
    print(f"  ratio: {before / after:.2f}x; first layer alone (fwd + bwd, best): "
          f"{layer['transposed convolution']:.1f} -> {layer['matmul']:.1f} ms "
          f"({layer['transposed convolution'] / layer['matmul']:.1f}x); decoders' outputs differ by at most "
          f"{gap:.1e} after {steps + 2} identical steps")
    result = {**header, "batch": args.batch, "steps": steps, "step_ms": {"before": before, "after": after},
              "ratio": before / after, "first_layer_ms": layer, "max_output_gap_after_training": gap,
              "step_times_ms": {n: [round(t * 1000, 2) for t in ts] for n, ts in times.items()}}
    if not args.quick:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
        print(f"-> {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
