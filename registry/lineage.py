"""Lineage of one version: what data, weights, config, code, gates and parent made it."""
from __future__ import annotations

import json

import yaml
from mlflow import MlflowClient

from dreamops.registry import store


def lineage(model: str, ref: str) -> dict:
    mv = store.get_version(model, ref)
    tags = dict(mv.tags)
    datasets, config, report = [], None, {}
    if mv.run_id:  # versions registered by dreamops always have a run; others may not
        run = MlflowClient().get_run(mv.run_id)
        datasets = [{"name": d.dataset.name, "digest": d.dataset.digest, "source": _source(d.dataset.source)}
                    for d in run.inputs.dataset_inputs]
        config = yaml.safe_load(store.download_run_artifact(mv.run_id, "config.yaml").read_text())
        report = json.loads(store.download_run_artifact(mv.run_id, "evaluation_report.json").read_text())
    return {
        "model": model, "version": str(mv.version), "semver": tags.get("semver"),
        "aliases": sorted(mv.aliases), "created": mv.creation_timestamp, "run_id": mv.run_id,
        "source": mv.source, "parent_version": tags.get("parent_version"),
        "data": {"hash": tags.get("data_hash"), "uri": tags.get("data_uri"), "mlflow_inputs": datasets},
        "weights": {k.removeprefix("weights."): v for k, v in tags.items() if k.startswith("weights.")},
        "config": config, "arch_hash": tags.get("lineage.arch_hash"), "hparams_hash": tags.get("lineage.hparams_hash"),
        "git_sha": tags.get("git_sha"), "validation_status": tags.get("validation_status"),
        "gates": {k.removeprefix("gate."): v for k, v in tags.items() if k.startswith("gate.")},
        "evaluation": report.get("evaluation", {}),
    }


def _source(source: str) -> str:
    try:
        return json.loads(source).get("uri", source)
    except (ValueError, AttributeError):
        return source


def format_lineage(info: dict) -> str:
    lines = [f"{info['model']} v{info['version']} (semver {info['semver']}), aliases: "
             f"{', '.join(info['aliases']) or '-'}",
             f"  run {info['run_id']}   git {info['git_sha']}",
             f"  parent version: {info['parent_version'] or '- (trained from scratch)'}",
             f"  data {info['data']['hash']}" + (f"  at {info['data']['uri']}" if info['data']['uri'] else "")]
    lines += [f"  weights {name:<11} sha256 {digest}" for name, digest in sorted(info["weights"].items())]
    lines.append(f"  architecture {info['arch_hash']}   hyperparameters {info['hparams_hash']}")
    lines.append(f"  validation_status {info['validation_status']}")
    lines += [f"    {name:<28} {result}" for name, result in sorted(info["gates"].items())]
    for policy, summary in info["evaluation"].items():
        lines.append(f"  eval {policy:<11} mean return {summary['mean_reward']:.1f} +/- {summary['std_reward']:.1f}"
                     f" over {summary['episodes']} episodes")
    return "\n".join(lines)


def describe(model: str, ref: str) -> dict:
    """One version for the API: identity, aliases, gate results, run metrics and lineage."""
    mv = store.get_version(model, ref)
    tags = dict(mv.tags)
    metrics = MlflowClient().get_run(mv.run_id).data.metrics if mv.run_id else {}
    return {"model": model, "version": str(mv.version), "semver": tags.get("semver"), "aliases": sorted(mv.aliases),
            "validation_status": tags.get("validation_status", "missing"),
            "gates": {k.removeprefix("gate."): v for k, v in tags.items() if k.startswith("gate.")},
            "metrics": {k: v for k, v in metrics.items() if k.startswith(("eval/", "gate/", "latency/", "data/"))
                        or k in ("vae/holdout_recon", "mdn/holdout_nll")},
            "tags": tags}
