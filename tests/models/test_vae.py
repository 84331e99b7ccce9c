import pytest
import torch
from torch.distributions import Normal, kl_divergence

from dreamops.models.vae import VAE, for_cpu_inference, vae_kl


def test_kl_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    mu, logvar = torch.randn(8, 32, generator=g), torch.randn(8, 32, generator=g)
    expected = kl_divergence(Normal(mu, torch.exp(0.5 * logvar)), Normal(0.0, 1.0)).sum(-1)
    torch.testing.assert_close(vae_kl(mu, logvar), expected)


def test_kl_of_the_prior_is_zero():
    assert torch.allclose(vae_kl(torch.zeros(3, 32), torch.zeros(3, 32)), torch.zeros(3))


def test_shapes_and_parameter_count():
    vae = VAE()
    frames = torch.randint(0, 256, (5, 64, 64, 3), dtype=torch.uint8)
    assert vae.encode(frames).shape == (5, 32)
    assert vae.decode(torch.zeros(5, 32)).shape == (5, 3, 64, 64)
    assert vae.reconstruct(frames).dtype == torch.uint8
    # 4 conv + 2 heads + linear + 4 deconv as specified; the seed's "about 4.5M" is close
    assert sum(p.numel() for p in vae.parameters()) == 4_348_547


def test_loss_is_summed_mse_plus_kl_with_free_bits():
    torch.manual_seed(0)
    vae = VAE(kl_tolerance=0.5)
    x = torch.rand(4, 3, 64, 64)
    torch.manual_seed(1)
    loss, m = vae(x)
    # untrained encoder: KL is far below the free-bits floor of 0.5 * 32 = 16 nats
    assert m["vae/kl"] < 16
    assert abs(m["vae/loss"] - (m["vae/recon"] + 16.0)) < 1e-3
    torch.manual_seed(1)
    mu, logvar = vae.encode_params(x)
    x_hat = vae.decode(mu + torch.randn_like(mu) * torch.exp(0.5 * logvar))
    assert abs(((x_hat - x) ** 2).sum().item() / 4 - m["vae/recon"]) < 1e-2


def test_bad_frame_shape_is_rejected():
    import pytest

    with pytest.raises(ValueError, match="64, 64, 3"):
        VAE.to_input(torch.zeros(2, 96, 96, 3, dtype=torch.uint8))


@pytest.mark.parametrize("threads", [1, 2])
def test_the_cpu_inference_copy_reads_frames_to_the_same_bits(threads):
    """Encoding (M's training data) and the policy read frames through for_cpu_inference: a layout
    change for speed only, so the latents must be V's own, bit for bit, at batch 1 and in batches."""
    torch.manual_seed(0)
    vae = VAE()
    with torch.no_grad():  # trained-looking weights: a little off the initialisation
        for p in vae.parameters():
            p.add_(0.01 * torch.randn_like(p))
    fast = for_cpu_inference(vae)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for batch in (1, 7, 512):
            frames = torch.randint(0, 256, (batch, 64, 64, 3), dtype=torch.uint8)
            assert torch.equal(fast.encode(frames), vae.eval().encode(frames))
            mu, logvar = fast.encode_params(VAE.to_input(frames))
            assert torch.equal(logvar, vae.encode_params(VAE.to_input(frames))[1])
    finally:
        torch.set_num_threads(previous)
    assert not fast.training and vae.encoder[0].weight.is_contiguous()  # the caller's V is left as it was


def test_the_decoder_is_its_transposed_convolutions_and_trains_them():
    """decode computes the first transposed convolution as a matrix product: the same function of the
    same parameters (so checkpoints load as before), to float rounding, and its gradients reach the
    transposed convolution's own weight and bias."""
    torch.manual_seed(0)
    vae = VAE()
    z = torch.randn(6, 32)
    as_convolutions = vae.decoder(vae.fc_dec(z).view(-1, 1024, 1, 1))
    torch.testing.assert_close(vae.decode(z), as_convolutions, rtol=0, atol=1e-5)
    first = vae.decoder[0]
    vae.decode(z).sum().backward()
    fast_grads = first.weight.grad.clone(), first.bias.grad.clone()
    vae.zero_grad()
    vae.decoder(vae.fc_dec(z).view(-1, 1024, 1, 1)).sum().backward()
    torch.testing.assert_close(fast_grads[0], first.weight.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(fast_grads[1], first.bias.grad, rtol=1e-4, atol=1e-4)
