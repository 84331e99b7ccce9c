"""pick-vla's planners over sampled futures: the RSSM's Gumbel-max draws follow its prior, every
candidate meets the same futures, and the risk-sensitive score is the CVaR of its per-future scores."""
import numpy as np
import pytest
import torch

from dreamops.models.pick_vla import PickVLA
from dreamops.models.planners import PLANNERS, draw_futures, imagined_score
from tests.models.test_pick_collision_head import ARCH, _cond


def _model_and_cond():
    torch.manual_seed(0)
    model = PickVLA(ARCH).eval()
    torch.nn.init.normal_(model.head.out.weight, std=0.1)   # chunks that differ, so plans do
    return model, _cond(model)


def test_gumbel_max_draws_from_chosen_noise_follow_the_priors_probabilities():
    model, _ = _model_and_cond()
    logits = torch.log(torch.tensor([0.1, 0.2, 0.3, 0.4])).expand(20_000, ARCH.stoch, 4)
    uniform = torch.rand(20_000, ARCH.stoch, 4, generator=torch.Generator().manual_seed(1))
    draws = model.rssm._sample(logits, uniform=uniform).view(20_000, ARCH.stoch, 4)
    freq = draws.detach().mean(dim=(0, 1))
    assert torch.allclose(freq, torch.tensor([0.1, 0.2, 0.3, 0.4]), atol=0.01), freq
    # the same noise, the same draw: futures are reproducible and shared
    assert torch.equal(draws, model.rssm._sample(logits, uniform=uniform).view(20_000, ARCH.stoch, 4))


def test_the_score_over_futures_is_the_cvar_of_the_per_future_scores():
    model, cond = _model_and_cond()
    chunks = torch.rand(5, ARCH.horizon, 4, generator=torch.Generator().manual_seed(2)) * 2 - 1
    futures = draw_futures(model, 6, torch.Generator().manual_seed(3))
    assert futures.shape == (ARCH.horizon, 6, ARCH.stoch, ARCH.classes)
    each = torch.stack([imagined_score(model, cond, chunks, 4.0, 4.0, futures[:, f:f + 1]) for f in range(6)], 1)
    assert each.std(dim=1).max() > 1e-4   # the futures differ
    assert torch.allclose(imagined_score(model, cond, chunks, 4.0, 4.0, futures, alpha=1.0), each.mean(1), atol=1e-6)
    worst_two = each.sort(dim=1).values[:, :2].mean(1)   # CVaR at 1/3 of 6 futures: the mean of the worst 2
    assert torch.allclose(imagined_score(model, cond, chunks, 4.0, 4.0, futures, alpha=1 / 3), worst_two, atol=1e-6)
    # one future is the prior's mode, as before futures existed
    assert draw_futures(model, 1) is None
    with pytest.raises(ValueError):
        draw_futures(model, 0)


@pytest.mark.parametrize("kind", ["cem", "mppi"])
def test_risk_sensitive_planners_plan_reproducibly_and_refuse_bad_settings(kind):
    model, cond = _model_and_cond()
    planner = PLANNERS[kind](samples=8, iterations=2, futures=4, alpha=0.5)
    chunk = planner.plan(model, cond, torch.Generator().manual_seed(5))
    assert chunk.shape == (ARCH.horizon, 4) and np.abs(chunk).max() <= 1.0
    assert np.array_equal(chunk, planner.plan(model, cond, torch.Generator().manual_seed(5)))
    for bad in ({"futures": 0}, {"alpha": 0.0}, {"alpha": 1.5}):
        with pytest.raises(ValueError):
            PLANNERS[kind](**bad)
