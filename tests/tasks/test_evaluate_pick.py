"""evaluate_pick's cell overrides: every episode plays in the set-up asked for, and a bad one is refused."""
from __future__ import annotations

import pytest

from dreamops.sim.pick import COLLISION_KINDS
from dreamops.tasks.evaluate_pick import ScriptedFactory, evaluate_pick

SEEDS = [100_000, 100_001]
BLIND_SEEDS = [100_000, 100_001, 100_002, 100_003]   # the no-language baseline collides on 100001 and 100003


def test_cell_overrides_change_the_cell_every_episode_plays_in():
    expert = ScriptedFactory("target")
    default = evaluate_pick(expert, "expert", SEEDS, "seen", 80, 0, show_progress=False)
    # a lift goal above the workspace's ceiling cannot be met: the same expert, the same seeds, no success
    unreachable = evaluate_pick(expert, "expert", SEEDS, "seen", 80, 0, show_progress=False, cell={"lift_height": 0.6})
    assert default.success_rate == 1.0 and unreachable.success_rate == 0.0


def test_a_bad_cell_override_is_refused():
    with pytest.raises((ValueError, TypeError)):
        evaluate_pick(ScriptedFactory("target"), "expert", SEEDS[:1], "seen", 80, 0, show_progress=False,
                      cell={"max_objects": 9})


def test_the_report_says_what_each_first_collision_hit():
    # the no-language baseline grabs a random object: on these seeds it runs into the tray or a neighbour
    report = evaluate_pick(ScriptedFactory("random"), "no-language", BLIND_SEEDS, "seen", 80, 0, show_progress=False)
    collided = [e for e in report.episodes if e.collision]
    assert collided, "these seeds were picked because the baseline collides on them"
    assert all(e.first_collision["kind"] in COLLISION_KINDS for e in collided)
    assert all(e.first_collision is None for e in report.episodes if not e.collision)
    assert sum(report.summary()["collisions_with"].values()) == len(collided)


def test_a_policys_dream_scores_come_back_with_its_episodes_when_asked():
    import math

    import torch

    from dreamops.models.pick_vla import PickArchitecture, PickVLA
    from dreamops.tasks.evaluate_pick import PickPolicyFactory

    torch.manual_seed(0)
    model = PickVLA(PickArchitecture(vocab=("pick", "up", "the"), embed_dim=32, text_dim=16, deter=32, stoch=4,
                                     classes=4, head_hidden=32, horizon=4, execute=2))
    asked = evaluate_pick(PickPolicyFactory.from_model(model, dream=True), "tiny", SEEDS[:1], "seen", 6, 0,
                          show_progress=False)
    episode = asked.episodes[0]
    assert len(episode.dream_scores) == len(episode.latencies_ms) == 3   # 6 steps, 2 actions a chunk
    assert asked.summary()["dream_score"] == pytest.approx(sum(episode.dream_scores) / 3)
    plain = evaluate_pick(PickPolicyFactory.from_model(model), "tiny", SEEDS[:1], "seen", 6, 0, show_progress=False)
    assert plain.episodes[0].dream_scores == [] and math.isnan(plain.summary()["dream_score"])
