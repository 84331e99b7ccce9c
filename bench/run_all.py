"""`make bench`: every benchmark, each printing a ratio measured side by side in this one run."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_api  # noqa: E402
import bench_collect  # noqa: E402
import bench_dream  # noqa: E402
import bench_export  # noqa: E402
import bench_latency  # noqa: E402
import bench_mmd  # noqa: E402
import bench_render  # noqa: E402
import bench_roofline  # noqa: E402
import bench_scaling  # noqa: E402
import bench_vae_decoder  # noqa: E402

if __name__ == "__main__":
    for bench in (bench_dream, bench_render, bench_collect, bench_latency, bench_export, bench_mmd, bench_scaling,
                  bench_roofline, bench_vae_decoder, bench_api):
        bench.main()
        print()
