"""Latent-space MPC for carracing-vmc: it finds a hand-built dream's known optimum, never scores
below the controller's own plan, scores by CVaR over futures, and acts from a pickled factory."""
import pickle

import numpy as np
import torch

from dreamops.models.bundle import Architecture, BundlePolicyFactory, VMCBundle
from dreamops.models.controller import Controller
from dreamops.models.latent_mpc import LatentMPC
from dreamops.models.trajectory_opt import CEM, MPPI
from tests.models.test_imagination import _steer_pays_dream


def _start(m):
    return torch.zeros(1, m.latent_dim), m.initial_state(1)


def test_mpc_finds_the_known_optimum_from_a_controller_that_does_nothing():
    m = _steer_pays_dream()
    controller = Controller(2, 4)
    torch.nn.init.zeros_(controller.fc.weight)
    torch.nn.init.zeros_(controller.fc.bias)
    for optimiser in (CEM(samples=64, elites=6, iterations=6), MPPI(samples=64, iterations=6, temperature=0.05)):
        mpc = LatentMPC(optimiser, horizon=5, futures=2, init_std=0.5)
        z, state = _start(m)
        plan = mpc.plan(m, controller, z, state, previous=None)
        assert plan.shape == (5, 3) and plan[0, 0] > 0.5, f"{type(optimiser).__name__}: first steer {plan[0, 0]:.2f}"


def test_the_plan_never_scores_below_the_controllers_own_plan_on_the_same_futures():
    torch.manual_seed(0)
    m = _steer_pays_dream()
    controller = Controller(2, 4)   # random weights: some plan of its own
    mpc = LatentMPC(CEM(samples=16, elites=4, iterations=2), horizon=4, futures=3)
    z, state = _start(m)
    plan = mpc.plan(m, controller, z, state, previous=None)
    proposal = mpc.controller_plan(m, controller, z, state)
    scores = mpc.score(m, z, state, torch.stack([plan, proposal]))   # the decision's futures, kept
    assert scores[0] >= scores[1]


def test_cvar_over_futures_is_at_most_their_mean():
    torch.manual_seed(1)
    from dreamops.models.mdnrnn import MDNRNN

    m = MDNRNN(latent_dim=4, action_dim=3, hidden_dim=8, n_gaussians=2).eval()
    plans = torch.rand(6, 5, 3) * 2 - 1
    z, state = torch.randn(1, 4), m.initial_state(1)
    neutral, averse = LatentMPC(CEM(), horizon=5, futures=8), LatentMPC(CEM(), horizon=5, futures=8, alpha=0.25)
    neutral._noise = averse._noise = neutral.draw_futures(4, 5)
    assert (averse.score(m, z, state, plans) <= neutral.score(m, z, state, plans) + 1e-6).all()


def test_a_planned_version_acts_from_a_pickled_factory_in_the_cars_action_ranges(tmp_path):
    torch.manual_seed(0)
    bundle = VMCBundle.create(Architecture())
    path = bundle.save(tmp_path / "vmc_bundle.pt")
    factory = pickle.loads(pickle.dumps(BundlePolicyFactory(str(path), planner=LatentMPC(CEM(samples=8, elites=2,
                                                                                             iterations=1), horizon=3))))
    policy = factory()
    policy.reset(7)
    frame = np.zeros((64, 64, 3), np.uint8)
    actions = np.stack([policy.act(frame) for _ in range(2 * bundle.arch.action_repeat)])
    assert actions.shape[1] == 3 and (-1 <= actions[:, 0]).all() and (actions[:, 0] <= 1).all()
    assert (actions[:, 1:] >= 0).all() and (actions[:, 1:] <= 1).all()
    assert policy.plan is not None and policy.plan.shape == (3, 3)
