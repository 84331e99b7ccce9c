"""Fine-tune pick-vla's flow policy in its own world model (issue 16, item 3): actor-critic in
imagination, with the demonstrations' flow-matching loss as an anchor.

The policy is the flow head: from an observation's embedding it integrates one action chunk (from
the version's noise, zero at temperature 0). From each start (a labelled frame of the version's
data, embedded by its frozen encoder) the chunk is imagined in the frozen RSSM, and the heads
give each step's reward:

    r_k = (P(grasp)_k + success_weight * P(success)_k) / H - collision_weight * c_k * prod_{j<k} (1 - c_j)

(c_k: the collision head's chance at step k), so that the chunk's undiscounted sum is exactly the
planners' imagined score (models.planners.imagined_score): the same objective, learned once into the
policy instead of searched for at every decision. A critic on the RSSM's features bootstraps past
the chunk (DreamerV3's lambda-returns, percentile return scale, symlog critic; models.imagination).
The actor's gradient is the return's own, back through the RSSM's prior and the flow's Euler steps
(Dreamer's dynamics backpropagation for continuous actions; the chunk is a deterministic function of
the embedding and the noise). Only the head moves: the encoder, the world model and its heads stay the
version's, so the dream the policy is judged in does not move with it.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from dreamops.models.flow_head import euler_integrate, flow_matching_loss
from dreamops.models.imagination import Critic, ReturnNormalizer, lambda_returns, symlog
from dreamops.models.pick_vla import PickVLA, initial_state
from dreamops.models.rssm import State
from dreamops.tasks.common import MetricSink, no_metrics, progress, seed_everything
from dreamops.tasks.device import adam
from dreamops.tasks.train_pick import Demos


@dataclass(frozen=True)
class PickFinetuneConfig:
    steps: int = 300
    """Actor and critic updates."""
    batch_size: int = 32
    """Start states (labelled frames) per update."""
    lr: float = 3e-5
    """Adam learning rate of the flow head (the version trained at 1e-3, DAgger fine-tunes at 5e-4)."""
    critic_lr: float = 3e-4
    bc_weight: float = 1.0
    """Weight of the anchor to the expert's labelled chunks."""
    anchor: str = "flow"
    """"flow": the flow-matching loss on the labelled chunks (the version's own training loss);
    "chunk": the squared error between the chunk the policy executes and the labelled one (TD3+BC's
    behaviour term, Fujimoto & Gu 2021): it holds the executed actions, the gripper's sign included."""
    success_weight: float = 4.0
    collision_weight: float = 4.0
    """The reward's weights: the planners' defaults (models.planners.CEMPlanner)."""
    discount: float = 0.97
    lam: float = 0.95
    grad_clip: float = 1.0
    critic_hidden: int = 256
    seed: int = 0

    def __post_init__(self):
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError(f"steps and batch_size must be >= 1, got {self.steps}, {self.batch_size}")
        if self.bc_weight < 0 or self.lr <= 0 or self.critic_lr <= 0:
            raise ValueError("bc_weight must be >= 0 and the learning rates > 0")
        if self.anchor not in ("flow", "chunk"):
            raise ValueError(f"anchor must be 'flow' or 'chunk', got {self.anchor!r}")
        if not (0 < self.discount <= 1 and 0 <= self.lam <= 1):
            raise ValueError(f"need 0 < discount <= 1 and 0 <= lam <= 1, got {self.discount}, {self.lam}")


def chunk_rewards(model: PickVLA, feats: torch.Tensor, success_weight: float, collision_weight: float
                  ) -> torch.Tensor:
    """Imagined features [B, H, F] of a chunk's steps -> rewards [B, H] whose sum over the chunk is
    the planners' imagined score of it (see the module's docstring)."""
    horizon = feats.shape[1]
    grasp = torch.sigmoid(model.grasp_head(feats).squeeze(-1))
    success = torch.sigmoid(model.rssm.success_head(feats).squeeze(-1))
    reward = (grasp + success_weight * success) / horizon
    if model.collision_head is not None and collision_weight:
        hit = torch.sigmoid(model.collision_head(feats).squeeze(-1))
        clear_before = torch.cumprod(torch.cat([torch.ones_like(hit[:, :1]), 1.0 - hit[:, :-1]], dim=1), dim=1)
        reward = reward - collision_weight * hit * clear_before   # sums to P(a collision in any step)
    return reward


def imagine_differentiably(model: PickVLA, state: State, chunks: torch.Tensor) -> torch.Tensor:
    """RSSM.imagine (the prior's mode) with gradients to the actions: [B, H, A] -> features [B, H, F]."""
    feats = []
    for k in range(chunks.shape[1]):
        state, _ = model.rssm.img_step(state, chunks[:, k], sample=False)
        feats.append(model.rssm.feature(state))
    return torch.stack(feats, 1)


def policy_chunks(model: PickVLA, cond: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """The chunks the policy executes (PickVLA.sample_chunks), differentiable in the head's weights."""
    return euler_integrate(model.head.velocity, noise, cond, model.head.steps).clamp(-1.0, 1.0)


def labelled_frames(demos: Demos) -> np.ndarray:
    """(episode, step) of every frame with a chunk label: the starts and the anchor's targets."""
    return np.array([(e, t) for e in range(len(demos)) for t in np.flatnonzero(demos.labelled[e])])


def finetune_pick_policy(model: PickVLA, embeds: list[torch.Tensor], demos: Demos, cfg: PickFinetuneConfig,
                         log: MetricSink = no_metrics, show_progress: bool = True) -> tuple[PickVLA, dict[str, float]]:
    """-> (a copy of `model` with its flow head fine-tuned, report). embeds: the version's embedding
    of every frame of `demos` (tasks.pick_ensemble.embed_demos). The report gives the imagined score
    of the policy's chunks from the same 256 starts before and after, and the anchor's loss."""
    seed_everything(cfg.seed)
    tuned = copy.deepcopy(model).eval()
    for p in tuned.parameters():
        p.requires_grad_(False)
    for p in tuned.head.parameters():
        p.requires_grad_(True)
    critic = Critic(tuned.rssm.feature_dim, cfg.critic_hidden)
    actor_opt = adam(tuned.head.parameters(), lr=cfg.lr, eps=1e-5)
    critic_opt = adam(critic.parameters(), lr=cfg.critic_lr, eps=1e-5)
    frames = labelled_frames(demos)
    if not len(frames):
        raise ValueError("no labelled frame to start from")
    rng = np.random.default_rng(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    norm = ReturnNormalizer()
    temperature = model.arch.temperature
    shape = (model.arch.horizon, model.arch.action_dim)

    def batch(idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        cond = torch.stack([embeds[e][t] for e, t in idx])
        return cond, torch.stack([demos.chunks[e][t] for e, t in idx])

    probe = batch(frames[rng.choice(len(frames), size=min(256, len(frames)), replace=False)])
    before = imagined_policy_score(tuned, probe[0], cfg), anchor_loss(tuned, *probe, cfg.anchor)
    with progress(show_progress) as bar:
        task = bar.add_task("fine-tune pick-vla's policy in its world model", total=cfg.steps, status="")
        for step in range(cfg.steps):
            cond, labels = batch(frames[rng.integers(len(frames), size=cfg.batch_size)])
            with torch.no_grad():
                start = initial_state(tuned, cond)
            noise = torch.randn(cfg.batch_size, *shape, generator=gen) * temperature
            chunks = policy_chunks(tuned, cond, noise)
            feats = imagine_differentiably(tuned, start, chunks)
            states = torch.cat([tuned.rssm.feature(start)[:, None], feats], dim=1)            # [B, H + 1, F]
            rewards = chunk_rewards(tuned, feats, cfg.success_weight, cfg.collision_weight)
            returns = lambda_returns(rewards, critic(states), torch.ones_like(rewards), cfg.discount, cfg.lam)
            scale = norm.update(returns)
            if cfg.anchor == "chunk":
                anchor = F.mse_loss(chunks, labels)
            else:
                anchor = flow_matching_loss(tuned.head.velocity, labels, cond,
                                            torch.randn(labels.shape, generator=gen), torch.rand(cfg.batch_size, generator=gen))
            actor_loss = -returns[:, 0].mean() / scale + cfg.bc_weight * anchor
            actor_opt.zero_grad(set_to_none=True)
            actor_loss.backward()
            torch.nn.utils.clip_grad_norm_(tuned.head.parameters(), cfg.grad_clip)
            actor_opt.step()
            critic_loss = F.mse_loss(critic.symlog_value(states[:, :-1].detach()), symlog(returns.detach()))
            critic_opt.zero_grad(set_to_none=True)   # also drops what the actor's loss left in the critic
            critic_loss.backward()
            torch.nn.utils.clip_grad_norm_(critic.parameters(), cfg.grad_clip)
            critic_opt.step()
            stats = {"finetune/imagined_return": float(rewards.sum(1).mean().detach()),
                     "finetune/anchor": float(anchor.detach()), "finetune/critic_loss": float(critic_loss.detach()),
                     "finetune/return_scale": scale}
            if (step + 1) % 25 == 0 or step + 1 == cfg.steps:
                log(stats, step + 1)
            bar.update(task, advance=1, status=f"imagined {stats['finetune/imagined_return']:.3f}")
    for p in tuned.head.parameters():
        p.requires_grad_(False)
    report = {"finetune/imagined_before": before[0], "finetune/imagined_after": imagined_policy_score(tuned, probe[0], cfg),
              "finetune/anchor_before": before[1], "finetune/anchor_after": anchor_loss(tuned, *probe, cfg.anchor),
              "finetune/starts": float(len(frames))}
    log(report, cfg.steps)
    return tuned, report


@torch.no_grad()
def anchor_loss(model: PickVLA, cond: torch.Tensor, labels: torch.Tensor, anchor: str = "flow") -> float:
    """The anchor on labelled chunks, comparable before and after: the flow-matching loss at fixed
    noise and t = 0.5, or the squared error of the executed chunk (temperature 0)."""
    if anchor == "chunk":
        return float(F.mse_loss(policy_chunks(model, cond, torch.zeros_like(labels)), labels))
    noise = torch.randn(labels.shape, generator=torch.Generator().manual_seed(1))
    return float(flow_matching_loss(model.head.velocity, labels, cond, noise, torch.full((len(labels),), 0.5)))


@torch.no_grad()
def imagined_policy_score(model: PickVLA, cond: torch.Tensor, cfg: PickFinetuneConfig) -> float:
    """Mean over starts of the planners' imagined score of the policy's chunk at temperature 0."""
    noise = torch.zeros(len(cond), model.arch.horizon, model.arch.action_dim)
    feats = imagine_differentiably(model, initial_state(model, cond), policy_chunks(model, cond, noise))
    return float(chunk_rewards(model, feats, cfg.success_weight, cfg.collision_weight).sum(1).mean())
