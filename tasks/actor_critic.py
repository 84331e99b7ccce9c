"""train_actor_critic: carracing-vmc's linear controller trained in M's dream by actor-critic
(DreamerV3-style, models/imagination.py), as a second way next to CMA-ES on the same M.

The dream is a batch of `batch` rows that persists across updates, like vectorised environments:
each update rolls every row `horizon` steps under the Gaussian actor (M samples the next latent at
the CMA-ES temperature, the reward head pays, the done head ends a row by a Bernoulli draw as in
CMA-ES's `sampled` dreams), then fits the critic to the lambda-returns (bootstrapped at the
horizon) and the actor by REINFORCE on the normalised advantages with an entropy bonus. A row
restarts from a real start state (dream_start_states) when it ended or has dreamed `dream_steps`
steps. No gradient flows through M: it is the environment. The controller shipped is the actor's
mean, the same 867-parameter Controller CMA-ES evolves, so the bundle, the export and the gates
are unchanged.
"""
from __future__ import annotations

import dataclasses

import torch

from dreamops.models.controller import Controller, squash_actions
from dreamops.models.imagination import Critic, GaussianActor, ReturnNormalizer, lambda_returns, symlog
from dreamops.models.mdnrnn import MDNRNN, sample_mixture
from dreamops.tasks.common import MetricSink, no_metrics, progress, seed_everything
from dreamops.tasks.config import ActorCriticConfig, CMAConfig
from dreamops.tasks.device import adam
from dreamops.tasks.evolve import checkpoint_generations, dream_fitness


class _Dream:
    """`rows` dreams in M, restarted from real start states when they end or reach `max_steps`."""

    def __init__(self, mdnrnn: MDNRNN, starts: dict[str, torch.Tensor], rows: int, max_steps: int,
                 temperature: float, gen: torch.Generator):
        self.m, self.starts, self.max_steps, self.temperature, self.gen = mdnrnn, starts, max_steps, temperature, gen
        self.z = torch.zeros(rows, mdnrnn.latent_dim)
        self.h = torch.zeros(rows, mdnrnn.hidden_dim)
        self.c = torch.zeros(rows, mdnrnn.hidden_dim)
        self.t = torch.full((rows,), max_steps)   # every row starts on the first restart
        self.alive = torch.zeros(rows, dtype=torch.bool)

    def restart_finished(self) -> None:
        again = ~self.alive | (self.t >= self.max_steps)
        if again.any():
            idx = torch.randint(0, self.starts["z0"].shape[0], (int(again.sum()),), generator=self.gen)
            self.z[again], self.h[again], self.c[again] = (self.starts[k][idx] for k in ("z0", "h0", "c0"))
            self.t[again], self.alive[again] = 0, True

    def state(self) -> torch.Tensor:
        return torch.cat([self.z, self.h], dim=-1)

    @torch.no_grad()
    def step(self, raw_action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """raw_action [rows, 3] in [-1, 1] (before the controller's squash) -> (reward, done) [rows];
        a row that has ended gets 0 and stays ended."""
        from dreamops.models.mdnrnn import lstm_step

        lstm = self.m.lstm
        a = squash_actions(raw_action)
        h, c = lstm_step(torch.cat([self.z, a], dim=-1), self.h, self.c, lstm.weight_ih_l0, lstm.weight_hh_l0,
                         lstm.bias_ih_l0, lstm.bias_hh_l0)
        logit_pi, mu, log_sigma, reward, done_logit = self.m.heads(h)
        z = sample_mixture(logit_pi, mu, log_sigma, self.temperature, torch.rand(self.z.shape, generator=self.gen),
                           torch.randn(self.z.shape, generator=self.gen))
        done = torch.rand(len(z), generator=self.gen) < torch.sigmoid(done_logit)
        was = self.alive.clone()
        reward = torch.where(was, reward, torch.zeros_like(reward))
        self.z, self.h, self.c = z, h, c
        self.t += was.long()
        self.alive &= ~done
        return reward, (done | ~was).float()


def train_actor_critic(mdnrnn: MDNRNN, starts: dict[str, torch.Tensor], cfg: ActorCriticConfig, cma: CMAConfig,
                       seed: int = 0, log: MetricSink = no_metrics, show_progress: bool = True,
                       init: Controller | None = None) -> tuple[Controller, dict[str, list[float]]]:
    """-> (the actor's mean after the last update as a Controller, history); see actor_critic_checkpoints."""
    controllers, history = actor_critic_checkpoints(mdnrnn, starts, cfg, dataclasses.replace(cma, checkpoints=1),
                                                    seed, log, show_progress, init)
    return controllers[-1], history


def actor_critic_checkpoints(mdnrnn: MDNRNN, starts: dict[str, torch.Tensor], cfg: ActorCriticConfig,
                             cma: CMAConfig, seed: int = 0, log: MetricSink = no_metrics, show_progress: bool = True,
                             init: Controller | None = None) -> tuple[list[Controller], dict[str, list[float]]]:
    """-> (the actor's mean kept at `cma.checkpoints` evenly spaced updates, the last after the final
    one, as Controllers; history), as evolve_checkpoints keeps CMA-ES's mean, so that the flow's
    validation episodes choose among them and become as much data with either trainer
    (`checkpoint_generation` holds the updates). The dream uses CMA-ES's settings (temperature,
    dream_steps) so that both trainers face the same dream; each checkpoint's dream return is measured
    by dream_fitness with CMA-ES's final draw (the same seed and rollouts as evolve_checkpoints), so the
    two compare like for like. On the CPU (the dream here is small batches of a 256-unit LSTM)."""
    seed_everything(seed)
    mdnrnn = mdnrnn.eval()
    trainable = [p.requires_grad for p in mdnrnn.parameters()]
    for p in mdnrnn.parameters():   # M is the environment: no gradient reaches it
        p.requires_grad_(False)
    try:
        return _train(mdnrnn, starts, cfg, cma, seed, log, show_progress, init)
    finally:
        for p, flag in zip(mdnrnn.parameters(), trainable):
            p.requires_grad_(flag)


def _train(mdnrnn: MDNRNN, starts: dict[str, torch.Tensor], cfg: ActorCriticConfig, cma: CMAConfig, seed: int,
           log: MetricSink, show_progress: bool, init: Controller | None) -> tuple[Controller, dict[str, list[float]]]:
    controller = Controller(mdnrnn.latent_dim, mdnrnn.hidden_dim)
    if init is not None:
        controller.load_state_dict(init.state_dict())
    else:
        torch.nn.init.zeros_(controller.fc.weight)   # as CMA-ES's x0: the zero controller
        torch.nn.init.zeros_(controller.fc.bias)
    actor = GaussianActor(controller.fc, 3, cfg.init_std, cfg.min_std, cfg.max_std)
    critic = Critic(mdnrnn.latent_dim + mdnrnn.hidden_dim, cfg.critic_hidden)
    actor_opt = adam(actor.parameters(), lr=cfg.actor_lr, eps=1e-5)
    critic_opt = adam(critic.parameters(), lr=cfg.critic_lr, eps=1e-5)
    gen = torch.Generator().manual_seed(seed + 31_337)
    dream = _Dream(mdnrnn, starts, cfg.batch, cma.dream_steps, cma.temperature, gen)
    norm = ReturnNormalizer()
    keep = checkpoint_generations(cfg.updates, cma.checkpoints, warm=init is not None)
    kept: list[Controller] = [_controller_from(actor, mdnrnn)] if keep[0] == 0 else []
    history: dict[str, list[float]] = {"dream_reward_per_step": [], "return_scale": [], "actor_std": [],
                                       "critic_loss": [], "entropy": []}
    warmup = cfg.round_critic_warmup if init is not None else 0
    with progress(show_progress) as bar:
        if warmup:   # a warm round's critic is new: fit it to the start controller before the actor moves
            task = bar.add_task("fit the critic to the start controller", total=warmup, status="")
            for _ in range(warmup):
                batch = _rollout(dream, actor, cfg, gen)
                _critic_step(critic, critic_opt, norm, batch, cfg)
                bar.update(task, advance=1)
        task = bar.add_task("train C in the dream (actor-critic)", total=cfg.updates, status="")
        for update in range(cfg.updates):
            batch = _rollout(dream, actor, cfg, gen)
            s, u, r, live = batch["states"], batch["actions"], batch["rewards"], batch["live"]
            adv, scale, critic_loss, weight = _critic_step(critic, critic_opt, norm, batch, cfg)
            logp, ent = actor.log_prob_and_entropy(s[:, :-1], u)
            actor_loss = -(weight * (logp * adv + cfg.entropy * ent)).sum()
            actor_opt.zero_grad(set_to_none=True)
            actor_loss.backward()
            torch.nn.utils.clip_grad_norm_(actor.parameters(), cfg.grad_clip)
            actor_opt.step()
            stats = {"ac/dream_reward_per_step": float((r * live).sum() / live.sum().clamp(min=1)),
                     "ac/return_scale": scale, "ac/actor_std": float(actor.std().mean().detach()),
                     "ac/critic_loss": critic_loss, "ac/entropy": float((ent * weight).sum().detach())}
            for key in history:
                history[key].append(stats[f"ac/{key}"])
            if (update + 1) % cfg.log_every == 0 or update + 1 == cfg.updates:
                log(stats, update + 1)
            if update + 1 in keep:
                kept.append(_controller_from(actor, mdnrnn))
            bar.update(task, advance=1, status=f"reward/step {stats['ac/dream_reward_per_step']:.2f}")
    genomes = torch.stack([c.get_flat() for c in kept])
    returns = dream_fitness(mdnrnn, genomes, starts, max(cma.rollouts, 16), cma.dream_steps, cma.temperature,
                            cma.seed + 7, cma.dream_dropout, cma.done_mode).tolist()
    history["checkpoint_generation"] = [float(u) for u in keep]   # the flow's checkpoint keys: updates here
    history["checkpoint_dream_return"] = returns
    history["final_dream_return"] = [returns[-1]]
    log({"ac/final_dream_return": returns[-1]}, cfg.updates)
    return kept, history


def _rollout(dream: _Dream, actor: GaussianActor, cfg: ActorCriticConfig,
             gen: torch.Generator) -> dict[str, torch.Tensor]:
    """Every dream row `cfg.horizon` steps under the sampling actor -> states [B, H + 1, F], actions
    [B, H, 3], rewards, continues and live (the row had not ended before the step) [B, H]."""
    dream.restart_finished()
    states, us, rewards, ended, alive0 = [dream.state()], [], [], [], []
    with torch.no_grad():
        for _ in range(cfg.horizon):
            alive0.append(dream.alive.float())
            u = actor.sample(states[-1], torch.randn(cfg.batch, 3, generator=gen))
            r, d = dream.step(u.clamp(-1, 1))
            us.append(u)
            rewards.append(r)
            ended.append(d)
            states.append(dream.state())
    return {"states": torch.stack(states, 1), "actions": torch.stack(us, 1), "rewards": torch.stack(rewards, 1),
            "continues": 1 - torch.stack(ended, 1), "live": torch.stack(alive0, 1)}


def _critic_step(critic: Critic, opt: torch.optim.Optimizer, norm: ReturnNormalizer, batch: dict[str, torch.Tensor],
                 cfg: ActorCriticConfig) -> tuple[torch.Tensor, float, float, torch.Tensor]:
    """One critic update on the batch's lambda-returns (the return scale updated with them) ->
    (normalised advantages [B, H], the return scale, the critic's loss, each step's weight [B, H])."""
    s, r, cont, live = batch["states"], batch["rewards"], batch["continues"], batch["live"]
    with torch.no_grad():
        values = critic(s)                                      # [B, H + 1]
        ret = lambda_returns(r, values, cont, cfg.discount, cfg.lam)
        scale = norm.update(ret[live > 0] if live.any() else ret)
        adv = (ret - values[:, :-1]) / scale
    weight = live / live.sum().clamp(min=1)
    loss = (weight * (critic.symlog_value(s[:, :-1]) - symlog(ret)).pow(2)).sum()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(critic.parameters(), cfg.grad_clip)
    opt.step()
    return adv, scale, float(loss.detach()), weight


def _controller_from(actor: GaussianActor, mdnrnn: MDNRNN) -> Controller:
    """A copy of the actor's mean as a Controller (the actor keeps training)."""
    controller = Controller(mdnrnn.latent_dim, mdnrnn.hidden_dim)
    controller.fc.load_state_dict(actor.mean_net.state_dict())
    return controller

