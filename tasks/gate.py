"""The gates with the profile's thresholds: validate_data (before training), check_model (after)."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from dreamops.registry import store
from dreamops.tasks.config import GateConfig
from dreamops.tasks.dataset import Dataset
from dreamops.tasks.encode import encode
from dreamops.tasks.evaluate import EvalReport
from dreamops.tasks.fidelity import HORIZONS, fidelity_ratio, gate_horizon
from dreamops.tasks.train_mdnrnn import mdn_holdout_metrics, zoom_steps
from dreamops.tasks.train_vae import vae_holdout_metrics
from dreamops.validation.data_gate import DataGateReport, run_data_gate
from dreamops.validation.model_gates import GateResult, evaluate_model_gates


def validate_data(path: Path, cfg: GateConfig, action_repeat: int, docs_dir: Path | None = None) -> DataGateReport:
    """The pixel checks skip the zoom-in at each episode's start (its first frames are black)."""
    return run_data_gate(path, replace(cfg.data, skip_start_steps=zoom_steps(action_repeat)), docs_dir)


def validate_dataset(path: Path, cfg, docs_dir: Path | None = None) -> DataGateReport:
    """The family's data gate (dreamops.families) for a CarRacingConfig run: `dreamops validate`."""
    return validate_data(path, cfg.gate, cfg.collect.action_repeat, docs_dir)


def production_metrics(model_name: str, data: Dataset, holdout_ids: list[str], action_repeat: int) -> dict | None:
    """Production's V and M measured on this run's held-out episodes (None if nothing is in production)."""
    if store.find_alias(model_name, "production") is None:
        return None
    mv, bundle, _ = store.load_bundle(model_name, "production")
    vae = vae_holdout_metrics(bundle.vae, data, holdout_ids)
    mdn = mdn_holdout_metrics(bundle.mdnrnn, encode(bundle.vae, data), holdout_ids, zoom_steps(action_repeat))
    return {"version": mv.version, "vae_recon": vae["vae/holdout_recon"], "mdn_nll": mdn["mdn/holdout_nll"]}


def candidate_metrics(vae_report: dict, mdn_report: dict, cma_history: dict, evaluation: EvalReport,
                      latency: dict, fidelity: dict | None = None,
                      fidelity_steps: int | None = None) -> dict[str, float]:
    """The figures the model gates judge, from the training, evaluation and profiling reports, and
    M's rollout fidelity (tasks.fidelity) at the longest measured horizon up to `fidelity_steps`
    (the gate's horizon, at most the dreams' length)."""
    extra = {}
    if fidelity is not None and fidelity_steps is not None:
        k = gate_horizon(fidelity_steps, tuple(h for h in HORIZONS if f"fidelity/k{h}/latent_nmse" in fidelity))
        extra = {"mdn_fidelity_ratio": fidelity_ratio(fidelity, k), "mdn_fidelity_horizon": float(k)}
    return extra | {"vae_recon": vae_report["vae/holdout_recon"], "vae_kl": vae_report["vae/holdout_kl"],
            "mdn_nll": mdn_report["mdn/holdout_nll"], "dream_reward": cma_history["final_dream_return"][0],
            "real_reward": evaluation.mean, "latency_p99_ms": latency["full_step"]["p99_ms"],
            "off_track_per_episode": sum(evaluation.off_track_events) / len(evaluation.rewards)}


def check_model(candidate: dict[str, float], cfg: GateConfig, production: dict | None) -> list[GateResult]:
    return evaluate_model_gates(candidate, cfg.model, production)
