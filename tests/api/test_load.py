"""A bounded load test on both stores (SQLite, the default, and PostgreSQL): 16 robots at once ask
for their assignment and report telemetry to the real API (uvicorn) for DREAMOPS_LOAD_SECONDS
(8 s by default; bench/bench_api.py is the long load) while a canary rolls out to them; 0 server
errors and 0 lost episodes."""
from __future__ import annotations

import os
import threading
import time
from datetime import datetime, timezone

import numpy as np
import pytest
import sqlalchemy as sa

from tests.api.test_fleet_live import live_api  # noqa: F401  (the fixture)
from tests.registry.conftest import MODEL, add_version

pytestmark = pytest.mark.e2e
CLIENTS = 16
WH = "WH-LOAD"


def test_concurrent_robots_get_no_server_errors_and_lose_no_telemetry(live_api, registry, api_db):  # noqa: F811
    import httpx

    url, api = live_api
    promotions, _ = registry
    v1, v2 = add_version(), add_version()
    promotions.promote(MODEL, v1, "production")
    deployed = api.post(f"/models/{v2}/deploy", json={"warehouse_id": WH, "rollout_percent": 50,
                                                      "bake_seconds": 3600, "min_episodes": 1_000_000})
    assert deployed.status_code == 202, deployed.text
    seconds = float(os.environ.get("DREAMOPS_LOAD_SECONDS", "8"))
    token = api.tokens["robot"]
    stop = time.monotonic() + seconds
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    accepted = [0]
    lock = threading.Lock()

    def robot(i: int) -> None:
        with httpx.Client(base_url=f"{url}/api/v1", headers={"Authorization": f"Bearer {token}"}, timeout=60) as c:
            while time.monotonic() < stop:
                t0 = time.perf_counter()
                a = c.get(f"/robots/load{i:02d}/assignment", params={"warehouse_id": WH})
                t1 = time.perf_counter()
                body = {"warehouse_id": WH, "version": a.json().get("version") or v1,
                        "deployment_id": a.json().get("deployment_id"),
                        "episodes": [{"seed": i, "reward": 300.0, "collisions": 0, "steps": 250, "latency_p50_ms": 2.0,
                                      "latency_p99_ms": 4.0, "ended_at": datetime.now(timezone.utc).isoformat()}]}
                r = c.post(f"/robots/load{i:02d}/telemetry", json=body)
                t2 = time.perf_counter()
                with lock:
                    latencies.extend((t1 - t0, t2 - t1))
                    for s in (a.status_code, r.status_code):
                        statuses[s] = statuses.get(s, 0) + 1
                    if r.status_code == 200:
                        accepted[0] += r.json()["accepted"]

    threads = [threading.Thread(target=robot, args=(i,)) for i in range(CLIENTS)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    engine = sa.create_engine(api_db)
    with engine.connect() as conn:
        stored = conn.execute(sa.text("select count(*) from telemetry_episodes where warehouse_id = :w"),
                              {"w": WH}).scalar_one()
    engine.dispose()
    requests = sum(statuses.values())
    print(f"\nload on {engine.dialect.name}: {CLIENTS} clients, {requests} requests in {elapsed:.1f} s "
          f"({requests / elapsed:.0f}/s), p99 {np.percentile(latencies, 99) * 1000:.0f} ms, statuses {statuses}, "
          f"episodes accepted {accepted[0]}, stored {stored}")
    assert not {s for s in statuses if s >= 500}, statuses
    assert set(statuses) == {200}, statuses
    assert stored == accepted[0] > 0  # nothing lost
