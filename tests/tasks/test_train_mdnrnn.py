import numpy as np

from dreamops.tasks.config import MDNConfig
from dreamops.tasks.train_mdnrnn import _pad_batch, dream_start_states, mdn_holdout_metrics, train_mdnrnn


def _latents(n_eps=6, t=40, seed=0):
    """Episodes whose next latent is a fixed linear function of (z, a): learnable dynamics."""
    rng = np.random.default_rng(seed)
    out = {}
    for e in range(n_eps):
        a = rng.uniform(0, 1, (t, 3)).astype(np.float32)
        z = np.zeros((t, 32), np.float32)
        z[0] = rng.normal(size=32)
        for i in range(1, t):
            z[i] = 0.9 * z[i - 1] + a[i - 1, 0]
        out[f"ep_{e}"] = {"mu": z, "logvar": np.full_like(z, -8.0), "actions": a,
                          "rewards": a[:, 1].copy(), "dones": np.zeros(t, bool)}
    return out


def test_training_lowers_held_out_loss_and_reward_error():
    lat = _latents()
    ids = sorted(lat)
    cfg = MDNConfig(hidden_dim=32, epochs=15, batch_size=2, seq_len=10, lr=3e-3)
    from dreamops.models.mdnrnn import MDNRNN
    import torch

    torch.manual_seed(0)
    before = mdn_holdout_metrics(MDNRNN(32, 3, 32), lat, ids[-1:])
    model, report = train_mdnrnn(lat, ids[:-1], ids[-1:], cfg, show_progress=False)
    assert report["mdn/holdout_nll"] < before["mdn/holdout_nll"] - 20
    assert report["mdn/holdout_reward_mse"] < 0.5 * before["mdn/holdout_reward_mse"]
    starts = dream_start_states(model, lat, ids[:2], per_episode=3)
    assert starts["z0"].shape == (6, 32) and starts["h0"].shape == (6, 32)


def test_start_of_episode_rewards_are_masked():
    batch = _pad_batch(_latents(n_eps=2, t=20), ["ep_0", "ep_1"], None, skip_reward_steps=13)
    assert batch["reward_mask"][:, :13].sum() == 0 and batch["reward_mask"][:, 13:].sum() == 2 * 7
    assert batch["next_mask"][:, -1].sum() == 0  # the last step has no next frame
