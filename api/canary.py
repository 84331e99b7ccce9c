"""Staged canary rollouts to a fleet: a state machine persisted in the API's database.

A deployment moves a version through stages (percent of the robots in scope on the canary,
default 10 -> 25 -> 50 -> 100). Every telemetry batch, and a periodic tick, evaluates it:
- guardrails on the canary's episodes (collisions, mean reward, inference p99): a breach rolls
  back at once (assignments return to the baseline, the `canary` alias is removed);
- when the stage has baked long enough and both arms have enough episodes, a one-sided Welch
  t-test of episode reward (all episodes of the rollout so far, alpha split over the stages)
  must show no significant regression to move to the next stage;
- passing the last stage (100%) moves `production` through the registry's promotion rules.
Robots are split between arms by a stable hash of (deployment, robot), so a robot stays on its arm
while the percent grows (see `arm_of`). All state is in the database: a restarted API resumes every rollout.
"""
from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta

import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import Session

from dreamops.api.db import ApiAuditEvent, Deployment, Robot, TelemetryEpisode, utcnow
from dreamops.api.stats import compare
from dreamops.registry import store
from dreamops.registry.errors import PromotionRefusedError
from dreamops.registry.promotion import Promotions, refusal

ACTIVE = "rolling_out"
log = logging.getLogger("dreamops.api")


@dataclass
class RolloutPolicy:
    """How a rollout advances and when it aborts (one per deployment, stored with it)."""
    stages: list[int] = field(default_factory=lambda: [10, 25, 50, 100])
    bake_seconds: float = 60.0
    min_episodes: int = 5  # per arm and stage before a stage may be judged
    max_collisions_per_episode: float = 0.0  # guardrail: zero collisions
    min_mean_reward: float = 0.0  # guardrail, once min_episodes canary episodes are in
    max_latency_p99_ms: float = 80.0  # guardrail on the robots' measured inference p99
    alpha: float = 0.05
    power: float = 0.8
    min_detectable_drop: float = 50.0  # reward drop the sample size is computed for

    def validate(self) -> None:
        s = self.stages
        if not s or any(not 0 < p <= 100 for p in s) or s != sorted(set(s)) or s[-1] != 100:
            raise ValueError(f"stages must be increasing percents in (0, 100] ending at 100, got {s}")
        if self.bake_seconds < 0 or self.min_episodes < 1:
            raise ValueError("bake_seconds must be >= 0 and min_episodes >= 1")
        if not (0 < self.alpha < 1 and 0 < self.power < 1) or self.min_detectable_drop <= 0:
            raise ValueError("alpha and power must be in (0, 1), min_detectable_drop > 0")


def stages_from_percent(first: int) -> list[int]:
    """`rollout_percent` is the first stage; the standard stages above it follow, ending at 100."""
    if not 0 < first <= 100:
        raise ValueError(f"rollout_percent must be in (0, 100], got {first}")
    return [first] + [p for p in (25, 50, 100) if p > first]


def _rank(deployment_id: str, robot_id: str) -> int:
    return int(hashlib.sha256(f"{deployment_id}:{robot_id}".encode()).hexdigest()[:12], 16)


def covers(deployment: Deployment, robot_id: str, warehouse_id: str) -> bool:
    if deployment.robot_ids:
        return robot_id in deployment.robot_ids
    return deployment.warehouse_id == warehouse_id


def active_for(session: Session, robot_id: str, warehouse_id: str) -> Deployment | None:
    q = sa.select(Deployment).where(Deployment.status == ACTIVE).order_by(Deployment.created_at.desc())
    return next((d for d in session.scalars(q) if covers(d, robot_id, warehouse_id)), None)


FLEET_WINDOW = timedelta(hours=1)  # robots seen this recently count towards the split


def arm_of(session: Session, deployment: Deployment, robot_id: str) -> str:
    """Robots in scope are ordered by a stable hash of (deployment, robot); the first
    ceil(percent x robots) are on the canary. Growing percents only add robots to the canary, and
    any stage below 100% with two or more robots has both arms."""
    if deployment.robot_ids:
        fleet = set(deployment.robot_ids)
    else:
        recent = utcnow() - FLEET_WINDOW
        fleet = set(session.scalars(sa.select(Robot.id).where(Robot.warehouse_id == deployment.warehouse_id,
                                                              Robot.last_seen >= recent)))
    fleet.add(robot_id)
    ordered = sorted(fleet, key=lambda r: _rank(deployment.id, r))
    on_canary = math.ceil(deployment.stages[deployment.stage_index] / 100 * len(ordered))
    return "canary" if ordered.index(robot_id) < on_canary else "baseline"


@dataclass
class Evaluation:
    action: str  # hold | advance | complete | rollback
    reason: str
    statistics: dict


def _episodes(session: Session, deployment: Deployment, arm: str, stage: int | None = None) -> list[TelemetryEpisode]:
    q = sa.select(TelemetryEpisode).where(TelemetryEpisode.deployment_id == deployment.id, TelemetryEpisode.arm == arm)
    if stage is not None:
        q = q.where(TelemetryEpisode.stage_index == stage)
    return list(session.scalars(q.order_by(TelemetryEpisode.ended_at)))


def judge(session: Session, deployment: Deployment, now: datetime) -> Evaluation:
    """What the deployment should do now, from its telemetry (no side effects)."""
    policy = RolloutPolicy(**deployment.policy)
    stage = deployment.stage_index
    canary_stage = _episodes(session, deployment, "canary", stage)
    baseline_stage = _episodes(session, deployment, "baseline", stage)
    canary_all = _episodes(session, deployment, "canary")
    baseline_all = _episodes(session, deployment, "baseline")
    # One test per stage (it runs once, when the stage is ripe, and the stage then advances or rolls
    # back); Bonferroni over the stages keeps the chance of a false rollback per rollout <= alpha.
    alpha = policy.alpha / len(deployment.stages)
    test = compare([e.reward for e in canary_all], [e.reward for e in baseline_all], alpha, policy.power,
                   policy.min_detectable_drop)
    p99s = [e.latency_p99_ms for e in canary_stage]
    guardrails = {
        "collisions_per_episode": (sum(e.collisions for e in canary_stage) / len(canary_stage)) if canary_stage else None,
        "mean_reward": float(np.mean([e.reward for e in canary_stage])) if canary_stage else None,
        "latency_p99_ms": float(np.percentile(p99s, 99)) if p99s else None,
    }
    baked = (now - deployment.stage_started_at).total_seconds()
    stats = {"stage": stage, "percent": deployment.stages[stage], "baked_seconds": round(baked, 1),
             "episodes": {"canary_stage": len(canary_stage), "baseline_stage": len(baseline_stage),
                          "canary_total": len(canary_all), "baseline_total": len(baseline_all)},
             "guardrails": guardrails, "thresholds": {"max_collisions_per_episode": policy.max_collisions_per_episode,
                                                      "min_mean_reward": policy.min_mean_reward,
                                                      "max_latency_p99_ms": policy.max_latency_p99_ms},
             "welch": test.to_dict()}

    # guardrails: any breach rolls back at once
    breach = next((e for e in canary_stage if e.collisions > policy.max_collisions_per_episode), None)
    if breach is not None:
        return Evaluation("rollback", f"guardrail: {breach.collisions} collision(s) in one episode on robot "
                          f"{breach.robot_id} (limit {policy.max_collisions_per_episode:g})", stats | _breach(breach))
    if guardrails["latency_p99_ms"] is not None and guardrails["latency_p99_ms"] > policy.max_latency_p99_ms:
        return Evaluation("rollback", f"guardrail: inference p99 {guardrails['latency_p99_ms']:.1f} ms > "
                          f"{policy.max_latency_p99_ms:g} ms", stats | _breach(canary_stage[-1]))
    if len(canary_stage) >= policy.min_episodes and guardrails["mean_reward"] < policy.min_mean_reward:
        return Evaluation("rollback", f"guardrail: mean reward {guardrails['mean_reward']:.1f} < "
                          f"{policy.min_mean_reward:g} over {len(canary_stage)} episodes", stats | _breach(canary_stage[-1]))

    # promotion: baked, enough evidence on both arms, no significant regression
    last = stage == len(deployment.stages) - 1
    needs_baseline = deployment.baseline_version is not None and not last
    if baked < policy.bake_seconds:
        return Evaluation("hold", f"baking ({baked:.0f}/{policy.bake_seconds:g} s)", stats)
    if len(canary_stage) < policy.min_episodes or (needs_baseline and len(baseline_stage) < policy.min_episodes):
        return Evaluation("hold", f"waiting for {policy.min_episodes} episodes per arm", stats)
    required = test.required_n_per_arm
    if needs_baseline and required and min(len(canary_all), len(baseline_all)) < required:
        return Evaluation("hold", f"underpowered: {len(canary_all)} canary / {len(baseline_all)} baseline episodes, "
                          f"{required} per arm needed for power {policy.power:g} against a reward drop of "
                          f"{policy.min_detectable_drop:g}", stats)
    if test.regression:
        return Evaluation("rollback", f"significant regression: canary mean reward {test.canary_mean:.1f} vs "
                          f"baseline {test.baseline_mean:.1f}, Welch p={test.p_value:.4f} < {alpha:.4f} "
                          f"(alpha {policy.alpha:g} over {len(deployment.stages)} stages)",
                          stats | _breach(canary_stage[-1]))
    return Evaluation("complete" if last else "advance", "stage passed", stats)


class DeploymentConflict(Exception):
    """The deployment cannot start (another rollout is active there, or nothing would change)."""


def start(session: Session, promotions: Promotions, model: str, ref: str, policy: RolloutPolicy, actor: str,
          warehouse_id: str | None = None, robot_ids: list[str] | None = None, set_alias: bool = True) -> Deployment:
    """Create a rollout of version `ref` and point `canary` at it (the rules refuse failed versions).
    `set_alias=False` when the alias was already set (an engineer in the MLflow UI)."""
    mv = store.get_version(model, ref)  # LookupError when unknown
    why_not = refusal(mv)
    if why_not:
        raise PromotionRefusedError(f"version {mv.version} may not be deployed: {why_not}")
    stored_policy = policy_dict(policy)
    for active in session.scalars(sa.select(Deployment).where(Deployment.status == ACTIVE, Deployment.model == model)):
        if (warehouse_id and active.warehouse_id == warehouse_id) or set(active.robot_ids or []) & set(robot_ids or []):
            raise DeploymentConflict(f"deployment {active.id} (version {active.version}) is still rolling out there; "
                                     f"roll it back or let it finish first")
    production = store.find_alias(model, "production")
    baseline = str(production.version) if production else None
    if baseline == str(mv.version):
        raise DeploymentConflict(f"version {mv.version} is already in production")
    deployment = Deployment(model=model, version=str(mv.version), baseline_version=baseline, warehouse_id=warehouse_id,
                            robot_ids=robot_ids, stages=policy.stages, policy=stored_policy, created_by=actor)
    with atomically(session, promotions) as p:
        session.add(deployment)
        session.flush()
        if set_alias:
            p.promote(model, str(mv.version), "canary", source="api",
                      reason=f"canary deployment {deployment.id} by {actor}")
        _audit(session, actor, "deployment.create", deployment, baseline=baseline, stages=policy.stages)
    return deployment


@contextmanager
def atomically(session: Session, promotions: Promotions) -> Iterator[Promotions]:
    """The session's changes, their audit rows and the alias moves made through the yielded
    promotions commit together, or not at all: on any failure the session rolls back and the
    aliases are put back (a failed deploy leaves no `canary` behind)."""
    p = promotions.bind(session.connection())
    try:
        yield p
        session.commit()
    except BaseException:
        session.rollback()
        p.undo()
        raise


def start_from_alias(session: Session, promotions: Promotions, model: str, version: str) -> Deployment | None:
    """The rollout an engineer asked for by setting `canary` in the MLflow UI (seen by the webhook
    or the reconciler): the version's warehouse, default stages and guardrails."""
    warehouse = store.get_version(model, version).tags.get("warehouse_id", "default")
    try:
        return start(session, promotions, model, version, RolloutPolicy(), "mlflow-ui", warehouse_id=warehouse,
                     set_alias=False)
    except (DeploymentConflict, LookupError, ValueError) as exc:
        log.warning("canary alias on %s v%s did not start a rollout: %s", model, version, exc)
        return None


def _breach(episode: TelemetryEpisode) -> dict:
    return {"breach": {"robot_id": episode.robot_id, "ended_at": episode.ended_at.isoformat(),
                       "episode_id": episode.id}}


def step(session: Session, deployment_id: str, promotions: Promotions, now: datetime | None = None) -> Deployment:
    """Evaluate one deployment and apply the outcome, holding its row lock (PostgreSQL) so API
    workers and the ticker do not act twice."""
    # populate_existing: the row as it is now, not as this session loaded it before the lock
    with atomically(session, promotions) as p:
        deployment = session.scalars(sa.select(Deployment).where(Deployment.id == deployment_id).with_for_update()
                                     .execution_options(populate_existing=True)).one()
        if deployment.status != ACTIVE:
            return deployment
        now = now or utcnow()
        verdict = judge(session, deployment, now)
        deployment.statistics = verdict.statistics | {"last_verdict": verdict.action, "last_reason": verdict.reason}
        if verdict.action == "rollback":
            breach_at = datetime.fromisoformat(verdict.statistics["breach"]["ended_at"])
            _end(session, deployment, "rolled_back", verdict.reason, p, breach_at=breach_at)
        elif verdict.action == "advance":
            deployment.stage_index += 1
            deployment.stage_started_at = now
            _audit(session, "system", "deployment.advance", deployment,
                   percent=deployment.stages[deployment.stage_index])
        elif verdict.action == "complete":
            _end(session, deployment, "completed", "every stage passed", p)
    return deployment


def rollback(session: Session, deployment: Deployment, reason: str, promotions: Promotions, actor: str) -> Deployment:
    with atomically(session, promotions) as p:
        _end(session, deployment, "rolled_back", reason, p, actor=actor)
    return deployment


def promote_stage(session: Session, deployment: Deployment, promotions: Promotions, actor: str) -> Deployment:
    """An engineer moves the rollout on by hand (guardrail breaches still roll back)."""
    with atomically(session, promotions) as p:
        if deployment.stage_index == len(deployment.stages) - 1:
            _end(session, deployment, "completed", f"promoted by hand by {actor}", p, actor=actor)
        else:
            deployment.stage_index += 1
            deployment.stage_started_at = utcnow()
            _audit(session, actor, "deployment.advance", deployment,
                   percent=deployment.stages[deployment.stage_index], by_hand=True)
    return deployment


def _end(session: Session, deployment: Deployment, status: str, reason: str, promotions: Promotions,
         breach_at: datetime | None = None, actor: str = "system") -> None:
    deployment.status, deployment.reason, deployment.ended_at = status, reason, utcnow()
    if status == "completed":
        promotions.promote(deployment.model, deployment.version, "production", source="api",
                           reason=f"canary deployment {deployment.id} passed every stage")
    promotions.retire(deployment.model, "canary", f"deployment {deployment.id} {status}: {reason}")
    if breach_at is not None:
        deployment.breach_at = breach_at
        deployment.rollback_seconds = max(0.0, (deployment.ended_at - breach_at).total_seconds())
    _audit(session, actor, f"deployment.{status}", deployment, reason=reason,
           rollback_seconds=deployment.rollback_seconds)


def _audit(session: Session, actor: str, action: str, deployment: Deployment, **detail) -> None:
    clean = {k: v for k, v in detail.items() if v is not None and not (isinstance(v, float) and math.isnan(v))}
    session.add(ApiAuditEvent(actor=actor, action=action, detail={"deployment_id": deployment.id,
                                                                  "version": deployment.version, **clean}))


def policy_dict(policy: RolloutPolicy) -> dict:
    policy.validate()
    return asdict(policy)
