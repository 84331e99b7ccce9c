"""The canary state machine through the API: robots ask for assignments and report episodes;
guardrails roll back at once, a Welch test blocks regressions, passing the last stage moves
production, and a restarted API resumes its rollouts."""
from __future__ import annotations

import json
import time
from datetime import datetime, timezone

import pytest

from tests.registry.conftest import MODEL, add_version, alias

WH = "WH-042"
ROBOTS = [f"r{i:02d}" for i in range(20)]


def episode(reward: float, collisions: int = 0, p99: float = 4.0, seed: int = 0) -> dict:
    return {"seed": seed, "reward": reward, "collisions": collisions, "steps": 250, "latency_p50_ms": p99 / 2,
            "latency_p99_ms": p99, "ended_at": datetime.now(timezone.utc).isoformat()}


def arms(api) -> dict[str, dict]:
    return {r: api.get(f"/robots/{r}/assignment?warehouse_id={WH}", role="robot").json() for r in ROBOTS}


def report(api, robot: str, assignment: dict, eps: list[dict]) -> dict:
    body = {"warehouse_id": WH, "version": assignment["version"], "deployment_id": assignment["deployment_id"],
            "episodes": eps}
    answer = api.post(f"/robots/{robot}/telemetry", role="robot", json=body)
    assert answer.status_code == 200, answer.text
    return answer.json()


def setup_production(registry) -> tuple[str, str]:
    promotions, _ = registry
    v1, v2 = add_version(), add_version()
    promotions.promote(MODEL, v1, "production")
    return v1, v2


def deploy(api, version: str, **policy) -> dict:
    answer = api.post(f"/models/{version}/deploy", json={"warehouse_id": WH, **policy})
    assert answer.status_code == 202, answer.text
    return answer.json()


def play_round(api, canary_reward=300.0, baseline_reward=300.0, n=1) -> dict:
    """Every robot plays n episodes on its assigned version; rewards alternate mean -20, mean +20
    (deterministic: the arms differ only by their means)."""
    status = None
    for robot, a in arms(api).items():
        mean = canary_reward if a["arm"] == "canary" else baseline_reward
        rewards = [mean + (20.0 if (i + int(robot[1:])) % 2 else -20.0) for i in range(n)]
        status = report(api, robot, a, [episode(r) for r in rewards])["deployment_status"]
    return status


def test_good_version_goes_to_100_percent_and_becomes_production(api, registry, api_db):
    import sqlalchemy as sa

    v1, v2 = setup_production(registry)
    d = deploy(api, v2, rollout_percent=25, bake_seconds=0, min_episodes=2)
    assert d["status"] == "rolling_out" and d["stages"] == [25, 50, 100] and d["baseline_version"] == v1
    assert alias(registry[1], "canary") == v2
    assignment = arms(api)
    canaries = [r for r, a in assignment.items() if a["arm"] == "canary"]
    assert 0 < len(canaries) < len(ROBOTS) and all(assignment[r]["version"] == v2 for r in canaries)
    for _ in range(10):  # telemetry is judged at most every canary_eval_interval_s, and by the tick
        play_round(api, n=2)
        if api.get(f"/deployments/{d['deployment_id']}").json()["status"] == "completed":
            break
    final = api.get(f"/deployments/{d['deployment_id']}").json()
    assert final["status"] == "completed" and final["percent"] == 100, final["reason"]
    with sa.create_engine(api_db).connect() as conn:
        events = conn.execute(sa.text("select action, detail from api_audit order by id")).all()
    assert [e.action for e in events] == ["deployment.create", "deployment.advance", "deployment.advance",
                                          "deployment.completed"]
    details = [json.loads(e.detail) if isinstance(e.detail, str) else e.detail for e in events]  # SQLite: text
    assert [d.get("percent") for e, d in zip(events, details) if e.action == "deployment.advance"] == [50, 100]
    welch = final["statistics"]["welch"]
    assert welch["p_value"] > 0.05 and welch["required_n_per_arm"] >= 2
    _, client = registry
    assert alias(client, "production") == v2 and alias(client, "last-known-good") == v1
    assert alias(client, "canary") is None
    assert {a["version"] for a in arms(api).values()} == {v2}  # the whole fleet runs the new version


def test_collision_rolls_back_at_once_and_restores_assignments(api, registry):
    v1, v2 = setup_production(registry)
    d = deploy(api, v2, rollout_percent=50, bake_seconds=3600, min_episodes=5)
    assignment = arms(api)
    robot = next(r for r, a in assignment.items() if a["arm"] == "canary")
    status = report(api, robot, assignment[robot], [episode(250.0, collisions=1)])["deployment_status"]
    assert status == "rolled_back"
    final = api.get(f"/deployments/{d['deployment_id']}").json()
    assert "collision" in final["reason"] and 0 <= final["rollback_seconds"] < 5
    assert {a["version"] for a in arms(api).values()} == {v1}
    _, client = registry
    assert alias(client, "production") == v1 and alias(client, "canary") is None


def test_latency_guardrail(api, registry):
    _, v2 = setup_production(registry)
    deploy(api, v2, rollout_percent=50, bake_seconds=3600)
    assignment = arms(api)
    robot = next(r for r, a in assignment.items() if a["arm"] == "canary")
    assert report(api, robot, assignment[robot], [episode(300.0, p99=120.0)])["deployment_status"] == "rolled_back"


def test_significant_regression_rolls_back_with_the_test_shown(api, registry):
    v1, v2 = setup_production(registry)
    d = deploy(api, v2, rollout_percent=50, bake_seconds=0, min_episodes=6, min_mean_reward=-1000)
    for _ in range(6):  # no episode is past a guardrail: judged every canary_eval_interval_s and by the tick
        play_round(api, canary_reward=150.0, baseline_reward=300.0)
        final = api.get(f"/deployments/{d['deployment_id']}").json()
        if final["status"] != "rolling_out":
            break
    assert final["status"] == "rolled_back" and "significant regression" in final["reason"]
    welch = final["statistics"]["welch"]
    assert welch["p_value"] < 0.05 and welch["canary_mean"] < welch["baseline_mean"]
    assert alias(registry[1], "production") == v1


def test_manual_promote_and_rollback(api, registry):
    v1, v2 = setup_production(registry)
    d = deploy(api, v2, rollout_percent=10, bake_seconds=3600)
    moved = api.post(f"/deployments/{d['deployment_id']}/promote").json()
    assert moved["percent"] == 25
    back = api.post(f"/deployments/{d['deployment_id']}/rollback", json={"reason": "support tickets"}).json()
    assert back["status"] == "rolled_back" and "support tickets" in back["reason"]
    assert api.post(f"/deployments/{d['deployment_id']}/rollback").status_code == 409
    assert api.post(f"/deployments/{d['deployment_id']}/promote", role="viewer").status_code == 403


def test_second_rollout_in_the_same_warehouse_is_refused(api, registry):
    _, v2 = setup_production(registry)
    v3 = add_version()
    deploy(api, v2)
    second = api.post(f"/models/{v3}/deploy", json={"warehouse_id": WH})
    assert second.status_code == 409 and "still rolling out" in second.json()["message"]


def test_a_restarted_api_resumes_its_rollouts(api, registry, api_db):
    """The first app stops (lifespan ends); a new one on the same database moves the rollout on by
    its ticker alone, once the bake time has passed."""
    import sqlalchemy as sa
    from fastapi.testclient import TestClient

    from dreamops.api.main import create_app

    _, v2 = setup_production(registry)
    # a bake time far beyond the two rounds' few seconds, so the first app cannot move it on (a
    # loaded machine took longer than 1.5 s); the second must, after the rest of it
    d = deploy(api, v2, rollout_percent=50, bake_seconds=6, min_episodes=1)
    play_round(api, n=2)  # both reward levels on every robot: the arms differ by nothing
    api.client.__exit__(None, None, None)  # the API process goes away mid-rollout

    engine = sa.create_engine(api_db)

    def stage() -> int:  # each poll returns its connection (the loop polls up to 100 times)
        with engine.connect() as conn:
            return conn.execute(sa.text("select stage_index from deployments where id = :i"),
                                {"i": d["deployment_id"]}).scalar_one()

    assert stage() == 0
    with TestClient(create_app()):
        deadline = time.time() + 20
        while stage() == 0 and time.time() < deadline:
            time.sleep(0.2)
    assert stage() == 1
    engine.dispose()


def test_canary_set_in_the_mlflow_ui_starts_a_rollout(api, registry):
    import json
    import uuid

    from dreamops.registry.webhooks import sign

    _, client = registry
    _, v2 = setup_production(registry)
    client.set_model_version_tag(MODEL, v2, "warehouse_id", WH)
    client.set_registered_model_alias(MODEL, "canary", v2)  # an engineer in the MLflow UI
    body = json.dumps({"entity": "model_version_alias", "action": "created",
                       "data": {"name": MODEL, "alias": "canary", "version": v2}})
    delivery, ts = str(uuid.uuid4()), str(int(time.time()))
    answer = api.client.post("/api/v1/webhooks/mlflow", content=body, headers={
        "X-MLflow-Delivery-Id": delivery, "X-MLflow-Timestamp": ts, "Content-Type": "application/json",
        "X-MLflow-Signature": sign("api-test-secret", delivery, ts, body)})
    assert answer.status_code == 200, answer.text
    (deployment_id,) = answer.json()["deployments"]
    started = api.get(f"/deployments/{deployment_id}").json()
    assert started["version"] == v2 and started["warehouse_id"] == WH and started["status"] == "rolling_out"


def test_without_webhooks_the_apis_reconciler_starts_the_rollout(api, registry):
    """Where MLflow cannot reach the API, its reconciler sees the UI's `canary` and starts the rollout."""
    from dreamops.api.main import reconcile_aliases

    _, client = registry
    _, v2 = setup_production(registry)
    client.set_model_version_tag(MODEL, v2, "warehouse_id", WH)
    client.set_registered_model_alias(MODEL, "canary", v2)  # no webhook delivered
    assert reconcile_aliases() == 1
    (started,) = api.get("/deployments?status=rolling_out").json()
    assert started["version"] == v2 and started["warehouse_id"] == WH
    assert reconcile_aliases() == 0  # idempotent


def test_deploy_commits_the_deployment_its_audit_rows_and_the_alias_together(api, registry, api_db):
    """The default set-up (SQLite) included: 202 at once, one audit row per move, and the rollout
    asked for (robots, bake time), not a default one started by the reconciler."""
    import sqlalchemy as sa

    from dreamops.api.main import reconcile_aliases
    from dreamops.registry.audit import AuditLog

    _, v2 = setup_production(registry)
    started = time.perf_counter()
    answer = api.post(f"/models/{v2}/deploy", json={"robot_ids": ROBOTS[:4], "bake_seconds": 123})
    assert answer.status_code == 202, answer.text
    assert time.perf_counter() - started < 3
    assert reconcile_aliases() == 0  # the move is already in the log
    canary_moves = AuditLog(api_db).history(MODEL, alias="canary")
    assert [(m.to_version, m.source) for m in canary_moves] == [(v2, "api")]
    with sa.create_engine(api_db).connect() as conn:
        rows = conn.execute(sa.text("select robot_ids, policy from deployments")).all()
    assert len(rows) == 1
    robot_ids, policy = (json.loads(c) if isinstance(c, str) else c for c in rows[0])
    assert robot_ids == ROBOTS[:4] and policy["bake_seconds"] == 123


def test_a_failed_deploy_leaves_no_alias_deployment_or_audit_row_behind(api, registry, api_db):
    """The database refuses the deployment's audit row (a trigger): the alias move is put back."""
    import pytest
    import sqlalchemy as sa

    from dreamops.registry.audit import AuditLog

    _, v2 = setup_production(registry)
    engine = sa.create_engine(api_db)
    with engine.begin() as conn:
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql("CREATE TRIGGER no_audit BEFORE INSERT ON api_audit "
                                 "BEGIN SELECT RAISE(ABORT, 'audit table refuses rows'); END")
        else:
            conn.exec_driver_sql("CREATE FUNCTION no_audit() RETURNS trigger AS $$ BEGIN "
                                 "RAISE EXCEPTION 'audit table refuses rows'; END $$ LANGUAGE plpgsql")
            conn.exec_driver_sql("CREATE TRIGGER no_audit BEFORE INSERT ON api_audit "
                                 "FOR EACH ROW EXECUTE FUNCTION no_audit()")
    with pytest.raises(sa.exc.SQLAlchemyError, match="audit table refuses rows"):
        api.post(f"/models/{v2}/deploy", json={"warehouse_id": WH})
    assert alias(registry[1], "canary") is None
    assert AuditLog(api_db).history(MODEL, alias="canary") == []
    with engine.connect() as conn:
        assert conn.execute(sa.text("select count(*) from deployments")).scalar_one() == 0
    engine.dispose()


def test_the_judges_figures_from_sql_aggregates_equal_numpy_and_scipy_on_the_episodes(api_db):
    """judge() reads aggregates, not episodes: its guardrail figures and Welch test must equal what
    numpy and scipy compute from the episodes themselves (seeded, several stages, ties and a constant)."""
    from datetime import timedelta

    import numpy as np
    import sqlalchemy as sa
    from scipy import stats

    from dreamops.api import canary
    from dreamops.db import Deployment, TelemetryEpisode, session_factory

    rng = np.random.default_rng(7)
    now = datetime.now(timezone.utc)
    with session_factory(api_db)() as session:
        d = Deployment(model=MODEL, version="2", baseline_version="1", warehouse_id=WH, stages=[25, 50, 100],
                       stage_index=1, policy=canary.policy_dict(canary.RolloutPolicy(bake_seconds=0, min_episodes=3,
                                                                                     max_latency_p99_ms=1e9)),
                       created_by="test")
        session.add(d)
        session.commit()
        rows = []
        for k in range(300):
            arm, stage = ("canary", "baseline")[k % 2], int(k % 3 != 0)
            rows.append({"robot_id": f"r{k % 7}", "warehouse_id": WH, "version": "2" if arm == "canary" else "1",
                         "deployment_id": d.id, "arm": arm, "stage_index": stage, "seed": k,
                         "reward": float(np.round(rng.normal(300 if arm == "baseline" else 290, 40), 1)),
                         "collisions": 0, "steps": 250, "latency_p50_ms": 1.0,
                         "latency_p99_ms": float(rng.choice([3.0, 4.5, 4.5, 60.0])),
                         "ended_at": now - timedelta(seconds=k)})
        session.execute(sa.insert(TelemetryEpisode), rows)
        session.commit()
        verdict = canary.judge(session, d, now)
        constant = Deployment(model=MODEL, version="4", baseline_version="3", warehouse_id="WH-C", stages=[50, 100],
                              policy=canary.policy_dict(canary.RolloutPolicy(bake_seconds=0, min_episodes=2)),
                              created_by="test")
        session.add(constant)
        session.commit()
        session.execute(sa.insert(TelemetryEpisode), [
            {**rows[0], "deployment_id": constant.id, "arm": arm, "stage_index": 0, "reward": reward, "seed": k}
            for k, (arm, reward) in enumerate([("canary", 0.1)] * 3 + [("baseline", 0.3)] * 3)])
        session.commit()
        flat = canary.judge(session, constant, now)
    canary_all = [r["reward"] for r in rows if r["arm"] == "canary"]
    baseline_all = [r["reward"] for r in rows if r["arm"] == "baseline"]
    stage = [r for r in rows if r["arm"] == "canary" and r["stage_index"] == 1]
    s = verdict.statistics
    assert s["episodes"] == {"canary_stage": len(stage), "baseline_stage": sum(
        r["arm"] == "baseline" and r["stage_index"] == 1 for r in rows), "canary_total": 150, "baseline_total": 150}
    assert s["guardrails"]["latency_p99_ms"] == pytest.approx(np.percentile([r["latency_p99_ms"] for r in stage], 99),
                                                              rel=1e-12)
    assert s["guardrails"]["mean_reward"] == pytest.approx(np.mean([r["reward"] for r in stage]), rel=1e-12)
    expected = stats.ttest_ind(canary_all, baseline_all, equal_var=False, alternative="less")
    assert s["welch"]["t"] == pytest.approx(expected.statistic, rel=1e-9)
    assert s["welch"]["p_value"] == pytest.approx(expected.pvalue, rel=1e-9)
    assert s["welch"]["canary_std"] == pytest.approx(np.std(canary_all, ddof=1), rel=1e-12)
    assert flat.statistics["welch"]["canary_std"] == 0.0 and flat.statistics["welch"]["p_value"] == 0.0


def test_a_pick_version_worse_at_picking_rolls_back_on_the_two_proportion_test(api, registry):
    """pick-vla's robots report success as the reward (1 or 0): its canary is judged on success
    rates by a two-proportion z-test, Bonferroni over the 2 stages (62 episodes per arm for power
    0.8 against a 20-point drop from 90% at alpha 0.025; the first round gives each arm 100)."""
    promotions, client = registry
    pick = "pick-vla"
    v1, v2 = add_version(model=pick), add_version(model=pick)
    promotions.promote(pick, v1, "production")
    answer = api.post(f"/models/{v2}/deploy?model={pick}", json={"warehouse_id": WH, "rollout_percent": 50,
                                                               "bake_seconds": 0, "min_episodes": 10,
                                                               "min_detectable_success_drop": 0.2})
    assert answer.status_code == 202, answer.text
    d = answer.json()
    for _ in range(12):
        for robot in ROBOTS:
            a = api.get(f"/robots/{robot}/assignment?warehouse_id={WH}&model={pick}", role="robot").json()
            rate = 3 if a["arm"] == "canary" else 9   # successes in 10: 30% on the canary, 90% on production
            report(api, robot, a, [episode(1.0 if i < rate else 0.0, seed=i) for i in range(10)])
        final = api.get(f"/deployments/{d['deployment_id']}").json()
        if final["status"] != "rolling_out":
            break
    assert final["status"] == "rolled_back" and "two-proportion z-test" in final["reason"], final
    test = final["statistics"]["test"]
    assert test["test"] == "two_proportion" and "welch" not in final["statistics"]
    assert test["canary_mean"] == pytest.approx(0.3) and test["baseline_mean"] == pytest.approx(0.9)
    assert test["p_value"] < 0.05 / len(d["stages"]) and test["required_n_per_arm"] >= 10
    assert str(client.get_registered_model(pick).aliases["production"]) == v1
