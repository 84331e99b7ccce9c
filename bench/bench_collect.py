"""Collection throughput: N episodes in parallel worker processes vs the same episodes in one env."""
from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from dreamops.tasks.collect import collect
from dreamops.tasks.config import CollectConfig


def run(episodes: int = 8, max_steps: int = 200, workers: int | None = None) -> dict:
    workers = workers or os.cpu_count() or 2
    cfg = CollectConfig(episodes=episodes, max_steps=max_steps)
    timings = {}
    for name, n in (("one_env", 1), ("parallel", workers)):
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            data = collect(cfg, Path(tmp), workers=n, use_cache=False, show_progress=False)
            timings[name] = time.perf_counter() - t0
            timings[f"{name}_hash"] = data.hash
            frames = int(data.manifest["env_frames"].sum())
    return {"frames": frames, "workers": workers, "one_env_fps": frames / timings["one_env"],
            "parallel_fps": frames / timings["parallel"], "speedup": timings["one_env"] / timings["parallel"],
            "same_data": timings["one_env_hash"] == timings["parallel_hash"]}


def main() -> dict:
    r = run()
    print(f"collection, {r['frames']} simulator frames (incl. process start-up and shard writing)")
    print(f"  one env {r['one_env_fps']:.0f} frames/s | {r['workers']} workers {r['parallel_fps']:.0f} frames/s | "
          f"speedup {r['speedup']:.2f}x (goal >= 1.7x on 2 cores) | identical dataset hash: {r['same_data']}")
    return r


if __name__ == "__main__":
    main()
