"""Scaling figures, each measured side by side in this run:
- collection and real-env evaluation throughput (episodes/s) with 1, 2 and more workers than cores;
- the cost of one CMA-ES generation in the dream (ask, batched dreams, tell) vs population size;
- the API's model lookup (GET /api/v1/models/{version}) under concurrent clients: the real API as a
  uvicorn process on loopback against a temporary store holding one registered version."""
from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
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


# --- the API under load ---

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def _api_with_one_version(root: Path):
    """(base URL, bearer token, version): the API as a uvicorn process on a temporary embedded
    store (MLflow on SQLite, the API's tables on SQLite) with one registered random-weights version."""
    import mlflow
    import torch

    from dreamops.api.auth import create_token
    from dreamops.api.db import session_factory
    from dreamops.flows.up import stop_process, wait_http
    from dreamops.models.bundle import Architecture, VMCBundle
    from dreamops.registry import store
    from dreamops.registry.pyfunc import VMCPyfuncModel
    from dreamops.settings import get_settings
    from dreamops.tasks.config import resolve_config

    env = {**os.environ, "DREAMOPS_HOME": str(root / ".dreamops")}
    saved = os.environ.get("DREAMOPS_HOME")
    os.environ["DREAMOPS_HOME"] = env["DREAMOPS_HOME"]
    get_settings.cache_clear()
    try:
        settings = get_settings()
        store.configure(settings)
        torch.manual_seed(0)
        bundle = VMCBundle.create(Architecture())
        path = bundle.save(root / "vmc_bundle.pt")
        with mlflow.start_run():  # with what training logs and the lineage reads
            cfg = resolve_config("quick")
            store.log_config(cfg.flat(), cfg.to_yaml())
            store.log_json({"evaluation": {}}, "evaluation_report.json")
            version = store.register_pyfunc("carracing-vmc", VMCPyfuncModel(), {"bundle": str(path)},
                                            store.frame_signature(), {"validation_status": "passed"},
                                            pip_requirements=["torch"]).version
        with session_factory(settings.sql_url)() as session:
            token = create_token(session, "bench", "viewer")
    finally:
        if saved is None:
            os.environ.pop("DREAMOPS_HOME", None)
        else:
            os.environ["DREAMOPS_HOME"] = saved
        get_settings.cache_clear()
        mlflow.set_tracking_uri(None)
    port, log = _free_port(), root / "api.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "dreamops.api.main:app", "--host", "127.0.0.1",
                                 "--port", str(port), "--log-level", "warning"], env=env, cwd=root,
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", proc, log, timeout=120)
        yield f"http://127.0.0.1:{port}", token, version
    finally:
        stop_process(proc)


async def _load(url: str, token: str, clients: int, seconds: float) -> dict:
    """`clients` concurrent clients, each sending one request after the other for `seconds`."""
    import httpx

    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal errors
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            try:
                r = await http.get(url)
                ok = r.status_code == 200
            except httpx.HTTPError:
                ok = False
            latencies.append(time.perf_counter() - t0)
            errors += not ok

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"}, limits=limits, timeout=30) as http:
        t0 = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        elapsed = time.perf_counter() - t0
    ms = np.asarray(latencies) * 1000
    return {"requests": len(ms), "rps": len(ms) / elapsed, "p50_ms": float(np.percentile(ms, 50)),
            "p99_ms": float(np.percentile(ms, 99)), "errors": errors}


def api_load(seconds: float) -> dict[str, dict]:
    """Rows: (clients, with_lineage). The lineage reads two artifacts of the version's run."""
    rows = {"1, lineage": (1, True), "16, lineage": (16, True), "16, no lineage": (16, False)}
    with tempfile.TemporaryDirectory() as tmp, _api_with_one_version(Path(tmp)) as (base, token, version):
        url = f"{base}/api/v1/models/{version}"
        asyncio.run(_load(url, token, 2, 1.0))  # warm-up: MLflow client, connection pool
        out = {name: asyncio.run(_load(f"{url}?with_lineage={str(lineage).lower()}", token, clients, seconds))
               for name, (clients, lineage) in rows.items()}
        if any(r["errors"] for r in out.values()):
            print((Path(tmp) / "api.log").read_text(errors="replace")[-3000:])
        return out


def main(episodes: int = 8, collect_steps: int = 200, eval_steps: int = 300, dream_steps: int = 25,
         api_seconds: float = 4.0) -> dict:
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

    a = api_load(api_seconds)
    print(f"\nAPI model lookup GET /api/v1/models/{{version}}: uvicorn, 1 process, MLflow on SQLite, "
          f"{api_seconds:.0f} s per row")
    print(f"  {'clients, route':<18} {'requests':>9} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
    for name, row in a.items():
        print(f"  {name:<18} {row['requests']:>9} {row['rps']:>8.1f} {row['p50_ms']:>8.1f} {row['p99_ms']:>8.1f} "
              f"{row['errors']:>7}")
    one, many, bare = a["1, lineage"], a["16, lineage"], a["16, no lineage"]
    print(f"  16 clients / 1: throughput {many['rps'] / one['rps']:.2f}x, p99 {many['p99_ms'] / one['p99_ms']:.1f}x"
          f" | without / with lineage at 16 clients: throughput {bare['rps'] / many['rps']:.2f}x"
          f" | errors {sum(row['errors'] for row in a.values())} (must be 0)")
    return {"rollouts": r, "cma": g, "api": a}


if __name__ == "__main__":
    main()
