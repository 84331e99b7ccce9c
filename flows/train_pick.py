"""The `train` flow's wiring for pick-vla: demonstrations -> data gate -> encoder + RSSM + flow head
-> evaluation in the PyBullet cell (seen and novel objects, next to the scripted expert and the
no-language baseline) -> latency profile -> model gates -> register as `pick-vla`.

Called by flows.train.train (the one `train` flow), so runs of both families look alike in Prefect
and MLflow; every step is a plain function in tasks/.
"""
from __future__ import annotations

import tempfile
from dataclasses import asdict, replace
from pathlib import Path

import mlflow
from prefect import task
from prefect import runtime as prefect_runtime
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NONE

from dreamops.flows.train import _round_run, gated_dataset
from dreamops.registry import store
from dreamops.registry.pyfunc import PickVLAPyfuncModel
from dreamops.registry.semver import Fingerprint
from dreamops.settings import get_settings
from dreamops.storage import open_store
from dreamops.tasks.config import resolve_config
from dreamops.tasks.dataset import fetch
from dreamops.tasks.dataset import merge as merge_datasets
from dreamops.tasks.device import Compute
from dreamops.tasks.evaluate_pick import PickPolicyFactory, ScriptedFactory, evaluate_pick
from dreamops.tasks.fidelity import rssm_rollout_fidelity
from dreamops.tasks.package import package_pick_version
from dreamops.tasks.pick_dagger import collect_dagger_round
from dreamops.tasks.pick_data import collect_demos, validate_demos
from dreamops.tasks.pick_fleet_data import fleet_dataset
from dreamops.tasks.plots import success_curve
from dreamops.tasks.profile import profile_chunk_latency
from dreamops.tasks.register import Candidate, TrainResult, register_version
from dreamops.tasks.pick_grounding import collect_scenes, grounding_seeds
from dreamops.tasks.train_pick import Demos, architecture, reference_scene_features, train_pick_vla
from dreamops.validation.model_gates import evaluate_pick_gates

collect_demos_task = task(collect_demos, name="collect_demos", retries=2, retry_delay_seconds=5, cache_policy=NONE)
validate_demos_task = task(validate_demos, name="validate_data", cache_policy=NONE)
train_pick_task = task(train_pick_vla, name="train_pick_vla", cache_policy=NONE)
evaluate_pick_task = task(evaluate_pick, name="evaluate_pick", retries=1, retry_delay_seconds=5, cache_policy=NONE)
profile_chunk_task = task(profile_chunk_latency, name="profile_latency", cache_policy=NONE)
fleet_dataset_task = task(fleet_dataset, name="fleet_dataset", cache_policy=NONE)
collect_dagger_task = task(collect_dagger_round, name="collect_round", retries=2, retry_delay_seconds=5,
                           cache_policy=NONE)

SETS = ("seen", "novel")


def train_pick(agent: str, profile: str, overrides: dict | None, warehouse_id: str, dataset: str | None,
               show_progress: bool, parent: str | None = None, data_window_hours: float | None = None) -> TrainResult:
    """Demonstrations (and DAgger rounds) -> encoder + RSSM + flow head; evaluated in the real cell.
    `parent`: round 0 fine-tunes that version's weights (its vocabulary and proprioception
    statistics kept) instead of starting from scratch, and the lineage records it.
    `data_window_hours`: the warehouse's fleet episodes of that window join the training data
    (world model and success / grasp heads only: they carry no expert label); the held-out set
    stays the demonstrations'."""
    settings = get_settings()
    cfg = resolve_config(profile, overrides, agent=agent)
    cfg.warehouse_id = warehouse_id
    compute = Compute.resolve(cfg.device, bf16=False)  # cuda without CUDA: an error before any work
    store.configure(settings)
    model, parent_version = _parent(agent, parent, cfg)
    objects = open_store(settings)
    workers, ray = settings.n_workers, settings.ray_address
    with mlflow.start_run(run_name=f"{agent}-{profile}") as run, tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        store.log_config(cfg.flat(), cfg.to_yaml())
        mlflow.set_tags({"agent": agent, "profile": profile, "warehouse_id": warehouse_id, "git_sha": store.git_sha(),
                         "prefect_flow_run_id": str(prefect_runtime.flow_run.id), **compute.tags()})
        data_path = (collect_demos_task(cfg.data, settings.datasets, workers, show_progress=show_progress,
                                        ray_address=ray).path
                     if dataset is None else fetch(objects, settings.datasets, dataset))
        gate = validate_demos_task(data_path, cfg.gate.data, out / "data_docs")
        data, data_uri = gated_dataset(agent, gate, out / "data_docs", data_path, settings.datasets, objects)
        mlflow.log_metric("data/expert_success", float(data.manifest["success"].mean()))
        train_ids, holdout_ids = data.split(cfg.train.holdout_fraction, cfg.seed)

        parts = [data]  # the demonstrations, the fleet's episodes, then every round's labelled on-policy episodes
        if data_window_hours:
            fleet, skipped = fleet_dataset_task(objects, settings.datasets, warehouse_id, data_window_hours,
                                           cfg.model.horizon, cfg.gate.data.min_episode_length)
            mlflow.log_metrics({"data/fleet_episodes": fleet.n_episodes if fleet else 0,
                                "data/fleet_skipped": len(skipped)})
            if skipped:
                store.log_json(skipped, "fleet_skipped.json")
            if fleet is not None:
                merged = merge_datasets([data, fleet], settings.datasets, {"fleet": [data.hash, fleet.hash]})
                gate = validate_demos_task(merged.path, cfg.gate.data, out / "data_docs_fleet")
                data, data_uri = gated_dataset(agent, gate, out / "data_docs_fleet", merged.path,
                                               settings.datasets, objects)
                parts.append(fleet)
                train_ids = train_ids + list(fleet.manifest["episode_id"])
        curve: list[dict] = []
        steps_so_far = 0
        grounding = (collect_scenes(cfg.data.object_set, grounding_seeds(cfg.train.grounding_scenes), workers,
                                    show_progress, cache_dir=settings.datasets / "scenes")
                     if cfg.train.grounding_scenes else None)   # one set for every round
        for k in range(cfg.rounds):
            with _round_run(k, cfg.rounds):
                if k > 0:  # DAgger: round k-1's policy drives, the expert labels what it visits
                    new = collect_dagger_task(cfg.data, cfg.dagger, k, PickPolicyFactory.from_model(model),
                                              settings.datasets,
                                              workers, show_progress=show_progress, ray_address=ray)
                    curve[-1]["on_policy_success"] = float(new.manifest["success"].mean())
                    curve[-1]["on_policy_episodes"] = int(new.n_episodes)
                    merged = merge_datasets(parts + [new], settings.datasets, {"rounds": [p.hash for p in parts + [new]]})
                    gate = validate_demos_task(merged.path, cfg.gate.data, out / f"data_docs_{k}")
                    data, data_uri = gated_dataset(agent, gate, out / f"data_docs_{k}", merged.path,
                                                   settings.datasets, objects)
                    parts.append(new)
                    train_ids = train_ids + list(new.manifest["episode_id"])  # the held-out set stays the demos'
                    mlflow.log_metrics({"round/on_policy_success": curve[-1]["on_policy_success"],
                                        "round/expert_chunk_share": float(new.manifest["expert_chunks"].sum()
                                                                          / max(1, new.manifest["labels"].sum()))})
                train_cfg = cfg.train if k == 0 else replace(cfg.train, steps=cfg.dagger.steps, lr=cfg.dagger.lr,
                                                             warmup_steps=cfg.dagger.warmup_steps)
                model, train_report = train_pick_task(data, train_ids, holdout_ids, train_cfg, cfg.model,
                                                      cfg.seed + k, store.MetricLogger(), show_progress,
                                                      compute=compute, init=model,
                                                      desc=f"train {agent} round {k}" if cfg.rounds > 1
                                                      else f"train {agent}", step_offset=steps_so_far,
                                                      grounding=grounding)
                steps_so_far += train_cfg.steps
                curve.append({"round": k, "episodes": int(data.n_episodes), "frames": int(data.n_frames),
                              "labelled_frames": int(train_report["train/labelled_frames"]),
                              "steps": steps_so_far, "data_hash": data.hash,
                              "holdout_flow_loss": float(train_report.get("holdout/flow/loss", float("nan")))})
        factory = PickPolicyFactory.from_model(model)
        seeds = list(range(cfg.eval.seed, cfg.eval.seed + cfg.eval.episodes))
        policies = {agent: factory}
        if cfg.eval.planner:
            policies[f"{agent}-cem"] = PickPolicyFactory.from_model(model, planner={})  # MLflow names: no "+"
        if cfg.eval.compare_baselines:
            policies |= {"expert": ScriptedFactory("target"), "no_language": ScriptedFactory("random")}
        evals = {(name, s): evaluate_pick_task(f, name, seeds, s, cfg.eval.max_steps, workers, show_progress, ray)
                 for name, f in policies.items() for s in SETS}
        latency = profile_chunk_task(model, cfg.eval.latency_iterations)
        # the world model as the planners use it: k steps imagined from one frame, P(success) calibration
        fidelity = rssm_rollout_fidelity(model, Demos.load(data, holdout_ids, cfg.model.horizon))
        mlflow.log_metrics(fidelity)
        ours = {s: evals[(agent, s)] for s in SETS}
        candidate = {"seen_success": ours["seen"].success_rate, "novel_success": ours["novel"].success_rate,
                     "collision_rate": (ours["seen"].collision_rate + ours["novel"].collision_rate) / 2,
                     "chunk_latency_p99_ms": latency["chunk"]["p99_ms"],
                     "wm_cosine": train_report["holdout/wm_cosine"]}
        gates = evaluate_pick_gates(candidate, cfg.gate.model)

        table = [r.summary() for r in evals.values()]
        report = {"evaluation": table, "candidate": candidate, "latency_ms": latency, "train": train_report,
                  "fidelity": fidelity,
                  "gates": [asdict(g) for g in gates]}
        mlflow.log_metrics({f"eval/{name}/{s}_{k}": float(r.summary()[k]) for (name, s), r in evals.items()
                            for k in ("success_rate", "collision_rate", "jerk")}
                           | {"latency/chunk_p99_ms": latency["chunk"]["p99_ms"],
                              "latency/chunk_p50_ms": latency["chunk"]["p50_ms"]})
        if cfg.rounds > 1:
            curve[-1]["eval_seen_success"] = candidate["seen_success"]
            curve[-1]["eval_novel_success"] = candidate["novel_success"]
            report["rounds"] = curve
            store.log_json(curve, "rounds.json")
            mlflow.log_artifact(str(success_curve(curve, out / "learning_curve.png")))
            for point in curve:
                mlflow.log_metrics({f"round/{k}": float(v) for k, v in point.items()
                                    if isinstance(v, (int, float)) and k != "round"}, step=point["round"])
        store.log_json(report, "evaluation_report.json")

        artifacts = package_pick_version(model, cfg.to_yaml(), report,
                                         reference_scene_features(model, data, holdout_ids), out / "package")
        to_register = Candidate(
            agent, profile, warehouse_id, run.info.run_id, str(prefect_runtime.flow_run.id), PickVLAPyfuncModel(),
            artifacts, store.pick_signature(model.arch.horizon, model.arch.action_dim, model.arch.proprio_dim),
            Fingerprint.of(model.arch.to_dict(), data.hash, cfg.to_dict()), data.hash, data_uri,
            model.component_hashes(),
            extra_tags={"eval.seen_success": f"{candidate['seen_success']:.3f}",
                        "eval.novel_success": f"{candidate['novel_success']:.3f}"},
            extra_packages=("pybullet",), parent_version=parent_version)
        registration = register_version(to_register, gates)
        registered = registration.version
        summary = _summary_markdown(agent, registered.uri, profile, data, table, latency, gates)
        create_markdown_artifact(summary, key="train-summary", description=f"{agent} {profile}")
        create_table_artifact([{k: v for k, v in row.items() if k != "failures"} for row in table],
                              key="train-evaluation")
        mlflow.log_text(summary, "summary.md")
        return TrainResult.of(to_register, registration, gates, {
            "evaluation": table, "candidate": candidate, "latency_p99_ms": latency["chunk"]["p99_ms"],
            "rounds": curve if cfg.rounds > 1 else None})


def _parent(agent: str, ref: str | None, cfg) -> tuple[object | None, str | None]:
    """The parent version's model for a warm start; its architecture must be this config's (the
    vocabulary is the parent's: the model keeps its tokenizer)."""
    if ref is None:
        return None, None
    mv, model, _ = store.load_bundle(agent, ref)
    # the vocabulary and the proprioception's width are the parent's (a 15-entry parent reads the first
    # 15 of a newer cell's 21)
    wanted = architecture(cfg.model, model.arch.vocab, model.arch.proprio_dim)
    if model.arch != wanted:
        theirs, ours = model.arch.to_dict(), wanted.to_dict()
        differ = {k: (theirs[k], ours[k]) for k in ours if theirs.get(k) != ours[k]}
        raise ValueError(f"cannot warm-start from version {mv.version}: its architecture differs from this "
                         f"config's in {differ} (parent, this config)")
    return model, str(mv.version)


def _summary_markdown(agent: str, uri: str, profile: str, data, table: list[dict], latency: dict, gates: list) -> str:
    rows = "\n".join(f"| {r['policy']} | {r['object_set']} | {r['success_rate']:.0%} | {r['collision_rate']:.0%} | "
                     f"{r['cycle_time_s']:.2f} | {r['jerk']:.3f} | "
                     f"{', '.join(f'{k} {v}' for k, v in r['failures'].items() if v) or '-'} |" for r in table)
    gate_rows = "\n".join(f"| {g.name} | {g.tag} |" for g in gates)
    return (f"# {agent} ({profile}) -> {uri}\n\n"
            f"Data: `{data.hash[:16]}` ({data.n_episodes} demonstrations, {data.n_frames} frames)\n\n"
            f"| policy | objects | success | collisions | cycle time (s) | jerk | failures |\n"
            f"|---|---|---|---|---|---|---|\n{rows}\n\n"
            f"Chunk generation on 1 thread: p50 {latency['chunk']['p50_ms']:.2f} ms, "
            f"p99 {latency['chunk']['p99_ms']:.2f} ms\n\n| gate | result |\n|---|---|\n{gate_rows}\n")


def summary_lines(result: TrainResult) -> list[str]:
    """What `dreamops train` prints about a registered version, under its URI."""
    r = result.family
    rows = [f"{r['policy']:<14}{r['object_set']:<8}{r['success_rate']:>8.0%}{r['collision_rate']:>11.0%}"
            f"{r['cycle_time_s']:>9.2f}{r['jerk']:>7.3f}" for r in r["evaluation"]]
    return [f"{'policy':<14}{'objects':<8}{'success':>8}{'collisions':>11}{'cycle s':>9}{'jerk':>7}", *rows,
            f"chunk generation p99 {r['latency_p99_ms']:.2f} ms on 1 thread; "
            f"world-model one-step cosine {r['candidate']['wm_cosine']:.3f}"]
