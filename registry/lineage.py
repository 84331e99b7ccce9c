"""Lineage of one version: what data, weights, config, code, gates and parent made it."""
from __future__ import annotations

import copy
import functools
import json

import yaml
from mlflow import MlflowClient

from dreamops.registry import store


def lineage(model: str, ref: str) -> dict:
    mv = store.get_version(model, ref)
    tags = dict(mv.tags)
    # versions registered by dreamops always have a run with both artifacts; others may not
    datasets, config, report = copy.deepcopy(_run_record(mv.run_id)) if mv.run_id else ((), None, {})
    return {
        "model": model, "version": str(mv.version), "semver": tags.get("semver"),
        "aliases": sorted(mv.aliases), "created": mv.creation_timestamp, "run_id": mv.run_id,
        "source": mv.source, "parent_version": tags.get("parent_version"),
        "data": {"hash": tags.get("data_hash"), "uri": tags.get("data_uri"), "mlflow_inputs": list(datasets),
                 "rounds": [h for h in tags.get("round_data_hashes", "").split(",") if h],
                 "shipped_round": int(tags["shipped_round"]) if tags.get("shipped_round", "").isdigit() else None,
                 "real_frames": int(tags["real_frames"]) if tags.get("real_frames", "").isdigit() else None},
        "weights": {k.removeprefix("weights."): v for k, v in tags.items() if k.startswith("weights.")},
        "config": config, "arch_hash": tags.get("lineage.arch_hash"), "hparams_hash": tags.get("lineage.hparams_hash"),
        "git_sha": tags.get("git_sha"), "validation_status": tags.get("validation_status"),
        "gates": {k.removeprefix("gate."): v for k, v in tags.items() if k.startswith("gate.")},
        "evaluation": report.get("evaluation", {}),
    }


@functools.lru_cache(maxsize=512)
def _run_record(run_id: str) -> tuple[tuple[dict, ...], dict | None, dict]:
    """(dataset inputs, config, evaluation report) of a run: a finished run does not change, so
    model lookups read its artifacts once per process, not once per request."""
    run = MlflowClient().get_run(run_id)
    datasets = tuple({"name": d.dataset.name, "digest": d.dataset.digest, "source": _source(d.dataset.source)}
                     for d in run.inputs.dataset_inputs)
    config, report = store.read_run_artifact(run_id, "config.yaml"), store.read_run_artifact(run_id,
                                                                                                "evaluation_report.json")
    return datasets, yaml.safe_load(config) if config else None, json.loads(report) if report else {}


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
    if len(info["data"]["rounds"]) > 1:  # a multi-round run: the data of each round
        lines += [f"    round {k} data {digest}" for k, digest in enumerate(info["data"]["rounds"])]
        if info["data"]["shipped_round"] is not None:
            lines.append(f"    models shipped from round {info['data']['shipped_round']} (best on the validation seeds)")
    if info["data"]["real_frames"] is not None:
        lines.append(f"  real simulator frames in the training data: {info['data']['real_frames']:,}")
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
