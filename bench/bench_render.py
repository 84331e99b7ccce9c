"""Drawing only the frames someone sees, with the road's vertices in numpy: the same episodes drawn
as before (every frame, the env's own road code) vs now (only the frames someone sees, FastRoad),
side by side in one process. Rewards must be identical (same physics); only time differs.

- collection: agent steps of 4 frames (the frame skip), drawn on every frame vs the returned one;
- evaluation of a policy that looks at every 4th frame (the V-M-C policy's frame skip);
- the random baseline, which looks at no frame.
"""
from __future__ import annotations

import time

import numpy as np

from dreamops.sim.carracing import CarRacing
from dreamops.sim.policies import RandomPolicy, RuleBasedPolicy
from dreamops.sim.rollout import play_episode


class FrameSkipDriver:
    """The rule-based driver deciding on every 4th frame, as the V-M-C policy does."""

    action_repeat = 4

    def __init__(self):
        self.driver = RuleBasedPolicy()

    def reset(self, seed):
        self.driver.reset(seed)
        self.calls, self.action = 0, np.zeros(3, np.float32)

    def act(self, frame):
        if self.calls % self.action_repeat == 0:
            self.action = self.driver.act(frame)
        self.calls += 1
        return self.action


class DrawEveryFrame:
    """The rollout before: a policy without a frame skip, so every frame is drawn."""

    def __init__(self, policy):
        self.policy = policy

    def reset(self, seed):
        self.policy.reset(seed)

    def act(self, frame):
        return self.policy.act(frame)


def _all_frames_collection(seed: int, steps: int) -> tuple[float, float]:
    """4-frame agent steps with every frame drawn (the collector before)."""
    env, policy = CarRacing(max_steps=steps * 4, fast_road=False), RuleBasedPolicy()
    frame, total = env.reset(seed), 0.0
    policy.reset(seed)
    t0 = time.perf_counter()
    for _ in range(steps):
        action = policy.act(frame)
        for _ in range(4):
            frame, reward, terminated, _ = env.step(action)
            total += reward
        if terminated:
            break
    env.close()
    return time.perf_counter() - t0, total


def _skipping_collection(seed: int, steps: int) -> tuple[float, float]:
    env = CarRacing(max_steps=steps, action_repeat=4)
    t0 = time.perf_counter()
    episode = play_episode(env, RuleBasedPolicy(), seed, keep_frames=True)
    env.close()
    return time.perf_counter() - t0, episode.total_reward


def _evaluation(policy, seed: int, frames: int, fast_road: bool = True) -> tuple[float, float]:
    env = CarRacing(max_steps=frames, fast_road=fast_road)
    t0 = time.perf_counter()
    episode = play_episode(env, policy, seed, keep_frames=False)
    env.close()
    return time.perf_counter() - t0, episode.total_reward


def run(seeds: tuple[int, ...] = (0, 1), frames: int = 600) -> dict:
    rows = {}
    cases = {
        "collection (4-frame steps)": (lambda s: _all_frames_collection(s, frames // 4),
                                       lambda s: _skipping_collection(s, frames // 4)),
        "evaluation, frame-skip policy": (lambda s: _evaluation(DrawEveryFrame(FrameSkipDriver()), s, frames, False),
                                          lambda s: _evaluation(FrameSkipDriver(), s, frames)),
        "evaluation, rule-based baseline": (lambda s: _evaluation(RuleBasedPolicy(), s, frames, False),
                                            lambda s: _evaluation(RuleBasedPolicy(), s, frames)),
        "evaluation, random baseline": (lambda s: _evaluation(DrawEveryFrame(RandomPolicy()), s, frames, False),
                                        lambda s: _evaluation(RandomPolicy(), s, frames)),
    }
    for name, (before, after) in cases.items():
        t_before = t_after = 0.0
        same = True
        for seed in seeds:  # alternate, so machine noise hits both sides alike
            tb, rb = before(seed)
            ta, ra = after(seed)
            t_before, t_after, same = t_before + tb, t_after + ta, same and abs(rb - ra) < 1e-3  # episodes keep float32 rewards
        n = frames * len(seeds)
        rows[name] = {"frames_per_s_before": n / t_before, "frames_per_s_now": n / t_after,
                      "speedup": t_before / t_after, "identical_rewards": same}
    return rows


def main() -> dict:
    rows = run()
    print("before (every frame drawn, the env's road code) vs now (seen frames only, FastRoad); same episodes")
    for name, r in rows.items():
        print(f"  {name:32s} before {r['frames_per_s_before']:6.0f} frames/s | now "
              f"{r['frames_per_s_now']:6.0f} frames/s | speedup {r['speedup']:5.1f}x | "
              f"identical rewards: {r['identical_rewards']}")
    return rows


if __name__ == "__main__":
    main()
