"""bench/bench_vae_decoder.py: its "before" arm is the code before, on the same weights."""
import torch

from dreamops.models.vae import VAE
from tests.bench import bench_module

bench = bench_module("bench_vae_decoder")


def test_the_before_arm_runs_the_transposed_convolution_and_the_arms_agree():
    torch.manual_seed(0)
    vae = VAE()
    calls = []
    vae.decoder[0].register_forward_hook(lambda *_: calls.append(1))
    z = torch.randn(3, 32)
    fast = vae.decode(z)
    assert calls == []                                   # this code: the first layer as a matmul
    before = bench.as_transposed_convolution(vae).decode(z)
    assert calls == [1]                                  # the code before: nn.ConvTranspose2d
    torch.testing.assert_close(before, fast, rtol=0, atol=1e-5)
