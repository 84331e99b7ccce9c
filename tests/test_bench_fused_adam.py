"""bench/bench_fused_adam.py: its arms differ in the optimiser only."""
import torch

from tests.bench import bench_module

bench = bench_module("bench_fused_adam")


def test_the_arms_start_equal_and_differ_only_by_rounding_after_their_steps():
    model, loss_of = bench.m_case(batch=2, window=8)
    r = bench.compare(model, loss_of, steps=3, lr=1e-3)
    assert set(r["step_ms"]) == {"default", "fused"} and all(t > 0 for t in r["step_ms"].values())
    assert len(r["step_times_ms"]["fused"]) == 3        # the warm-up steps are not timed
    assert 0 <= r["max_parameter_gap"]["after 1 step"] < 1e-6
    assert r["parameters"] == sum(p.numel() for p in model.parameters())


def test_the_fused_arm_runs_torchs_fused_adam():
    model, loss_of = bench.m_case(batch=2, window=8)
    _, opt = bench.step_fn(model, loss_of, fused=True, lr=1e-3)
    assert opt.defaults["fused"] is True
    _, opt = bench.step_fn(model, loss_of, fused=False, lr=1e-3)
    assert not opt.defaults["fused"]
    assert torch.is_tensor(loss_of(model))
