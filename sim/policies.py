"""Policies that need no learning: random, temporally correlated exploration, rule-based baseline.

Every policy has `reset(seed)` and `act(frame) -> action [3]` (frame uint8 64x64x3).
"""
from __future__ import annotations

import numpy as np

from dreamops.sim.carracing import PLAYFIELD_ROWS


class RandomPolicy:
    """Uniform random actions each frame (the classic reference; the car barely moves)."""

    name = "random"
    uses_frames = False  # the rollout need not draw them

    def reset(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def act(self, frame: np.ndarray) -> np.ndarray:
        return self.rng.uniform([-1, 0, 0], [1, 1, 1]).astype(np.float32)


def road_mask(frame: np.ndarray) -> np.ndarray:
    """Grey, not dark pixels: |R-G| and |G-B| < 0.1, and brighter than the dashboard/kerbs' black."""
    f = frame.astype(np.float32) / 255.0
    r, g, b = f[..., 0], f[..., 1], f[..., 2]
    return (np.abs(r - g) < 0.1) & (np.abs(g - b) < 0.1) & (g > 0.25)


class RuleBasedPolicy:
    """Seed 000 section 3.3: steer proportionally towards the road centroid of the bottom third
    of the playfield, constant throttle, no brake. No memory, no lookahead. Gain and throttle were
    picked on training seeds 0-4 (not the evaluation seeds) inside the seed's suggested ranges;
    the seed expects 200-400 from such a controller."""

    name = "rule_based"

    def __init__(self, gain: float = 1.0, throttle: float = 0.15):
        self.gain, self.throttle = gain, throttle

    def reset(self, seed: int) -> None:
        pass

    def act(self, frame: np.ndarray) -> np.ndarray:
        band = road_mask(frame[PLAYFIELD_ROWS * 2 // 3:PLAYFIELD_ROWS])
        cols = np.nonzero(band)[1]
        width = frame.shape[1]
        steer = 0.0
        if cols.size:
            steer = float(np.clip(self.gain * (cols.mean() - width / 2) / (width / 2), -1, 1))
        return np.array([steer, self.throttle, 0.0], dtype=np.float32)


class CorrelatedExplorationPolicy:
    """Random actions that persist: a target action is redrawn now and then and the applied
    action moves smoothly towards it. Drives far enough to see corners, grass and recoveries,
    unlike per-frame uniform noise."""

    name = "correlated"

    def __init__(self, p_change: float = 0.08, smoothing: float = 0.3):
        self.p_change, self.smoothing = p_change, smoothing

    def reset(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.current = np.array([0.0, 0.5, 0.0], dtype=np.float32)
        self.target = self._draw()

    def _draw(self) -> np.ndarray:
        brake = self.rng.uniform(0, 0.6) if self.rng.random() < 0.1 else 0.0
        return np.array([self.rng.uniform(-1, 1), self.rng.beta(2.0, 1.5), brake], dtype=np.float32)

    def act(self, frame: np.ndarray) -> np.ndarray:
        if self.rng.random() < self.p_change:
            self.target = self._draw()
        self.current = (1 - self.smoothing) * self.current + self.smoothing * self.target
        return self.current.copy()


class NoisyBaselinePolicy:
    """The rule-based driver with correlated steering noise and varied throttle: stands in for a
    conservative teleoperator (seed 000: data comes from teleoperation), covering on-track driving."""

    name = "noisy_baseline"

    def __init__(self, noise_range: tuple[float, float] = (0.1, 0.6), theta: float = 0.15):
        self.noise_range, self.theta = noise_range, theta
        self.driver = RuleBasedPolicy(gain=1.2)

    def reset(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.ou = 0.0
        # each episode its own skill: from careful to sloppy, so the data holds driving, drifting
        # off and recovering
        self.noise = float(self.rng.uniform(*self.noise_range))
        self.driver.throttle = float(self.rng.uniform(0.05, 0.35))
        self.brake_steps, self.brake, self.coast_steps = 0, 0.0, 0

    def act(self, frame: np.ndarray) -> np.ndarray:
        self.ou += self.theta * (0 - self.ou) + self.noise * self.rng.normal() * np.sqrt(self.theta)
        a = self.driver.act(frame)
        a[0] = np.clip(a[0] + self.ou, -1, 1)
        if self.rng.random() < 0.02:
            self.driver.throttle = float(self.rng.uniform(0.05, 0.4))
        # brake now and then, throttle still on: without such data M has never seen the brake
        # act, and CMA-ES finds that "full throttle + full brake" earns reward in the dream
        if self.brake_steps == 0 and self.rng.random() < 0.04:
            self.brake_steps, self.brake = int(self.rng.integers(2, 8)), float(self.rng.uniform(0.2, 1.0))
        if self.brake_steps > 0:
            self.brake_steps -= 1
            a[1] = max(a[1], float(self.rng.uniform(0.0, 1.0)))
            a[2] = self.brake
        # and coast: throttle (nearly) off for a while, so M sees that a slow car earns nothing
        elif self.coast_steps == 0 and self.rng.random() < 0.03:
            self.coast_steps = int(self.rng.integers(4, 20))
        if self.coast_steps > 0:
            self.coast_steps -= 1
            a[1] = float(self.rng.uniform(0.0, 0.03))
        return a


EXPLORATION_POLICIES = {p.name: p for p in (RandomPolicy, CorrelatedExplorationPolicy, NoisyBaselinePolicy)}
BASELINE_POLICIES = {"random": RandomPolicy, "rule_based": RuleBasedPolicy}


class NoisyPolicy:
    """Any policy with temporally correlated (Ornstein-Uhlenbeck) noise on steering and throttle:
    the on-policy collector of a data round. A learned controller drives where it would drive, and
    the noise shows M what happens just off that path (recoveries, other speeds), which the
    controller's next round will visit. Each episode draws its own noise scale in
    [0, noise_std], so a round holds both near-clean and noisy driving."""

    def __init__(self, base, noise_std: float = 0.3, theta: float = 0.2, name: str = "controller"):
        if noise_std < 0:
            raise ValueError(f"noise_std must be >= 0, got {noise_std}")
        self.base, self.noise_std, self.theta, self.name = base, noise_std, theta, name

    def reset(self, seed: int) -> None:
        self.base.reset(seed)
        self.rng = np.random.default_rng(seed + 7_919)
        self.scale = float(self.rng.uniform(0.0, self.noise_std))
        self.ou = np.zeros(2)

    def act(self, frame: np.ndarray) -> np.ndarray:
        a = np.asarray(self.base.act(frame), dtype=np.float32).copy()
        self.ou += self.theta * -self.ou + self.scale * np.sqrt(self.theta) * self.rng.normal(size=2)
        a[0] = np.clip(a[0] + self.ou[0], -1, 1)
        a[1] = np.clip(a[1] + self.ou[1], 0, 1)
        return a
