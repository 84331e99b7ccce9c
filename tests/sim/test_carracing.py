import numpy as np
import pytest

from dreamops.sim.carracing import CarRacing, clip_action, preprocess
from dreamops.sim.policies import CorrelatedExplorationPolicy, RandomPolicy, RuleBasedPolicy
from dreamops.sim.rollout import play_episode


def test_frames_are_64x64_and_seeding_is_reproducible():
    env = CarRacing(max_steps=30)
    a = play_episode(env, RuleBasedPolicy(), seed=7)
    b = play_episode(env, RuleBasedPolicy(), seed=7)
    c = play_episode(env, RuleBasedPolicy(), seed=8)
    env.close()
    assert a.obs.shape == (30, 64, 64, 3) and a.obs.dtype == np.uint8
    assert np.array_equal(a.obs, b.obs) and np.array_equal(a.rewards, b.rewards)
    assert not np.array_equal(a.obs, c.obs)


def test_action_mapping_rejects_nan_and_clips():
    assert np.allclose(clip_action([2.0, -1.0, 0.5]), [1.0, 0.0, 0.5])
    with pytest.raises(ValueError, match="finite"):
        clip_action([np.nan, 0.0, 0.0])
    with pytest.raises(ValueError, match="RGB"):
        preprocess(np.zeros((96, 96), np.uint8))


def _steer_autocorrelation(policy, n=400):
    policy.reset(0)
    frame = np.zeros((64, 64, 3), np.uint8)
    s = np.array([policy.act(frame)[0] for _ in range(n)])
    return np.corrcoef(s[:-1], s[1:])[0, 1]


def test_exploration_is_temporally_correlated_unlike_uniform_noise():
    assert _steer_autocorrelation(CorrelatedExplorationPolicy()) > 0.9
    assert abs(_steer_autocorrelation(RandomPolicy())) < 0.2


def test_rule_based_steers_towards_the_road():
    frame = np.zeros((64, 64, 3), np.uint8)
    frame[..., 1] = 200  # grass everywhere
    frame[30:56, 44:60] = 105  # grey road to the right of the car
    steer, throttle, brake = RuleBasedPolicy().act(frame)
    assert steer > 0.3 and throttle > 0 and brake == 0
    frame[30:56, 44:60] = [0, 200, 0]
    frame[30:56, 4:20] = 105
    assert RuleBasedPolicy().act(frame)[0] < -0.3


def test_night_scenario_renders_a_darker_world():
    import numpy as np

    from dreamops.sim.carracing import CarRacing

    means = {}
    for scenario in ("day", "night"):
        env = CarRacing(max_steps=60, scenario=scenario)
        frame = env.reset(seed=3)
        for _ in range(60):  # past the zoom-in
            frame, *_ = env.step(np.array([0.0, 0.3, 0.0]))
        env.close()
        means[scenario] = frame.mean()
    assert means["night"] < 0.6 * means["day"]
    with pytest.raises(ValueError, match="unknown scenario"):
        CarRacing(scenario="fog")


class _EveryFourth:
    """Rule-based decisions every 4th frame, recording the frames it looked at."""

    action_repeat = 4

    def __init__(self):
        self.driver, self.seen = RuleBasedPolicy(), []

    def reset(self, seed):
        self.driver.reset(seed)
        self.calls, self.seen = 0, []

    def act(self, frame):
        if self.calls % 4 == 0:
            self.seen.append(frame.copy())
            self.action = self.driver.act(frame)
        self.calls += 1
        return self.action


def test_skipping_unseen_frames_changes_nothing_the_policy_or_the_reward_sees():
    env = CarRacing(max_steps=120)
    drawn_policy, skipped_policy = _EveryFourth(), _EveryFourth()
    drawn = play_episode(env, drawn_policy, seed=5, keep_frames=True)  # keeping frames draws every one
    skipped = play_episode(env, skipped_policy, seed=5, keep_frames=False)
    env.close()
    assert np.array_equal(drawn.rewards, skipped.rewards)
    assert np.array_equal(drawn.on_track, skipped.on_track) and np.array_equal(drawn.speed, skipped.speed)
    assert len(skipped_policy.seen) == 30
    assert all(np.array_equal(a, b) for a, b in zip(drawn_policy.seen, skipped_policy.seen))


def test_action_repeat_draws_only_the_returned_frame_and_matches_single_frames():
    repeated, single = CarRacing(max_steps=20, action_repeat=4), CarRacing(max_steps=80)
    a0, b0 = repeated.reset(seed=9), single.reset(seed=9)
    assert np.array_equal(a0, b0)
    action = np.array([0.3, 0.6, 0.0], np.float32)
    for _ in range(20):
        frame, reward, _, _ = repeated.step(action)
        total = 0.0
        for _ in range(4):
            single_frame, r, _, _ = single.step(action)
            total += r
        assert np.array_equal(frame, single_frame) and reward == pytest.approx(total)
    assert repeated.frames == single.frames == 80
    repeated.close(), single.close()


def test_fast_road_draws_the_same_pixels_as_the_envs_own_renderer():
    """Rule-based driving visits tiles (their colour changes) and turns (every rotation angle)."""
    import gymnasium as gym

    from dreamops.sim.carracing import ENV_ID, preprocess

    reference, ours, policy = gym.make(ENV_ID), CarRacing(max_steps=400), RuleBasedPolicy()
    frame, _ = reference.reset(seed=11)
    ours.reset(11)
    policy.reset(11)
    for _ in range(400):
        action = np.clip(policy.act(preprocess(frame)), [-1, 0, 0], [1, 1, 1]).astype(np.float32)
        frame, _, terminated, _, _ = reference.step(action)
        ours.step(action)
        assert np.array_equal(frame, ours.env.unwrapped.state)
        if terminated:
            break
    assert ours.env.unwrapped.tile_visited_count > 20
    reference.close(), ours.close()


def test_importing_the_simulator_loads_pygames_lazy_surfarray_in_the_importing_thread():
    """pygame.surfarray is lazily loaded (importlib's LazyLoader, not thread-safe before Python 3.12);
    fleet robots start their first episodes in threads at once, and one of them used to see a
    half-loaded module and fail every episode after it. A fresh interpreter, since this one has
    long loaded it."""
    import subprocess
    import sys

    code = ("import sys, types, dreamops.sim.carracing; "
            "print(type(sys.modules['pygame.surfarray']) is types.ModuleType)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "True", out.stdout + out.stderr
