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


def test_dropout_masks_are_fixed_per_row_and_thin_at_rate_p():
    from dreamops.models.dream import dropout_masks

    assert dropout_masks(4, 32, 256, 0.0, seed=0) is None
    z_mask, h_mask = dropout_masks(2000, 32, 256, 0.1, seed=0)
    assert z_mask.shape == (2000, 32) and h_mask.shape == (2000, 256)
    assert abs((h_mask == 0).float().mean().item() - 0.1) < 0.005  # 512k draws: 4 sigma is ~0.0017
    assert torch.allclose(h_mask[h_mask > 0], torch.tensor(1 / 0.9))  # inverted dropout keeps the mean
    again = dropout_masks(2000, 32, 256, 0.1, seed=0)
    assert torch.equal(again[1], h_mask) and not torch.equal(dropout_masks(2000, 32, 256, 0.1, seed=1)[1], h_mask)


def test_masks_of_ones_change_nothing_and_real_masks_change_the_dream():
    from dreamops.models.dream import dropout_masks

    torch.manual_seed(0)
    m = MDNRNN()
    n = 4
    args = (torch.randn(2, 867) * 0.3, torch.randn(n, 32), torch.zeros(n, 256), torch.zeros(n, 256), 15, 1.0)
    plain = dream_rollouts(m, *args, generator_noise(n, 32, 1))["returns"]
    ones = (torch.ones(n, 32), torch.ones(n, 256))
    assert torch.equal(dream_rollouts(m, *args, generator_noise(n, 32, 1), masks=ones)["returns"], plain)
    thinned = dream_rollouts(m, *args, generator_noise(n, 32, 1), masks=dropout_masks(n, 32, 256, 0.3, 0))["returns"]
    assert not torch.allclose(thinned, plain)


def test_threshold_done_ends_a_dream_exactly_when_p_done_passes_one_half():
    m = MDNRNN()
    with torch.no_grad():
        m.done_head.weight.zero_()
    args = (torch.zeros(1, 867), torch.zeros(3, 32), torch.zeros(3, 256), torch.zeros(3, 256), 30, 1.0)
    with torch.no_grad():
        m.done_head.bias.fill_(-0.1)  # p(done) = 0.475 each step: sampled ends early, threshold never
    sampled = dream_rollouts(m, *args, generator_noise(3, 32, 0))["alive_steps"]
    never = dream_rollouts(m, *args, generator_noise(3, 32, 0), done_threshold=0.5)["alive_steps"]
    assert (sampled < 30).all() and (never == 30).all()
    with torch.no_grad():
        m.done_head.bias.fill_(0.1)  # 0.525: the first step ends every row
    assert (dream_rollouts(m, *args, generator_noise(3, 32, 0), done_threshold=0.5)["alive_steps"] == 1).all()


def test_mdnrnn_training_dropout_is_per_sequence_and_off_in_eval():
    torch.manual_seed(0)
    m = MDNRNN(dropout=0.5)
    z, a = torch.randn(2, 5, 32), torch.rand(2, 5, 3)
    args = (z, a, torch.randn(2, 5, 32), torch.zeros(2, 5), torch.zeros(2, 5))
    m.eval()
    assert m(*args)[0].item() == m(*args)[0].item()  # deterministic without dropout
    m.train()
    assert m(*args)[0].item() != m(*args)[0].item()
    assert set(MDNRNN(dropout=0.5).state_dict()) == set(MDNRNN().state_dict())  # no new weights
