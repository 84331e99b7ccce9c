import numpy as np

from dreamops.sim.rollout import Episode
from dreamops.tasks.failures import analyze_failures


def _episode(n=200, **overrides):
    ep = Episode(seed=1, obs=np.zeros((0, 64, 64, 3), np.uint8), actions=np.tile([0.1, 0.5, 0.0], (n, 1)).astype(np.float32),
                 rewards=np.full(n, 1.0, np.float32), dones=np.zeros(n, bool), on_track=np.ones(n, bool),
                 speed=np.full(n, 20.0, np.float32))
    for k, v in overrides.items():
        setattr(ep, k, v)
    return ep


def test_clean_episode_has_no_failures():
    assert sum(analyze_failures([_episode()])["counts"].values()) == 0


def test_each_failure_kind_is_found():
    on_track = np.ones(200, bool)
    on_track[100:120] = False
    on_track[150:160] = False
    speed = np.full(200, 20.0, np.float32)
    speed[60:80] = 0.0
    actions = np.tile([0.1, 0.5, 0.0], (200, 1)).astype(np.float32)
    actions[170:180, 0] = [0.5, -0.5] * 5
    ep = _episode(on_track=on_track, speed=speed, actions=actions,
                  extras={"predicted_reward": np.full(200, 2.0, np.float32)})
    report = analyze_failures([ep], exploit_margin=100.0)
    assert report["counts"] == {"off_track": 2, "stall": 1, "oscillation": 1, "model_exploitation": 1}
    assert report["episodes_with_failure"] == 1


def test_stall_during_the_start_zoom_is_not_a_failure():
    speed = np.full(200, 20.0, np.float32)
    speed[:40] = 0.0
    assert analyze_failures([_episode(speed=speed)])["counts"]["stall"] == 0
