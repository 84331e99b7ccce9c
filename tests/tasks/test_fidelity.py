"""Rollout fidelity: known answers for the image scores and the open-loop rollout, and the report
on real CarRacing episodes (a trained M predicts better than an untrained one)."""
import math

import numpy as np
import pytest
import torch

from dreamops.models.mdnrnn import MDNRNN
from dreamops.models.vae import VAE
from dreamops.tasks.config import MDNConfig
from dreamops.tasks.dataset import open_dataset
from dreamops.tasks.encode import encode
from dreamops.tasks.fidelity import mdn_rollout_fidelity, mixture_mean, open_loop, psnr, ssim, trusted_horizon
from dreamops.tasks.train_mdnrnn import train_mdnrnn


def test_psnr_and_ssim_known_answers():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 32, 32) * 0.8
    assert torch.allclose(psnr(x, x + 0.1), torch.full((2,), 20.0), atol=1e-4)   # MSE 0.01 -> 20 dB
    assert torch.allclose(ssim(x, x), torch.ones(2), atol=1e-5)
    a, b = torch.full((1, 1, 16, 16), 0.2), torch.full((1, 1, 16, 16), 0.6)   # flat: only the luminance term
    c1 = 0.01 ** 2
    assert ssim(a, b).item() == pytest.approx((2 * 0.2 * 0.6 + c1) / (0.2 ** 2 + 0.6 ** 2 + c1), rel=1e-4)
    noisy = (x + 0.2 * torch.randn_like(x)).clamp(0, 1)
    assert (ssim(x, noisy) < ssim(x, (x + 0.05 * torch.randn_like(x)).clamp(0, 1))).all()


def test_open_loop_reads_the_real_past_then_feeds_back_its_own_predictions():
    torch.manual_seed(0)
    m = MDNRNN(latent_dim=4, action_dim=3, hidden_dim=16, n_gaussians=3).eval()
    z, a = torch.randn(12, 4), torch.randn(12, 3)
    starts = [0, 3, 7]
    pred = open_loop(m, z, a, starts, horizon=3)
    assert pred.shape == (3, 3, 4)
    with torch.no_grad():
        h, _ = m.lstm(torch.cat([z, a], -1)[None])   # teacher forcing over the whole episode
        assert torch.allclose(pred[:, 0], mixture_mean(m, h[0, starts]), atol=1e-5)
        # step 2 from start 3: M's own prediction (not the real z_4) with the real action a_4
        state = m.initial_state(1)
        for t in range(4):
            state = m.step(z[t:t + 1], a[t:t + 1], state)
        state = m.step(pred[1:2, 0], a[4:5], state)
        assert torch.allclose(pred[1, 1], mixture_mean(m, state[0])[0], atol=1e-5)
        assert not torch.allclose(pred[1, 1], mixture_mean(m, h[0, 4:5])[0], atol=1e-3)


def test_the_trusted_horizon_is_where_m_stops_beating_persistence():
    report = {"fidelity/k1/latent_nmse": 0.1, "fidelity/k1/persistence_latent_nmse": 0.3,
              "fidelity/k5/latent_nmse": 0.4, "fidelity/k5/persistence_latent_nmse": 0.9,
              "fidelity/k15/latent_nmse": 1.2, "fidelity/k15/persistence_latent_nmse": 1.1,
              "fidelity/k50/latent_nmse": 0.5, "fidelity/k50/persistence_latent_nmse": 1.9}
    assert trusted_horizon(report) == 5
    assert trusted_horizon({"fidelity/k1/latent_nmse": 1.0, "fidelity/k1/persistence_latent_nmse": 0.5}) == 0


def test_fidelity_on_real_episodes_scores_a_trained_m_above_an_untrained_one(good_dataset):
    data = open_dataset(good_dataset.parent, str(good_dataset))
    ids = list(data.manifest["episode_id"])
    torch.manual_seed(0)
    vae = VAE().eval()
    latents = encode(vae, data, use_cache=False)
    trained, _ = train_mdnrnn(latents, ids[:3], ids[3:], MDNConfig(hidden_dim=32, seq_len=16, epochs=30),
                              show_progress=False)
    untrained = MDNRNN(32, 3, 32).eval()
    horizons = (1, 5, 15, 50)
    good = mdn_rollout_fidelity(vae, trained, data, ids, horizons, starts_per_episode=4)
    bad = mdn_rollout_fidelity(vae, untrained, data, ids, horizons, starts_per_episode=4)
    # 4 episodes of 60 steps: every horizon measured from 4 starts each
    assert good["fidelity/starts"] == good["fidelity/k50/starts"] == good["fidelity/k1/starts"] == 16
    assert good["fidelity/k1/latent_nmse"] < bad["fidelity/k1/latent_nmse"]
    assert good["fidelity/k1/psnr"] > bad["fidelity/k1/psnr"]
    # the references do not depend on M
    assert good["fidelity/k5/persistence_psnr"] == bad["fidelity/k5/persistence_psnr"]
    assert good["fidelity/k5/v_ssim"] == bad["fidelity/k5/v_ssim"]
    for k in horizons:
        assert all(math.isfinite(good[f"fidelity/k{k}/{m}"]) for m in ("latent_nmse", "psnr", "ssim", "v_psnr"))
        assert -1 <= good[f"fidelity/k{k}/ssim"] <= 1
    # episodes shorter than the zoom-in skip: starts as late as the longest horizon allows (one each)
    late = mdn_rollout_fidelity(vae, trained, data, ids, (1, 5), skip_steps=100)
    assert late["fidelity/k5/starts"] == late["fidelity/starts"] == 4
    with pytest.raises(ValueError, match="at least one held-out episode"):
        mdn_rollout_fidelity(vae, trained, data, [], (1,))


def test_the_gate_judges_the_longest_measured_horizon_up_to_its_own_and_the_dreams():
    from dreamops.tasks.fidelity import fidelity_ratio, gate_horizon
    from dreamops.tasks.evaluate import EvalReport
    from dreamops.tasks.gate import candidate_metrics
    from dreamops.validation.model_gates import ModelGateThresholds, evaluate_model_gates

    assert gate_horizon(250) == 50 and gate_horizon(20) == 15 and gate_horizon(20, (1, 5)) == 5 and gate_horizon(3) == 1
    report = {"fidelity/k15/latent_nmse": 0.6, "fidelity/k15/persistence_latent_nmse": 1.2}
    assert fidelity_ratio(report, 15) == pytest.approx(0.5) and math.isnan(fidelity_ratio(report, 50))
    base = {"vae_recon": 1.0, "vae_kl": 10.0, "mdn_nll": 1.0, "dream_reward": 100.0, "real_reward": 200.0,
            "off_track_per_episode": 0.0, "latency_p99_ms": 1.0}
    names = {g.name: g for g in evaluate_model_gates({**base, "mdn_fidelity_ratio": 0.5, "mdn_fidelity_horizon": 15},
                                                     ModelGateThresholds())}
    assert names["mdn_fidelity"].passed and "at 15 steps" in names["mdn_fidelity"].threshold
    worse = evaluate_model_gates({**base, "mdn_fidelity_ratio": 1.1, "mdn_fidelity_horizon": 50}, ModelGateThresholds())
    assert not {g.name: g for g in worse}["mdn_fidelity"].passed
    assert "mdn_fidelity" not in {g.name for g in evaluate_model_gates(base, ModelGateThresholds())}
    # a version that drives 817 (session 21): far better than persistence at 5 steps, worse at 50
    measured = {"fidelity/k5/latent_nmse": 0.446, "fidelity/k5/persistence_latent_nmse": 1.125,
                "fidelity/k50/latent_nmse": 2.003, "fidelity/k50/persistence_latent_nmse": 1.502}
    reports = ({"vae/holdout_recon": 1.0, "vae/holdout_kl": 10.0}, {"mdn/holdout_nll": 1.0},
               {"final_dream_return": [100.0]}, EvalReport("vmc", [0], [200.0], [1000], [0]),
               {"full_step": {"p99_ms": 1.0}})
    t = ModelGateThresholds()
    candidate = candidate_metrics(*reports, measured, min(t.mdn_fidelity_horizon, 250))
    assert candidate["mdn_fidelity_horizon"] == 5 and candidate["mdn_fidelity_ratio"] == pytest.approx(0.446 / 1.125)
    assert {g.name: g for g in evaluate_model_gates(candidate, t)}["mdn_fidelity"].passed
    assert candidate_metrics(*reports, measured, 250)["mdn_fidelity_ratio"] > 1   # what the dreams' 50 steps said


def test_expected_calibration_error_known_answers():
    from dreamops.tasks.fidelity import expected_calibration_error

    assert expected_calibration_error(torch.tensor([0.1, 0.1, 0.9, 0.9]), torch.tensor([0., 0., 1., 1.])) \
        == pytest.approx(0.1)
    assert expected_calibration_error(torch.full((4,), 0.5), torch.tensor([0., 1., 0., 1.])) == pytest.approx(0.0)
    assert expected_calibration_error(torch.ones(3), torch.zeros(3)) == pytest.approx(1.0)   # p = 1 lands in the top bin


def test_pick_fidelity_starts_where_the_planner_does_and_labels_the_chunk_it_scores(good_pick_dataset):
    from dreamops.models.encoders import WordTokenizer
    from dreamops.models.pick_vla import PickArchitecture, PickVLA
    from dreamops.tasks.fidelity import rssm_rollout_fidelity
    from dreamops.tasks.train_pick import Demos

    data = open_dataset(good_pick_dataset.parent, str(good_pick_dataset))
    ids = list(data.manifest["episode_id"])
    torch.manual_seed(0)
    demos = Demos.load(data, ids, horizon=4)
    arch = PickArchitecture(vocab=tuple(WordTokenizer.fit(demos.instructions).vocab), proprio_dim=demos.proprio[0].shape[1],
                            embed_dim=32, text_dim=16, deter=32, stoch=4, classes=4, head_hidden=32, horizon=4,
                            flow_steps=2)
    model = PickVLA(arch).eval()
    report = rssm_rollout_fidelity(model, demos, horizons=(1, 2, 4))
    lengths = [len(a) for a in demos.actions]
    assert report["fidelity/starts"] == sum(lengths)
    # every demonstration succeeds with its last action: a chunk of 4 from state s holds it when s >= T - 4
    assert all(float(s[-1]) == 1.0 for s in demos.success)
    assert report["fidelity/success_base_rate"] == pytest.approx(sum(min(4, t) for t in lengths) / sum(lengths))
    assert 0 <= report["fidelity/success_brier"] <= 1 and 0 <= report["fidelity/success_ece"] <= 1
    # k = 1 from the first frame is the world-model gate's one-step cosine at t = 0 (same start state)
    one = _first_steps(Demos.load(data, ids[:1], horizon=4), 2)
    batch = one.batch(np.array([(0, 0)]), 2, model.tokenizer)
    with torch.no_grad():
        expected = model.rssm.one_step_cosine(model.embed_sequence(batch), batch["actions"])[0, 0]
    first = rssm_rollout_fidelity(model, one, (1,))
    assert first["fidelity/starts"] == 2.0   # two states, one with a real next frame
    assert first["fidelity/k1/cosine"] == pytest.approx(float(expected), abs=1e-5)


def _first_steps(demos, n: int):
    """The demonstrations cut to their first n steps."""
    from dataclasses import fields, replace

    cut = {f.name: [x[:n] for x in getattr(demos, f.name)] for f in fields(demos) if f.name != "instructions"}
    return replace(demos, **cut)
