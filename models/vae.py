"""V: convolutional VAE that compresses a 64x64 RGB frame into a 32-d latent.

Architecture follows Ha & Schmidhuber (2018) / seed 000 section 3.4:
encoder 4 conv (k4, s2) 3->32->64->128->256 (64->31->14->6->2 spatially), heads mu/logvar;
decoder linear -> 1024 (as 1024x1x1) -> transposed convs with kernels 5,5,6,6 stride 2.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn


def vae_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) per sample, summed over latent dims. [B, Z] -> [B]."""
    return -0.5 * torch.sum(1.0 + logvar - mu.pow(2) - logvar.exp(), dim=-1)


class VAE(nn.Module):
    def __init__(self, latent_dim: int = 32, beta: float = 1.0, kl_tolerance: float = 0.5):
        super().__init__()
        if latent_dim <= 0:
            raise ValueError(f"latent_dim must be positive, got {latent_dim}")
        self.latent_dim = latent_dim
        self.beta = beta
        # Free bits as in the paper's code: KL below tolerance * latent_dim nats is not penalised.
        self.kl_tolerance = kl_tolerance
        self.encoder = nn.Sequential(
            nn.Conv2d(3, 32, 4, stride=2), nn.ReLU(),
            nn.Conv2d(32, 64, 4, stride=2), nn.ReLU(),
            nn.Conv2d(64, 128, 4, stride=2), nn.ReLU(),
            nn.Conv2d(128, 256, 4, stride=2), nn.ReLU(),
            nn.Flatten(),
        )
        self.fc_mu = nn.Linear(1024, latent_dim)
        self.fc_logvar = nn.Linear(1024, latent_dim)
        self.fc_dec = nn.Linear(latent_dim, 1024)
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(1024, 128, 5, stride=2), nn.ReLU(),
            nn.ConvTranspose2d(128, 64, 5, stride=2), nn.ReLU(),
            nn.ConvTranspose2d(64, 32, 6, stride=2), nn.ReLU(),
            nn.ConvTranspose2d(32, 3, 6, stride=2), nn.Sigmoid(),
        )

    @staticmethod
    def to_input(frames: torch.Tensor) -> torch.Tensor:
        """uint8 [B, 64, 64, 3] -> float [B, 3, 64, 64] in [0, 1]."""
        if frames.dim() != 4 or tuple(frames.shape[1:]) != (64, 64, 3):
            raise ValueError(f"expected frames [B, 64, 64, 3], got {tuple(frames.shape)}")
        return frames.permute(0, 3, 1, 2).float().div(255.0)

    def encode_params(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x float [B, 3, 64, 64] -> (mu, logvar) each [B, Z]."""
        h = self.encoder(x)
        return self.fc_mu(h), self.fc_logvar(h)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z [B, Z] -> x_hat [B, 3, 64, 64].

        The first transposed convolution reads a 1x1 input, so it is a matrix product: [B, 1024] x
        its weight seen as [1024, 128 * 5 * 5], plus its bias per channel. Computed that way (same
        parameters, same state dict) it runs several times faster than oneDNN's transposed
        convolution on the CPU (bench/bench_vae_decoder.py); the outputs differ by float rounding
        only (tests/models/test_vae.py)."""
        first = self.decoder[0]
        h = self.fc_dec(z)
        x = (h @ first.weight.flatten(1)).view(-1, first.out_channels, *first.kernel_size)
        return self.decoder[1:](x + first.bias.view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """Training loss on x float [B, 3, 64, 64]: summed-pixel MSE + beta * max(KL, free bits).
        Under a bf16 autocast (training on CUDA) the convolutions and linear layers run in bf16; the
        latent sample and the loss are fp32 (.float() is a no-op without autocast)."""
        mu, logvar = self.encode_params(x)
        mu, logvar = mu.float(), logvar.float()
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        x_hat = self.decode(z).float()
        with torch.autocast(x.device.type, enabled=False):
            recon = F.mse_loss(x_hat, x, reduction="none").sum(dim=(1, 2, 3)).mean()
            kl = vae_kl(mu, logvar).mean()
            kl_floor = torch.tensor(self.kl_tolerance * self.latent_dim, dtype=kl.dtype, device=kl.device)
            loss = recon + self.beta * torch.maximum(kl, kl_floor)
        values = torch.stack([loss.detach(), recon.detach(), kl.detach()]).tolist()  # one device sync, not three
        return loss, dict(zip(("vae/loss", "vae/recon", "vae/kl"), values))

    @torch.no_grad()
    def encode(self, frames: torch.Tensor, sample: bool = False) -> torch.Tensor:
        """uint8 frames [B, 64, 64, 3] -> z [B, Z] (the mean unless sample=True)."""
        mu, logvar = self.encode_params(self.to_input(frames))
        if sample:
            return mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        return mu

    @torch.no_grad()
    def reconstruct(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 [B, 64, 64, 3] -> uint8 [B, 64, 64, 3] through the latent mean."""
        x_hat = self.decode(self.encode(frames))
        return (x_hat.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1)


def for_cpu_inference(vae: VAE) -> VAE:
    """A copy of V in eval mode with its weights in channels_last, for reading frames on the CPU.

    Frames arrive as [B, 64, 64, 3] and `to_input` only permutes them, so V's input is already
    channels_last; with the weights in the default layout oneDNN reorders every weight on every call
    (most of a batch-1 encode). Pre-laid-out weights skip that: 1.7 -> 1.2 ms per frame at batch 1 on
    one thread, 168 -> 127 ms per 512 frames on two. The computation is the same, so the latents are
    the same bits (tests/models/test_vae.py). Training keeps the default layout (there the
    channels_last step was slower and not bit-identical)."""
    return copy.deepcopy(vae).eval().to(memory_format=torch.channels_last)

