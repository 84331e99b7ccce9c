"""C: one linear layer on [z_t, h_t] -> 3 actions. (32 + 256) * 3 + 3 = 867 parameters."""
from __future__ import annotations

import torch
from torch import nn


def squash_actions(raw: torch.Tensor) -> torch.Tensor:
    """tanh outputs in [-1, 1] -> [steer in [-1, 1], throttle in [0, 1], brake in [0, 1]].

    As in Ha & Schmidhuber's CarRacing controller: throttle = (x + 1) / 2, brake = clip(x, 0, 1),
    so half of the brake range means "no brake" and a zero-initialised controller does not brake.
    """
    return torch.cat([raw[..., 0:1], (raw[..., 1:2] + 1.0) / 2.0, raw[..., 2:3].clamp(min=0.0)], dim=-1)


class Controller(nn.Module):
    def __init__(self, latent_dim: int = 32, hidden_dim: int = 256, action_dim: int = 3):
        super().__init__()
        self.latent_dim, self.hidden_dim, self.action_dim = latent_dim, hidden_dim, action_dim
        self.fc = nn.Linear(latent_dim + hidden_dim, action_dim)

    @property
    def n_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(self, z: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """z [B, Z], h [B, H] -> actions [B, 3] in the env's ranges."""
        return squash_actions(torch.tanh(self.fc(torch.cat([z, h], dim=-1))))

    @torch.no_grad()
    def act(self, z: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return self.forward(z, h)

    def get_flat(self) -> torch.Tensor:
        """All parameters as one vector (weight row-major, then bias), the CMA-ES genome."""
        return torch.cat([self.fc.weight.detach().flatten(), self.fc.bias.detach()])

    def set_flat(self, flat: torch.Tensor) -> None:
        if flat.numel() != self.n_params:
            raise ValueError(f"controller genome must have {self.n_params} values, got {flat.numel()}")
        n_w = self.fc.weight.numel()
        with torch.no_grad():
            self.fc.weight.copy_(flat[:n_w].view_as(self.fc.weight))
            self.fc.bias.copy_(flat[n_w:])

