"""train_mdnrnn: fit M on encoded episodes with truncated BPTT, then collect dream start states."""
from __future__ import annotations

import copy

import numpy as np
import torch

from dreamops.models.mdnrnn import MDNRNN
from dreamops.tasks.common import MetricSink, no_metrics, progress, seed_everything
from dreamops.tasks.config import MDNConfig
from dreamops.tasks.device import CPU, Compute, adam
from dreamops.tasks.encode import Latents

ZOOM_FRAMES = 50  # CarRacing zooms in over its first ~50 frames


def zoom_steps(action_repeat: int) -> int:
    """Agent steps that the start-of-episode zoom-in lasts."""
    return -(-ZOOM_FRAMES // action_repeat)


def _pad_batch(latents: Latents, ids: list[str], rng: np.random.Generator | None, skip_reward_steps: int = 0
               ) -> dict[str, torch.Tensor]:
    """Stack episodes into [B, T] arrays padded to the longest; z is sampled from (mu, logvar) when an
    rng is given (the paper's augmentation), else the mean. mask: valid transitions;
    next_mask: transitions whose next frame was recorded (all but an episode's last);
    reward_mask: valid transitions after the first skip_reward_steps."""
    t_max = max(len(latents[i]["mu"]) for i in ids)
    b, zdim = len(ids), latents[ids[0]]["mu"].shape[1]
    z = np.zeros((b, t_max + 1, zdim), np.float32)
    a = np.zeros((b, t_max, 3), np.float32)
    r, d, mask, next_mask, reward_mask = (np.zeros((b, t_max), np.float32) for _ in range(5))
    for j, eid in enumerate(ids):
        ep = latents[eid]
        n = len(ep["mu"])
        zj = ep["mu"] if rng is None else ep["mu"] + np.exp(0.5 * ep["logvar"]) * rng.standard_normal(ep["mu"].shape)
        z[j, :n] = zj
        a[j, :n], r[j, :n], d[j, :n] = ep["actions"], ep["rewards"], ep["dones"]
        mask[j, :n] = 1.0
        next_mask[j, : n - 1] = 1.0
        reward_mask[j, skip_reward_steps:n] = 1.0
    tensors = {"z": z[:, :-1], "z_next": z[:, 1:], "a": a, "r": r, "d": d, "mask": mask, "next_mask": next_mask,
               "reward_mask": reward_mask}
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in tensors.items()}


def _window_terms(model: MDNRNN, batch: dict[str, torch.Tensor], sl: slice, state) -> dict:
    return model.loss_terms(batch["z"][:, sl], batch["a"][:, sl], batch["z_next"][:, sl], batch["r"][:, sl],
                            batch["d"][:, sl], batch["mask"][:, sl], batch["next_mask"][:, sl], state,
                            batch["reward_mask"][:, sl])


def train_mdnrnn(latents: Latents, train_ids: list[str], holdout_ids: list[str], cfg: MDNConfig,
                 action_repeat: int = 1, seed: int = 0, log: MetricSink = no_metrics,
                 show_progress: bool = True, init: MDNRNN | None = None, compute: Compute = CPU
                 ) -> tuple[MDNRNN, dict[str, float]]:
    """Trains on `compute`'s device: each padded batch of episodes is built on the host and moved
    there whole; the LSTM runs under its bf16 autocast when enabled (heads and losses in fp32).
    Returns M on the CPU, at its best held-out epoch."""
    seed_everything(seed)
    rng = np.random.default_rng(seed)
    zdim = latents[train_ids[0]]["mu"].shape[1]
    skip = zoom_steps(action_repeat) if cfg.skip_start_reward else 0
    model = MDNRNN(zdim, 3, cfg.hidden_dim, cfg.n_gaussians, cfg.reward_weight, cfg.done_weight, cfg.dropout)
    if init is not None:  # warm start from a parent version's M
        model.load_state_dict(init.state_dict())
    model = model.to(compute.device)
    opt = adam(model.parameters(), lr=cfg.lr)
    batches_per_epoch = -(-len(train_ids) // cfg.batch_size)
    step = 0
    best = None
    with progress(show_progress) as bar:
        task = bar.add_task("train M (MDN-RNN)", total=cfg.epochs * batches_per_epoch, status="")
        for epoch in range(cfg.epochs):
            model.train()
            order = [train_ids[i] for i in rng.permutation(len(train_ids))]
            for start in range(0, len(order), cfg.batch_size):
                host = _pad_batch(latents, order[start:start + cfg.batch_size], rng, skip)
                batch = compute.put_all(host)
                state = None
                for t0 in range(0, host["a"].shape[1], cfg.seq_len):
                    sl = slice(t0, t0 + cfg.seq_len)
                    if host["mask"][:, sl].sum() == 0:  # on the host: no device sync
                        break
                    with compute.autocast():
                        terms = _window_terms(model, batch, sl, state)
                    state = terms["state"]
                    nll_mean, r_mse, d_bce = (terms["nll_sum"] / terms["n_next"], terms["r_se_sum"] / terms["n_reward"],
                                              terms["d_ce_sum"] / terms["n"])
                    loss = nll_mean + cfg.reward_weight * r_mse + cfg.done_weight * d_bce
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                    opt.step()
                    state = tuple(s.detach() for s in state)  # truncated BPTT: carry, don't backprop
                    step += 1
                    if step % 20 == 0:
                        log({"mdn/nll": nll_mean.item(), "mdn/reward_mse": r_mse.item(),
                             "mdn/done_bce": d_bce.item()}, step)
                bar.update(task, advance=1, status=f"epoch {epoch + 1} nll {nll_mean.item():.2f}")
            held = mdn_holdout_metrics(model, latents, holdout_ids, skip, compute)
            log(held, epoch)
            score = held["mdn/holdout_nll"] + cfg.reward_weight * held["mdn/holdout_reward_mse"] \
                + cfg.done_weight * held["mdn/holdout_done_bce"]
            if best is None or score < best[0]:  # keep the epoch that generalises best
                best = (score, epoch, copy.deepcopy(model.state_dict()), held)
    model.load_state_dict(best[2])
    model.eval()
    log({"mdn/best_epoch": float(best[1])}, cfg.epochs)
    return model.to("cpu"), {**best[3], "mdn/best_epoch": float(best[1]), "mdn/steps": float(step)}


@torch.no_grad()
def mdn_holdout_metrics(model: MDNRNN, latents: Latents, ids: list[str], skip_reward_steps: int = 0,
                        compute: Compute = CPU) -> dict[str, float]:
    """Held-out NLL per transition (summed over latent dims, z = encoder mean), reward MSE, done BCE;
    fp32, on `compute`'s device (where `model` is)."""
    model.eval()
    batch = compute.put_all(_pad_batch(latents, ids, None, skip_reward_steps))
    t = _window_terms(model, batch, slice(None), None)
    return {"mdn/holdout_nll": (t["nll_sum"] / t["n_next"]).item(), "mdn/holdout_reward_mse": (t["r_se_sum"] / t["n_reward"]).item(),
            "mdn/holdout_done_bce": (t["d_ce_sum"] / t["n"]).item()}


@torch.no_grad()
def dream_start_states(model: MDNRNN, latents: Latents, ids: list[str], per_episode: int = 8, seed: int = 0,
                       skip_steps: int = 0) -> dict[str, torch.Tensor]:
    """Real situations to start dreams from: (z_t, h_t, c_t) after M has read the episode up to t,
    t >= skip_steps (past the zoom-in) where possible. Returns z0 [S, Z], h0 [S, H], c0 [S, H]."""
    rng = np.random.default_rng(seed)
    z0, h0, c0 = [], [], []
    for eid in ids:
        ep = latents[eid]
        n = len(ep["mu"])
        z = torch.from_numpy(ep["mu"]).unsqueeze(0)
        a = torch.from_numpy(ep["actions"]).unsqueeze(0)
        lo = min(skip_steps, n - 1)
        ts = rng.choice(np.arange(lo, n), size=min(per_episode, n - lo), replace=False)
        state = model.initial_state(1)
        hs, cs = [state[0]], [state[1]]
        for t in range(int(ts.max())):
            state = model.step(z[:, t], a[:, t], state)
            hs.append(state[0])
            cs.append(state[1])
        for t in ts:
            z0.append(z[0, t])
            h0.append(hs[t][0])
            c0.append(cs[t][0])
    return {"z0": torch.stack(z0), "h0": torch.stack(h0), "c0": torch.stack(c0)}
