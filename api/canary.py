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

import sqlalchemy as sa
from sqlalchemy.orm import Session

from dreamops import generation
from dreamops.api.stats import Comparison, Sample, compare_proportions, compare_samples
from dreamops.db import ApiAuditEvent, Deployment, Robot, TelemetryEpisode, utcnow
from dreamops.families import FAMILIES
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
    min_detectable_drop: float = 50.0  # reward drop the sample size is computed for (Welch)
    min_detectable_success_drop: float = 0.10  # success-rate drop, for a family judged on success

    def validate(self) -> None:
        s = self.stages
        if not s or any(not 0 < p <= 100 for p in s) or s != sorted(set(s)) or s[-1] != 100:
            raise ValueError(f"stages must be increasing percents in (0, 100] ending at 100, got {s}")
        if self.bake_seconds < 0 or self.min_episodes < 1:
            raise ValueError("bake_seconds must be >= 0 and min_episodes >= 1")
        if not (0 < self.alpha < 1 and 0 < self.power < 1) or self.min_detectable_drop <= 0:
            raise ValueError("alpha and power must be in (0, 1), min_detectable_drop > 0")
        if not 0 < self.min_detectable_success_drop < 1:
            raise ValueError("min_detectable_success_drop must be in (0, 1)")


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
        fleet = set(session.scalars(fleet_query([deployment.warehouse_id]).with_only_columns(Robot.id)))
    return Split(deployment.id, fleet).arm(robot_id, deployment.stages[deployment.stage_index])


def fleet_query(warehouses: list[str]) -> sa.Select:
    """(id, warehouse_id) of the robots that count towards the split in these warehouses."""
    return sa.select(Robot.id, Robot.warehouse_id).where(Robot.warehouse_id.in_(warehouses),
                                                         Robot.last_seen >= utcnow() - FLEET_WINDOW)


class Split:
    """The order of a deployment's robots (its fleet), computed once: the API's cache keeps one per
    rollout and answers each lookup with a dictionary read."""

    def __init__(self, deployment_id: str, fleet):
        self.deployment_id = deployment_id
        ordered = sorted(set(fleet), key=lambda r: _rank(deployment_id, r))
        self.position = {robot: k for k, robot in enumerate(ordered)}

    def arm(self, robot_id: str, percent: int) -> str:
        """The arm of `robot_id`, counted in the fleet (a robot not in it yet is placed among it)."""
        position, n = self.position.get(robot_id), len(self.position)
        if position is None:
            rank = _rank(self.deployment_id, robot_id)
            position, n = sum(_rank(self.deployment_id, r) < rank for r in self.position), n + 1
        return "canary" if position < math.ceil(percent / 100 * n) else "baseline"


@dataclass
class Evaluation:
    action: str  # hold | advance | complete | rollback
    reason: str
    statistics: dict


_E = TelemetryEpisode


@dataclass
class _Arm:
    """One arm's episodes, in one stage or over the whole rollout, as SQL aggregates."""
    n: int = 0
    reward_sum: float = 0.0
    reward_min: float = math.inf
    reward_max: float = -math.inf
    collisions_sum: int = 0
    collisions_max: int = 0

    def add(self, row) -> None:  # PostgreSQL sums integers as numeric (Decimal): plain numbers here
        self.n += int(row.n)
        self.reward_sum += float(row.reward_sum)
        self.reward_min = min(self.reward_min, float(row.reward_min))
        self.reward_max = max(self.reward_max, float(row.reward_max))
        self.collisions_sum += int(row.collisions_sum)
        self.collisions_max = max(self.collisions_max, int(row.collisions_max))

    @property
    def mean(self) -> float:
        return self.reward_sum / self.n if self.n else float("nan")


def _arms(session: Session, deployment: Deployment, stage: int) -> tuple[dict[str, _Arm], dict[str, _Arm]]:
    """(this stage's arms, the whole rollout's arms): one aggregate query over the rollout's
    episodes, whatever their number (the episodes themselves stay in the database)."""
    rows = session.execute(
        sa.select(_E.arm, _E.stage_index, sa.func.count().label("n"), sa.func.sum(_E.reward).label("reward_sum"),
                  sa.func.min(_E.reward).label("reward_min"), sa.func.max(_E.reward).label("reward_max"),
                  sa.func.sum(_E.collisions).label("collisions_sum"), sa.func.max(_E.collisions).label("collisions_max"))
        .where(_E.deployment_id == deployment.id, _E.arm.in_(("canary", "baseline")))
        .group_by(_E.arm, _E.stage_index))
    in_stage = {"canary": _Arm(), "baseline": _Arm()}
    total = {"canary": _Arm(), "baseline": _Arm()}
    for row in rows:
        total[row.arm].add(row)
        if row.stage_index == stage:
            in_stage[row.arm].add(row)
    return in_stage, total


def _samples(session: Session, deployment: Deployment, total: dict[str, _Arm]) -> dict[str, Sample]:
    """Each arm's reward count, mean and sample std; the squared deviations summed in SQL around the
    mean (two passes, as numpy does: no cancellation), a constant arm's std exactly 0."""
    out = {arm: Sample(a.n, a.mean, float("nan")) for arm, a in total.items()}
    varied = [arm for arm, a in total.items() if a.n > 1 and a.reward_min < a.reward_max]
    for arm, a in total.items():
        if a.n > 1 and arm not in varied:
            out[arm] = Sample(a.n, a.reward_min, 0.0)
    if varied:
        deviation = _E.reward - sa.case(*((_E.arm == arm, total[arm].mean) for arm in varied))
        for arm, squares in session.execute(
                sa.select(_E.arm, sa.func.sum(deviation * deviation))
                .where(_E.deployment_id == deployment.id, _E.arm.in_(varied)).group_by(_E.arm)):
            out[arm] = Sample(total[arm].n, total[arm].mean,
                              math.sqrt(max(float(squares), 0.0) / (total[arm].n - 1)))
    return out


def _canary_stage(deployment: Deployment, stage: int):
    return (_E.deployment_id == deployment.id, _E.arm == "canary", _E.stage_index == stage)


def _latency_p99(session: Session, deployment: Deployment, stage: int, n: int) -> float | None:
    """The 99th percentile of the stage's canary p99s, as numpy's default (linear) computes it:
    the two order statistics around it, read by the database's sort."""
    if n == 0:
        return None
    h = (n - 1) * 0.99
    low = math.floor(h)
    values = list(session.scalars(sa.select(_E.latency_p99_ms).where(*_canary_stage(deployment, stage))
                                  .order_by(_E.latency_p99_ms).offset(low).limit(2)))
    upper = values[1] if len(values) > 1 else values[0]
    return float(values[0] + (h - low) * (upper - values[0]))


def _episode(session: Session, deployment: Deployment, stage: int, *where, first: bool = False):
    """One canary episode of the stage (the first breaching one, or the newest), as _breach reads it."""
    order = _E.ended_at if first else _E.ended_at.desc()
    return session.execute(sa.select(_E.id, _E.robot_id, _E.collisions, _E.ended_at)
                           .where(*_canary_stage(deployment, stage), *where).order_by(order).limit(1)).first()


def judge(session: Session, deployment: Deployment, now: datetime) -> Evaluation:
    """What the deployment should do now, from its telemetry (no side effects). A few aggregate
    queries, not a read of every episode: the cost does not grow with the rollout's telemetry."""
    policy = RolloutPolicy(**deployment.policy)
    stage = deployment.stage_index
    in_stage, total = _arms(session, deployment, stage)
    canary_stage, baseline_stage = in_stage["canary"], in_stage["baseline"]
    samples = _samples(session, deployment, total)
    # One test per stage (it runs once, when the stage is ripe, and the stage then advances or rolls
    # back); Bonferroni over the stages keeps the chance of a false rollback per rollout <= alpha.
    alpha = policy.alpha / len(deployment.stages)
    test = _test(deployment.model, samples, alpha, policy)
    guardrails = {
        "collisions_per_episode": canary_stage.collisions_sum / canary_stage.n if canary_stage.n else None,
        "mean_reward": canary_stage.mean if canary_stage.n else None,
        "latency_p99_ms": _latency_p99(session, deployment, stage, canary_stage.n),
    }
    baked = (now - deployment.stage_started_at).total_seconds()
    stats = {"stage": stage, "percent": deployment.stages[stage], "baked_seconds": round(baked, 1),
             "episodes": {"canary_stage": canary_stage.n, "baseline_stage": baseline_stage.n,
                          "canary_total": total["canary"].n, "baseline_total": total["baseline"].n},
             "guardrails": guardrails, "thresholds": {"max_collisions_per_episode": policy.max_collisions_per_episode,
                                                      "min_mean_reward": policy.min_mean_reward,
                                                      "max_latency_p99_ms": policy.max_latency_p99_ms},
             "test": test.to_dict(), **({"welch": test.to_dict()} if test.test == "welch" else {})}

    # guardrails: any breach rolls back at once
    if canary_stage.n and canary_stage.collisions_max > policy.max_collisions_per_episode:
        breach = _episode(session, deployment, stage, _E.collisions > policy.max_collisions_per_episode, first=True)
        return Evaluation("rollback", f"guardrail: {breach.collisions} collision(s) in one episode on robot "
                          f"{breach.robot_id} (limit {policy.max_collisions_per_episode:g})", stats | _breach(breach))
    if guardrails["latency_p99_ms"] is not None and guardrails["latency_p99_ms"] > policy.max_latency_p99_ms:
        return Evaluation("rollback", f"guardrail: inference p99 {guardrails['latency_p99_ms']:.1f} ms > "
                          f"{policy.max_latency_p99_ms:g} ms", stats | _breach(_episode(session, deployment, stage)))
    if canary_stage.n >= policy.min_episodes and guardrails["mean_reward"] < policy.min_mean_reward:
        return Evaluation("rollback", f"guardrail: mean reward {guardrails['mean_reward']:.1f} < "
                          f"{policy.min_mean_reward:g} over {canary_stage.n} episodes",
                          stats | _breach(_episode(session, deployment, stage)))

    # promotion: baked, enough evidence on both arms, no significant regression
    last = stage == len(deployment.stages) - 1
    needs_baseline = deployment.baseline_version is not None and not last
    if baked < policy.bake_seconds:
        return Evaluation("hold", f"baking ({baked:.0f}/{policy.bake_seconds:g} s)", stats)
    if canary_stage.n < policy.min_episodes or (needs_baseline and baseline_stage.n < policy.min_episodes):
        return Evaluation("hold", f"waiting for {policy.min_episodes} episodes per arm", stats)
    required = test.required_n_per_arm
    if needs_baseline and required and min(total["canary"].n, total["baseline"].n) < required:
        what = "reward drop" if test.test == "welch" else "success-rate drop"
        return Evaluation("hold", f"underpowered: {total['canary'].n} canary / {total['baseline'].n} baseline episodes, "
                          f"{required} per arm needed for power {policy.power:g} against a {what} of "
                          f"{test.min_detectable_drop:g}", stats)
    if test.regression:
        if test.test == "welch":
            what = f"canary mean reward {test.canary_mean:.1f} vs baseline {test.baseline_mean:.1f}, Welch"
        else:
            what = f"canary success {test.canary_mean:.0%} vs baseline {test.baseline_mean:.0%}, two-proportion z-test"
        return Evaluation("rollback", f"significant regression: {what} p={test.p_value:.4f} < {alpha:.4f} "
                          f"(alpha {policy.alpha:g} over {len(deployment.stages)} stages)",
                          stats | _breach(_episode(session, deployment, stage)))
    return Evaluation("complete" if last else "advance", "stage passed", stats)


def _test(model: str, samples: dict, alpha: float, policy: RolloutPolicy) -> Comparison:
    """The statistic the model's family is judged on (dreamops.families); Welch on reward for a
    model no family registers (e.g. registered by hand in the MLflow UI)."""
    test = FAMILIES[model].canary_test if model in FAMILIES else "welch"
    if test == "two_proportion":
        return compare_proportions(samples["canary"], samples["baseline"], alpha, policy.power,
                                   policy.min_detectable_success_drop)
    return compare_samples(samples["canary"], samples["baseline"], alpha, policy.power, policy.min_detectable_drop)


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


def past_a_guardrail(policy: dict, episodes) -> bool:
    """Whether one of these canary episodes is by itself beyond a guardrail threshold (a collision
    over the limit, an inference p99 over it, a reward under the mean-reward floor): telemetry
    holding one is judged at once, not at the next throttled evaluation."""
    p = RolloutPolicy(**policy)
    return any(e.collisions > p.max_collisions_per_episode or e.latency_p99_ms > p.max_latency_p99_ms
               or e.reward < p.min_mean_reward for e in episodes)


def _breach(episode) -> dict:
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
    """Every step that changes what robots run (create, advance, end) is audited here, and raises
    the cache generation in the same transaction: API workers drop their cached assignments."""
    clean = {k: v for k, v in detail.items() if v is not None and not (isinstance(v, float) and math.isnan(v))}
    session.add(ApiAuditEvent(actor=actor, action=action, detail={"deployment_id": deployment.id,
                                                                  "version": deployment.version, **clean}))
    generation.bump(session.connection())


def policy_dict(policy: RolloutPolicy) -> dict:
    policy.validate()
    return asdict(policy)
