"""On-robot export latency: each family's per-step graph (carracing-vmc: one V-M-C step; pick-vla: one
action chunk) run eagerly, by TorchScript, by torch.export and by onnxruntime, on one CPU thread, side by
side in one run. The backends take turns call by call, so a machine's load changes them alike.
Prints median and p99 per step and their ratios to eager; writes bench/results/export-latency.json.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime
import torch

from dreamops.models import export
from dreamops.models.bundle import Architecture, VMCBundle
from dreamops.models.pick_vla import PickArchitecture, PickVLA, chunk_graph
from dreamops.models.vmc import VMCStep, step_graph

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "results" / "export-latency.json"
BACKENDS = ("eager", "torchscript", "program", "onnx")
LABELS = {"eager": "eager", "torchscript": "TorchScript", "program": "torch.export", "onnx": "onnxruntime"}


def graphs() -> dict[str, export.RobotGraph]:
    """Each family's graph at its default architecture (the sizes that ship)."""
    torch.manual_seed(0)
    bundle = VMCBundle.create(Architecture())
    pick = PickVLA(PickArchitecture(vocab=("pick", "up", "the", "red", "box"))).eval()
    return {"carracing-vmc": step_graph(VMCStep(bundle.vae, bundle.mdnrnn, bundle.controller)),
            "pick-vla": chunk_graph(pick)}


def callables(graph: export.RobotGraph, folder: Path) -> dict[str, Callable[[], object]]:
    """One batch-1 step per backend, loaded from the files a version carries."""
    paths = {"torchscript": export.to_torchscript(graph, graph.path(folder, "torchscript")),
             "program": export.to_program(graph, graph.path(folder, "program")),
             "onnx": export.to_onnx(graph, graph.path(folder, "onnx"))}
    inputs = graph.example(batch=1)
    scripted, program = torch.jit.load(str(paths["torchscript"])), export.load_program(paths["program"])
    session = export.onnx_session(paths["onnx"], threads=1)
    feed = {n: x.numpy() for n, x in zip(graph.inputs, inputs)}
    return {"eager": lambda: graph.module(*inputs), "torchscript": lambda: scripted(*inputs),
            "program": lambda: program(*inputs), "onnx": lambda: session.run(None, feed)}


@torch.inference_mode()
def time_interleaved(fns: dict[str, Callable[[], object]], iterations: int, warmup: int = 20) -> dict[str, np.ndarray]:
    """-> milliseconds per call of each function; each iteration calls every function once, in turn."""
    times = {name: np.empty(iterations) for name in fns}
    for i in range(-warmup, iterations):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            if i >= 0:
                times[name][i] = (time.perf_counter() - t0) * 1000.0
    return times


def summarise(times: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    eager_median, eager_p99 = np.median(times["eager"]), np.percentile(times["eager"], 99)
    return {name: {"median_ms": float(np.median(t)), "p99_ms": float(np.percentile(t, 99)),
                   "median_vs_eager": float(np.median(t) / eager_median),
                   "p99_vs_eager": float(np.percentile(t, 99) / eager_p99)} for name, t in times.items()}


def run(iterations: int) -> dict[str, dict]:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            return {family: {"graph": g.name, **summarise(time_interleaved(callables(g, Path(tmp)), iterations))}
                    for family, g in graphs().items()}
    finally:
        torch.set_num_threads(previous)


def table(results: dict[str, dict], iterations: int) -> str:
    lines = [f"On-robot graph latency per step, batch 1, 1 CPU thread, {iterations} interleaved iterations",
             f"  {'family':<14} {'backend':<13} {'median ms':>10} {'p99 ms':>9} {'median/eager':>13} {'p99/eager':>10}"]
    for family, r in results.items():
        for b in BACKENDS:
            s = r[b]
            lines.append(f"  {family:<14} {LABELS[b]:<13} {s['median_ms']:>10.3f} {s['p99_ms']:>9.3f} "
                         f"{s['median_vs_eager']:>12.2f}x {s['p99_vs_eager']:>9.2f}x")
    return "\n".join(lines)


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], capture_output=True, text=True, cwd=ROOT).stdout.strip()


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--iterations", type=int, default=1000)
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)
    results = run(args.iterations)
    print(table(results, args.iterations))
    command = ["python", "bench/bench_export.py", *(sys.argv[1:] if argv is None else argv)]
    report = {"commit": _git("rev-parse", "HEAD"), "dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
              "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
              "command": " ".join(shlex.quote(a) for a in command),
              "threads": 1, "iterations": args.iterations, "torch": torch.__version__,
              "onnxruntime": onnxruntime.__version__, "results": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"  -> {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")
    return report


if __name__ == "__main__":
    main()
