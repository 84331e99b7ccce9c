"""Baseline evaluations are cached across runs: the same returns as playing them, replayed when
the seeds, the episode length or the simulator code change, or when the cache entry is unreadable."""
from __future__ import annotations

import dreamops.tasks.evaluate as evaluate_module
from dreamops.tasks.evaluate import baseline_factory, evaluate, evaluate_baseline

SEEDS, STEPS = [100_000, 100_001], 40


def test_cached_baseline_is_the_played_one_and_replays_nothing(tmp_path, monkeypatch):
    played = evaluate(baseline_factory("rule_based"), "rule_based", SEEDS, STEPS, 1, show_progress=False)
    first = evaluate_baseline("rule_based", SEEDS, STEPS, 1, tmp_path, show_progress=False)
    assert (first.rewards, first.lengths, first.off_track_events) == \
        (played.rewards, played.lengths, played.off_track_events)

    def no_play(*args, **kwargs):
        raise AssertionError("a cached baseline was played again")

    monkeypatch.setattr(evaluate_module, "evaluate", no_play)
    again = evaluate_baseline("rule_based", SEEDS, STEPS, 1, tmp_path, show_progress=False)
    assert again.rewards == played.rewards and again.nodes == ["cache", "cache"]
    assert again.summary()["mean_reward"] == played.summary()["mean_reward"]


def test_other_seeds_steps_or_code_are_played_again(tmp_path, monkeypatch):
    evaluate_baseline("random", SEEDS, STEPS, 1, tmp_path, show_progress=False)
    for seeds, steps in ((SEEDS[:1], STEPS), (SEEDS, STEPS + 1)):
        assert evaluate_baseline("random", seeds, steps, 1, tmp_path, show_progress=False).nodes != ["cache"] * len(seeds)
    monkeypatch.setattr(evaluate_module, "baseline_code_hash", lambda: "changed simulator")
    assert "cache" not in evaluate_baseline("random", SEEDS, STEPS, 1, tmp_path, show_progress=False).nodes
    assert len(list(tmp_path.glob("random-*.json"))) == 4


def test_unreadable_cache_entry_is_replayed(tmp_path):
    report = evaluate_baseline("random", SEEDS, STEPS, 1, tmp_path, show_progress=False)
    [entry] = tmp_path.glob("random-*.json")
    entry.write_text("{not json")
    replayed = evaluate_baseline("random", SEEDS, STEPS, 1, tmp_path, show_progress=False)
    assert replayed.rewards == report.rewards and "cache" not in replayed.nodes
    assert evaluate_baseline("random", SEEDS, STEPS, 1, tmp_path, show_progress=False).nodes == ["cache"] * 2
