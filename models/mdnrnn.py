"""M: an LSTM over [z_t, a_t] with a mixture-density head for z_{t+1}, plus reward and done heads.

Per latent dimension the next value is a mixture of K Gaussians (Ha & Schmidhuber 2018).
The reward and done heads let the controller train entirely inside the dream.
"""
from __future__ import annotations

import contextlib
import functools
import math

import torch
import torch.nn.functional as F
from torch import nn

LOG_SIGMA_MIN = -7.0  # sigma >= ~1e-3: keeps the likelihood finite on near-deterministic dims
LOG_SIGMA_MAX = 3.0
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)

LSTMState = tuple[torch.Tensor, torch.Tensor]


def mdn_log_prob(logit_pi: torch.Tensor, mu: torch.Tensor, log_sigma: torch.Tensor,
                 target: torch.Tensor) -> torch.Tensor:
    """log p(target) under a per-dimension Gaussian mixture, computed in log space.

    logit_pi, mu, log_sigma: [..., Z, K]; target: [..., Z] -> log-prob [..., Z].
    """
    log_sigma = log_sigma.clamp(LOG_SIGMA_MIN, LOG_SIGMA_MAX)
    log_pi = F.log_softmax(logit_pi, dim=-1)
    t = target.unsqueeze(-1)
    log_normal = -0.5 * ((t - mu) * torch.exp(-log_sigma)).pow(2) - log_sigma - _HALF_LOG_2PI
    return torch.logsumexp(log_pi + log_normal, dim=-1)


def lstm_step(x: torch.Tensor, h: torch.Tensor, c: torch.Tensor, w_ih: torch.Tensor,
              w_hh: torch.Tensor, b_ih: torch.Tensor, b_hh: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One LSTM step with nn.LSTM's gate order (i, f, g, o). x [B, I], h/c [B, H]."""
    gates = F.linear(x, w_ih, b_ih) + F.linear(h, w_hh, b_hh)
    i, f, g, o = gates.chunk(4, dim=-1)
    c_next = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    h_next = torch.sigmoid(o) * torch.tanh(c_next)
    return h_next, c_next


def sample_mixture(logit_pi: torch.Tensor, mu: torch.Tensor, log_sigma: torch.Tensor, tau: float,
                   u: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """Sample z [B, Z] from the mixture [B, Z, K] at temperature tau, from given noise.

    u ~ U(0,1) [B, Z] picks the component (inverse CDF), eps ~ N(0,1) [B, Z] the offset, so
    callers control the randomness exactly (batched and looped dreams agree).
    """
    # unnormalised CDF of softmax(logit_pi / tau): no division, and no softmax kernel, which is
    # slow on a last dim of K=5
    x = logit_pi / tau
    cdf = torch.exp(x - x.amax(dim=-1, keepdim=True)).cumsum(dim=-1)
    k = (u.unsqueeze(-1) * cdf[..., -1:] > cdf).sum(dim=-1, keepdim=True).clamp(max=logit_pi.shape[-1] - 1)
    mu_k = mu.gather(-1, k).squeeze(-1)
    sigma_k = torch.exp(log_sigma.gather(-1, k).squeeze(-1).clamp(LOG_SIGMA_MIN, LOG_SIGMA_MAX))
    return mu_k + sigma_k * math.sqrt(tau) * eps


def _sequence_mask(x: torch.Tensor, p: float) -> torch.Tensor:
    """Inverted-dropout mask [B, 1, D] for x [B, T, D]: the same units dropped at every step."""
    return (torch.rand(x.shape[0], 1, x.shape[-1], dtype=x.dtype, device=x.device) >= p).to(x.dtype) / (1.0 - p)


@functools.cache   # asked at every training step; the answer is the machine's
def _bf16_lstm_supported(device_type: str) -> bool:
    """Whether nn.LSTM may run under a bf16 autocast on this device type: cuDNN can; oneDNN on a CPU
    without AVX-512 has no bf16 LSTM primitive and raises instead of falling back."""
    if device_type != "cpu":
        return True
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


class MDNRNN(nn.Module):
    def __init__(self, latent_dim: int = 32, action_dim: int = 3, hidden_dim: int = 256,
                 n_gaussians: int = 5, reward_weight: float = 1.0, done_weight: float = 1.0, dropout: float = 0.0):
        super().__init__()
        # variational dropout in training (one mask per sequence, fixed over time) on z entering the
        # LSTM and on h entering the heads; no parameters, so not in the state dict
        self.dropout = dropout
        self.latent_dim, self.action_dim = latent_dim, action_dim
        self.hidden_dim, self.n_gaussians = hidden_dim, n_gaussians
        self.reward_weight, self.done_weight = reward_weight, done_weight
        self.lstm = nn.LSTM(latent_dim + action_dim, hidden_dim, batch_first=True)
        self.mdn = nn.Linear(hidden_dim, 3 * latent_dim * n_gaussians)
        self.reward_head = nn.Linear(hidden_dim, 1)
        self.done_head = nn.Linear(hidden_dim, 1)

    def heads(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """h [..., H] -> logit_pi, mu, log_sigma [..., Z, K]; reward [...]; done logit [...]."""
        out = self.mdn(h).view(*h.shape[:-1], 3, self.latent_dim, self.n_gaussians)
        logit_pi, mu, log_sigma = out.unbind(dim=-3)
        return logit_pi, mu, log_sigma, self.reward_head(h).squeeze(-1), self.done_head(h).squeeze(-1)

    def forward(self, z: torch.Tensor, a: torch.Tensor, z_next: torch.Tensor, reward: torch.Tensor,
                done: torch.Tensor, mask: torch.Tensor | None = None, next_mask: torch.Tensor | None = None,
                state: LSTMState | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        """Loss on sequences: z, z_next [B, T, Z]; a [B, T, A]; reward, done, masks [B, T].

        NLL (summed over latent dims) is averaged over steps whose next latent exists (next_mask),
        reward MSE and done BCE over valid steps (mask). Both masks default to all ones.
        """
        terms = self.loss_terms(z, a, z_next, reward, done, mask, next_mask, state)
        nll, r_mse, d_bce = terms["nll_sum"] / terms["n_next"], terms["r_se_sum"] / terms["n_reward"], terms["d_ce_sum"] / terms["n"]
        loss = nll + self.reward_weight * r_mse + self.done_weight * d_bce
        return loss, {"mdn/loss": loss.item(), "mdn/nll": nll.item(), "mdn/reward_mse": r_mse.item(),
                      "mdn/done_bce": d_bce.item()}

    def loss_terms(self, z, a, z_next, reward, done, mask=None, next_mask=None, state=None, reward_mask=None) -> dict:
        """Summed loss terms and counts (for windowed training); 'state' is the LSTM state after.
        reward_mask (default: mask) selects the steps whose reward is learned. Under a bf16 autocast
        (training on CUDA) only the LSTM runs in bf16: the heads (mixture means and scales down to
        sigma ~1e-3 need fp32), the losses and the carried state are fp32. Where the backend has no
        bf16 LSTM (oneDNN on a CPU without AVX-512) the LSTM stays fp32 too."""
        if z.shape[-1] != self.latent_dim or a.shape[-1] != self.action_dim:
            raise ValueError(f"expected z [..., {self.latent_dim}] and a [..., {self.action_dim}], "
                             f"got {tuple(z.shape)} and {tuple(a.shape)}")
        if self.training and self.dropout > 0:
            z = z * _sequence_mask(z, self.dropout)
        # leaves an outer autocast as it is, except where the LSTM cannot run in bf16
        device_type = z.device.type
        keep = contextlib.nullcontext() if _bf16_lstm_supported(device_type) else \
            torch.autocast(device_type, enabled=False)
        with keep:
            h, new_state = self.lstm(torch.cat([z, a], dim=-1), state)
        with torch.autocast(device_type, enabled=False):  # .float() is a no-op in fp32
            h, new_state = h.float(), (new_state[0].float(), new_state[1].float())
            return self._loss_terms(h, new_state, z_next, reward, done, mask, next_mask, reward_mask)

    def _loss_terms(self, h, new_state, z_next, reward, done, mask, next_mask, reward_mask) -> dict:
        if self.training and self.dropout > 0:
            h = h * _sequence_mask(h, self.dropout)
        logit_pi, mu, log_sigma, r_hat, d_logit = self.heads(h)
        mask = torch.ones_like(reward) if mask is None else mask
        next_mask = mask if next_mask is None else next_mask
        reward_mask = mask if reward_mask is None else reward_mask
        return {
            "nll_sum": -(mdn_log_prob(logit_pi, mu, log_sigma, z_next).sum(-1) * next_mask).sum(),
            "r_se_sum": ((r_hat - reward).pow(2) * reward_mask).sum(),
            "d_ce_sum": (F.binary_cross_entropy_with_logits(d_logit, done, reduction="none") * mask).sum(),
            "n_next": next_mask.sum().clamp(min=1.0), "n": mask.sum().clamp(min=1.0),
            "n_reward": reward_mask.sum().clamp(min=1.0), "state": new_state,
        }

    def initial_state(self, batch: int, dtype: torch.dtype = torch.float32,
                      device: torch.device | str | None = None) -> LSTMState:
        zeros = torch.zeros(batch, self.hidden_dim, dtype=dtype, device=device)
        return zeros, zeros.clone()

    def step(self, z: torch.Tensor, a: torch.Tensor, state: LSTMState) -> LSTMState:
        """Advance memory one step: z [B, Z], a [B, A], (h, c) [B, H] -> (h', c')."""
        p = self.lstm
        return lstm_step(torch.cat([z, a], dim=-1), state[0], state[1],
                         p.weight_ih_l0, p.weight_hh_l0, p.bias_ih_l0, p.bias_hh_l0)
