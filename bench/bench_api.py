"""The REST API under load: requests/s and p50/p99 latency of assignment lookups, model lookups and
telemetry posts at 1, 16 and 64 concurrent clients, on SQLite (the embedded default) and on
PostgreSQL, for this working tree ("after") and for the code of an earlier commit ("before", run
from a `git archive` of it with the same virtual environment), measured in one run with the cells
of the two interleaved, so the ratio is side by side. Writes bench/results/api.json.

Each server is the real API (`dreamops api`, uvicorn, with as many workers as the code starts on
that store) on its own temporary stores: MLflow on SQLite holding two versions, version 1 in
production, and a canary of version 2 rolling out to the bench's warehouse (50%, a bake time of an
hour, so it stays in its first stage; no guardrail is breached). Robots `bench000`..`bench063` ask
for their assignment once before the first cell (so they are in the fleet the canary splits).

Only the server under test runs during a cell: the others are stopped (SIGSTOP) so their ticks do
not take CPU from it. "after" runs without uvicorn's access log (its default now), "before" with it
(its default then).

The load generator is a separate process (asyncio on uvloop, raw HTTP/1.1 keep-alive, one
connection per client, each client sending its next request when the answer to the last one is
in): it costs far less CPU per request than an HTTP library, but it runs on the same cores as the
servers, and so does whatever else the machine runs (the load average is recorded per cell).

    python bench/bench_api.py                        # 10 s per cell, both stores, before and after
    python bench/bench_api.py --seconds 3 --stores postgresql --codes after   # a quick look
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from contextlib import ExitStack
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # tests.stack: PostgreSQL on loopback and free ports, as the tests use them
RESULTS = REPO / "bench" / "results" / "api.json"
BEFORE = "40f4f84"  # the last commit before the API's caches, batched telemetry and workers
MODEL = "carracing-vmc"
WH = "WH-BENCH"
ROBOTS = [f"bench{i:03d}" for i in range(64)]
ROUTES = ("assignment", "model", "telemetry")
# the packages of the distribution and where they live in the repository (pyproject's package-dir)
PACKAGE_DIRS = {"dreamops": "dreamops", "dreamops/flows": "flows", "dreamops/tasks": "tasks",
                "dreamops/models": "models", "dreamops/sim": "sim", "dreamops/validation": "validation",
                "dreamops/registry": "registry", "dreamops/api": "api", "dreamops/fleet": "fleet"}


# --- the load generator (runs in its own process: `bench_api.py --drive SPEC`) ---

async def _drive(spec: dict) -> dict:
    """`len(spec["requests"])` clients, client i sending its raw request i again and again for
    spec["seconds"]; latency is from writing the request to having read the whole answer."""
    from time import perf_counter

    host, port, seconds = spec["host"], spec["port"], spec["seconds"]
    requests = [r.encode("latin-1") for r in spec["requests"]]
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    failures = [0]
    connections = [await asyncio.open_connection(host, port) for _ in requests]
    start = asyncio.Event()

    async def client(i: int) -> None:
        reader, writer = connections[i]
        request = requests[i]
        await start.wait()
        while perf_counter() < deadline:
            t0 = perf_counter()
            try:
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                at = head.lower().find(b"content-length:")
                await reader.readexactly(int(head[at + 15:head.index(b"\r\n", at)]) if at >= 0 else 0)
                status = int(head[9:12])
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
                failures[0] += 1
                writer.close()
                reader, writer = await asyncio.open_connection(host, port)
                continue
            latencies.append(perf_counter() - t0)
            statuses[status] = statuses.get(status, 0) + 1
        writer.close()

    deadline = perf_counter() + seconds
    tasks = [asyncio.create_task(client(i)) for i in range(len(requests))]
    t0 = perf_counter()
    deadline = t0 + seconds
    start.set()
    await asyncio.gather(*tasks)
    elapsed = perf_counter() - t0
    latencies.sort()
    n = len(latencies)

    def pct(q: float) -> float | None:
        return round(1000 * latencies[min(n - 1, int(q * n))], 2) if n else None

    ok = statuses.get(200, 0)
    return {"requests": n, "rps": round(n / elapsed, 1), "ok_rps": round(ok / elapsed, 1), "p50_ms": pct(0.50),
            "p99_ms": pct(0.99), "max_ms": round(1000 * latencies[-1], 1) if n else None,
            "errors": n - ok + failures[0], "statuses": {str(k): v for k, v in sorted(statuses.items())},
            "elapsed_s": round(elapsed, 2)}


def drive_main(spec_path: str) -> None:
    import uvloop  # pinned in the lock: the figures in docs were measured with it

    uvloop.install()
    spec = json.loads(Path(spec_path).read_text())
    print(json.dumps(asyncio.run(_drive(spec))))


# --- requests ---

def _request(method: str, path: str, token: str, body: dict | None = None) -> str:
    data = json.dumps(body) if body is not None else ""
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
    if body is not None:
        head += f"Content-Type: application/json\r\nContent-Length: {len(data.encode())}\r\n"
    return head + "\r\n" + data


def _requests(route: str, clients: int, server: "Server") -> list[str]:
    out = []
    for i in range(clients):
        robot = ROBOTS[i]
        if route == "assignment":
            out.append(_request("GET", f"/api/v1/robots/{robot}/assignment?warehouse_id={WH}", server.robot_token))
        elif route == "model":
            out.append(_request("GET", f"/api/v1/models/{server.v2}", server.viewer_token))
        else:
            a = server.assignments[robot]
            episode = {"seed": i, "reward": 300.0, "collisions": 0, "steps": 250, "latency_p50_ms": 2.0,
                       "latency_p99_ms": 4.0, "ended_at": datetime.now(timezone.utc).isoformat()}
            out.append(_request("POST", f"/api/v1/robots/{robot}/telemetry", server.robot_token,
                                {"warehouse_id": WH, "version": a["version"], "deployment_id": a["deployment_id"],
                                 "episodes": [episode]}))
    return out


def run_cell(server: "Server", route: str, clients: int, seconds: float, workdir: Path) -> dict:
    spec = workdir / f"spec-{uuid.uuid4().hex[:8]}.json"
    spec.write_text(json.dumps({"host": "127.0.0.1", "port": server.port, "seconds": seconds,
                                "requests": _requests(route, clients, server)}))
    load = os.getloadavg()[0]
    out = subprocess.run([sys.executable, __file__, "--drive", str(spec)], capture_output=True, text=True,
                         timeout=seconds + 120)
    spec.unlink()
    if out.returncode != 0:
        raise RuntimeError(f"load generator failed: {out.stderr[-2000:]}")
    return {**json.loads(out.stdout.strip().splitlines()[-1]), "load1_before": round(load, 2),
            "load1_after": round(os.getloadavg()[0], 2)}


# --- the servers ---

def archive_code(commit: str, dest: Path) -> Path:
    """The distribution's packages at `commit`, laid out as installed (dreamops/, dreamops/api/, ...),
    for PYTHONPATH: it comes before the editable install of this working tree."""
    dest.mkdir(parents=True, exist_ok=True)
    tar = dest / "code.tar"
    subprocess.run(["git", "-C", str(REPO), "archive", "-o", str(tar), commit], check=True)
    src = dest / "src"
    with tarfile.open(tar) as t:
        t.extractall(src, filter="data")
    pkg = dest / "pkg"
    for target, source in sorted(PACKAGE_DIRS.items()):
        if (src / source).is_dir():   # a package added after `commit` is left out: the old code never imports it
            shutil.copytree(src / source, pkg / target, dirs_exist_ok=True)
    # The stores are prepared (and stamped) by this tree's migrations; the old code must know every
    # revision to start on them. Later revisions only add nullable or defaulted columns, which the
    # old code's inserts leave to the database.
    for old_versions in pkg.glob("**/migrations/versions"):  # none in code older than the API
        for revision in (REPO / "dreamops" / "migrations" / "versions").glob("0*.py"):
            if not any(old_versions.glob(revision.name[:4] + "_*.py")):
                shutil.copy(revision, old_versions / revision.name)
    return pkg


def prepare_stores(home: Path, sql_url: str) -> dict:
    """Two passed versions (each with a run holding what the lineage reads), version 1 in
    production, and a token per role, written with this working tree's code."""
    import mlflow
    from mlflow import MlflowClient

    from dreamops.api import deps
    from dreamops.api.auth import create_token
    from dreamops.db import session_factory
    from dreamops.registry import store
    from dreamops.registry.promotion import Promotions
    from dreamops.settings import get_settings
    from dreamops.tasks.config import resolve_config

    saved = {k: os.environ.get(k) for k in ("DREAMOPS_HOME", "DREAMOPS_DATABASE_URL")}
    os.environ.update({"DREAMOPS_HOME": str(home), "DREAMOPS_DATABASE_URL": sql_url})
    get_settings.cache_clear()
    deps.promotions.cache_clear()
    try:
        settings = get_settings()
        settings.resolved_home.mkdir(parents=True, exist_ok=True)
        client = store.configure(settings)
        client.create_registered_model(MODEL)
        gates = {"gate.vae_recon": "passed: 0.01 < 0.02", "gate.latency_p99": "passed: 3.1 < 80"}
        versions = []
        for k in range(2):
            with mlflow.start_run() as run:
                cfg = resolve_config("quick")
                store.log_config(cfg.flat(), cfg.to_yaml())
                store.log_json({"evaluation": {}}, "evaluation_report.json")
                mlflow.log_metrics({"eval/mean_reward": 300.0 + k, "latency/p99_ms": 3.0})
            mv = MlflowClient().create_model_version(MODEL, source=f"{run.info.artifact_uri}/model",
                                                     run_id=run.info.run_id,
                                                     tags={"validation_status": "passed", "semver": f"1.{k}.0",
                                                           **gates})
            versions.append(str(mv.version))
        Promotions.from_settings(settings, actor="bench").promote(MODEL, versions[0], "production")
        with session_factory(sql_url)() as session:
            tokens = {role: create_token(session, f"bench-{role}", role) for role in ("engineer", "robot", "viewer")}
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        get_settings.cache_clear()
        deps.promotions.cache_clear()
        mlflow.set_tracking_uri(None)
    return {"versions": versions, "tokens": tokens}


class Server:
    def __init__(self, name: str, store: str, code: str, home: Path, sql_url: str, pythonpath: Path | None,
                 env_extra: dict):
        self.name, self.store, self.code, self.home, self.sql_url = name, store, code, home, sql_url
        self.pythonpath, self.env_extra = pythonpath, env_extra
        self.assignments: dict[str, dict] = {}

    def start(self) -> None:
        from dreamops.flows.up import wait_http
        from tests.stack import free_port

        prepared = prepare_stores(self.home, self.sql_url)
        self.v1, self.v2 = prepared["versions"]
        tokens = prepared["tokens"]
        self.engineer_token, self.robot_token, self.viewer_token = (tokens[r] for r in ("engineer", "robot", "viewer"))
        self.port = free_port()
        env = {**os.environ, "DREAMOPS_HOME": str(self.home), "DREAMOPS_DATABASE_URL": self.sql_url,
               "PREFECT_SERVER_ANALYTICS_ENABLED": "false", **self.env_extra}
        env.pop("PYTHONPATH", None)
        if self.pythonpath is not None:
            env["PYTHONPATH"] = str(self.pythonpath)
        self.log = self.home / "api.log"
        with open(self.log, "w") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "dreamops.flows.cli", "api", "--host", "127.0.0.1",
                                          "--port", str(self.port)], env=env, cwd=self.home, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        wait_http(f"http://127.0.0.1:{self.port}/healthz", self.proc, self.log, timeout=180)
        self.workers = self._count_workers()
        import httpx

        with httpx.Client(base_url=f"http://127.0.0.1:{self.port}/api/v1", timeout=60) as http:
            r = http.post(f"/models/{self.v2}/deploy", headers={"Authorization": f"Bearer {self.engineer_token}"},
                          json={"warehouse_id": WH, "rollout_percent": 50, "bake_seconds": 3600,
                                "min_episodes": 1_000_000})
            r.raise_for_status()
            for robot in ROBOTS:  # every robot once: all 64 are in the fleet the canary splits
                a = http.get(f"/robots/{robot}/assignment", params={"warehouse_id": WH},
                             headers={"Authorization": f"Bearer {self.robot_token}"})
                a.raise_for_status()
                self.assignments[robot] = a.json()
        arms = [a["arm"] for a in self.assignments.values()]
        self.split = {arm: arms.count(arm) for arm in sorted(set(arms))}

    def _count_workers(self) -> int:
        out = subprocess.run(["pgrep", "-g", str(self.proc.pid)], capture_output=True, text=True)
        pids = [int(p) for p in out.stdout.split()]
        # `dreamops api` alone, or a uvicorn supervisor with its worker processes (and a resource tracker)
        names = {p: Path(f"/proc/{p}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                 for p in pids if Path(f"/proc/{p}/cmdline").exists()}
        workers = [p for p, cmd in names.items() if "multiprocessing.spawn" in cmd and "resource_tracker" not in cmd]
        return len(workers) or 1

    def pause(self, paused: bool) -> None:
        """SIGSTOP / SIGCONT the server's processes: a server not under test costs nothing (its tick,
        its reconciler) while another one is measured."""
        os.killpg(self.proc.pid, signal.SIGSTOP if paused else signal.SIGCONT)

    def stop(self) -> None:
        from dreamops.flows.up import stop_process

        self.pause(False)
        stop_process(self.proc, group=True)

    def telemetry_rows(self) -> int:
        import sqlalchemy as sa

        engine = sa.create_engine(self.sql_url)
        try:
            with engine.connect() as conn:
                return conn.execute(sa.text("select count(*) from telemetry_episodes")).scalar_one()
        finally:
            engine.dispose()


def _machine() -> dict:
    import platform

    up = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    busy = subprocess.run(["ps", "-eo", "pcpu,args", "--sort=-pcpu"], capture_output=True, text=True).stdout
    top = [line.strip()[:160] for line in busy.splitlines()[1:6]]
    return {"cores": os.cpu_count(), "cpu": platform.processor() or platform.machine(), "uptime": up,
            "busiest_processes": top}


def main(seconds: float = 10.0, clients=(1, 16, 64), stores=("sqlite", "postgresql"), codes=("before", "after"),
         before: str = BEFORE, routes=ROUTES, write: bool = True, command: str | None = None) -> dict:
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    dirty = bool(subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True).stdout.strip())
    from tests.stack import postgres_database

    machine_start = _machine()
    print(f"API bench: {seconds:g} s per cell; {machine_start['uptime']}")
    results, servers = [], {}
    with tempfile.TemporaryDirectory(prefix="dreamops-bench-api-") as tmp, ExitStack() as stack:
        root = Path(tmp)
        old = archive_code(before, root / "before") if "before" in codes else None
        for store in stores:
            for code in codes:
                home = root / f"{store}-{code}"
                home.mkdir()
                url = (f"sqlite:///{home / 'dreamops.db'}" if store == "sqlite"
                       else stack.enter_context(postgres_database("dreamops_bench_api")))
                server = Server(f"{store}/{code}", store, code, home, url, old if code == "before" else None, {})
                server.start()
                stack.callback(server.stop)
                servers[(store, code)] = server
                print(f"  {server.name}: {server.workers} worker process(es), canary split {server.split}")
        for store in stores:  # a short warm-up of every route on every server (imports, pools, caches)
            for code in codes:
                for route in routes:
                    run_cell(servers[(store, code)], route, 4, 1.0, root)
        for n in clients:
            for route in routes:
                for store in stores:
                    for code in codes:  # interleaved: the two codes see the same moment of the machine
                        server = servers[(store, code)]
                        for other in servers.values():
                            other.pause(other is not server)
                        time.sleep(0.5)  # its tick catches up
                        row = {"store": store, "code": code, "route": route, "clients": n,
                               "workers": server.workers, **run_cell(server, route, n, seconds, root)}
                        results.append(row)
                        print(f"  {store:<10} {code:<6} {route:<10} {n:>3} clients: {row['rps']:>7.1f} req/s  "
                              f"p50 {row['p50_ms']:>7.1f} ms  p99 {row['p99_ms']:>7.1f} ms  errors {row['errors']}  "
                              f"(load {row['load1_before']:.1f})", flush=True)
        for server in servers.values():
            server.pause(False)
        rows = {s: servers[s].telemetry_rows() for s in servers}
    machine_end = _machine()
    table = _table(results, stores, codes, clients, routes)
    print(table)
    out = {"commit": commit + ("+dirty" if dirty else ""), "before_commit": before,
           "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "command": command or "python " + " ".join(sys.argv), "seconds_per_cell": seconds,
           "machine": {"start": machine_start, "end": machine_end,
                       "note": "the machine's cores are shared with whatever else runs (uptime and the busiest "
                               "processes at start and end above); the load generator runs on the same cores as "
                               "the servers; only the server under test runs during a cell (the others are "
                               "SIGSTOPped); 'after' has no access log (its default), 'before' logs every request "
                               "(its default)"},
           "setup": {"servers": {f"{s}/{c}": {"workers": servers[(s, c)].workers, "canary_split": servers[(s, c)].split,
                                             "telemetry_rows_at_end": rows[(s, c)]} for s, c in servers},
                     "telemetry_episodes_per_post": 1, "robots": len(ROBOTS)},
           "results": results}
    if write:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(out, indent=2) + "\n")
        print(f"written to {RESULTS.relative_to(REPO)}")
    return out


def _table(results: list[dict], stores, codes, clients, routes) -> str:
    by = {(r["store"], r["code"], r["route"], r["clients"]): r for r in results}
    lines = ["", "requests/s (p99 ms), errors in brackets when any; after/before: throughput ratio"]
    head = f"  {'route':<11}{'clients':>8}"
    for store in stores:
        for code in codes:
            head += f"  {store + ' ' + code:>24}"
        if set(codes) == {"before", "after"}:
            head += f"  {'after/before':>12}"
    lines.append(head)
    for route in routes:
        for n in clients:
            line = f"  {route:<11}{n:>8}"
            for store in stores:
                for code in codes:
                    r = by[(store, code, route, n)]
                    cell = f"{r['rps']:.0f} ({r['p99_ms']:.0f})" + (f" [{r['errors']}]" if r["errors"] else "")
                    line += f"  {cell:>24}"
                if set(codes) == {"before", "after"}:
                    b, a = by[(store, "before", route, n)], by[(store, "after", route, n)]
                    line += f"  {a['rps'] / b['rps'] if b['rps'] else float('nan'):>11.1f}x"
            lines.append(line)
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--drive":
        drive_main(sys.argv[2])
        sys.exit(0)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0, help="per cell")
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 16, 64])
    ap.add_argument("--stores", nargs="+", default=["sqlite", "postgresql"], choices=["sqlite", "postgresql"])
    ap.add_argument("--codes", nargs="+", default=["before", "after"], choices=["before", "after"])
    ap.add_argument("--routes", nargs="+", default=list(ROUTES), choices=list(ROUTES))
    ap.add_argument("--before", default=BEFORE, help="the commit measured as 'before'")
    ap.add_argument("--no-write", action="store_true", help=f"do not write {RESULTS.relative_to(REPO)}")
    args = ap.parse_args()
    main(args.seconds, tuple(args.clients), tuple(args.stores), tuple(args.codes), args.before, tuple(args.routes),
         write=not args.no_write, command="python " + " ".join([sys.argv[0].removeprefix(str(REPO) + "/")] + sys.argv[1:]))
