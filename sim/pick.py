"""PyBullet tabletop pick cell: Franka Panda, a tray, 1-6 procedural objects, a 64x64 RGB-D camera
and a templated English instruction naming the target by colour and shape.

Runs headless (DIRECT) with the tiny CPU renderer, so it needs no display or GPU.

Action (action_dim = 4): [dx, dy, dz, grip] in [-1, 1]. dx..dz scale to at most `max_delta` metres of
end-effector motion per step (top-down gripper, fixed yaw), converted to joint targets with PyBullet IK;
grip > 0 closes the gripper, <= 0 opens it. Four numbers suffice because every object fits between the
open fingers (<= 6.5 cm at any yaw) and is grasped from above, so wrist rotation adds nothing but
action-space volume for the flow-matching head to model.
"""
from __future__ import annotations

import math
import string
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import pybullet as p
import pybullet_data

# ---- object sets (fixed split) ------------------------------------------------------------------
COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.85, 0.1, 0.1), "green": (0.1, 0.7, 0.15), "blue": (0.1, 0.25, 0.9),
    "yellow": (0.95, 0.85, 0.1), "purple": (0.55, 0.15, 0.75), "orange": (1.0, 0.5, 0.05),
}
COLOUR_SYNONYMS: dict[str, tuple[str, ...]] = {
    "red": ("red", "scarlet"), "green": ("green",), "blue": ("blue",), "yellow": ("yellow",),
    "purple": ("purple", "violet"), "orange": ("orange",),
}
SHAPE_SYNONYMS: dict[str, tuple[str, ...]] = {
    "box": ("box", "cube", "block"), "cylinder": ("cylinder", "can", "tube"), "sphere": ("ball", "sphere"),
    "mesh": ("rock", "stone", "lump"), "capsule": ("capsule", "pill"),
}
SEEN_SHAPES = ("box", "cylinder", "sphere", "mesh")
# Held out of `seen`: these colour-shape pairs appear only in `novel`, together with capsules
# (a shape never seen) and meshes from other random_urdfs files.
HELD_OUT_COMBOS = frozenset({("red", "box"), ("blue", "cylinder"), ("green", "sphere"),
                             ("yellow", "mesh"), ("purple", "box"), ("orange", "sphere")})
SEEN_MESH_IDS = (0, 1, 2, 5, 8, 13)
NOVEL_MESH_IDS = (3, 21, 34, 55)


@dataclass(frozen=True)
class ObjectSet:
    name: str
    combos: tuple[tuple[str, str], ...]   # (colour, shape) pairs this set draws from
    mesh_ids: tuple[int, ...]             # pybullet_data/random_urdfs/<id> files for "mesh"


SEEN = ObjectSet("seen", tuple((c, s) for c in COLOURS for s in SEEN_SHAPES
                               if (c, s) not in HELD_OUT_COMBOS), SEEN_MESH_IDS)
NOVEL = ObjectSet("novel", tuple(sorted(HELD_OUT_COMBOS)) + tuple((c, "capsule") for c in COLOURS),
                  NOVEL_MESH_IDS)
OBJECT_SETS = {"seen": SEEN, "novel": NOVEL}

TEMPLATES = ("pick up the {c} {s}", "grab the {c} {s}", "lift the {c} {s}",
             "please pick the {c} {s} up", "get the {c} {s} out of the tray")
INSTRUCTION_CHARSET = string.ascii_letters + string.digits + " ,.'-"

# ---- robot constants ----------------------------------------------------------------------------
ARM_JOINTS = list(range(7))
FINGER_JOINTS = [9, 10]
FINGER_LINKS = (9, 10)
EE_LINK = 11                                   # panda_grasptarget, between the fingertips
ARM_FORCES = [87.0] * 4 + [12.0] * 3
HOME_Q = [0.0, -0.6, 0.0, -2.4, 0.0, 1.8, 0.785]
LOWER = [-2.9671, -1.8326, -2.9671, -3.1416, -2.9671, -0.0873, -2.9671, 0.0, 0.0]
UPPER = [2.9671, 1.8326, 2.9671, 0.0, 2.9671, 3.8223, 2.9671, 0.04, 0.04]
RANGES = [u - l for l, u in zip(LOWER, UPPER)]
DOWN = p.getQuaternionFromEuler([math.pi, 0.0, 0.0])
TRAY_POS = (0.55, 0.0, 0.0)
TRAY_FLOOR_Z = 0.015  # top of the traybox floor (a 2 cm slab centred 5 mm up)
# Proprioception, as a Franka reports it (joint state, the end effector's pose O_T_EE and the pose the
# controller is driving it to, O_T_EE_d): 7 joint angles, 7 joint velocities, gripper width, the end
# effector's position (3, measured) and its commanded position (3). The delta actions move the
# commanded position: under contact the two part by up to 1 cm, and without either a policy must
# learn forward kinematics to millimetres from joint angles. The first 15 entries keep their meaning
# for models trained on that older layout (they read only those).
PROPRIO_DIM = 21
PROPRIO_JOINT_DIM = 15   # joint angles, joint velocities, gripper width: the layout before the end effector
# What a collision hit: the robot's part (arm links 0-6, hand and flange, fingers) on the tray (or the
# ground) or on a neighbouring object; or the lifted target, carried, pressing on something.
COLLISION_KINDS = tuple(f"{part}-{what}" for part in ("arm", "hand", "finger") for what in ("tray", "object")) + ("carried",)


# The camera's light (PyBullet's TinyRenderer coefficients): `dim` is the cell at a night shift
# with half the lamps off, a scene shift the fleet's drift checks should find.
LIGHTING: dict[str, dict[str, float]] = {
    "default": {},
    "dim": {"lightAmbientCoeff": 0.25, "lightDiffuseCoeff": 0.25, "lightSpecularCoeff": 0.02},
}


@dataclass(frozen=True)
class PickConfig:
    object_set: str = "seen"
    lighting: str = "default"         # one of LIGHTING
    min_objects: int = 1
    max_objects: int = 6
    max_steps: int = 80               # control steps per episode (8 s at 10 Hz)
    control_hz: int = 10
    sim_hz: int = 240
    max_delta: float = 0.03           # metres of end-effector motion per step at |action| = 1
    lift_height: float = 0.08         # target must rise this far above its resting height ...
    hold_steps: int = 3               # ... between both fingers for this many consecutive steps
    collision_force: float = 20.0     # newtons; lighter touches (brushing a neighbour) do not count
    image_size: int = 64
    render: bool = True               # False skips the camera (black frames): state-only evaluation
    # end-effector workspace (the commanded target is clipped to it)
    workspace_low: tuple[float, float, float] = (0.3, -0.25, 0.01)
    workspace_high: tuple[float, float, float] = (0.8, 0.25, 0.45)
    spawn_low: tuple[float, float] = (0.43, -0.14)
    spawn_high: tuple[float, float] = (0.67, 0.14)
    min_spacing: float = 0.095        # centre-to-centre, so open fingers fit between neighbours
    # Looking down into the tray from its far side: objects 5-7 px wide at 64x64 (from (1.05, 0, 0.55)
    # with a 55 degree view they were 3-5 px).
    camera_eye: tuple[float, float, float] = (0.80, 0.0, 0.70)
    camera_target: tuple[float, float, float] = (0.55, 0.0, 0.02)
    camera_fov: float = 36.0
    depth_near: float = 0.05
    depth_far: float = 2.0

    def __post_init__(self):
        if self.object_set not in OBJECT_SETS:
            raise ValueError(f"object_set must be one of {sorted(OBJECT_SETS)}, got {self.object_set!r}")
        if self.lighting not in LIGHTING:
            raise ValueError(f"lighting must be one of {sorted(LIGHTING)}, got {self.lighting!r}")
        if not 1 <= self.min_objects <= self.max_objects <= 6:
            raise ValueError(f"need 1 <= min_objects <= max_objects <= 6, got {self.min_objects}, {self.max_objects}")
        if self.sim_hz % self.control_hz:
            raise ValueError("sim_hz must be a multiple of control_hz")


def project_to_image(points: np.ndarray, cfg: PickConfig) -> np.ndarray:
    """The camera's projection, as PyBullet renders it (its matrices are column-major)."""
    view = np.array(p.computeViewMatrix(cfg.camera_eye, cfg.camera_target, [0, 0, 1])).reshape(4, 4).T
    proj = np.array(p.computeProjectionMatrixFOV(cfg.camera_fov, 1.0, cfg.depth_near, cfg.depth_far)).reshape(4, 4).T
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    clip = (proj @ view @ np.c_[pts, np.ones(len(pts))].T).T
    ndc = clip[:, :2] / clip[:, 3:4]
    return np.stack([ndc[:, 0], -ndc[:, 1]], axis=1).astype(np.float32)   # image rows grow downwards


@dataclass
class PickObject:
    body: int
    colour: str
    shape: str
    size: float          # largest extent, metres
    mass: float
    friction: float
    rest_z: float = 0.0  # centre height after settling


class PickCell(gym.Env):
    """Language-conditioned pick: lift the instructed object out of the tray without collisions."""

    metadata = {"render_modes": ["rgb_array"]}

    def __init__(self, config: PickConfig | None = None, **overrides):
        cfg = config or PickConfig()
        if overrides:
            cfg = PickConfig(**{**cfg.__dict__, **overrides})
        self.cfg = cfg
        self.objects_set = OBJECT_SETS[cfg.object_set]
        n = cfg.image_size
        self.observation_space = gym.spaces.Dict({
            "rgb": gym.spaces.Box(0, 255, (n, n, 3), np.uint8),
            "depth": gym.spaces.Box(0.0, cfg.depth_far, (n, n, 1), np.float32),
            "proprio": gym.spaces.Box(-np.inf, np.inf, (PROPRIO_DIM,), np.float32),
            "instruction": gym.spaces.Text(max_length=96, charset=INSTRUCTION_CHARSET),
        })
        self.action_space = gym.spaces.Box(-1.0, 1.0, (4,), np.float32)
        self._substeps = cfg.sim_hz // cfg.control_hz
        self._client = p.connect(p.DIRECT)
        p.setAdditionalSearchPath(pybullet_data.getDataPath(), physicsClientId=self._client)
        self._view = p.computeViewMatrix(cfg.camera_eye, cfg.camera_target, [0, 0, 1])
        self._proj = p.computeProjectionMatrixFOV(cfg.camera_fov, 1.0, cfg.depth_near, cfg.depth_far)
        self.objects: list[PickObject] = []
        self.target_index = -1
        self.instruction = ""
        self._render_off = False

    # ---- gymnasium API ----------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        rng = self.np_random
        c = self._client
        # A full reset (not removeBody) so contact caches and body ids never carry over between
        # episodes: the same seed gives the same scene whatever ran before.
        p.resetSimulation(physicsClientId=c)
        p.setGravity(0, 0, -9.81, physicsClientId=c)
        p.setTimeStep(1.0 / self.cfg.sim_hz, physicsClientId=c)
        self.plane = p.loadURDF("plane.urdf", physicsClientId=c)
        self.tray = p.loadURDF("tray/traybox.urdf", TRAY_POS, useFixedBase=True, physicsClientId=c)
        self.robot = p.loadURDF("franka_panda/panda.urdf", useFixedBase=True, physicsClientId=c)
        # Free-space grip is symmetric; a gear constraint keeps both fingers centred on the object.
        gear = p.createConstraint(self.robot, 9, self.robot, 10, p.JOINT_GEAR, [1, 0, 0], [0, 0, 0], [0, 0, 0],
                                  physicsClientId=c)
        p.changeConstraint(gear, gearRatio=-1, erp=0.1, maxForce=50, physicsClientId=c)
        for j in FINGER_LINKS:
            p.changeDynamics(self.robot, j, lateralFriction=1.5, spinningFriction=0.01, physicsClientId=c)

        start = np.array([0.45, 0.0, 0.3]) + rng.uniform(-0.02, 0.02, 3)
        q = self._ik(start, reset_to=HOME_Q + [0.04, 0.04])
        for j, qj in zip(ARM_JOINTS + FINGER_JOINTS, list(q[:7]) + [0.04, 0.04]):
            p.resetJointState(self.robot, j, qj, physicsClientId=c)
        self._ee_target = start
        self._grip_closed = False
        self.closed_steps = 0
        self._render_off = False
        self._apply_controls(q)

        self._spawn_objects(rng)
        # Let objects settle (and the arm hold still) before the first frame.
        for _ in range(int(0.4 * self.cfg.sim_hz)):
            p.stepSimulation(physicsClientId=c)
        for i, o in enumerate(self.objects):
            o.rest_z = float(self.object_position(i)[2])
        self.steps = 0
        self.collided = False
        self.first_collision: dict | None = None
        self._held_steps = 0
        self.success = False
        return self._obs(), self._info(collision=False)

    def step(self, action):
        a = np.asarray(action, dtype=np.float64).reshape(4)
        if not np.all(np.isfinite(a)):
            raise ValueError(f"action must be finite, got {a}")
        a = np.clip(a, -1.0, 1.0)
        cfg = self.cfg
        self._ee_target = np.clip(self._ee_target + a[:3] * cfg.max_delta, cfg.workspace_low, cfg.workspace_high)
        self._grip_closed = bool(a[3] > 0.0)
        self.closed_steps = self.closed_steps + 1 if self._grip_closed else 0
        self._apply_controls(self._ik(self._ee_target))
        hit = None
        for _ in range(self._substeps):
            p.stepSimulation(physicsClientId=self._client)
            hit = hit or self._collision_now()
        collision = hit is not None
        if collision and not self.collided:   # what the first collision hit, and where the gripper was
            self.first_collision = {"step": self.steps, "kind": hit, "grip_closed": self._grip_closed,
                                    "ee_z": float(self.ee_position()[2]), "commanded_z": float(self._ee_target[2])}
        self.steps += 1
        self.collided |= collision
        lifted = self.object_position(self.target_index)[2] - self.objects[self.target_index].rest_z
        self._held_steps = self._held_steps + 1 if (lifted > cfg.lift_height and self.target_held()) else 0
        self.success = self._held_steps >= cfg.hold_steps
        terminated = self.success
        truncated = not terminated and self.steps >= cfg.max_steps
        return self._obs(), float(self.success), terminated, truncated, self._info(collision)

    def render(self):
        return self._camera()[0]

    # ---- what-if rollouts (the expert labels a visited state with the chunk it would execute) -----
    def snapshot(self) -> tuple:
        """The whole state of the episode: the physics (in PyBullet's memory) and the cell's own
        counters. `restore` puts it back; `discard` frees it."""
        return (p.saveState(physicsClientId=self._client), self._ee_target.copy(), self._grip_closed,
                self.closed_steps, self.steps, self.collided, self._held_steps, self.success, self.first_collision)

    def restore(self, snap: tuple) -> None:
        p.restoreState(snap[0], physicsClientId=self._client)
        (_, ee, self._grip_closed, self.closed_steps, self.steps, self.collided, self._held_steps,
         self.success, self.first_collision) = snap
        self._ee_target = ee.copy()

    def discard(self, snap: tuple) -> None:
        p.removeState(snap[0], physicsClientId=self._client)

    def set_rendering(self, on: bool) -> None:
        """Off: observations carry black frames (a what-if rollout needs no pixels; the camera is
        most of a step's cost). Never off for a step a policy sees."""
        self._render_off = not on

    def close(self):
        if self._client is not None and p.isConnected(self._client):
            p.disconnect(self._client)
        self._client = None

    # ---- privileged state (for the scripted expert and tests, not for learned policies) ----------
    def project(self, points: np.ndarray) -> np.ndarray:
        """World points [N, 3] -> their image positions [N, 2] as (column, row) in [-1, 1] (left to
        right, top to bottom), the coordinates of the policy's spatial softmax."""
        return project_to_image(points, self.cfg)

    def object_position(self, i: int) -> np.ndarray:
        return np.array(p.getBasePositionAndOrientation(self.objects[i].body, physicsClientId=self._client)[0])

    def grip_closed(self) -> bool:
        """The last action closed the gripper (`closed_steps` counts how many in a row)."""
        return self._grip_closed

    def commanded_ee(self) -> np.ndarray:
        """Where the controller is driving the end effector (the accumulated, clipped action)."""
        return self._ee_target.copy()

    def ee_position(self) -> np.ndarray:
        return np.array(p.getLinkState(self.robot, EE_LINK, physicsClientId=self._client)[4])

    def gripper_width(self) -> float:
        return sum(p.getJointState(self.robot, j, physicsClientId=self._client)[0] for j in FINGER_JOINTS)

    def holding(self, i: int) -> bool:
        """Object i touches both fingers."""
        touching = {cp[3] for cp in p.getContactPoints(self.robot, self.objects[i].body, physicsClientId=self._client)}
        return all(f in touching for f in FINGER_LINKS)

    def target_held(self) -> bool:
        return self.holding(self.target_index)

    # ---- internals --------------------------------------------------------------------------------
    def _ik(self, pos, reset_to=None) -> np.ndarray:
        c = self._client
        if reset_to is not None:   # iterate from a known pose so the start configuration is repeatable
            for j, qj in zip(ARM_JOINTS + FINGER_JOINTS, reset_to):
                p.resetJointState(self.robot, j, qj, physicsClientId=c)
        q = p.calculateInverseKinematics(self.robot, EE_LINK, list(pos), DOWN, lowerLimits=LOWER, upperLimits=UPPER,
                                         jointRanges=RANGES, restPoses=HOME_Q + [0.02, 0.02],
                                         maxNumIterations=50, residualThreshold=1e-4, physicsClientId=c)
        if reset_to is not None:   # refine: IK is iterative around the current joint state
            for _ in range(3):
                for j, qj in zip(ARM_JOINTS, q[:7]):
                    p.resetJointState(self.robot, j, qj, physicsClientId=c)
                q = p.calculateInverseKinematics(self.robot, EE_LINK, list(pos), DOWN, lowerLimits=LOWER,
                                                 upperLimits=UPPER, jointRanges=RANGES,
                                                 restPoses=HOME_Q + [0.02, 0.02], maxNumIterations=50,
                                                 residualThreshold=1e-4, physicsClientId=c)
        return np.array(q[:7])

    def _apply_controls(self, q_arm: np.ndarray):
        c = self._client
        p.setJointMotorControlArray(self.robot, ARM_JOINTS, p.POSITION_CONTROL, targetPositions=list(q_arm),
                                    forces=ARM_FORCES, physicsClientId=c)
        width = 0.0 if self._grip_closed else 0.04
        p.setJointMotorControlArray(self.robot, FINGER_JOINTS, p.POSITION_CONTROL, targetPositions=[width, width],
                                    forces=[40.0, 40.0], physicsClientId=c)

    def _spawn_objects(self, rng: np.random.Generator):
        cfg, c, oset = self.cfg, self._client, self.objects_set
        n = int(rng.integers(cfg.min_objects, cfg.max_objects + 1))
        # Distinct (colour, shape) pairs, so the instruction names exactly one object.
        picks = rng.choice(len(oset.combos), size=n, replace=False)
        xy: list[np.ndarray] = []
        while len(xy) < n:   # rejection sampling; 6 objects at 9.5 cm fit easily in 24 x 28 cm
            cand = rng.uniform(cfg.spawn_low, cfg.spawn_high)
            if all(np.linalg.norm(cand - q) >= cfg.min_spacing for q in xy):
                xy.append(cand)
        self.objects = []
        for k, (x, y) in zip(picks, xy):
            colour, shape = oset.combos[k]
            mass = float(rng.uniform(0.05, 0.3))
            friction = float(rng.uniform(0.7, 1.2))
            yaw = float(rng.uniform(-math.pi, math.pi))
            body, size, half_h = self._make_body(shape, rng, oset, mass)
            orn = p.getQuaternionFromEuler([0, 0, yaw])
            p.resetBasePositionAndOrientation(body, [x, y, TRAY_FLOOR_Z + half_h + 0.002], orn, physicsClientId=c)
            p.changeVisualShape(body, -1, rgbaColor=list(COLOURS[colour]) + [1.0], physicsClientId=c)
            # Rolling/spinning friction stops spheres and capsules from rolling away while settling.
            p.changeDynamics(body, -1, mass=mass, lateralFriction=friction, rollingFriction=0.001,
                             spinningFriction=0.005, physicsClientId=c)
            self.objects.append(PickObject(body, colour, shape, size, mass, friction))
        self.target_index = int(rng.integers(n))
        t = self.objects[self.target_index]
        template = TEMPLATES[int(rng.integers(len(TEMPLATES)))]
        cs, ss = COLOUR_SYNONYMS[t.colour], SHAPE_SYNONYMS[t.shape]
        self.instruction = template.format(c=cs[int(rng.integers(len(cs)))], s=ss[int(rng.integers(len(ss)))])

    def _make_body(self, shape: str, rng, oset: ObjectSet, mass: float) -> tuple[int, float, float]:
        """Create one object; returns (body id, largest extent, half height)."""
        c = self._client
        if shape == "mesh":
            mid = int(oset.mesh_ids[int(rng.integers(len(oset.mesh_ids)))])
            scale = float(rng.uniform(0.4, 0.5))   # the random_urdfs blobs are ~10 cm at scale 1
            body = p.loadURDF(f"random_urdfs/{mid:03d}/{mid:03d}.urdf", [0, 0, 1], globalScaling=scale,
                              physicsClientId=c)
            lo, hi = p.getAABB(body, physicsClientId=c)
            ext = np.subtract(hi, lo)
            return body, float(ext.max()), float(1.0 - lo[2])
        if shape == "box":
            half = rng.uniform(0.016, 0.022, 3)
            col = p.createCollisionShape(p.GEOM_BOX, halfExtents=half.tolist(), physicsClientId=c)
            vis = p.createVisualShape(p.GEOM_BOX, halfExtents=half.tolist(), physicsClientId=c)
            size, half_h = 2 * float(np.linalg.norm(half[:2])), float(half[2])
        elif shape == "cylinder":
            r, h = float(rng.uniform(0.016, 0.022)), float(rng.uniform(0.04, 0.06))
            col = p.createCollisionShape(p.GEOM_CYLINDER, radius=r, height=h, physicsClientId=c)
            vis = p.createVisualShape(p.GEOM_CYLINDER, radius=r, length=h, physicsClientId=c)
            size, half_h = max(2 * r, h), h / 2
        elif shape == "sphere":
            r = float(rng.uniform(0.018, 0.024))
            col = p.createCollisionShape(p.GEOM_SPHERE, radius=r, physicsClientId=c)
            vis = p.createVisualShape(p.GEOM_SPHERE, radius=r, physicsClientId=c)
            size, half_h = 2 * r, r
        elif shape == "capsule":
            # Lying on its side: the pill is a classic novel shape for a box/cylinder-trained grasp.
            r, h = float(rng.uniform(0.014, 0.018)), float(rng.uniform(0.02, 0.03))
            q = p.getQuaternionFromEuler([math.pi / 2, 0, 0])
            col = p.createCollisionShape(p.GEOM_CAPSULE, radius=r, height=h, collisionFrameOrientation=q,
                                         physicsClientId=c)
            vis = p.createVisualShape(p.GEOM_CAPSULE, radius=r, length=h, visualFrameOrientation=q,
                                      physicsClientId=c)
            size, half_h = h + 2 * r, r
        else:
            raise ValueError(f"unknown shape {shape!r}")
        body = p.createMultiBody(mass, col, vis, [0, 0, 1], physicsClientId=c)
        return body, size, half_h

    def _collision_now(self) -> str | None:
        """Robot presses on anything but the target, or the held target presses on something else.
        Returns what was hit (COLLISION_KINDS) or None."""
        c, thr = self._client, self.cfg.collision_force
        target = self.objects[self.target_index].body
        for cp in p.getContactPoints(bodyA=self.robot, physicsClientId=c):
            if cp[2] != target and cp[9] > thr:
                return self._collision_kind(cp[2], cp[3])
        # Only once lifted: while it still rests in the tray, squeezing it presses it on the floor.
        lifted = self.object_position(self.target_index)[2] - self.objects[self.target_index].rest_z > 0.015
        if lifted and self.target_held():
            for cp in p.getContactPoints(bodyA=target, physicsClientId=c):
                if cp[2] not in (self.robot, self.plane) and cp[9] > thr:
                    return "carried"
        return None

    def _collision_kind(self, body: int, robot_link: int) -> str:
        part = "finger" if robot_link in FINGER_LINKS else "hand" if robot_link >= 7 else "arm"
        return f"{part}-{'object' if body not in (self.tray, self.plane) else 'tray'}"

    def _camera(self) -> tuple[np.ndarray, np.ndarray]:
        n, cfg = self.cfg.image_size, self.cfg
        if not cfg.render or self._render_off:
            return np.zeros((n, n, 3), np.uint8), np.zeros((n, n, 1), np.float32)
        _, _, rgba, zbuf, _ = p.getCameraImage(n, n, self._view, self._proj, shadow=0,
                                               flags=p.ER_NO_SEGMENTATION_MASK, renderer=p.ER_TINY_RENDERER,
                                               physicsClientId=self._client, **LIGHTING[cfg.lighting])
        rgb = np.asarray(rgba, np.uint8).reshape(n, n, 4)[..., :3]
        z = np.asarray(zbuf, np.float64).reshape(n, n, 1)
        # OpenGL depth buffer -> metric distance along the optical axis
        near, far = cfg.depth_near, cfg.depth_far
        depth = far * near / (far - (far - near) * z)
        return rgb.copy(), depth.astype(np.float32)

    def _proprio(self) -> np.ndarray:
        states = p.getJointStates(self.robot, ARM_JOINTS, physicsClientId=self._client)
        q = [s[0] for s in states]
        qd = [s[1] for s in states]
        return np.array(q + qd + [self.gripper_width()] + list(self.ee_position()) + list(self._ee_target),
                        dtype=np.float32)

    def _obs(self) -> dict:
        rgb, depth = self._camera()
        return {"rgb": rgb, "depth": depth, "proprio": self._proprio(), "instruction": self.instruction}

    def _info(self, collision: bool) -> dict:
        t = self.objects[self.target_index]
        return {"success": self.success, "collision": collision, "collided": self.collided,
                "target_index": self.target_index, "target_body": t.body, "target_colour": t.colour,
                "target_shape": t.shape, "n_objects": len(self.objects), "object_set": self.cfg.object_set,
                "cycle_time": self.steps / self.cfg.control_hz, "first_collision": self.first_collision}
