"""The `device` setting and the training stages on a device, checked on the CPU (no test needs a GPU).

A stage runs the same function whatever the device; here each one runs on an explicit
torch.device("cpu") through that path and must give exactly the default's result. The bf16
autocast that CUDA runs use is exercised on the CPU's own autocast."""
from __future__ import annotations

import copy

import pytest
import torch

from dreamops.models.bundle import module_hash
from dreamops.models.dream import dream_rollouts, generator_noise
from dreamops.models.mdnrnn import MDNRNN, _bf16_lstm_supported
from dreamops.models.vae import VAE
from dreamops.tasks.config import CMAConfig, MDNConfig, VAEConfig, resolve_config
from dreamops.tasks.dataset import open_dataset
from dreamops.tasks.device import CPU, Compute, DeviceUnavailableError, adam, resolve_device
from dreamops.tasks.encode import encode
from dreamops.tasks.evolve import dream_fitness, evolve_controller
from dreamops.tasks.train_mdnrnn import train_mdnrnn
from dreamops.tasks.train_vae import train_vae

EXPLICIT_CPU = Compute(torch.device("cpu"))
CPU_BF16 = Compute(torch.device("cpu"), bf16=True)  # the autocast path of CUDA runs, on the CPU's autocast


def _no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


# ---- the setting -----------------------------------------------------------------------------------

def test_auto_resolves_to_the_cpu_here_and_to_cuda_where_torch_sees_one(monkeypatch):
    assert resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    _no_cuda(monkeypatch)
    assert resolve_device("auto") == torch.device("cpu") and resolve_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")


def test_cuda_without_cuda_is_a_clear_error(monkeypatch):
    _no_cuda(monkeypatch)
    with pytest.raises(DeviceUnavailableError, match="device=cuda was asked for, but torch sees no CUDA device"):
        resolve_device("cuda")
    with pytest.raises(ValueError, match="--set device=auto or --set device=cpu"):
        Compute.resolve("cuda")


@pytest.mark.parametrize("agent", ["carracing-vmc", "pick-vla"])
@pytest.mark.parametrize("value", ["gpu", "CUDA", "cuda:0", 1, True])
def test_bad_device_values_are_named(agent, value):
    with pytest.raises(ValueError, match=r"device must be one of auto, cpu, cuda"):
        resolve_config("smoke", {"device": value}, agent=agent)
    with pytest.raises(ValueError, match=r"device must be one of auto, cpu, cuda"):
        resolve_device(value)


def test_device_defaults_to_auto_and_bf16_applies_on_cuda_only():
    cfg = resolve_config("quick")
    assert cfg.device == "auto" and cfg.bf16 is True and cfg.flat()["device"] == "auto"
    assert resolve_config("smoke", {"device": "cuda"}).device == "cuda"  # valid anywhere: checked where it runs
    assert resolve_config("quick", agent="pick-vla").device == "auto"
    assert Compute.resolve("cpu", bf16=True) == Compute(torch.device("cpu"), bf16=False)
    assert CPU.tags() == {"device": "cpu", "device.name": "cpu", "device.bf16": "false"}
    with pytest.raises(ValueError, match="bf16"):
        resolve_config("smoke", {"bf16": "yes"})


def test_on_the_cpu_a_batch_is_not_copied_and_a_module_is_not_moved():
    x = torch.arange(6, dtype=torch.uint8)
    assert EXPLICIT_CPU.put(x) is x
    m = torch.nn.Linear(2, 2)
    assert EXPLICIT_CPU.module(m) is m


def test_the_cli_refuses_cuda_on_a_machine_without_it_in_one_line(monkeypatch, capsys, dreamops_home):
    from dreamops.flows.cli import main

    _no_cuda(monkeypatch)
    assert main(["train", "--profile", "smoke", "--set", "device=cuda", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("dreamops: error: device=cuda was asked for")
    assert main(["train", "--profile", "smoke", "--set", "device=gpu", "--no-progress"]) == 2
    assert "device must be one of auto, cpu, cuda" in capsys.readouterr().err


# ---- every stage through the device path --------------------------------------------------------------

@pytest.fixture(scope="module")
def data(good_dataset):
    d = open_dataset(good_dataset.parent, str(good_dataset))
    return d, *d.split(0.25, 0)


def _v(data, compute=None):
    d, train_ids, holdout_ids = data
    cfg = VAEConfig(epochs=1, batch_size=32)
    kwargs = {} if compute is None else {"compute": compute}
    # one episode (60 frames: two steps) keeps it cheap; the CPU's bf16 convolutions are slow
    return train_vae(d, train_ids[:1], holdout_ids, cfg, seed=0, show_progress=False, **kwargs)


def _m(latents, train_ids, holdout_ids, compute=None):
    cfg = MDNConfig(hidden_dim=32, epochs=2, batch_size=2, seq_len=16)
    kwargs = {} if compute is None else {"compute": compute}
    return train_mdnrnn(latents, train_ids, holdout_ids, cfg, action_repeat=4, seed=0, show_progress=False, **kwargs)


@pytest.fixture(scope="module")
def default_run(data):
    """V, the latents and M trained the default way (CPU, fp32), once for the comparisons below."""
    d, train_ids, holdout_ids = data
    vae, report = _v(data)
    latents = encode(vae, d, use_cache=False)
    return vae, report, latents, *_m(latents, train_ids, holdout_ids)


def test_v_encoding_and_m_on_an_explicit_cpu_device_equal_the_default(data, default_run):
    d, train_ids, holdout_ids = data
    vae, report, latents, m, m_report = default_run
    vae_dev, report_dev = _v(data, EXPLICIT_CPU)
    assert module_hash(vae_dev) == module_hash(vae) and report_dev == report
    latents_dev = encode(vae_dev, d, use_cache=False, compute=EXPLICIT_CPU)
    assert latents.keys() == latents_dev.keys()
    for eid in latents:
        for k in ("mu", "logvar"):
            assert (latents_dev[eid][k] == latents[eid][k]).all()
    m_dev, m_report_dev = _m(latents_dev, train_ids, holdout_ids, EXPLICIT_CPU)
    assert module_hash(m_dev) == module_hash(m) and m_report_dev == m_report
    for model in (vae_dev, m_dev):  # what is saved and registered: on the CPU, fp32
        assert {(p.device.type, p.dtype) for p in model.parameters()} == {("cpu", torch.float32)}


def test_the_bf16_autocast_path_trains_with_fp32_losses_and_returns_fp32_cpu_models(data, default_run):
    d, train_ids, holdout_ids = data
    vae, report, latents, m, m_report = default_run
    vae_bf16, report_bf16 = _v(data, CPU_BF16)
    assert module_hash(vae_bf16) != module_hash(vae)  # the autocast did run
    assert all(torch.isfinite(torch.tensor(v)) for v in report_bf16.values())
    assert abs(report_bf16["vae/holdout_recon"] - report["vae/holdout_recon"]) < 0.05 * report["vae/holdout_recon"]
    m_bf16, m_report_bf16 = _m(latents, train_ids, holdout_ids, CPU_BF16)
    if _bf16_lstm_supported("cpu"):
        assert module_hash(m_bf16) != module_hash(m)
    else:  # oneDNN without AVX-512 has no bf16 LSTM: M's LSTM stays fp32 and so all of M, bit for bit
        assert module_hash(m_bf16) == module_hash(m)
    assert abs(m_report_bf16["mdn/holdout_nll"] - m_report["mdn/holdout_nll"]) < 0.05 * abs(m_report["mdn/holdout_nll"])
    for model in (vae_bf16, m_bf16):
        assert {(p.device.type, p.dtype) for p in model.parameters()} == {("cpu", torch.float32)}


def test_under_autocast_only_the_network_is_bf16_and_losses_and_state_are_fp32():
    torch.manual_seed(0)
    vae, m = VAE(), MDNRNN(32, 3, 32)
    x, z, a = torch.rand(2, 3, 64, 64), torch.randn(2, 8, 32), torch.rand(2, 8, 3)
    with CPU_BF16.autocast():
        assert vae.encode_params(x)[0].dtype == torch.bfloat16
        loss, _ = vae(x)
        terms = m.loss_terms(z, a, z, torch.zeros(2, 8), torch.zeros(2, 8))
    assert loss.dtype == torch.float32
    assert all(terms[k].dtype == torch.float32 for k in ("nll_sum", "r_se_sum", "d_ce_sum"))
    assert [s.dtype for s in terms["state"]] == [torch.float32, torch.float32]


def test_the_dream_and_cma_es_on_an_explicit_cpu_device_equal_the_default():
    torch.manual_seed(0)
    m = MDNRNN()
    starts = {"z0": torch.randn(8, 32), "h0": torch.randn(8, 256) * 0.1, "c0": torch.zeros(8, 256)}
    genomes = torch.randn(4, 867) * 0.2
    base = dream_fitness(m, genomes, starts, 3, 30, 1.2, seed=1, dream_dropout=0.1)
    on_device = dream_fitness(EXPLICIT_CPU.module(m), genomes, starts, 3, 30, 1.2, seed=1, dream_dropout=0.1)
    assert torch.equal(base, on_device) and base.device.type == "cpu"
    cfg = CMAConfig(population=4, rollouts=2, generations=3, dream_steps=15)
    c, history = evolve_controller(m, starts, cfg, show_progress=False)
    c_dev, history_dev = evolve_controller(m, starts, cfg, show_progress=False, compute=EXPLICIT_CPU)
    assert torch.equal(c.get_flat(), c_dev.get_flat()) and history == history_dev


def test_checking_for_the_end_less_often_changes_no_return():
    """Off the CPU the dream checks whether every row is done every 16 steps (each check waits for
    the device); rows that are done add nothing, so the results are those of checking every step."""
    torch.manual_seed(0)
    m = MDNRNN()  # an untrained done head: p(done) ~ 0.5, every row ends within a few steps
    z0, h0, c0 = torch.randn(12, 32), torch.zeros(12, 256), torch.zeros(12, 256)
    genomes = torch.randn(3, 867) * 0.2
    runs = [dream_rollouts(m, genomes, z0, h0, c0, 60, 1.0, generator_noise(12, 32, 5, device=torch.device("cpu")),
                           alive_check_every=k) for k in (1, 16)]
    assert int(runs[0]["alive_steps"].max()) < 16  # the early stop matters here
    assert torch.equal(runs[0]["returns"], runs[1]["returns"])
    assert torch.equal(runs[0]["alive_steps"], runs[1]["alive_steps"])


def test_pick_vla_training_on_an_explicit_cpu_device_equals_the_default(good_pick_dataset):
    from dreamops.tasks.pick_config import PickModelConfig, PickTrainConfig
    from dreamops.tasks.train_pick import train_pick_vla

    d = open_dataset(good_pick_dataset.parent, str(good_pick_dataset))
    train_ids, holdout_ids = d.split(0.25, 0)
    model_cfg = PickModelConfig(embed_dim=32, text_dim=16, deter=32, stoch=4, classes=4, head_hidden=32)
    train_cfg = PickTrainConfig(steps=2, batch_size=2, frame_batch_size=4, seq_len=4, warmup_steps=1, log_every=1)
    model, report = train_pick_vla(d, train_ids, holdout_ids, train_cfg, model_cfg, show_progress=False)
    model_dev, report_dev = train_pick_vla(d, train_ids, holdout_ids, train_cfg, model_cfg, show_progress=False,
                                           compute=EXPLICIT_CPU)
    assert model_dev.component_hashes() == model.component_hashes() and report_dev == report
    assert {p.device.type for p in model_dev.parameters()} == {"cpu"}


def test_the_gpu_profiles_ask_for_cuda_and_more_than_quick():
    gpu, quick = resolve_config("gpu"), resolve_config("quick")
    assert gpu.device == "cuda" and gpu.bf16
    assert gpu.collect.episodes > quick.collect.episodes and gpu.vae.epochs > quick.vae.epochs
    assert gpu.cma.population * gpu.cma.rollouts == 64 * 16 > quick.cma.population * quick.cma.rollouts
    assert gpu.eval.episodes == 100
    seeds = range(gpu.collect.seed, gpu.collect.seed + gpu.collect.episodes + 7 * gpu.collect.episodes_per_round)
    assert gpu.max_real_frames() == len(seeds) * 1000  # validate() checked these stay clear of the eval seeds
    pick_gpu, pick_quick = resolve_config("gpu", agent="pick-vla"), resolve_config("quick", agent="pick-vla")
    assert pick_gpu.device == "cuda" and pick_gpu.data.episodes > pick_quick.data.episodes
    assert pick_gpu.train.steps > pick_quick.train.steps


@pytest.mark.parametrize("decoupled", [False, True])
def test_the_training_optimiser_is_fused_and_updates_as_torchs_reference_adam(decoupled):
    """adam() is what every training stage builds: one fused kernel per step, the same update as
    torch's default Adam / AdamW up to float rounding (M's parameters after 20 steps)."""
    torch.manual_seed(0)
    start = MDNRNN()
    models = [copy.deepcopy(start), copy.deepcopy(start)]
    kwargs = {"lr": 1e-3, "weight_decay": 1e-2 if decoupled else 0.0}
    reference = (torch.optim.AdamW if decoupled else torch.optim.Adam)(models[0].parameters(), **kwargs)
    fused = adam(models[1].parameters(), weight_decay_decoupled=decoupled, **kwargs)
    assert fused.defaults["fused"] is True and reference.defaults["fused"] is None
    assert isinstance(fused, torch.optim.AdamW) == decoupled
    g = torch.Generator().manual_seed(1)
    z, z_next = torch.randn(4, 16, 32, generator=g), torch.randn(4, 16, 32, generator=g)
    a, r, d = torch.rand(4, 16, 3, generator=g), torch.randn(4, 16, generator=g), torch.zeros(4, 16)
    for _ in range(20):
        for model, opt in zip(models, (reference, fused)):
            loss, _ = model(z, a, z_next, r, d)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    for p_ref, p_fused, p0 in zip(models[0].parameters(), models[1].parameters(), start.parameters()):
        torch.testing.assert_close(p_fused, p_ref, rtol=0, atol=1e-5)
    moved = max(float((p - p0).abs().max()) for p, p0 in zip(models[0].parameters(), start.parameters()))
    assert moved > 1e-3   # the steps did move the weights: the comparison is not of two untouched copies
