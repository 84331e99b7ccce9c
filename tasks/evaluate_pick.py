"""evaluate_pick: play a pick policy in the real PyBullet cell on seeded episodes of one object set.

Per episode: success, collision (and what the first one hit), cycle time, jerk, the failure category
and chunk latencies. The
learned policy, the scripted expert and the no-language baseline (the expert aimed at a random
object) all run through here on the same seeds.

Jerk is the mean norm of the third difference of the executed end-effector motion commands
(dx, dy, dz) per step; the gripper command is binary and left out.
"""
from __future__ import annotations

import io
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dreamops.sim.pick import COLLISION_KINDS, PickCell, PickConfig
from dreamops.tasks.common import VersionReport
from dreamops.tasks.parallel import map_jobs

FAILURES = ("grasp_slip", "miss", "wrong_object", "collision", "timeout")


@dataclass(frozen=True)
class PickJob:
    seed: int
    object_set: str
    max_steps: int
    cell: tuple = ()     # PickConfig overrides as (name, value) pairs, e.g. a cell's safety envelope


def jerk(actions: np.ndarray) -> float:
    """Mean ||third difference|| of the xyz commands; 0 for fewer than 4 steps."""
    xyz = np.asarray(actions, dtype=np.float64)[:, :3]
    if len(xyz) < 4:
        return 0.0
    return float(np.linalg.norm(np.diff(xyz, n=3, axis=0), axis=1).mean())


def failure_category(success: bool, collided: bool, held_target: bool, held_other: bool, closed_empty: bool) -> str | None:
    """Why an episode failed (None if it succeeded). The first matching cause wins: a collision
    outranks what the gripper did, holding the wrong object outranks dropping the right one."""
    if success:
        return None
    if collided:
        return "collision"
    if held_other:
        return "wrong_object"
    if held_target:
        return "grasp_slip"
    if closed_empty:
        return "miss"
    return "timeout"


@dataclass
class PickEpisode:
    seed: int
    object_set: str
    success: bool
    collision: bool
    cycle_time: float
    jerk: float
    failure: str | None
    steps: int
    instruction: str
    target: str
    latencies_ms: list[float] = field(default_factory=list)
    first_collision: dict | None = None   # what the first collision hit (sim.pick.COLLISION_KINDS), when, where
    dream_scores: list[float] = field(default_factory=list)   # with a factory's `dream`: DreamScores.scores


# ---- worker side: one policy and one simulator per process -------------------------------------
_policy = None
_envs: dict[str, PickCell] = {}


class PickPolicyFactory:
    """Picklable: builds a PickVLAPolicy in a worker from the bundle's bytes (no shared files)."""

    def __init__(self, data: bytes, planner: dict | None = None, execution: dict | None = None,
                 members: bytes | None = None, dream: bool = False):
        self.data, self.planner, self.execution, self.members = data, planner, dict(execution or {}), members
        self.dream = dream   # record each executed chunk's imagined score (models.planners.DreamScores)

    @classmethod
    def from_model(cls, model, planner: dict | None = None, execution: dict | None = None,
                   members: list | None = None, dream: bool = False) -> "PickPolicyFactory":
        """planner: the planner's keyword arguments, with "kind": "cem" (the default) or "mppi" ({} for
        CEM's defaults), or None for no planner.
        execution: PickVLAPolicy's `execute` and `ensemble` (the model's own execution when empty).
        members: world models of an ensemble (models.pick_ensemble) the planner scores in.
        dream: record each executed chunk's imagined score in the version's own world model."""
        import torch

        from dreamops.models.pick_ensemble import save_members

        buf = io.BytesIO()
        torch.save(model.state(), buf)
        packed = None
        if members:
            if planner is None:
                raise ValueError("an ensemble's members are for a planner: give one")
            ensemble = io.BytesIO()
            save_members(members, ensemble)
            packed = ensemble.getvalue()
        return cls(buf.getvalue(), planner, execution, packed, dream)

    def __call__(self):
        import torch

        from dreamops.models.pick_vla import PickVLA, PickVLAPolicy
        from dreamops.models.planners import PLANNERS, DreamScores

        torch.set_num_threads(1)
        model = PickVLA.load(io.BytesIO(self.data))
        planner = None
        if self.planner is not None:
            settings = dict(self.planner)
            if self.members is not None:
                from dreamops.models.pick_ensemble import load_members
                settings["members"] = tuple(load_members(io.BytesIO(self.members)))
            planner = PLANNERS[settings.pop("kind", "cem")](**settings)
        return PickVLAPolicy(model, planner=planner, dream=DreamScores() if self.dream else None, **self.execution)


class ScriptedFactory:
    """The scripted expert (aim='target') or the no-language baseline (aim='random')."""

    def __init__(self, aim: str):
        self.aim = aim

    def __call__(self):
        from dreamops.sim.pick_expert import ScriptedExpert

        return ScriptedExpert(aim=self.aim)


def _init(factory) -> None:
    global _policy
    _policy = factory()


def _env(object_set: str, render: bool, cell: tuple = ()) -> PickCell:
    key = (object_set, render, cell)
    if key not in _envs:
        _envs[key] = PickCell(PickConfig(object_set=object_set, render=render, **dict(cell)))
    return _envs[key]


def _play(job: PickJob) -> PickEpisode:
    from dreamops.sim.pick_expert import ScriptedExpert

    scripted = isinstance(_policy, ScriptedExpert)
    env = _env(job.object_set, render=not scripted, cell=job.cell)   # scripted policies read state, not pixels
    obs, info = env.reset(seed=job.seed)
    if scripted:
        _policy.reset(env, job.seed)
    else:
        _policy.reset(env.instruction, job.seed)
        _policy.latencies_ms = []
        if _policy.dream is not None:
            _policy.dream.scores = []
    actions, held_target, held_other, closed_empty = [], False, False, False
    for _ in range(job.max_steps):
        a = _policy.act(env) if scripted else _policy.act(obs)
        obs, _, term, trunc, info = env.step(a)
        actions.append(np.asarray(a, dtype=np.float32))
        holding = [env.holding(i) for i in range(len(env.objects))]
        held_target |= holding[env.target_index]
        held_other |= any(h for i, h in enumerate(holding) if i != env.target_index)
        closed_empty |= bool(a[3] > 0 and not any(holding) and env.gripper_width() < 0.005)
        if term or trunc:
            break
    success, collided = bool(info["success"]), bool(info["collided"])
    return PickEpisode(job.seed, job.object_set, success, collided, float(info["cycle_time"]), jerk(np.stack(actions)),
                       failure_category(success, collided, held_target, held_other, closed_empty), len(actions),
                       env.instruction, f"{info['target_colour']} {info['target_shape']}",
                       [] if scripted else list(_policy.latencies_ms), info["first_collision"],
                       list(_policy.dream.scores) if not scripted and _policy.dream is not None else [])


@dataclass
class PickEvalReport:
    name: str
    object_set: str
    episodes: list[PickEpisode]

    @property
    def success_rate(self) -> float:
        return float(np.mean([e.success for e in self.episodes]))

    @property
    def collision_rate(self) -> float:
        return float(np.mean([e.collision for e in self.episodes]))

    def latencies(self) -> np.ndarray:
        return np.array([x for e in self.episodes for x in e.latencies_ms])

    def summary(self) -> dict:
        ok = [e for e in self.episodes if e.success]
        lat = self.latencies()
        return {"policy": self.name, "object_set": self.object_set, "episodes": len(self.episodes),
                "success_rate": self.success_rate, "collision_rate": self.collision_rate,
                "cycle_time_s": float(np.mean([e.cycle_time for e in ok])) if ok else float("nan"),
                "jerk": float(np.mean([e.jerk for e in self.episodes])),
                "chunk_latency_p50_ms": float(np.percentile(lat, 50)) if len(lat) else float("nan"),
                "chunk_latency_p99_ms": float(np.percentile(lat, 99)) if len(lat) else float("nan"),
                "dream_score": self.dream_score(),
                "failures": {f: sum(e.failure == f for e in self.episodes) for f in FAILURES},
                "collisions_with": self.collisions_with()}

    def dream_score(self) -> float:
        """The mean imagined score of the executed chunks (NaN when not recorded)."""
        scores = [x for e in self.episodes for x in e.dream_scores]
        return float(np.mean(scores)) if scores else float("nan")

    def collisions_with(self) -> dict[str, int]:
        """Episodes by what their first collision hit (only the kinds that occurred)."""
        kinds = Counter(e.first_collision["kind"] for e in self.episodes if e.first_collision)
        return {k: kinds[k] for k in COLLISION_KINDS if kinds[k]}


def evaluate_pick(factory, name: str, seeds: list[int], object_set: str, max_steps: int, workers: int,
                  show_progress: bool = True, ray_address: str | None = None,
                  cell: dict | None = None) -> PickEvalReport:
    """Play one episode per seed on `object_set`, in worker processes or on Ray. `cell`: PickConfig
    overrides for every episode (the default cell when None)."""
    frozen = tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in (cell or {}).items()))
    jobs = [PickJob(s, object_set, max_steps, frozen) for s in seeds]
    done = map_jobs(_play, jobs, workers, f"evaluate {name} on {object_set}", initializer=_init,
                    initargs=(factory,), show_progress=show_progress, ray_address=ray_address)
    return PickEvalReport(name, object_set, [d.result for d in done])


OBJECT_SETS = ("seen", "novel")
BASELINES = {"expert": "target", "no_language": "random"}   # `dreamops evaluate --baseline` -> aim


def evaluate_version(source: Path | str, name: str, seeds: list[int], max_steps: int | None, workers: int,
                     ray_address: str | None = None, show_progress: bool = True) -> VersionReport:
    """`dreamops evaluate` for pick-vla: a registered version's weights file, or a baseline by name
    (the scripted expert, or the no-language baseline aimed at a random object), on the same seeds
    with seen and with novel objects."""
    if isinstance(source, str):
        if source not in BASELINES:
            raise ValueError(f"unknown baseline {source!r}; choose one of {', '.join(BASELINES)}")
        factory = ScriptedFactory(BASELINES[source])
    else:
        factory = PickPolicyFactory(Path(source).read_bytes())
    steps = max_steps or PickConfig().max_steps
    reports = {s: evaluate_pick(factory, name, seeds, s, steps, workers, show_progress, ray_address)
               for s in OBJECT_SETS}
    lines = [f"{name}: {len(seeds)} episodes per object set (seeds {seeds[0]}..{seeds[-1]}), {steps} steps at most"]
    for s, r in reports.items():
        failures = ", ".join(f"{k} {v}" for k, v in r.summary()["failures"].items() if v) or "none"
        hit = ", ".join(f"{k} {v}" for k, v in r.collisions_with().items()) or "nothing"
        lines.append(f"  {s:<6} success {r.success_rate:.0%}, collisions {r.collision_rate:.0%} (first hit: {hit});"
                     f" failures: {failures}")
    return VersionReport(lines, {s: r.summary() for s, r in reports.items()})
