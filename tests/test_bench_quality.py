"""bench/quality.py --resume continues one measurement and refuses to mix two."""
from __future__ import annotations

import pytest

from tests.bench import bench_module


def test_resume_refuses_another_profile_meaning_and_accepts_the_same():
    q = bench_module("quality")
    header = {"agent": "carracing-vmc", "profile": "standard", "overrides": [], "eval_seeds": [100_000, 100_099]}
    now = {**header, "config": q.profile_config("carracing-vmc", "standard", [])}
    assert "seed" not in now["config"] and now["config"]["rounds"] > 1
    q.resumed({**now, "seeds": [{"train_seed": 0}]}, now)
    q.resumed(header, now)  # a file from before the config was recorded: its commit tells
    other = {**header, "config": q.profile_config("carracing-vmc", "standard", ["rounds=3"])}
    with pytest.raises(ValueError, match="config"):
        q.resumed(other, now)
    with pytest.raises(ValueError, match="eval_seeds"):
        q.resumed({**now, "eval_seeds": [100_000, 100_029]}, now)
