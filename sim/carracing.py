"""gymnasium CarRacing-v3 (Box2D) as the warehouse-navigation stand-in.

Frames are the full 96x96 render (dashboard included: it shows speed, which a single frame
otherwise hides) resized to 64x64 uint8. Actions are [steer in [-1,1], throttle, brake in [0,1]].
"""
from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import numpy as np
from gymnasium.envs.box2d import car_racing as _cr
from PIL import Image

# pygame loads `pygame.surfarray` (which CarRacing's render reads) lazily, through importlib's
# LazyLoader, which is not thread-safe before Python 3.12: robots starting their first episodes in
# threads at once saw a half-loaded module (`no attribute 'pixels3d'`) and one simulator broke
# for good. Load it here, in the importing thread.
_cr.pygame.surfarray.pixels3d  # noqa: B018  (the attribute access is the load)

ENV_ID = "CarRacing-v3"
FRAME_SHAPE = (64, 64, 3)
ACTION_LOW = np.array([-1.0, 0.0, 0.0], dtype=np.float32)
ACTION_HIGH = np.array([1.0, 1.0, 1.0], dtype=np.float32)
# The 96x96 render ends in a 12-row dashboard; at 64x64 the playfield is rows [0, 56).
PLAYFIELD_ROWS = 56


def preprocess(frame: np.ndarray) -> np.ndarray:
    """96x96x3 uint8 render -> 64x64x3 uint8 (antialiased bilinear)."""
    if frame.shape[-1] != 3:
        raise ValueError(f"expected an RGB frame, got shape {frame.shape}")
    return np.asarray(Image.fromarray(frame).resize(FRAME_SHAPE[:2], Image.BILINEAR), dtype=np.uint8)


def clip_action(action: np.ndarray) -> np.ndarray:
    a = np.asarray(action, dtype=np.float32).reshape(3)
    if not np.all(np.isfinite(a)):
        raise ValueError(f"action must be finite, got {a}")
    return np.clip(a, ACTION_LOW, ACTION_HIGH)


@dataclass
class StepInfo:
    """What the simulator knows beyond the reward; used for failure analysis."""
    on_track: bool
    speed: float
    tiles_visited: int
    track_tiles: int


# Shifted worlds for drift: the simulator renders them, nothing is edited after the fact.
# "night": darker road, background and grass (CarRacing's defaults are 102/102/102, 102/204/102,
# 102/230/102), as a warehouse under night lighting looks darker to the camera.
SCENARIOS: dict[str, dict[str, tuple[int, int, int]] | None] = {
    "day": None,
    "night": {"road_color": (45, 45, 55), "bg_color": (35, 80, 45), "grass_color": (40, 95, 50)},
}


class FastRoad:
    """CarRacing's `_render_road` with the vertex arithmetic in numpy.

    The env's own version rotates, scales and culls all ~730 grass and road polygons one vertex at
    a time in Python on every drawn frame (about 70% of a frame). This one does the same float64
    operations on arrays: the rotation's cosine and sine come from pygame itself (rotating the unit
    vector, so its special cases at multiples of 90 degrees are kept), then c*x - s*y, s*x + c*y,
    * zoom + translation, the same culling box, and the same draw calls in the same order. The
    vertices are the same to the last bit, so the pixels are the same (tested frame by frame).
    """

    def __init__(self, env):
        self.env = env
        d = _cr.GRASS_DIM
        self.grass = np.array([[(d * x + d, d * y), (d * x, d * y), (d * x, d * y + d), (d * x + d, d * y + d)]
                               for x in range(-20, 20, 2) for y in range(-20, 20, 2)], dtype=np.float64)
        self._road_of = None  # the road_poly list the arrays below were built from (a new one per track)

    def _road(self):
        u = self.env
        if self._road_of is not u.road_poly:
            self.road = np.array([[(p[0], p[1]) for p in poly] for poly, _ in u.road_poly], dtype=np.float64)
            self._road_of = u.road_poly
        return self.road

    def __call__(self, zoom, translation, angle):
        u = self.env
        bounds = _cr.PLAYFIELD
        field = [(bounds, bounds), (bounds, -bounds), (-bounds, -bounds), (-bounds, bounds)]
        u._draw_colored_polygon(u.surf, field, u.bg_color, zoom, translation, angle, clip=False)
        c, s = _cr.pygame.math.Vector2(1.0, 0.0).rotate_rad(angle)
        road = self._road()
        for polys, is_road in ((self.grass, False), (road, True)):
            if len(polys) == 0:
                continue
            x, y = polys[..., 0], polys[..., 1]
            px = (c * x - s * y) * zoom + translation[0]
            py = (s * x + c * y) * zoom + translation[1]
            m = _cr.MAX_SHAPE_DIM
            visible = ((px >= -m) & (px <= _cr.WINDOW_W + m) & (py >= -m) & (py <= _cr.WINDOW_H + m)).any(axis=1)
            for i in np.flatnonzero(visible):
                poly = list(zip(px[i].tolist(), py[i].tolist()))
                # a tile's colour is read each frame, as the env does: visiting a tile may change it
                color = [int(v) for v in u.road_poly[i][1]] if is_road else u.grass_color
                _cr.gfxdraw.aapolygon(u.surf, poly, color)
                _cr.gfxdraw.filled_polygon(u.surf, poly, color)


class CarRacing:
    """A CarRacing-v3 episode source with 64x64 frames, fixed seeding and track-contact info."""

    def __init__(self, max_steps: int = 1000, action_repeat: int = 1, scenario: str = "day", fast_road: bool = True):
        if max_steps <= 0:
            raise ValueError(f"max_steps must be positive, got {max_steps}")
        if action_repeat < 1:
            raise ValueError(f"action_repeat must be >= 1, got {action_repeat}")
        self.max_steps, self.action_repeat = max_steps, action_repeat
        if scenario not in SCENARIOS:
            raise ValueError(f"unknown scenario {scenario!r}; choose one of {', '.join(SCENARIOS)}")
        self.env = gym.make(ENV_ID, max_episode_steps=max_steps * action_repeat)
        self.scenario = scenario
        if fast_road:  # same pixels, a drawn frame ~1.8x faster; False keeps the env's own (for benches)
            self.env.unwrapped._render_road = FastRoad(self.env.unwrapped)
        for name, rgb in (SCENARIOS[scenario] or {}).items():
            # read when the track is built at reset (colours are not re-drawn without domain_randomize)
            setattr(self.env.unwrapped, name, np.array(rgb, dtype=np.float64))
        self.t = 0  # agent steps this episode
        self.frames = 0  # simulator frames this episode (= real env steps)

    def reset(self, seed: int) -> np.ndarray:
        obs, _ = self.env.reset(seed=int(seed))
        self.t = self.frames = 0
        self._frame = preprocess(obs)
        return self._frame

    def info(self) -> StepInfo:
        u = self.env.unwrapped
        on_track = any(len(w.tiles) > 0 for w in u.car.wheels)
        return StepInfo(on_track, float(u.car.hull.linearVelocity.length), int(u.tile_visited_count),
                        len(u.track))

    def step(self, action: np.ndarray, render: bool = True) -> tuple[np.ndarray, float, bool, bool]:
        """-> (frame, reward, terminated, truncated). terminated: lap done or off the playfield.

        Drawing the frame is ~99% of a simulator step (measured: 90 frames/s drawn, ~9,000 not), so
        only the frame that is returned is drawn: with action_repeat > 1 the frames in between are
        never seen and are skipped; with render=False the returned frame is the last one drawn
        (for a policy that repeats its action and will not look at it). Physics, reward and track
        contact are the simulator's own either way.
        """
        a = clip_action(action)
        total, terminated, truncated = 0.0, False, False
        for i in range(self.action_repeat):
            last = i == self.action_repeat - 1
            obs, r, terminated, truncated, _ = self._advance(a, draw=render and last)
            self.frames += 1
            total += float(r)
            if terminated or truncated:
                if render and not last:  # ended early: draw the frame it ended on
                    obs = self.env.unwrapped._render("state_pixels")
                break
        if render:
            self._frame = preprocess(obs)
        self.t += 1
        truncated = truncated or self.t >= self.max_steps
        return self._frame, total, bool(terminated), bool(truncated)

    def _advance(self, a: np.ndarray, draw: bool):
        """One simulator frame; without drawing, the env keeps its previous frame as its state."""
        if draw:
            return self.env.step(a)
        u = self.env.unwrapped
        u._render = lambda mode: u.state.copy()  # an instance attribute shadows the method for this frame
        try:
            return self.env.step(a)
        finally:
            del u._render

    def close(self) -> None:
        self.env.close()
