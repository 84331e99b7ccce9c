"""RSSM against known answers: KL of identical distributions is zero, KL matches torch's, the
balancing sends each term's gradient to one side only, free bits clip, straight-through samples."""
import math

import pytest
import torch

from dreamops.models.rssm import RSSM, categorical_kl, kl_balance


def test_kl_of_identical_distributions_is_zero():
    logits = torch.randn(5, 7, 32, 32)
    assert torch.allclose(categorical_kl(logits, logits), torch.zeros(5, 7), atol=1e-6)


def test_kl_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    p, q = torch.randn(4, 32, 32, generator=g), torch.randn(4, 32, 32, generator=g)
    expected = torch.distributions.kl_divergence(torch.distributions.Categorical(logits=p),
                                                 torch.distributions.Categorical(logits=q)).sum(-1)
    torch.testing.assert_close(categorical_kl(p, q), expected)


def test_kl_of_one_hot_against_uniform_is_log_classes():
    p = torch.full((1, 3, 4), -1e9)
    p[..., 0] = 0.0                  # each of 3 variables certain of class 0
    q = torch.zeros(1, 3, 4)         # uniform over 4 classes
    torch.testing.assert_close(categorical_kl(p, q), torch.tensor([3 * math.log(4)]))


def test_free_bits_clip_and_balance_weights():
    logits = torch.randn(2, 5, 8, 8)
    loss, dyn, rep = kl_balance(logits, logits.clone(), dyn_scale=0.5, rep_scale=0.1, free_bits=1.0)
    assert float(dyn) == pytest.approx(0.0, abs=1e-6) and float(rep) == pytest.approx(0.0, abs=1e-6)
    assert float(loss) == pytest.approx((0.5 + 0.1) * 1.0)   # both clipped up to the free bits


def test_dyn_term_trains_only_the_prior_and_rep_only_the_posterior():
    post = torch.randn(2, 3, 4, 4, requires_grad=True)
    prior = torch.randn(2, 3, 4, 4, requires_grad=True)
    loss, _, _ = kl_balance(post, prior, dyn_scale=1.0, rep_scale=0.0, free_bits=0.0)
    loss.backward()
    assert post.grad is None or float(post.grad.abs().sum()) == 0.0
    assert float(prior.grad.abs().sum()) > 0
    post.grad, prior.grad = None, None
    loss, _, _ = kl_balance(post, prior, dyn_scale=0.0, rep_scale=1.0, free_bits=0.0)
    loss.backward()
    assert prior.grad is None or float(prior.grad.abs().sum()) == 0.0
    assert float(post.grad.abs().sum()) > 0


def test_straight_through_samples_are_one_hot_with_gradients():
    torch.manual_seed(0)
    rssm = RSSM(embed_dim=8, action_dim=2, deter=16, stoch=4, classes=5, hidden=16)
    logits = torch.randn(3, 4, 5, requires_grad=True)
    z = rssm._sample(logits)
    groups = z.view(3, 4, 5)
    assert torch.allclose(groups.sum(-1), torch.ones(3, 4))
    assert torch.allclose(groups.detach(), groups.detach().round(), atol=1e-6)   # one-hot up to rounding
    (z * torch.arange(60.0).view(3, 20)).sum().backward()
    assert float(logits.grad.abs().sum()) > 0


def test_observe_and_imagine_shapes_and_a_step_reduces_the_loss():
    torch.manual_seed(0)
    rssm = RSSM(embed_dim=8, action_dim=2, deter=32, stoch=4, classes=4, hidden=32)
    embeds, actions = torch.randn(6, 5, 8), torch.randn(6, 5, 2)
    success = torch.zeros(6, 5)
    success[:, -1] = 1
    out = rssm.observe(embeds, actions)
    assert out["features"].shape == (6, 5, 32 + 16)
    assert out["post_logits"].shape == out["prior_logits"].shape == (6, 5, 4, 4)
    feats = rssm.imagine(rssm.initial(6), torch.randn(6, 7, 2))
    assert feats.shape == (6, 7, 48)
    cos = rssm.one_step_cosine(embeds, actions)
    assert cos.shape == (6, 4) and bool(((cos >= 0) & (cos <= 1 + 1e-6)).all())
    opt = torch.optim.Adam(rssm.parameters(), 1e-3)
    torch.manual_seed(1)
    before, _, _ = rssm.loss(embeds, actions, success)
    for _ in range(30):
        loss, _, metrics = rssm.loss(embeds, actions, success)
        opt.zero_grad()
        loss.backward()
        opt.step()
    torch.manual_seed(1)
    after, _, _ = rssm.loss(embeds, actions, success)
    assert float(after) < float(before)
    with pytest.raises(ValueError, match="share"):
        rssm.observe(embeds, actions[:, :3])


def test_the_success_head_learns_the_state_the_last_action_led_to():
    """Episodes end on their success: the rewarded action's next state is never observed. The head
    must still learn it (from the prior one step past the window), where planners read it."""
    torch.manual_seed(0)
    rssm = RSSM(embed_dim=8, action_dim=2, deter=32, stoch=4, classes=4, hidden=32)
    embeds = torch.randn(16, 6, 8)
    actions = torch.zeros(16, 6, 2)
    actions[:8, -1] = 1.0   # the first half ends with the "lift" that completes the pick
    success = torch.zeros(16, 6)
    success[:8, -1] = 1.0
    opt = torch.optim.Adam(rssm.parameters(), 3e-3)
    for _ in range(150):
        loss, _, _ = rssm.loss(embeds, actions, success)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        last = rssm.observe(embeds, actions, sample=False)["last"]
        led_to = rssm.imagine(last, actions[:, -1:])[:, 0]
        p = torch.sigmoid(rssm.success_head(led_to).squeeze(-1))
        observed = torch.sigmoid(rssm.success_head(rssm.observe(embeds, actions, sample=False)["features"]))
    assert float(p[:8].min()) > 0.8 and float(p[8:].max()) < 0.2
    assert float(observed.max()) < 0.2   # no observed state was a success
