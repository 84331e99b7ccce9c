"""An ensemble of Ms: bootstrap resamples, disagreement that rises off the data, and CMA-ES whose
dreams are spread over the members."""
import pytest
import torch

from dreamops.models.mdnrnn import MDNRNN
from dreamops.models.vae import VAE
from dreamops.tasks.config import CMAConfig, MDNConfig
from dreamops.tasks.dataset import open_dataset
from dreamops.tasks.encode import encode
from dreamops.tasks.ensemble import bootstrap_ids, disagreement, train_members
from dreamops.tasks.evolve import dream_fitness, ensemble_fitness, evolve_controller


def test_a_bootstrap_resample_draws_with_replacement():
    ids = [f"ep{i}" for i in range(200)]
    sample = bootstrap_ids(ids, seed=0)
    assert len(sample) == 200 and set(sample) <= set(ids)
    assert 0.55 < len(set(sample)) / 200 < 0.72          # 1 - 1/e of them distinct
    assert sample == bootstrap_ids(ids, 0) != bootstrap_ids(ids, 1)


def test_disagreement_rises_off_the_data(good_dataset):
    data = open_dataset(good_dataset.parent, str(good_dataset))
    ids = list(data.manifest["episode_id"])
    torch.manual_seed(0)
    latents = encode(VAE().eval(), data, use_cache=False)
    members = train_members(latents, ids, ids[:1], MDNConfig(hidden_dim=32, seq_len=16, epochs=15), k=3,
                            show_progress=False)
    ep = latents[ids[0]]
    z, a = torch.from_numpy(ep["mu"])[None], torch.from_numpy(ep["actions"])[None]
    on = disagreement(members, z, a).mean()
    # the same actions, latents far from any frame V encoded (a prior-like N(0, 9) draw; this V's
    # latents of real frames lie within a few hundredths of 0)
    off = disagreement(members, 3 * torch.randn_like(z), a).mean()
    assert off > 3 * on
    with pytest.raises(ValueError, match="at least two members"):
        disagreement(members[:1], z, a)


def _m(seed: int) -> MDNRNN:
    torch.manual_seed(seed)
    return MDNRNN(latent_dim=4, action_dim=3, hidden_dim=8, n_gaussians=2).eval()


def test_ensemble_fitness_is_the_mean_of_each_members_dreams():
    starts = {"z0": torch.randn(6, 4), "h0": torch.zeros(6, 8), "c0": torch.zeros(6, 8)}
    genomes = torch.randn(3, (4 + 8) * 3 + 3) * 0.1
    cfg = CMAConfig(rollouts=4, dream_steps=10, temperature=1.0)
    a, b = _m(1), _m(2)
    got = ensemble_fitness([(a, starts), (b, starts)], genomes, cfg, seed=5)
    want = (dream_fitness(a, genomes, starts, 2, 10, 1.0, 5) + dream_fitness(b, genomes, starts, 2, 10, 1.0, 5 + 1_009)) / 2
    assert torch.allclose(got, want)
    # an ensemble search runs and scores its final controller in the main M alone
    controller, history = evolve_controller(a, starts, CMAConfig(population=4, rollouts=2, generations=2, dream_steps=10),
                                            show_progress=False, ensemble=[(b, starts)])
    assert len(history["best"]) == 2 and len(history["final_dream_return"]) == 1
