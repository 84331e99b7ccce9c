"""RSSM world model in the style of DreamerV3: a GRU deterministic state h and a discrete stochastic
state z of `stoch` categorical variables with `classes` classes each, sampled with straight-through
gradients.

Time convention: state s_t = (h_t, z_t) has seen observations up to t. Action a_t moves it to
s_{t+1}: h_{t+1} = GRU([z_t, a_t], h_t); the prior p(z_{t+1} | h_{t+1}) predicts the next latent
and the posterior q(z_{t+1} | h_{t+1}, e_{t+1}) reads the next observation's embedding.

Losses: KL balancing with free bits (dyn 0.5 trains the prior towards the stopped posterior, rep 0.1
the posterior towards the stopped prior, each clipped below at `free_bits` nats), the embedding
decoder (MSE to the stopped observation embedding) and the success head (BCE on the reward that
arrives on entering the state).
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn


class State(NamedTuple):
    h: torch.Tensor  # [B, deter]
    z: torch.Tensor  # [B, stoch * classes], one-hot per variable (straight-through)


def categorical_kl(p_logits: torch.Tensor, q_logits: torch.Tensor) -> torch.Tensor:
    """KL(p || q) of factorised categoricals, logits [..., stoch, classes] -> [...] (summed over
    the variables, in nats)."""
    p_log = F.log_softmax(p_logits, dim=-1)
    q_log = F.log_softmax(q_logits, dim=-1)
    return (p_log.exp() * (p_log - q_log)).sum(dim=(-1, -2))


def kl_balance(post_logits: torch.Tensor, prior_logits: torch.Tensor, dyn_scale: float = 0.5,
               rep_scale: float = 0.1, free_bits: float = 1.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """-> (loss, dyn KL, rep KL), each averaged over batch and time. Free bits clip each KL below at
    `free_bits` nats so the model stops squeezing a latent that is already nearly as cheap as it gets."""
    dyn = categorical_kl(post_logits.detach(), prior_logits)
    rep = categorical_kl(post_logits, prior_logits.detach())
    loss = dyn_scale * dyn.clamp(min=free_bits).mean() + rep_scale * rep.clamp(min=free_bits).mean()
    return loss, dyn.mean(), rep.mean()


class RSSM(nn.Module):
    def __init__(self, embed_dim: int, action_dim: int, deter: int = 256, stoch: int = 32, classes: int = 32,
                 hidden: int = 256, unimix: float = 0.01):
        super().__init__()
        self.embed_dim, self.action_dim = embed_dim, action_dim
        self.deter, self.stoch, self.classes, self.unimix = deter, stoch, classes, unimix
        z_dim = stoch * classes
        self.img_in = nn.Sequential(nn.Linear(z_dim + action_dim, hidden), nn.LayerNorm(hidden), nn.SiLU())
        self.gru = nn.GRUCell(hidden, deter)
        self.prior_net = nn.Sequential(nn.Linear(deter, hidden), nn.LayerNorm(hidden), nn.SiLU(),
                                       nn.Linear(hidden, z_dim))
        self.post_net = nn.Sequential(nn.Linear(deter + embed_dim, hidden), nn.LayerNorm(hidden), nn.SiLU(),
                                      nn.Linear(hidden, z_dim))
        self.decoder = nn.Sequential(nn.Linear(self.feature_dim, hidden), nn.SiLU(), nn.Linear(hidden, embed_dim))
        self.success_head = nn.Sequential(nn.Linear(self.feature_dim, hidden), nn.SiLU(), nn.Linear(hidden, 1))

    @property
    def feature_dim(self) -> int:
        return self.deter + self.stoch * self.classes

    # ---- pieces --------------------------------------------------------------------------------
    def initial(self, batch: int, device: torch.device | str | None = None) -> State:
        return State(torch.zeros(batch, self.deter, device=device),
                     torch.zeros(batch, self.stoch * self.classes, device=device))

    def _logits(self, net: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """Logits with `unimix` of a uniform mixed into the probabilities (no class becomes impossible,
        so KL stays finite)."""
        logits = net(x).view(*x.shape[:-1], self.stoch, self.classes)
        if self.unimix > 0:
            probs = (1 - self.unimix) * logits.softmax(-1) + self.unimix / self.classes
            logits = probs.log()
        return logits

    def _sample(self, logits: torch.Tensor, sample: bool = True, uniform: torch.Tensor | None = None) -> torch.Tensor:
        """One-hot draw (or the mode) with straight-through gradients -> [B, stoch * classes]. With
        `uniform` ([B, stoch, classes] in (0, 1)) the draw is the Gumbel-max of that noise: the same
        distribution, from noise the caller chose (planners give every candidate the same futures)."""
        probs = logits.softmax(-1)
        if uniform is not None:
            gumbel = -torch.log(-torch.log(uniform.clamp(1e-12, 1 - 1e-7)))
            idx = (logits + gumbel).argmax(-1)
        elif sample:
            idx = torch.distributions.Categorical(logits=logits).sample()
        else:
            idx = probs.argmax(-1)
        one_hot = F.one_hot(idx, self.classes).to(probs.dtype)
        return (one_hot + probs - probs.detach()).flatten(-2)

    def feature(self, state: State) -> torch.Tensor:
        return torch.cat([state.h, state.z], dim=-1)

    def img_step(self, state: State, action: torch.Tensor, sample: bool = True,
                 uniform: torch.Tensor | None = None) -> tuple[State, torch.Tensor]:
        """Prior step: (s_t, a_t) -> (s_{t+1} with z from the prior, prior logits); `uniform`: see _sample."""
        h = self.gru(self.img_in(torch.cat([state.z, action], dim=-1)), state.h)
        logits = self._logits(self.prior_net, h)
        return State(h, self._sample(logits, sample, uniform)), logits

    def posterior(self, h: torch.Tensor, embed: torch.Tensor, sample: bool = True) -> tuple[State, torch.Tensor]:
        logits = self._logits(self.post_net, torch.cat([h, embed], dim=-1))
        return State(h, self._sample(logits, sample)), logits

    # ---- sequences -----------------------------------------------------------------------------
    def observe(self, embeds: torch.Tensor, actions: torch.Tensor, sample: bool = True) -> dict[str, torch.Tensor]:
        """Filter a sequence: embeds [B, T, E], actions [B, T, A] (a_t taken after e_t).
        -> features [B, T, F] and post/prior logits [B, T, S, C]; the prior at t=0 is one step from
        the zero state with a zero action (a window may start mid-episode), so every position has a
        KL term."""
        b, t_len, _ = embeds.shape
        if actions.shape[:2] != (b, t_len):
            raise ValueError(f"embeds {tuple(embeds.shape)} and actions {tuple(actions.shape)} must share [B, T]")
        state = self.initial(b, embeds.device)
        no_action = torch.zeros(b, self.action_dim, device=embeds.device)
        feats, posts, priors = [], [], []
        for t in range(t_len):
            predicted, prior = self.img_step(state, no_action if t == 0 else actions[:, t - 1], sample)
            state, post = self.posterior(predicted.h, embeds[:, t], sample)
            feats.append(self.feature(state))
            posts.append(post)
            priors.append(prior)
        return {"features": torch.stack(feats, 1), "post_logits": torch.stack(posts, 1),
                "prior_logits": torch.stack(priors, 1), "last": state}

    @torch.no_grad()
    def imagine(self, state: State, actions: torch.Tensor, sample: bool = False,
                uniform: torch.Tensor | None = None) -> torch.Tensor:
        """Roll the prior forward under actions [B, H, A] -> features of s_{t+1..t+H} [B, H, F]; the
        prior's mode at every step, a draw with `sample`, or the draws of `uniform` [H, B, stoch, classes]."""
        feats = []
        for k in range(actions.shape[1]):
            state, _ = self.img_step(state, actions[:, k], sample, None if uniform is None else uniform[k])
            feats.append(self.feature(state))
        return torch.stack(feats, 1)

    def loss(self, embeds: torch.Tensor, actions: torch.Tensor, success: torch.Tensor, dyn_scale: float = 0.5,
             rep_scale: float = 0.1, free_bits: float = 1.0) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict]:
        """success [B, T]: 1 where action a_t completed the task (the reward arrived on entering
        s_{t+1}). -> (loss, outputs of observe, metrics). The success head reads the state each action
        led to: the posterior s_{t+1} inside the window and, for the window's last action, the prior
        one step past its end. An episode ends on its success, so the state a success led to is never
        observed: labels of the observed states alone would all be 0 and the head would learn
        "never". The planners read it on imagined (prior) states, as the last step trains it.
        The embedding target is stopped: the encoder is shaped by the policy and the KL, the decoder
        only has to follow it."""
        out = self.observe(embeds, actions)
        kl_loss, dyn, rep = kl_balance(out["post_logits"], out["prior_logits"], dyn_scale, rep_scale, free_bits)
        recon = F.mse_loss(self.decoder(out["features"]), embeds.detach())
        after_last, _ = self.img_step(out["last"], actions[:, -1])
        led_to = torch.cat([out["features"][:, 1:], self.feature(after_last)[:, None]], dim=1)
        out["led_to"] = led_to   # heads of per-action events (a collision) read the same states
        success_logit = self.success_head(led_to).squeeze(-1)
        success_loss = F.binary_cross_entropy_with_logits(success_logit, success.float())
        loss = kl_loss + recon + success_loss
        metrics = {"wm/kl_dyn": float(dyn.detach()), "wm/kl_rep": float(rep.detach()), "wm/embed_recon": float(recon.detach()),
                   "wm/success_bce": float(success_loss.detach()), "wm/loss": float(loss.detach())}
        return loss, out, metrics

    @torch.no_grad()
    def one_step_cosine(self, embeds: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Cosine similarity between the prior's prediction of z_{t+1} (from the posterior s_t and
        a_t) and the posterior that encodes observation t+1, as probability vectors -> [B, T-1]."""
        out = self.observe(embeds, actions, sample=False)
        prior = out["prior_logits"][:, 1:].softmax(-1).flatten(-2)
        post = out["post_logits"][:, 1:].softmax(-1).flatten(-2)
        return F.cosine_similarity(prior, post, dim=-1)
