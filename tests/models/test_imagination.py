"""Learning in imagination: known answers for lambda-returns, the return scale and the actor, and an
actor-critic that finds the known optimum of a hand-built dream."""
import dataclasses
import math

import pytest
import torch

from dreamops.models.controller import Controller
from dreamops.models.imagination import (Critic, GaussianActor, ReturnNormalizer, lambda_returns, symexp,
                                         symlog)
from dreamops.models.mdnrnn import MDNRNN
from dreamops.tasks.actor_critic import actor_critic_checkpoints, train_actor_critic
from dreamops.tasks.config import ActorCriticConfig, CMAConfig


def test_lambda_returns_known_answers():
    r = torch.tensor([[1.0, 2.0, 3.0]])
    v = torch.tensor([[10.0, 20.0, 30.0, 40.0]])
    c = torch.ones(1, 3)
    # lambda = 1: the discounted sum of rewards bootstrapped with V(s_H)
    g = 0.5
    assert torch.allclose(lambda_returns(r, v, c, g, 1.0)[0, 0], torch.tensor(1 + g * 2 + g ** 2 * 3 + g ** 3 * 40))
    # lambda = 0: one-step TD targets r_t + gamma V(s_{t+1})
    assert torch.allclose(lambda_returns(r, v, c, g, 0.0), r + g * v[:, 1:])
    # an episode that ends after step 1: nothing after its end counts (V(s_2), r_2, V(s_3) are ignored)
    ended = torch.tensor([[1.0, 0.0, 0.0]])
    assert torch.allclose(lambda_returns(r, v, ended, 1.0, 0.95), torch.tensor([[1 + 0.05 * 20 + 0.95 * 2, 2.0, 3.0]]))
    with pytest.raises(ValueError, match=r"values \[B, H \+ 1\]"):
        lambda_returns(r, v[:, :3], c, g, 0.9)


def test_return_scale_is_the_ema_of_the_5_95_percentile_range_and_never_below_one():
    norm = ReturnNormalizer(rate=0.5)
    assert norm.scale == 1.0
    x = torch.arange(101, dtype=torch.float32)   # 5th..95th percentile: 5..95
    assert norm.update(x) == pytest.approx(90.0)
    assert norm.update(x * 0) == pytest.approx(45.0)   # halfway to a range of 0
    small = ReturnNormalizer()
    assert small.update(torch.linspace(0, 0.1, 50)) == 1.0   # small returns are not blown up


def test_symlog_roundtrip_and_critic_starts_at_zero():
    x = torch.tensor([-1000.0, -1.0, 0.0, 0.5, 800.0])
    assert torch.allclose(symexp(symlog(x)), x, rtol=1e-5)
    assert torch.equal(Critic(8)(torch.randn(5, 8)), torch.zeros(5))


def test_the_actor_is_a_gaussian_around_the_controllers_tanh_output():
    controller = Controller(2, 4)
    actor = GaussianActor(controller.fc, 3, init_std=0.3)
    s = torch.randn(6, 6)
    u = actor.sample(s, torch.zeros(6, 3))
    assert torch.allclose(u, torch.tanh(controller.fc(s)))   # zero noise: the mean, the controller's raw action
    logp, ent = actor.log_prob_and_entropy(s, u)
    assert torch.allclose(logp, torch.full((6,), 3 * (-math.log(0.3) - 0.5 * math.log(2 * math.pi))), atol=1e-5)
    assert torch.allclose(ent, torch.full((6,), 3 * (0.5 + 0.5 * math.log(2 * math.pi) + math.log(0.3))), atol=1e-5)


def _steer_pays_dream() -> MDNRNN:
    """An M whose reward is h_0 = tanh(tanh(steer)): steering right (+1) pays 0.64 a step, left costs
    as much; the latent stays at 0 and no dream ends. The optimum is known: steer = +1."""
    m = MDNRNN(latent_dim=2, action_dim=3, hidden_dim=4, n_gaussians=1)
    with torch.no_grad():
        for p in m.parameters():
            p.zero_()
        hdim = 4
        b = m.lstm.bias_ih_l0
        b[0:hdim] = 20.0               # input gate open
        b[hdim:2 * hdim] = -20.0       # forget gate shut: c = g
        b[3 * hdim:4 * hdim] = 20.0    # output gate open: h = tanh(c)
        m.lstm.weight_ih_l0[2 * hdim + 0, 2 + 0] = 1.0   # g_0 = tanh(steer); input is [z (2), a (3)]
        m.reward_head.weight[0, 0] = 1.0
        m.done_head.bias.fill_(-20.0)
        m.mdn.bias.view(3, 2, 1)[2] = -5.0              # log sigma: z stays near 0
    return m.eval()


def test_actor_critic_finds_the_known_optimum_of_a_hand_built_dream():
    m = _steer_pays_dream()
    starts = {"z0": torch.zeros(8, 2), "h0": torch.zeros(8, 4), "c0": torch.zeros(8, 4)}
    cma = CMAConfig(dream_steps=20, temperature=1.0, rollouts=4)
    cfg = ActorCriticConfig(updates=150, batch=64, horizon=5, actor_lr=0.1, critic_lr=3e-3, critic_hidden=32,
                            log_every=50)
    logged = {}
    controller, history = train_actor_critic(m, starts, cfg, cma, seed=0, show_progress=False,
                                             log=lambda metrics, step: logged.update(metrics))
    steer = controller(torch.zeros(1, 2), torch.zeros(1, 4))[0, 0]
    assert steer > 0.8, f"learned steer {steer:.3f}, the optimum is +1"
    assert history["dream_reward_per_step"][-1] > 0.5 > history["dream_reward_per_step"][0]
    # the final dream return: 20 steps of up to 0.64
    assert history["final_dream_return"][0] > 10 and logged["ac/final_dream_return"] == history["final_dream_return"][0]


def test_actor_critic_keeps_evenly_spaced_checkpoints_the_last_being_the_trained_controller():
    m = _steer_pays_dream()
    starts = {"z0": torch.zeros(8, 2), "h0": torch.zeros(8, 4), "c0": torch.zeros(8, 4)}
    cma = CMAConfig(dream_steps=20, temperature=1.0, rollouts=4, checkpoints=3)
    cfg = ActorCriticConfig(updates=30, batch=16, horizon=5, actor_lr=0.1, critic_hidden=8, log_every=10)
    controllers, history = actor_critic_checkpoints(m, starts, cfg, cma, seed=0, show_progress=False)
    assert history["checkpoint_generation"] == [10.0, 20.0, 30.0] and len(controllers) == 3
    assert len(history["checkpoint_dream_return"]) == 3
    assert history["final_dream_return"] == history["checkpoint_dream_return"][-1:]
    last, _ = train_actor_critic(m, starts, cfg, cma, seed=0, show_progress=False)
    assert torch.equal(controllers[-1].get_flat(), last.get_flat())         # the same training, one kept
    assert not torch.equal(controllers[0].get_flat(), controllers[-1].get_flat())
    # warm: the first checkpoint is the starting controller, as in a warm CMA-ES round
    warm, warm_history = actor_critic_checkpoints(m, starts, cfg, cma, seed=1, show_progress=False, init=last)
    assert warm_history["checkpoint_generation"] == [0.0, 15.0, 30.0]
    assert torch.equal(warm[0].get_flat(), last.get_flat())


def test_a_warm_rounds_critic_warmup_fits_the_critic_before_the_actor_moves():
    m = _steer_pays_dream()
    starts = {"z0": torch.zeros(8, 2), "h0": torch.zeros(8, 4), "c0": torch.zeros(8, 4)}
    cma = CMAConfig(dream_steps=20, temperature=1.0, rollouts=4, checkpoints=3)
    cfg = ActorCriticConfig(updates=30, batch=16, horizon=5, actor_lr=0.1, critic_lr=3e-3, critic_hidden=32)
    start, _ = train_actor_critic(m, starts, cfg, cma, seed=0, show_progress=False)
    losses = {}
    for warmup in (0, 50):
        warm_cfg = dataclasses.replace(cfg, round_critic_warmup=warmup)
        kept, history = actor_critic_checkpoints(m, starts, warm_cfg, cma, seed=1, show_progress=False, init=start)
        assert torch.equal(kept[0].get_flat(), start.get_flat())   # the warm-up never moves the actor
        assert len(history["critic_loss"]) == cfg.updates            # and adds no actor update
        losses[warmup] = history["critic_loss"][0]
    # the first actor update meets a critic that already knows the start controller's values
    assert losses[50] < 0.1 * losses[0], losses
    # a cold round (round 0) has no start controller to fit the critic to: the same training as without
    cold, _ = train_actor_critic(m, starts, dataclasses.replace(cfg, round_critic_warmup=50), cma, seed=0,
                                 show_progress=False)
    assert torch.equal(cold.get_flat(), start.get_flat())


def test_actor_critic_config_is_checked():
    with pytest.raises(ValueError, match="lam"):
        ActorCriticConfig(lam=1.5).validate()
    with pytest.raises(ValueError, match="init_std"):
        ActorCriticConfig(init_std=2.0).validate()
    with pytest.raises(ValueError, match="round_critic_warmup"):
        ActorCriticConfig(round_critic_warmup=-1).validate()
