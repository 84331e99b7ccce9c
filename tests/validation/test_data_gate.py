"""Each bad input of the corpus is rejected by the data gate with a message naming the problem."""
from __future__ import annotations

import pytest

from dreamops.validation.data_gate import DataGateThresholds, run_data_gate
from dreamops.tasks.pick_data import validate_demos
from tests.validation.corpus import CORPUS, PICK_CORPUS, PICK_SMOKE_LIKE, SMOKE_LIKE, make_bad


def test_the_good_dataset_passes(good_dataset, tmp_path):
    report = run_data_gate(good_dataset, SMOKE_LIKE, tmp_path / "docs")
    assert report.passed, report.summary()
    assert report.episodes == 4 and report.frames == 240
    assert (tmp_path / "docs" / "index.html").exists()


@pytest.mark.parametrize("case", list(CORPUS))
def test_each_bad_input_is_rejected_naming_the_problem(good_dataset, tmp_path, case):
    _, check, words = CORPUS[case]
    report = run_data_gate(make_bad(good_dataset, tmp_path, case), SMOKE_LIKE)
    assert not report.passed
    failed = {c.name: c.message for c in report.failures}
    assert check in failed, report.summary()
    assert words in failed[check]


def test_too_little_data_for_the_profile(good_dataset):
    report = run_data_gate(good_dataset, DataGateThresholds(min_episodes=30, min_frames=7000, skip_start_steps=13))
    assert {c.name for c in report.failures} == {"enough_episodes", "enough_frames"}
    assert "observed 4" in report.summary() and "observed 240" in report.summary()


@pytest.mark.parametrize("case", ["corrupt shard file", "shard path outside the dataset"])
def test_one_unreadable_shard_is_reported_once(good_dataset, tmp_path, case):
    """Its other checks are not judged; losing its frames may leave too few (a true second verdict)."""
    _, check, _ = CORPUS[case]
    report = run_data_gate(make_bad(good_dataset, tmp_path, case), SMOKE_LIKE)
    assert {c.name for c in report.failures} - {"enough_frames"} == {check}, report.summary()


def test_every_failure_of_a_changed_shard_names_its_episode(good_dataset, tmp_path):
    report = run_data_gate(make_bad(good_dataset, tmp_path, "NaN actions"), SMOKE_LIKE)
    assert report.failures and all("ep_000002" in c.message for c in report.failures), report.summary()


def test_the_good_pick_dataset_passes(good_pick_dataset):
    report = validate_demos(good_pick_dataset, PICK_SMOKE_LIKE)
    assert report.passed, report.summary()


@pytest.mark.parametrize("case", list(PICK_CORPUS))
def test_each_bad_pick_input_is_rejected_naming_its_episode(good_pick_dataset, tmp_path, case):
    _, check, words = PICK_CORPUS[case]
    report = validate_demos(make_bad(good_pick_dataset, tmp_path, case, PICK_CORPUS), PICK_SMOKE_LIKE)
    failed = {c.name: c.message for c in report.failures}
    assert check in failed, report.summary()
    assert words in failed[check], failed[check]


@pytest.mark.parametrize("case", ["corrupt shard file", "shard path outside the dataset"])
def test_one_unreadable_pick_shard_is_reported_once(good_pick_dataset, tmp_path, case):
    _, check, _ = PICK_CORPUS[case]
    report = validate_demos(make_bad(good_pick_dataset, tmp_path, case, PICK_CORPUS), PICK_SMOKE_LIKE)
    assert {c.name for c in report.failures} - {"enough_frames"} == {check}, report.summary()
