"""Flow matching against known answers: the exact velocity field has zero loss and carries noise to
the data in any number of Euler steps; a zero field's loss is E||x1 - x0||^2."""
import pytest
import torch

from dreamops.models.flow_head import (FlowMatchingActionHead, euler_integrate, flow_matching_loss, interpolate,
                                       sinusoidal_embedding)


def _data(seed=0, b=8, h=16, a=4):
    g = torch.Generator().manual_seed(seed)
    actions = torch.rand(b, h, a, generator=g) * 2 - 1
    noise = torch.randn(b, h, a, generator=g)
    t = torch.rand(b, generator=g) * 0.98   # t < 1: the exact field below divides by 1 - t
    return actions, noise, t


def _exact_field(actions):
    """The conditional field of the straight path towards `actions`: v(x, t) = (x1 - x) / (1 - t)."""
    def v(x, t, cond):
        return (actions - x) / (1 - t).view(-1, 1, 1)
    return v


def test_flow_loss_of_the_exact_velocity_field_is_zero():
    actions, noise, t = _data()
    loss = flow_matching_loss(_exact_field(actions), actions, torch.zeros(8, 1), noise, t)
    assert float(loss) < 1e-10


def test_flow_loss_of_the_zero_field_is_the_mean_squared_displacement():
    actions, noise, t = _data(1)
    loss = flow_matching_loss(lambda x, t, c: torch.zeros_like(x), actions, torch.zeros(8, 1), noise, t)
    torch.testing.assert_close(loss, ((actions - noise) ** 2).mean())


@pytest.mark.parametrize("steps", [1, 3, 10])
def test_euler_steps_on_the_exact_field_land_on_the_data(steps):
    actions, noise, _ = _data(2)
    out = euler_integrate(_exact_field(actions), noise, torch.zeros(8, 1), steps)
    torch.testing.assert_close(out, actions, atol=1e-5, rtol=0)


def test_interpolation_ends():
    actions, noise, _ = _data(3)
    torch.testing.assert_close(interpolate(noise, actions, torch.zeros(8)), noise)
    torch.testing.assert_close(interpolate(noise, actions, torch.ones(8)), actions)


def test_sinusoidal_embedding_known_values():
    e = sinusoidal_embedding(torch.tensor([0.0, 0.5]), 8)
    assert e.shape == (2, 8)
    torch.testing.assert_close(e[0], torch.tensor([0.0] * 4 + [1.0] * 4))
    with pytest.raises(ValueError, match="even"):
        sinusoidal_embedding(torch.zeros(1), 7)


def test_head_learns_a_conditional_chunk_and_samples_in_range():
    """Two conditions, two different target chunks: after training, 10 Euler steps from fresh noise
    reproduce each condition's chunk (clipped to [-1, 1])."""
    torch.manual_seed(0)
    head = FlowMatchingActionHead(cond_dim=2, horizon=16, action_dim=4, hidden=128)
    cond = torch.eye(2).repeat(32, 1)                       # [64, 2]
    targets = torch.stack([torch.full((16, 4), 0.6), torch.linspace(-0.8, 0.8, 64).view(16, 4)])
    actions = targets[cond.argmax(1)]
    opt = torch.optim.Adam(head.parameters(), 2e-3)
    first = None
    for _ in range(600):
        loss, metrics = head(actions, cond)
        first = first if first is not None else float(loss.detach())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert metrics["flow/loss"] < 0.2 * first
    out = head.sample(torch.eye(2), generator=torch.Generator().manual_seed(1))
    assert out.shape == (2, 16, 4) and out.abs().max() <= 1.0
    assert (out - targets).abs().mean() < 0.1


def test_head_rejects_a_wrong_chunk_shape():
    head = FlowMatchingActionHead(cond_dim=2, horizon=16, action_dim=4, hidden=32)
    with pytest.raises(ValueError, match=r"\[B, 16, 4\]"):
        head.velocity(torch.zeros(1, 8, 4), torch.zeros(1), torch.zeros(1, 2))
