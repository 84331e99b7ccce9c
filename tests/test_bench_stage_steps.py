"""bench/bench_stage_steps.py: each code's unit of work with that code's own optimiser."""
from tests.bench import bench_module

bench = bench_module("bench_stage_steps")


def test_this_codes_units_use_its_fused_adam_and_all_are_timed():
    from dreamops.tasks.device import adam

    assert bench._optimiser() is adam
    out = bench.worker(repeats=1)
    assert set(out) == {"_code", *bench.UNITS}
    assert len(out["V step"]) == 1 and len(out["M step"]) == 5 and len(out["dream generation"]) == 2
    assert all(t > 0 for u in bench.UNITS for t in out[u])


def test_code_older_than_the_fused_adam_gets_torchs_default(monkeypatch):
    import sys

    import torch

    monkeypatch.setitem(sys.modules, "dreamops.tasks.device", None)   # as in 3f554a2: no such module
    assert bench._optimiser() is torch.optim.Adam
