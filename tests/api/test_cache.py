"""The API's caches (api/cache.py) on both stores: a lookup that starts after a promote, rollback,
deploy or drift incident sees it, also in another API process (two uvicorn workers) on the same
database; robots joining a canary get the split a fresh computation gives; lookups write the
robot's row only when something changed; telemetry batches are stored whole, in one insert; a
breach no single episode shows is rolled back by the tick. The cache's own time limit is set to an
hour in these tests, so only invalidation can make them pass."""
from __future__ import annotations

import asyncio
import math
import os
import subprocess
import sys
import time

import httpx
import pytest
import sqlalchemy as sa

from tests.api.test_canary import episode
from tests.registry.conftest import MODEL, add_version
from tests.stack import free_port

WH = "WH-CACHE"
HOUR = "3600"


@pytest.fixture
def cached(api, monkeypatch):
    """The API under test, its caches kept for an hour unless invalidated."""
    from dreamops.settings import get_settings

    monkeypatch.setenv("DREAMOPS_API_CACHE_TTL_S", HOUR)
    get_settings.cache_clear()
    return api


def assigned(api, robot: str, warehouse: str = WH) -> dict:
    answer = api.get(f"/robots/{robot}/assignment?warehouse_id={warehouse}", role="robot")
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_a_lookup_right_after_a_promote_rollback_or_deploy_returns_the_new_version(cached, registry):
    api, (promotions, _) = cached, registry
    v1, v2 = add_version(semver="1.0.0"), add_version(semver="1.1.0")
    promotions.promote(MODEL, v1, "production")
    assert assigned(api, "r1")["version"] == v1  # cached from here on
    assert api.get("/models/production", role="viewer").json()["version"] == v1
    assert api.get(f"/models/{v1}", role="viewer").json()["aliases"] == ["production"]

    promotions.promote(MODEL, v2, "production")  # the CLI's way: no API request involved
    assert assigned(api, "r1") == {"robot_id": "r1", "warehouse_id": WH, "model": MODEL, "version": v2,
                                   "semver": None, "deployment_id": None, "arm": "production"}
    assert api.get("/models/production", role="viewer").json()["version"] == v2
    assert api.get(f"/models/{v1}", role="viewer").json()["aliases"] == ["last-known-good"]

    promotions.rollback(MODEL)
    assert assigned(api, "r1")["version"] == v1
    assert api.get("/models/production", role="viewer").json()["version"] == v1

    d = api.post(f"/models/{v2}/deploy", json={"robot_ids": ["r1"], "rollout_percent": 50, "bake_seconds": 3600})
    assert d.status_code == 202, d.text
    a = assigned(api, "r1")
    assert (a["version"], a["arm"], a["deployment_id"]) == (v2, "canary", d.json()["deployment_id"])
    assert api.get("/models/canary", role="viewer").json()["version"] == v2

    back = api.post(f"/deployments/{d.json()['deployment_id']}/rollback", json={"reason": "test"})
    assert back.status_code == 200, back.text
    assert assigned(api, "r1") == {"robot_id": "r1", "warehouse_id": WH, "model": MODEL, "version": v1,
                                   "semver": None, "deployment_id": None, "arm": "production"}
    assert api.get("/models/canary", role="viewer").status_code == 404


def test_a_stage_advance_and_a_promote_by_hand_reach_the_next_lookup(cached, registry):
    api, (promotions, _) = cached, registry
    v1, v2 = add_version(), add_version()
    promotions.promote(MODEL, v1, "production")
    robots = [f"s{i:02d}" for i in range(10)]
    d = api.post(f"/models/{v2}/deploy", json={"robot_ids": robots, "stages": [10, 50, 100],
                                               "bake_seconds": 3600}).json()
    arms = {r: assigned(api, r)["arm"] for r in robots}
    assert sorted(arms.values()).count("canary") == 1
    assert api.post(f"/deployments/{d['deployment_id']}/promote").json()["percent"] == 50
    assert [assigned(api, r)["arm"] for r in robots].count("canary") == 5
    assert api.post(f"/deployments/{d['deployment_id']}/promote").json()["percent"] == 100
    assert {assigned(api, r)["version"] for r in robots} == {v2}
    assert api.post(f"/deployments/{d['deployment_id']}/promote").json()["status"] == "completed"
    assert {(a["version"], a["arm"]) for a in (assigned(api, r) for r in robots)} == {(v2, "production")}


def test_robots_joining_a_canary_get_the_split_a_fresh_computation_gives(cached, registry, api_db):
    """Each first contact changes the fleet a warehouse canary splits; every robot's answer must match
    canary.Split over the robots the database holds, after every join."""
    from dreamops.api import canary

    api, (promotions, _) = cached, registry
    v1, v2 = add_version(), add_version()
    promotions.promote(MODEL, v1, "production")
    d = api.post(f"/models/{v2}/deploy", json={"warehouse_id": WH, "rollout_percent": 25,
                                               "bake_seconds": 3600}).json()
    joined: list[str] = []
    for i in range(12):
        joined.append(f"j{i:02d}")
        assigned(api, joined[-1])
        split = canary.Split(d["deployment_id"], joined)
        for robot in joined:
            assert assigned(api, robot)["arm"] == split.arm(robot, 25), (robot, len(joined))
    with sa.create_engine(api_db).connect() as conn:
        assert conn.execute(sa.text("select count(*) from robots where warehouse_id = :w"), {"w": WH}).scalar_one() == 12
    assert [assigned(api, r)["arm"] for r in joined].count("canary") == math.ceil(0.25 * 12)


def test_lookups_write_the_robot_only_when_its_version_changed_or_its_row_is_old(cached, registry, api_db,
                                                                                   monkeypatch):
    from dreamops.settings import get_settings

    api, (promotions, _) = cached, registry
    v1, v2 = add_version(), add_version()
    promotions.promote(MODEL, v1, "production")
    engine = sa.create_engine(api_db)

    def row():
        with engine.connect() as conn:
            return conn.execute(sa.text("select last_seen, running_version from robots where id = 'w1'")).one()

    assigned(api, "w1")
    first = row()
    assert first.running_version == v1
    for _ in range(5):
        assigned(api, "w1")
    assert row() == first  # unchanged: nothing written
    promotions.promote(MODEL, v2, "production")
    assigned(api, "w1")
    second = row()
    assert second.running_version == v2 and second.last_seen > first.last_seen  # written at once
    monkeypatch.setenv("DREAMOPS_ROBOT_SEEN_INTERVAL_S", "0")  # every lookup is "old enough"
    get_settings.cache_clear()
    assigned(api, "w1")
    assert row().last_seen > second.last_seen
    engine.dispose()


def test_drift_fallback_starts_and_ends_with_the_incident(cached, registry, api_db):
    """A drift incident (written as the drift flow writes it) sends the warehouse to last-known-good;
    production moving on closes it, and the next lookup sees both at once."""
    from dreamops import generation
    from dreamops.db import DriftIncident, session_factory

    api, (promotions, _) = cached, registry
    v1, v2, v3 = add_version(), add_version(), add_version()
    promotions.promote(MODEL, v1, "production")
    promotions.promote(MODEL, v2, "production")  # v1 is last-known-good
    assert assigned(api, "d1")["version"] == v2
    with session_factory(api_db)() as session:
        session.add(DriftIncident(warehouse_id=WH, model=MODEL, version=v2, fallback_version=v1, signals={}))
        generation.bump(session.connection())
        session.commit()
    assert (assigned(api, "d1")["version"], assigned(api, "d1")["arm"]) == (v1, "fallback")
    assert assigned(api, "d1", "WH-ELSEWHERE")["version"] == v2
    promotions.promote(MODEL, v3, "production")  # the retrain landed
    assert (assigned(api, "d1")["version"], assigned(api, "d1")["arm"]) == (v3, "production")
    with sa.create_engine(api_db).connect() as conn:
        resolution = conn.execute(sa.text("select resolution from drift_incidents")).scalar_one()
    assert resolution == f"production moved to {v3}"


def test_a_telemetry_batch_stores_every_episode_in_one_insert(cached, registry, api_db):
    from dreamops.db import session_factory

    api, (promotions, _) = cached, registry
    v1, v2 = add_version(), add_version()
    promotions.promote(MODEL, v1, "production")
    d = api.post(f"/models/{v2}/deploy", json={"robot_ids": ["t1"], "rollout_percent": 50,
                                               "bake_seconds": 3600}).json()
    a = assigned(api, "t1")
    inserts = []
    engine = session_factory(api_db).kw["bind"]

    def count(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("INSERT INTO TELEMETRY_EPISODES"):
            inserts.append(executemany)

    sa.event.listen(engine, "before_cursor_execute", count)
    try:
        body = {"warehouse_id": WH, "version": a["version"], "deployment_id": a["deployment_id"],
                "episodes": [episode(300.0 + k, seed=k) for k in range(200)]}
        answer = api.post("/robots/t1/telemetry", role="robot", json=body)
    finally:
        sa.event.remove(engine, "before_cursor_execute", count)
    assert answer.status_code == 200 and answer.json() == {"accepted": 200, "deployment_status": "rolling_out"}
    assert len(inserts) == 1  # one statement (an executemany) for the whole batch
    with sa.create_engine(api_db).connect() as conn:
        rows = conn.execute(sa.text("select seed, reward, arm, stage_index, deployment_id, robot_id, version "
                                    "from telemetry_episodes order by seed")).all()
    assert [(r.seed, r.reward) for r in rows] == [(k, 300.0 + k) for k in range(200)]
    assert {(r.arm, r.stage_index, r.deployment_id, r.robot_id, r.version) for r in rows} == {
        ("canary", 0, d["deployment_id"], "t1", v2)}


def test_a_breach_no_single_episode_shows_is_rolled_back_by_the_tick(cached, registry, api_db, monkeypatch):
    """Telemetry is judged at once only when an episode is past a guardrail by itself; the third
    episode here is not (reward 120 >= 100), but it brings the mean over min_episodes=3 below 100.
    Judging telemetry is throttled to once an hour here, so the tick (every 0.2 s in these tests)
    must roll it back: the bound documented is canary_tick_s plus one evaluation."""
    from dreamops.settings import get_settings

    api, (promotions, _) = cached, registry
    monkeypatch.setenv("DREAMOPS_CANARY_EVAL_INTERVAL_S", HOUR)
    get_settings.cache_clear()
    v1, v2 = add_version(), add_version()
    promotions.promote(MODEL, v1, "production")
    d = api.post(f"/models/{v2}/deploy", json={"robot_ids": ["b1"], "rollout_percent": 50, "bake_seconds": 3600,
                                               "min_episodes": 3, "min_mean_reward": 100}).json()
    a = assigned(api, "b1")

    def post(reward: float) -> str:
        body = {"warehouse_id": WH, "version": a["version"], "deployment_id": a["deployment_id"],
                "episodes": [episode(reward)]}
        return api.post("/robots/b1/telemetry", role="robot", json=body).json()["deployment_status"]

    assert post(10.0) == "rolling_out"  # past the floor: judged at once (1 episode < 3: hold)
    assert post(150.0) == "rolling_out"  # the first throttled judgement: hold (2 < 3)
    posted = time.monotonic()
    assert post(120.0) == "rolling_out"  # not judged: the throttle
    engine = sa.create_engine(api_db)
    status = None
    while time.monotonic() - posted < 10:
        with engine.connect() as conn:  # not GET /deployments/{id}: that judges too
            status, reason = conn.execute(sa.text("select status, reason from deployments where id = :i"),
                                          {"i": d["deployment_id"]}).one()
        if status != "rolling_out":
            break
        time.sleep(0.05)
    waited = time.monotonic() - posted
    engine.dispose()
    assert status == "rolled_back" and "mean reward 93.3 < 100" in reason, reason
    assert waited < 5, waited
    assert assigned(api, "b1")["version"] == v1


def test_guardrail_breaches_in_a_batch_still_roll_back_in_the_same_request(cached, registry):
    api, (promotions, _) = cached, registry
    v1, v2 = add_version(), add_version()
    promotions.promote(MODEL, v1, "production")
    for breach in (episode(250.0, collisions=1), episode(300.0, p99=120.0)):
        d = api.post(f"/models/{v2}/deploy", json={"robot_ids": ["g1"], "rollout_percent": 50,
                                                   "bake_seconds": 3600}).json()
        a = assigned(api, "g1")
        assert a["arm"] == "canary"
        body = {"warehouse_id": WH, "version": a["version"], "deployment_id": a["deployment_id"],
                "episodes": [episode(300.0), breach]}
        assert api.post("/robots/g1/telemetry", role="robot", json=body).json()["deployment_status"] == "rolled_back"
        assert api.get(f"/deployments/{d['deployment_id']}").json()["rollback_seconds"] < 5
        assert assigned(api, "g1")["version"] == v1


def test_an_api_in_another_process_with_two_workers_sees_every_change_at_once(cached, registry, api_db,
                                                                               dreamops_home):
    """`dreamops api --workers 2` on the same database and MLflow store, its caches kept for an
    hour: each of several lookups through it (spread over its two worker processes) after a change
    made through this process's API returns the new version."""
    api, (promotions, _) = cached, registry
    v1, v2 = add_version(), add_version()
    promotions.promote(MODEL, v1, "production")
    port = free_port()
    env = {**os.environ, "DREAMOPS_HOME": str(dreamops_home), "DREAMOPS_DATABASE_URL": api_db,
           "DREAMOPS_API_CACHE_TTL_S": HOUR, "DREAMOPS_RECONCILE_INTERVAL_S": "0"}
    log = dreamops_home / "api-2.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "dreamops.flows.cli", "api", "--port", str(port),
                                 "--workers", "2"], env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        from dreamops.flows.up import wait_http

        wait_http(f"http://127.0.0.1:{port}/healthz", proc, log, timeout=180)
        headers = {"Authorization": f"Bearer {api.tokens['robot']}"}

        def through_other(n: int = 12) -> set[tuple]:
            answers = set()
            for _ in range(n):  # a new connection each time: the kernel hands them to either worker
                with httpx.Client(base_url=f"http://127.0.0.1:{port}/api/v1", headers=headers, timeout=60) as c:
                    a = c.get("/robots/x1/assignment", params={"warehouse_id": WH}).json()
                answers.add((a["version"], a["arm"]))
            return answers

        assert through_other() == {(v1, "production")}
        d = api.post(f"/models/{v2}/deploy", json={"robot_ids": ["x1"], "rollout_percent": 50,
                                                   "bake_seconds": 3600}).json()
        assert through_other() == {(v2, "canary")}
        api.post(f"/deployments/{d['deployment_id']}/rollback", json={"reason": "test"})
        assert through_other() == {(v1, "production")}
        promotions.promote(MODEL, v2, "production")
        assert through_other() == {(v2, "production")}
        workers = subprocess.run(["pgrep", "-g", str(proc.pid)], capture_output=True, text=True).stdout.split()
        assert len(workers) >= 3  # the supervisor and its two workers
    finally:
        from dreamops.flows.up import stop_process

        stop_process(proc, group=True)


def test_a_generation_read_is_never_older_than_the_request():
    """The Batcher shares one run among the requests waiting, but a run serves only requests that
    arrived before it started: what a request gets was read after it arrived."""
    from dreamops.api.cache import Batcher

    starts: list[float] = []

    def read(items: list) -> list[float]:
        starts.append(time.perf_counter())
        time.sleep(0.01)
        return [starts[-1]] * len(items)

    async def main() -> list[tuple[float, float]]:
        batcher = Batcher(read)

        async def request(delay: float) -> tuple[float, float]:
            await asyncio.sleep(delay)
            arrived = time.perf_counter()
            return arrived, await batcher.submit(None)

        return await asyncio.gather(*(request(k * 0.002) for k in range(50)))

    answers = asyncio.run(main())
    assert all(run_started >= arrived for arrived, run_started in answers)
    assert len(starts) < 50  # shared: far fewer runs than requests


def test_api_workers_default_by_store(monkeypatch):
    from dreamops.settings import Settings

    monkeypatch.delenv("DREAMOPS_API_WORKERS", raising=False)
    assert Settings(database_url="sqlite:///x.db").api_worker_count == 1
    assert Settings(database_url="postgresql://u@h/db").api_worker_count == max(1, os.cpu_count() or 1)
    assert Settings(database_url="sqlite:///x.db", api_workers=3).api_worker_count == 3
    assert Settings().api_worker_count == 1  # the embedded default is SQLite
