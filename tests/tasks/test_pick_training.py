"""pick-vla's training and evaluation helpers against known answers, and its config's errors."""
import numpy as np
import pytest

from dreamops.tasks.config import resolve_config
from dreamops.tasks.evaluate_pick import failure_category, jerk
from dreamops.tasks.train_pick import _schedule, chunk_targets, state_labels


def test_chunk_targets_repeat_the_last_action_past_the_end():
    actions = np.arange(5 * 2, dtype=np.float32).reshape(5, 2)
    chunks = chunk_targets(actions, horizon=3)
    assert chunks.shape == (5, 3, 2)
    np.testing.assert_array_equal(chunks[0], actions[0:3])
    np.testing.assert_array_equal(chunks[4], np.stack([actions[4]] * 3))
    np.testing.assert_array_equal(chunks[3], np.stack([actions[3], actions[4], actions[4]]))


def test_state_labels_belong_to_the_next_state():
    np.testing.assert_array_equal(state_labels(np.array([0, 0, 1, 1])), [0, 0, 0, 1])


def test_warmup_then_cosine_to_zero():
    cfg = resolve_config("quick", {"train.steps": 110, "train.warmup_steps": 10}, agent="pick-vla").train
    assert _schedule(0, cfg) == pytest.approx(0.1) and _schedule(9, cfg) == pytest.approx(1.0)
    assert _schedule(10, cfg) == pytest.approx(1.0) and _schedule(60, cfg) == pytest.approx(0.5)
    assert _schedule(110, cfg) == pytest.approx(0.0, abs=1e-12)


def test_jerk_is_the_mean_third_difference_of_the_motion_commands():
    t = np.arange(10, dtype=np.float64)
    cubic = np.stack([t ** 3 / 100, np.zeros(10), np.zeros(10), np.sign(np.sin(t))], axis=1)  # grip ignored
    assert jerk(cubic) == pytest.approx(6 / 100)
    assert jerk(np.ones((10, 4))) == 0.0 and jerk(np.ones((3, 4))) == 0.0


@pytest.mark.parametrize("flags,expected", [
    ((True, True, True, True, True), None),
    ((False, True, True, True, True), "collision"),
    ((False, False, True, True, True), "wrong_object"),
    ((False, False, True, False, True), "grasp_slip"),
    ((False, False, False, False, True), "miss"),
    ((False, False, False, False, False), "timeout"),
])
def test_failure_categories(flags, expected):
    assert failure_category(*flags) == expected


@pytest.mark.parametrize("key,value,message", [
    ("model.execute", 32, "model.execute"), ("train.steps", 0, "train.steps"),
    ("train.holdout_fraction", 1.5, "train.holdout_fraction"), ("data.object_set", "kitchen", "data.object_set"),
    ("gate.model.seen_success_min", 1.2, "gate.model.seen_success_min"), ("train.kl_dyn", -1.0, "train.kl_dyn"),
    ("cma.population", 4, "unknown config key"),
])
def test_bad_pick_config_values_are_named(key, value, message):
    with pytest.raises(ValueError, match=message):
        resolve_config("quick", {key: value}, agent="pick-vla")


def test_pick_profiles_resolve_and_unknown_agents_are_refused():
    for profile in ("smoke", "quick", "full"):
        cfg = resolve_config(profile, agent="pick-vla")
        assert cfg.agent == "pick-vla" and cfg.profile == profile
        assert "train.flow_weight" in cfg.flat() and cfg.train.wm_weight == 0.5 and cfg.train.grasp_weight == 0.1
    assert resolve_config("full", agent="pick-vla").gate.model.novel_success_min == 0.88
    standard, quick = resolve_config("standard", agent="pick-vla"), resolve_config("quick", agent="pick-vla")
    # quick + 2 DAgger rounds with every visited state labelled: the measured best way, otherwise quick
    assert (standard.rounds, standard.dagger.label_every_step, standard.eval.episodes) == (3, True, 100)
    assert standard.train == quick.train and standard.model == quick.model and standard.data == quick.data
    with pytest.raises(ValueError, match="unknown agent"):
        resolve_config("quick", agent="pick-and-drop")
