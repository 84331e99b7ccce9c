"""Known answers for the planners' optimisers and risk measure (issue: ensembles and MPC)."""
import math

import pytest
import torch

from dreamops.models.trajectory_opt import CEM, MPPI, cvar

H, A = 6, 3
OPTIMUM = torch.linspace(-0.6, 0.6, H * A).view(H, A)


def quadratic(x: torch.Tensor) -> torch.Tensor:
    """Score = -||x - OPTIMUM||^2 per sequence: its maximum 0 is at OPTIMUM, inside the bounds."""
    return -((x - OPTIMUM) ** 2).sum(dim=(1, 2))


@pytest.mark.parametrize("optimiser", [CEM(samples=128, elites=12, iterations=12, min_std=0.001),
                                       MPPI(samples=128, iterations=20, temperature=0.01, std_decay=0.8)],
                         ids=["cem", "mppi"])
def test_each_optimiser_finds_the_optimum_of_a_known_quadratic(optimiser):
    mean, std = torch.zeros(H, A), torch.full((H, A), 0.5)
    start = float(quadratic(mean[None])[0])
    best, score = optimiser.optimise(quadratic, mean, std, torch.Generator().manual_seed(0))
    assert score == pytest.approx(float(quadratic(best[None])[0]))
    assert score > 0.05 * start                          # 95% of the way from the start's -2.5
    assert (best - OPTIMUM).abs().max() < 0.1


def test_the_optimisers_respect_the_action_bounds():
    far = torch.full((H, A), 3.0)   # an optimum outside [-1, 1]: the best is the bound itself
    for opt in (CEM(iterations=15), MPPI(iterations=15, temperature=0.5, std_decay=0.9)):
        best, score = opt.optimise(lambda x: -((x - far) ** 2).sum(dim=(1, 2)), torch.zeros(H, A), torch.ones(H, A),
                                   torch.Generator().manual_seed(1))
        assert best.max() <= 1.0 and best.mean() > 0.9 and score > -78.0   # -72 at the bound, -162 at the start


def test_cvar_of_known_distributions():
    values = torch.arange(1.0, 101.0)
    assert float(cvar(values, 0.1)) == pytest.approx(5.5)          # mean of 1..10
    assert float(cvar(values, 1.0)) == pytest.approx(50.5)         # alpha 1: the mean
    assert float(cvar(values, 0.001)) == pytest.approx(1.0)        # at least the single worst outcome
    # the lower-tail CVaR of N(0, 1) at alpha is -pdf(z_alpha) / alpha (-2.063 at 5%)
    normal = torch.randn(400_000, generator=torch.Generator().manual_seed(0))
    z = -1.6448536269514722
    expected = -math.exp(-z * z / 2) / math.sqrt(2 * math.pi) / 0.05
    assert float(cvar(normal, 0.05)) == pytest.approx(expected, abs=0.02)
    # per row along a dimension: a plan judged by its worst futures
    per_plan = torch.tensor([[0.0, 1.0, 2.0, 3.0], [1.5, 1.5, 1.5, 1.5]])
    assert cvar(per_plan, 0.5, dim=1).tolist() == pytest.approx([0.5, 1.5])


@pytest.mark.parametrize("make", [lambda: cvar(torch.ones(3), 0.0), lambda: CEM(elites=0), lambda: MPPI(temperature=0)])
def test_bad_settings_are_refused(make):
    with pytest.raises(ValueError):
        make()
