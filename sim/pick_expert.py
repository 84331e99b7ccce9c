"""Scripted expert for the pick cell, and a no-language baseline that picks a random object.

The expert reads the object pose from the simulator (privileged state) and runs
above -> descend -> close -> lift, with Gaussian noise on every action. Recovery: if the object is not
between the fingers once lifting starts (it slipped or the grasp missed), it opens, goes back above
the object's new position and grasps again, up to `max_regrasps` times.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dreamops.sim.pick import TRAY_FLOOR_Z, PickCell, PickConfig


@dataclass
class ExpertConfig:
    noise: float = 0.1          # std of Gaussian noise on the normalised xyz action (0.1 = 3 mm at max_delta 3 cm)
    max_regrasps: int = 2
    above: float = 0.10         # pre-grasp height over the object centre
    lift: float = 0.18          # lift goal over the grasp height
    close_steps: int = 4        # 0.4 s at 10 Hz for the fingers to close
    xy_tol: float = 0.008
    z_tol: float = 0.012
    retreat_first: bool = False  # low and not over the object: straight up to the pre-grasp height, then across


class ScriptedExpert:
    """Closed-loop state machine. aim='target' follows the instruction; aim='random' ignores it."""

    def __init__(self, cfg: ExpertConfig | None = None, aim: str = "target"):
        if aim not in ("target", "random"):
            raise ValueError(f"aim must be 'target' or 'random', got {aim!r}")
        self.cfg = cfg or ExpertConfig()
        self.aim = aim

    def reset(self, env: PickCell, seed: int):
        self.rng = np.random.default_rng([seed, 17])   # own stream: the env's draws stay untouched
        n = len(env.objects)
        self.obj = env.target_index if self.aim == "target" else int(self.rng.integers(n))
        self.phase, self.count, self.regrasps = "above", 0, 0

    def resume(self, env: PickCell) -> None:
        """Take over mid-episode (DAgger): infer the phase from the cell's state instead of from
        the steps this expert took, so it can label a state another policy reached.
        Closed on the named object for longer than the fingers need: lift. Closed, still within the
        closing time, at the grasp height over it: keep closing. Closed on anything else or on
        nothing: open and go back above it (the expert's own recovery). Open and over it below the
        pre-grasp height: descend. Otherwise: above."""
        c = self.cfg
        obj, ee = env.object_position(self.obj), env.ee_position()
        rest_z = max(env.objects[self.obj].rest_z, TRAY_FLOOR_Z + 0.012)
        over = np.linalg.norm(ee[:2] - obj[:2]) < 2 * c.xy_tol
        self.count, self.regrasps = 0, 0
        if env.grip_closed():
            if env.holding(self.obj) and env.closed_steps > c.close_steps:
                self.phase, self.count = "lift", 3
                self.grasp = np.array([*env.commanded_ee()[:2], rest_z])
                return
            if over and env.closed_steps <= c.close_steps and abs(ee[2] - max(obj[2], rest_z)) < 2 * c.z_tol:
                self.phase, self.count = "close", env.closed_steps
                self.grasp = np.array([obj[0], obj[1], max(obj[2], rest_z)])
                return
            self.phase = "above"
            return
        self.phase = "descend" if over and ee[2] < obj[2] + c.above + 2 * c.z_tol else "above"

    def act(self, env: PickCell) -> np.ndarray:
        c = self.cfg
        obj = env.object_position(self.obj)
        ee = env.ee_position()
        grasp_z = max(obj[2], TRAY_FLOOR_Z + 0.012)   # fingertips stay clear of the tray floor
        close = False
        if self.phase == "above":
            goal = np.array([obj[0], obj[1], obj[2] + c.above])
            if c.retreat_first and ee[2] < goal[2] - 2 * c.z_tol and np.linalg.norm(ee[:2] - obj[:2]) > 2 * c.xy_tol:
                # a sideways move this low drags the fingers over the floor and into neighbours
                goal = np.array([*env.commanded_ee()[:2], goal[2]])
            if np.linalg.norm(ee[:2] - obj[:2]) < c.xy_tol and abs(ee[2] - goal[2]) < 2 * c.z_tol:
                self.phase, self.count = "descend", 0
        if self.phase == "descend":
            goal = np.array([obj[0], obj[1], grasp_z])
            self.count += 1
            if abs(ee[2] - grasp_z) < c.z_tol or self.count > 20:
                self.phase, self.count, self.grasp = "close", 0, goal
        if self.phase == "close":
            goal, close = self.grasp, True
            self.count += 1
            if self.count > c.close_steps:
                self.phase, self.count = "lift", 0
        if self.phase == "lift":
            goal, close = self.grasp + np.array([0.0, 0.0, c.lift]), True
            self.count += 1
            slipped = self.count > 2 and (not env.holding(self.obj) or ee[2] - obj[2] > 0.05)
            if slipped and self.regrasps < c.max_regrasps:
                self.regrasps += 1
                self.phase, self.count = "above", 0
                goal, close = np.array([ee[0], ee[1], ee[2] + 0.03]), False
        step = (goal - env.commanded_ee()) / env.cfg.max_delta
        xyz = np.clip(np.clip(step, -1, 1) + self.rng.normal(0.0, c.noise, 3), -1, 1)
        return np.concatenate([xyz, [1.0 if close else -1.0]]).astype(np.float32)


def expert_chunk(env: PickCell, horizon: int, expert: ScriptedExpert) -> np.ndarray:
    """The chunk of `horizon` actions `expert` would execute from the cell's current state: it
    resumes there (phase from state), plays them in a what-if rollout without the camera, and the
    cell is put back as it was. Past the end of the episode (success) the last action repeats, as
    in the demonstrations' chunk targets. -> [horizon, 4] float32."""
    snap = env.snapshot()
    env.set_rendering(False)
    try:
        expert.resume(env)
        actions = []
        for _ in range(horizon):
            a = expert.act(env)
            actions.append(a)
            _, _, term, trunc, _ = env.step(a)
            if term or trunc:
                break
        actions += [actions[-1]] * (horizon - len(actions))
        return np.stack(actions).astype(np.float32)
    finally:
        env.set_rendering(True)
        env.restore(snap)
        env.discard(snap)


@dataclass
class EpisodeResult:
    seed: int
    success: bool
    collision: bool
    cycle_time: float          # simulated seconds until success, or the episode length
    actions: np.ndarray        # [T, 4] executed actions
    regrasps: int
    n_objects: int
    instruction: str
    aimed_at_target: bool
    frames: dict[str, np.ndarray] = field(default_factory=dict)   # rgb/depth/proprio stacks if recorded
    rewards: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))  # [T] env reward per step
    held: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))  # [T] target between both fingers after step t
    collisions: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))  # [T] a collision during step t
    target_colour: str = ""
    target_shape: str = ""


def play_episodes(n: int, object_set: str = "seen", seed: int = 0, aim: str = "target",
                  expert: ExpertConfig | None = None, record: bool = False, **env_overrides) -> list[EpisodeResult]:
    """Play n episodes with seeds seed, seed+1, ...; record=True keeps the observations (demonstrations).

    Without record the camera is skipped (render=False) unless env_overrides ask for it: success,
    collision and cycle time do not depend on pixels, and rendering is most of the cost.
    """
    env_overrides.setdefault("render", record)
    env = PickCell(PickConfig(object_set=object_set, **env_overrides))
    policy = ScriptedExpert(expert, aim=aim)
    results = []
    try:
        for i in range(n):
            s = seed + i
            obs, info = env.reset(seed=s)
            policy.reset(env, s)
            actions, rewards, held, collisions = [], [], [], []
            keep = {"rgb": [], "depth": [], "proprio": [], "target_pos": []}
            done = False
            while not done:
                if record:
                    for k in ("rgb", "depth", "proprio"):
                        keep[k].append(obs[k])
                    # privileged label for an auxiliary localisation loss; never a policy input
                    keep["target_pos"].append(env.object_position(env.target_index).astype(np.float32))
                a = policy.act(env)
                obs, reward, term, trunc, info = env.step(a)
                actions.append(a)
                rewards.append(reward)
                held.append(env.target_held())
                collisions.append(info["collision"])
                done = term or trunc
            frames = {k: np.stack(v) for k, v in keep.items()} if record else {}
            results.append(EpisodeResult(s, bool(info["success"]), bool(info["collided"]), float(info["cycle_time"]),
                                         np.stack(actions), policy.regrasps, info["n_objects"], env.instruction,
                                         policy.obj == env.target_index, frames,
                                         np.array(rewards, np.float32), np.array(held, bool),
                                         np.array(collisions, bool), info["target_colour"], info["target_shape"]))
    finally:
        env.close()
    return results
