"""The scripted expert as a DAgger labeller: it resumes from any state, its what-if chunk leaves
the cell as it was, and a policy that executes its labels recovers from states the expert never
visits itself."""
from __future__ import annotations

import numpy as np
import pytest

from dreamops.sim.pick import TRAY_FLOOR_Z, PickCell, PickConfig
from dreamops.sim.pick_expert import ExpertConfig, ScriptedExpert, expert_chunk


@pytest.fixture(scope="module")
def env():
    cell = PickCell(PickConfig(render=False, max_steps=80))
    yield cell
    cell.close()


def _labeller(env: PickCell, seed: int) -> ScriptedExpert:
    expert = ScriptedExpert(ExpertConfig(noise=0.0))
    expert.reset(env, seed)
    return expert


def _execute_labels(env: PickCell, labeller: ScriptedExpert) -> dict:
    """Play the episode out as the policy would: 4 actions of each labelled chunk, then ask again."""
    done, info = False, {}
    while not done:
        for a in expert_chunk(env, 16, labeller)[:4]:
            _, _, terminated, truncated, info = env.step(a)
            done = terminated or truncated
            if done:
                break
    return info


def test_a_what_if_chunk_leaves_the_episode_where_it_was(env):
    twin = PickCell(PickConfig(render=False, max_steps=80))
    try:
        actions = np.random.default_rng(0).uniform(-1, 1, (12, 4)).astype(np.float32)
        for cell in (env, twin):
            cell.reset(seed=3)
        labeller = _labeller(env, 3)
        for a in actions:
            chunk = expert_chunk(env, 16, labeller)   # only env is labelled: a 16-step rollout each time
            assert chunk.shape == (16, 4) and chunk.dtype == np.float32 and np.abs(chunk).max() <= 1.0
            for cell in (env, twin):
                obs, _, _, _, info = cell.step(a)
            assert env.steps == twin.steps and env.grip_closed() == twin.grip_closed()
            assert np.abs(env.ee_position() - twin.ee_position()).max() < 2e-3
            assert np.abs(env.object_position(env.target_index) - twin.object_position(twin.target_index)).max() < 2e-3
        assert not info["success"] and env.steps == 12
    finally:
        twin.close()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_executing_the_labels_recovers_from_a_wandering_start(env, seed):
    """DAgger's premise: from wherever a policy has drifted (here 15 random actions, random grip),
    the expert's labels lead to a pick. Executing 4 actions of each chunk, as the policy does."""
    env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    for _ in range(15):
        env.step(rng.uniform(-1, 1, 4))
    labeller = _labeller(env, seed)
    info = _execute_labels(env, labeller)
    assert info["success"] and not info["collided"]


def test_closed_on_nothing_the_expert_opens_first(env):
    env.reset(seed=5)
    for _ in range(6):   # close the gripper high above the tray, on nothing
        env.step(np.array([0.0, 0.0, 0.0, 1.0], np.float32))
    assert env.grip_closed() and env.closed_steps == 6
    labeller = _labeller(env, 5)
    labeller.resume(env)
    assert labeller.phase == "above"
    assert expert_chunk(env, 16, labeller)[0, 3] < 0   # open, then go back above the target


def _low_beside_the_target(env: PickCell, seed: int) -> None:
    """The state most of the policy's collisions start from: the gripper open, a few cm over the
    tray, several cm to the side of the target."""
    env.reset(seed=seed)
    target = env.object_position(env.target_index)
    for _ in range(40):
        goal = np.array([target[0] + 0.06, target[1], TRAY_FLOOR_Z + 0.03])
        env.step(np.concatenate([np.clip((goal - env.commanded_ee()) / env.cfg.max_delta, -1, 1), [-1.0]]))
    ee = env.ee_position()
    assert ee[2] < target[2] + 0.06 and np.linalg.norm(ee[:2] - target[:2]) > 0.04


def test_retreat_first_lifts_straight_up_before_it_moves_sideways(env):
    _low_beside_the_target(env, seed=3)
    plain = ScriptedExpert(ExpertConfig(noise=0.0))
    plain.reset(env, 3)
    retreat = ScriptedExpert(ExpertConfig(noise=0.0, retreat_first=True))
    retreat.reset(env, 3)
    sideways, straight = expert_chunk(env, 4, plain), expert_chunk(env, 4, retreat)
    assert np.abs(sideways[0, :2]).max() > 0.5        # the plain expert heads across at once, low
    assert np.abs(straight[:2, :2]).max() < 1e-6 and (straight[:2, 2] > 0).all()   # up only, at first


@pytest.mark.parametrize("seed", [3, 4])
def test_retreat_first_labels_still_lead_to_a_clean_pick(env, seed):
    _low_beside_the_target(env, seed)
    labeller = ScriptedExpert(ExpertConfig(noise=0.0, retreat_first=True))
    labeller.reset(env, seed)
    info = _execute_labels(env, labeller)
    assert info["success"] and not info["collided"]
