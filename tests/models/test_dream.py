import torch

from dreamops.models.dream import dream_rollouts, dream_rollouts_looped, generator_noise
from dreamops.models.mdnrnn import MDNRNN


def test_batched_dream_equals_one_candidate_at_a_time():
    torch.manual_seed(0)
    m = MDNRNN().double()
    with torch.no_grad():
        m.done_head.weight.zero_()
        m.done_head.bias.fill_(-4.0)  # p(done) ~ 1.8% a step: some rows end early, some do not
    n, steps = 6, 40
    genomes = torch.randn(3, 867, dtype=torch.float64) * 0.3  # 3 candidates x 2 rollouts
    z0 = torch.randn(n, 32, dtype=torch.float64)
    h0, c0 = (torch.randn(n, 256, dtype=torch.float64) * 0.1 for _ in range(2))
    draw = generator_noise(n, 32, seed=3, dtype=torch.float64)
    fixed = [draw(t) for t in range(steps)]
    out = dream_rollouts(m, genomes, z0, h0, c0, steps, 1.15, lambda t: fixed[t])
    looped = dream_rollouts_looped(m, genomes, z0, h0, c0, steps, 1.15, lambda t: fixed[t])
    torch.testing.assert_close(out["returns"], looped, rtol=1e-9, atol=1e-9)
    assert (out["alive_steps"] < steps).any() and (out["alive_steps"] == steps).any()


def test_same_seed_same_dream_and_latents_shape():
    torch.manual_seed(0)
    m = MDNRNN()
    args = (torch.zeros(3, 867), torch.zeros(3, 32), torch.zeros(3, 256), torch.zeros(3, 256), 10, 1.0)
    a = dream_rollouts(m, *args, generator_noise(3, 32, 1), keep_latents=True)
    b = dream_rollouts(m, *args, generator_noise(3, 32, 1), keep_latents=True)
    assert torch.equal(a["returns"], b["returns"])
    assert a["latents"].shape[1:] == (3, 32)
