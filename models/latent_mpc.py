"""Model-predictive control in M's latent space for carracing-vmc (World Models' "latent-space MPC").

At each decision the policy searches action sequences of `horizon` steps from M's current memory
and the frame's latent: every candidate is imagined in M over `futures` sampled futures (the
mixture at `temperature`), scored by the reward head's expected return (each step weighted by the
chance no done came before), and the first action of the best is executed. The score over futures is
their mean (risk-neutral) or their CVaR at `alpha` (risk-sensitive: judged by its worst futures).
The search (models.trajectory_opt: CEM or MPPI) starts from the linear controller's own plan, rolled
in M under mean predictions, or from the previous plan shifted by one step, whichever scores
better: the controller is the proposal and the planner refines it; every candidate of a decision
meets the same sampled futures, and the plan chosen never scores below the proposal on them.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from dreamops.models.controller import Controller, squash_actions
from dreamops.models.mdnrnn import MDNRNN, LSTMState, sample_mixture
from dreamops.models.trajectory_opt import CEM, MPPI, cvar


@dataclass
class LatentMPC:
    optimiser: CEM | MPPI
    horizon: int = 10
    futures: int = 2
    temperature: float = 1.0
    alpha: float = 1.0
    """CVaR level over the futures: 1 = their mean (risk-neutral)."""
    discount: float = 0.99
    init_std: float = 0.3
    seed: int = 0

    def __post_init__(self):
        if self.horizon < 1 or self.futures < 1 or not 0 < self.alpha <= 1:
            raise ValueError(f"need horizon >= 1, futures >= 1 and 0 < alpha <= 1, got {self}")
        self.generator = torch.Generator().manual_seed(self.seed)
        self._noise: tuple[torch.Tensor, torch.Tensor] | None = None

    def reseed(self, seed: int) -> None:
        """Each episode's draws from its own seed (the policy calls this on reset)."""
        self.generator.manual_seed(self.seed * 1_000_003 + seed)

    def __getstate__(self) -> dict:   # a torch.Generator does not pickle: workers make their own
        return {k: v for k, v in self.__dict__.items() if k not in ("generator", "_noise")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.__post_init__()

    def draw_futures(self, latent_dim: int, horizon: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The futures' noise [H, F, Z] (mixture component picks, offsets): one draw per decision,
        shared by every candidate, so that candidates differ by their actions, not their luck."""
        return (torch.rand(horizon, self.futures, latent_dim, generator=self.generator),
                torch.randn(horizon, self.futures, latent_dim, generator=self.generator))

    @torch.no_grad()
    def score(self, mdnrnn: MDNRNN, z: torch.Tensor, state: LSTMState, plans: torch.Tensor) -> torch.Tensor:
        """plans [K, H, 3] raw actions in [-1, 1] from latent z [1, Z] and memory state -> [K]."""
        k, f = plans.shape[0], self.futures
        rows = k * f
        u_all, eps_all = self._noise if self._noise is not None else self.draw_futures(z.shape[1], plans.shape[1])
        zt = z.expand(rows, -1)
        h, c = (s.expand(rows, -1) for s in state)
        alive = torch.ones(rows)
        total = torch.zeros(rows)
        actions = squash_actions(plans).repeat_interleave(f, dim=0)              # [K*F, H, 3]
        for t in range(plans.shape[1]):
            h, c = mdnrnn.step(zt, actions[:, t], (h, c))
            logit_pi, mu, log_sigma, reward, done_logit = mdnrnn.heads(h)
            total += (self.discount ** t) * alive * reward
            alive = alive * (1 - torch.sigmoid(done_logit))
            zt = sample_mixture(logit_pi, mu, log_sigma, self.temperature, u_all[t].repeat(k, 1), eps_all[t].repeat(k, 1))
        return cvar(total.view(k, f), self.alpha, dim=1)

    @torch.no_grad()
    def controller_plan(self, mdnrnn: MDNRNN, controller: Controller, z: torch.Tensor, state: LSTMState) -> torch.Tensor:
        """The controller's own next `horizon` raw actions, rolled in M under mean predictions [H, 3]."""
        out, h, c = [], *state
        for _ in range(self.horizon):
            raw = torch.tanh(controller.fc(torch.cat([z, h], dim=-1)))
            out.append(raw[0])
            h, c = mdnrnn.step(z, squash_actions(raw), (h, c))
            logit_pi, mu, _, _, _ = mdnrnn.heads(h)
            z = (torch.softmax(logit_pi, -1) * mu).sum(-1)
        return torch.stack(out)

    def plan(self, mdnrnn: MDNRNN, controller: Controller, z: torch.Tensor, state: LSTMState,
             previous: torch.Tensor | None) -> torch.Tensor:
        """-> the chosen plan [H, 3] (raw actions; its first is executed)."""
        self._noise = self.draw_futures(z.shape[1], self.horizon)
        proposal = self.controller_plan(mdnrnn, controller, z, state)
        starts = [proposal]
        if previous is not None:
            starts.append(torch.cat([previous[1:], previous[-1:]]))
        scores = self.score(mdnrnn, z, state, torch.stack(starts))
        mean = starts[int(scores.argmax())]
        std = torch.full_like(mean, self.init_std)
        best, _ = self.optimiser.optimise(lambda x: self.score(mdnrnn, z, state, x), mean, std, self.generator)
        return best
