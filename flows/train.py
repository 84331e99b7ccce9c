"""The `train` flow: collect -> V -> encode -> M -> C in the dream -> evaluate -> profile -> register.

Wiring only: every step is a plain function in `tasks/`, wrapped here as a Prefect task.
"""
from __future__ import annotations

import contextlib
import tempfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import mlflow
from prefect import flow, task
from prefect import runtime as prefect_runtime
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NONE

from dreamops.families import DEFAULT_FAMILY, family
from dreamops.models.bundle import Architecture, BundlePolicyFactory, VMCBundle, module_hash
from dreamops.registry import store
from dreamops.registry.pyfunc import VMCPyfuncModel
from dreamops.registry.semver import Fingerprint
from dreamops.settings import get_settings
from dreamops.storage import open_store
from dreamops.tasks import plots
from dreamops.tasks.actor_critic import actor_critic_checkpoints
from dreamops.tasks.collect import collect, collect_round, collect_validation
from dreamops.tasks.config import resolve_config
from dreamops.tasks.dataset import fetch, merge, open_dataset, publish
from dreamops.tasks.device import Compute
from dreamops.tasks.encode import encode
from dreamops.tasks.evaluate import EvalReport, evaluate, evaluate_baseline, report_from_episodes
from dreamops.tasks.evolve import evolve_checkpoints
from dreamops.tasks.failures import analyze_failures
from dreamops.tasks.fidelity import gate_horizon, mdn_rollout_fidelity
from dreamops.tasks.fleet_data import with_fleet_episodes
from dreamops.tasks.gate import candidate_metrics, check_model, production_metrics, validate_data
from dreamops.tasks.package import package_version, reference_latents
from dreamops.tasks.profile import profile_latency
from dreamops.tasks.register import Candidate, TrainResult, register_version
from dreamops.tasks.timing import StageClock
from dreamops.tasks.train_mdnrnn import dream_start_states, train_mdnrnn, zoom_steps
from dreamops.tasks.train_vae import train_vae
from dreamops.validation.data_gate import DataGateError, DataGateReport

# Simulator work can fail transiently (a worker process killed); training is deterministic.
collect_task = task(collect, name="collect", retries=2, retry_delay_seconds=5, cache_policy=NONE)
collect_round_task = task(collect_round, name="collect_round", retries=2, retry_delay_seconds=5, cache_policy=NONE)
collect_validation_task = task(collect_validation, name="validate_as_data", retries=2, retry_delay_seconds=5,
                               cache_policy=NONE)
merge_datasets = task(merge, name="merge_datasets", cache_policy=NONE)
validate_data_task = task(validate_data, name="validate_data", cache_policy=NONE)
production_task = task(production_metrics, name="production_metrics", cache_policy=NONE)
check_model_task = task(check_model, name="model_gates", cache_policy=NONE)
train_vae_task = task(train_vae, name="train_vae", cache_policy=NONE)
encode_task = task(encode, name="encode", cache_policy=NONE)
train_mdnrnn_task = task(train_mdnrnn, name="train_mdnrnn", cache_policy=NONE)
starts_task = task(dream_start_states, name="dream_start_states", cache_policy=NONE)
evolve_task = task(evolve_checkpoints, name="evolve_controller", cache_policy=NONE)
actor_critic_task = task(actor_critic_checkpoints, name="actor_critic_controller", cache_policy=NONE)
evaluate_task = task(evaluate, name="evaluate", retries=1, retry_delay_seconds=5, cache_policy=NONE)
baseline_task = task(evaluate_baseline, name="evaluate_baseline", retries=1, retry_delay_seconds=5, cache_policy=NONE)
failures_task = task(analyze_failures, name="analyze_failures", cache_policy=NONE)
profile_task = task(profile_latency, name="profile_latency", cache_policy=NONE)
fidelity_task = task(mdn_rollout_fidelity, name="rollout_fidelity", cache_policy=NONE)


@flow(name="train")
def train(agent: str = DEFAULT_FAMILY, profile: str = "quick", overrides: dict | None = None,
          warehouse_id: str = "default", dataset: str | None = None, show_progress: bool = True,
          parent: str | None = None, data_window_hours: float | None = None) -> TrainResult:
    """Train, evaluate and register one version of the agent family `agent` (dreamops.families).
    `dataset` (a hash, prefix or path) trains on an existing dataset instead of collecting one.
    `parent` (a version number, semver or alias) warm-starts from that version's weights and is
    recorded in the lineage. `data_window_hours` adds the warehouse's fleet episodes uploaded in
    that window to the data. The family's own train function does the wiring."""
    fam = family(agent)
    fam.check_profile(profile)
    extras = {}
    if parent is not None:
        fam.require("warm_start")
        extras["parent"] = parent
    if data_window_hours:
        fam.require("fleet_data")
        extras["data_window_hours"] = data_window_hours
    return fam.load("train_flow")(fam.name, profile, overrides, warehouse_id, dataset, show_progress, **extras)


def train_vmc(agent: str, profile: str, overrides: dict | None, warehouse_id: str, dataset: str | None,
              show_progress: bool, parent: str | None = None, data_window_hours: float | None = None) -> TrainResult:
    """V -> M -> C in the dream, in rounds of on-policy data; evaluated in the real CarRacing."""
    settings = get_settings()
    cfg = resolve_config(profile, overrides, agent=agent)
    cfg.warehouse_id = warehouse_id
    if cfg.vae.epochs == 0 and parent is None:
        raise ValueError("vae.epochs=0 reuses a parent's V: name the parent version with --parent")
    compute = Compute.resolve(cfg.device, cfg.bf16)  # cuda without CUDA: an error before any work
    store.configure(settings)
    parent_bundle, parent_version = _parent(agent, parent, cfg)
    objects = open_store(settings)
    log = store.MetricLogger()
    workers = settings.n_workers
    clock = StageClock()  # seconds per stage and round: rounds.json, time/* metrics
    with mlflow.start_run(run_name=f"{agent}-{profile}") as run, tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        store.log_config(cfg.flat(), cfg.to_yaml())
        mlflow.set_tags({"agent": agent, "profile": profile, "warehouse_id": warehouse_id, "git_sha": store.git_sha(),
                         "prefect_flow_run_id": str(prefect_runtime.flow_run.id), **compute.tags()})

        if dataset is None:
            data_path = clock.run("collect", collect_task, cfg.collect, settings.datasets, workers,
                                  show_progress=show_progress, ray_address=settings.ray_address).path
        else:
            data_path = fetch(objects, settings.datasets, dataset)
        if data_window_hours:
            merged, n_fleet, skipped = with_fleet_episodes(
                open_dataset(settings.datasets, str(data_path)), objects, settings.datasets, warehouse_id,
                data_window_hours, cfg.collect.action_repeat,
                replace(cfg.gate.data, skip_start_steps=zoom_steps(cfg.collect.action_repeat)))
            data_path = merged.path
            mlflow.log_metrics({"data/fleet_episodes": n_fleet, "data/fleet_skipped": len(skipped)})
            if skipped:
                store.log_json(skipped, "fleet_skipped.json")
        gate = clock.run("data", validate_data_task, data_path, cfg.gate, cfg.collect.action_repeat, out / "data_docs")
        data, data_uri = clock.run("data", gated_dataset, agent, gate, out / "data_docs", data_path,
                                   settings.datasets, objects)
        train_ids, holdout_ids = data.split(cfg.vae.holdout_fraction, cfg.seed)

        parts = [data]  # every round's new data; the dataset trained on is all of it
        models = {"vae": None, "mdnrnn": None, "controller": None} if parent_bundle is None else \
            {"vae": parent_bundle.vae, "mdnrnn": parent_bundle.mdnrnn, "controller": parent_bundle.controller}
        curve: list[RoundPoint] = []
        seeds = list(range(cfg.eval.seed, cfg.eval.seed + cfg.eval.episodes))
        recorded: list = []  # a round's validation episodes that join the next round's data
        validation_in_data = 0  # frames of validation episodes that joined the data (counted once in the total)
        best: RoundModels | None = None  # the champion on the validation episodes: what ships
        validation_frames = 0  # real interaction too, that chose the rounds: counted apart from the data
        encoded = None  # the last encoding and its V: a round whose V did not move encodes only new episodes
        for k in range(cfg.rounds):
            with _round_run(k, cfg.rounds):
                if k > 0:  # the flywheel: the starting round's controller drives, its episodes join the data
                    new_parts = recorded  # the last round's validation episodes, when they are data
                    if cfg.collect.episodes_per_round > 0:
                        new_parts = [clock.run("collect", collect_round_task, cfg.collect, k,
                                               start.bundle_path.read_bytes(), settings.datasets, workers,
                                               show_progress=show_progress, ray_address=settings.ray_address),
                                     *new_parts]
                    merged = clock.run("data", merge_datasets, parts + new_parts, settings.datasets,
                                       {"rounds": [p.hash for p in parts + new_parts]})
                    gate = clock.run("data", validate_data_task, merged.path, cfg.gate, cfg.collect.action_repeat,
                                     out / f"data_docs_{k}")
                    data, data_uri = clock.run("data", gated_dataset, agent, gate, out / f"data_docs_{k}",
                                               merged.path, settings.datasets, objects)
                    validation_in_data += sum(int(p.manifest["env_frames"].sum()) for p in recorded)
                    for i, new in enumerate(new_parts):
                        parts.append(new)
                        new_train, new_holdout = new.split(cfg.vae.holdout_fraction, cfg.seed + k + 7_919 * i)
                        train_ids, holdout_ids = train_ids + new_train, holdout_ids + new_holdout
                r = cfg.for_round(k)
                vae, vae_report = clock.run("vae", train_vae_task, data, train_ids, holdout_ids, r.vae,
                                            cfg.seed + k, log, show_progress, init=models["vae"], compute=compute)
                latents = clock.run("encode", encode_task, vae, data, compute=compute, known=encoded)
                encoded = (module_hash(vae), latents)
                mdnrnn, mdn_report = clock.run("mdn", train_mdnrnn_task, latents, train_ids, holdout_ids, r.mdn,
                                               action_repeat=cfg.collect.action_repeat, seed=cfg.seed + k,
                                               log=log, show_progress=show_progress, init=models["mdnrnn"],
                                               compute=compute)
                # the start states: one batch-1 pass per episode, on the CPU (no device would help)
                starts = clock.run("starts", starts_task, mdnrnn, latents, train_ids, seed=cfg.seed + k,
                                   skip_steps=cfg.cma.start_after_steps)
                if cfg.controller_trainer == "actor_critic":   # on the CPU (tasks/actor_critic.py)
                    controllers, history = clock.run("cma", actor_critic_task, mdnrnn, starts, r.ac, r.cma,
                                                     r.cma.seed, log, show_progress, init=models["controller"])
                else:
                    controllers, history = clock.run("cma", evolve_task, mdnrnn, starts, r.cma, log, show_progress,
                                                     init=models["controller"], compute=compute)
                generations = [int(g) for g in history["checkpoint_generation"]]
                named = len(controllers) > 1  # one directory and label per checkpoint
                checkpoint_unit = "update" if cfg.controller_trainer == "actor_critic" else "generation"
                challengers = []
                for c, g in zip(controllers, generations):
                    b = VMCBundle(_architecture(cfg), vae, mdnrnn, c)
                    path = b.save(out / f"round_{k}" / (f"generation_{g}" if named else "") / "vmc_bundle.pt")
                    challengers.append(RoundModels(k, b, path, vae_report, mdn_report, history, latents))
                recorded = []  # this round's validation episodes, data for the next round (validation_as_data)
                validation_seeds = cfg.validation_seeds(k)
                if cfg.rounds > 1:  # scored on validation seeds: the choice never sees the evaluation seeds
                    for c, g in zip(challengers, generations):
                        label = f"vmc round {k}" + (f" {checkpoint_unit} {g}" if named else "")
                        if cfg.collect.validation_as_data:
                            played = clock.run("validate", collect_validation_task, cfg.collect, k, f"g{g:03d}",
                                               c.bundle_path.read_bytes(), validation_seeds, settings.datasets,
                                               workers, show_progress=show_progress, ray_address=settings.ray_address)
                            recorded.append(played)
                            c.validation = report_from_episodes(f"{label} (validation)", played)
                        else:
                            c.validation = clock.run(
                                "validate", evaluate_task, BundlePolicyFactory(str(c.bundle_path)),
                                f"{label} (validation)", validation_seeds, cfg.eval.max_steps, workers,
                                show_progress, settings.ray_address)
                        validation_frames += sum(c.validation.lengths)
                chosen = _choose_checkpoint(challengers)
                history["chosen_generation"] = [float(generations[chosen])]
                history["final_dream_return"] = [history["checkpoint_dream_return"][chosen]]
                challenger, bundle = challengers[chosen], challengers[chosen].bundle
                kept = best is None or not cfg.eval.keep_best_round or \
                    challenger.validation.mean > best.validation.mean
                if kept:
                    best = challenger
                start = best if cfg.round_start == "best" else challenger  # next round's driver and warm start
                stage_s = clock.lap()
                mlflow.log_metrics({f"time/{name}_s": s for name, s in stage_s.items()})
                if cfg.rounds > 1:
                    data_frames = int(data.manifest["env_frames"].sum())
                    curve.append(RoundPoint(k, data.hash, data_frames, data.n_episodes,
                                            history["final_dream_return"][0], challenger.validation.mean,
                                            challenger.validation.std, len(validation_seeds), kept, best.round,
                                            validation_frames, clock.elapsed(), stage_s,
                                            generations[chosen],
                                            {str(g): c.validation.mean for c, g in zip(challengers, generations)},
                                            data_frames + validation_frames - validation_in_data))
                    mlflow.log_metrics(curve[-1].metrics())
                    mlflow.set_tags({f"weights.{c}": h for c, h in bundle.component_hashes().items()})
                    if show_progress:
                        if named:
                            trainer = "actor-critic" if checkpoint_unit == "update" else "CMA-ES"
                            print(f"round {k}: validation return per {trainer} {checkpoint_unit} "
                                  + ", ".join(f"{g}: {v:.1f}" for g, v in curve[-1].checkpoint_returns.items())
                                  + f"; {checkpoint_unit} {curve[-1].chosen_generation} kept", flush=True)
                        print(f"round {k}: validation return {challenger.validation.mean:.1f} "
                              + ("(best so far)" if kept else f"(below round {best.round}'s "
                                                              f"{best.validation.mean:.1f})")
                              + f"; round {k + 1} starts from round {start.round}" * (k + 1 < cfg.rounds),
                              flush=True)
                models = {"vae": start.bundle.vae, "mdnrnn": start.bundle.mdnrnn, "controller": start.bundle.controller}
        bundle, vae, mdnrnn = best.bundle, best.bundle.vae, best.bundle.mdnrnn
        vae_report, mdn_report, history, latents = best.vae_report, best.mdn_report, best.history, best.latents
        if best.round != cfg.rounds - 1:  # the shipped V encodes the whole dataset (reference latents)
            latents = clock.run("encode", encode_task, vae, data, compute=compute, known=encoded)
        evals = {"vmc": clock.run("evaluate", evaluate_task, BundlePolicyFactory(str(best.bundle_path)), "vmc",
                                  seeds, cfg.eval.max_steps, workers, show_progress, settings.ray_address)}
        real_frames = int(data.manifest["env_frames"].sum())
        total_frames = real_frames + validation_frames - validation_in_data  # every real frame the run played
        if cfg.rounds > 1:
            for point in curve:  # the learning curve on the parent run too, one step per round
                mlflow.log_metrics(point.metrics(), step=point.round)
            mlflow.log_artifact(str(plots.learning_curve([asdict(p) for p in curve], out / "learning_curve.png",
                                                         score="validation return")), "plots")
            store.log_json([asdict(p) for p in curve], "rounds.json")
            mlflow.set_tag("shipped_round", str(best.round))
        mlflow.log_metrics({"data/real_frames": real_frames, "data/validation_frames": validation_frames,
                            "data/total_frames": total_frames})
        if cfg.eval.compare_baselines:
            for name in ("random", "rule_based"):  # deterministic per seed: cached across runs
                evals[name] = clock.run("baselines", baseline_task, name, seeds, cfg.eval.max_steps, workers,
                                        settings.resolved_home / "baselines", show_progress, settings.ray_address)
        failures = failures_task(evals["vmc"].episodes)
        latency = clock.run("profile", profile_task, bundle, cfg.eval.latency_iterations)
        # how far ahead the shipped M is trusted, from real held-out situations past the zoom-in
        fidelity = clock.run("fidelity", fidelity_task, vae, mdnrnn, data, holdout_ids,
                             skip_steps=cfg.cma.start_after_steps, seed=cfg.seed)
        mlflow.log_metrics(fidelity)
        candidate = candidate_metrics(vae_report, mdn_report, history, evals["vmc"], latency, fidelity,
                                      min(cfg.gate.model.mdn_fidelity_horizon, cfg.cma.dream_steps))
        production = production_task(agent, data, holdout_ids, cfg.collect.action_repeat)
        gates = check_model_task(candidate, cfg.gate, production)

        report = {"evaluation": {k: v.summary() for k, v in evals.items()}, "failures": failures,
                  "gates": [{"name": g.name, "passed": g.passed, "figure": g.figure, "threshold": g.threshold}
                            for g in gates], "production": production,
                  "latency_ms": latency, "dream": {"final_return": history["final_dream_return"][0]},
                  "vae": vae_report, "mdn": mdn_report, "fidelity": fidelity}
        mlflow.log_metrics({"eval/mean_reward": evals["vmc"].mean, "eval/std_reward": evals["vmc"].std,
                            "eval/off_track_events": float(sum(evals["vmc"].off_track_events)),
                            "latency/full_step_p99_ms": latency["full_step"]["p99_ms"],
                            **{f"eval/{k}_mean_reward": v.mean for k, v in evals.items() if k != "vmc"}})
        holdout = data.load(holdout_ids[0])
        pics = [plots.reconstruction_grid(vae, holdout["obs"][:: max(1, len(holdout["obs"]) // 8)][:8],
                                          out / "reconstruction_grid.png"),
                plots.dream_vs_real_strip(vae, mdnrnn, holdout["obs"], holdout["actions"], out / "dream_vs_real.png"),
                plots.reward_curves(history, {k: v.rewards for k, v in evals.items()}, out / "reward_curves.png"),
                plots.fidelity_curve(fidelity, out / "rollout_fidelity.png",
                                     trained_for=gate_horizon(cfg.cma.dream_steps))]
        for pic in pics:
            mlflow.log_artifact(str(pic), "plots")
        store.log_json(report, "evaluation_report.json")

        artifacts = clock.run("register", package_version, bundle, cfg.to_yaml(), report,
                              reference_latents(latents, holdout_ids), out / "package")
        to_register = Candidate(
            agent, profile, warehouse_id, run.info.run_id, str(prefect_runtime.flow_run.id), VMCPyfuncModel(),
            artifacts, store.frame_signature(), Fingerprint.of(asdict(bundle.arch), data.hash, cfg.to_dict()),
            data.hash, data_uri, bundle.component_hashes(),
            extra_tags={"eval.mean_reward": f"{evals['vmc'].mean:.1f}", "real_frames": str(real_frames),
                        "validation_frames": str(validation_frames), "total_frames": str(total_frames),
                        "rounds": str(cfg.rounds),
                        "shipped_round": str(best.round), "round_data_hashes": ",".join(p.hash for p in parts)},
            extra_packages=("gymnasium",), parent_version=parent_version)
        registration = clock.run("register", register_version, to_register, gates)
        registered = registration.version
        final_s = clock.lap()  # the shipped version's evaluation, baselines, latency, gates, registration
        mlflow.log_metrics({**{f"time/final_{name}_s": s for name, s in final_s.items()},
                            "time/total_s": clock.elapsed()})
        summary = _summary_markdown(agent, profile, registered, data, evals, latency, history, failures, gates)
        create_markdown_artifact(summary, key="train-summary", description=f"{agent} {profile}")
        create_table_artifact([{"policy": k, **{m: v.summary()[m] for m in ("mean_reward", "std_reward",
                                                                           "mean_length", "off_track_events")}}
                               for k, v in evals.items()], key="train-evaluation")
        mlflow.log_text(summary, "summary.md")
        return TrainResult.of(to_register, registration, gates, {
            "mean_reward": evals["vmc"].mean, "baselines": {k: v.mean for k, v in evals.items() if k != "vmc"},
            "latency_p99_ms": latency["full_step"]["p99_ms"], "dream_return": history["final_dream_return"][0],
            "real_frames": real_frames, "validation_frames": validation_frames, "total_frames": total_frames,
            "rounds": [asdict(p) for p in curve], "shipped_round": best.round}, clock.totals(), clock.elapsed())


@dataclass
class RoundPoint:
    """One point of the learning curve: what a round trained on and how its controller scored on
    the validation seeds."""
    round: int
    data_hash: str
    real_frames: int  # simulator frames in the data so far (all rounds)
    episodes: int
    dream_return: float
    real_return: float
    real_std: float
    eval_episodes: int
    kept: bool = True  # the best round so far on the validation episodes (what would ship)
    champion_round: int = 0  # the best round so far
    validation_frames: int = 0  # simulator frames the validation episodes played so far (all rounds)
    wall_s: float = 0.0  # wall seconds from the start of the flow to the end of this round
    stage_s: dict[str, float] = field(default_factory=dict)  # this round's seconds per stage (tasks/timing.py)
    chosen_generation: int = -1  # the CMA-ES generation whose mean became the round's controller (cma.checkpoints)
    checkpoint_returns: dict[str, float] = field(default_factory=dict)  # validation return per kept generation
    total_frames: int = 0  # every real frame played so far: data and validation, each counted once

    def frames_played(self) -> int:
        return self.total_frames or self.real_frames + self.validation_frames

    def metrics(self) -> dict[str, float]:
        return {"round/real_return": self.real_return, "round/dream_return": self.dream_return,
                "round/real_frames": float(self.real_frames), "round/episodes": float(self.episodes),
                "round/kept": float(self.kept), "round/champion_round": float(self.champion_round),
                "round/validation_frames": float(self.validation_frames), "round/wall_s": self.wall_s,
                "round/chosen_generation": float(self.chosen_generation),
                "round/total_frames": float(self.frames_played())}


@dataclass
class RoundModels:
    """What one round trained, kept whole so an earlier round can still be shipped."""
    round: int
    bundle: VMCBundle
    bundle_path: Path
    vae_report: dict
    mdn_report: dict
    history: dict
    latents: Any
    validation: EvalReport | None = None  # on the validation seeds (multi-round runs only)


def _choose_checkpoint(challengers: list[RoundModels]) -> int:
    """The checkpoint that scored best on the validation episodes; on a tie the later one (the
    search went on for a reason). Without validation (one round) the last: the final mean."""
    if len(challengers) == 1 or challengers[0].validation is None:
        return len(challengers) - 1
    return max(range(len(challengers)), key=lambda i: (challengers[i].validation.mean, i))


def _round_run(k: int, rounds: int):
    """Each round of a multi-round run is a nested MLflow run; a one-round run logs to its parent."""
    if rounds == 1:
        return contextlib.nullcontext()
    return mlflow.start_run(run_name=f"round-{k}", nested=True, tags={"round": str(k)})


def _architecture(cfg) -> Architecture:
    return Architecture(cfg.vae.latent_dim, cfg.mdn.hidden_dim, cfg.mdn.n_gaussians,
                        action_repeat=cfg.collect.action_repeat)


def _parent(agent: str, ref: str | None, cfg) -> tuple[VMCBundle | None, str | None]:
    """The parent version's weights for a warm start; its architecture must match this config's."""
    if ref is None:
        return None, None
    mv, bundle, _ = store.load_bundle(agent, ref)
    if bundle.arch != _architecture(cfg):
        raise ValueError(f"cannot warm-start from version {mv.version}: its architecture {asdict(bundle.arch)} "
                         f"differs from this config's {asdict(_architecture(cfg))}")
    return bundle, str(mv.version)


def gated_dataset(agent: str, gate: DataGateReport, docs_dir: Path, data_path: Path, local_root: Path,
                  objects) -> tuple:
    """Any family: publish the data gate's verdict; stop the run if it failed (before any training,
    so nothing gets registered); else publish the dataset by hash and log it as the run's input.
    -> (dataset, its URI in the object store)."""
    publish_data_gate(gate, docs_dir)
    if not gate.passed:
        raise DataGateError(gate)
    data = open_dataset(local_root, str(data_path))
    data_uri = publish(objects, data.path)
    store.log_dataset(data.manifest, data.hash, data_uri, f"{agent}-{data.hash[:12]}")
    mlflow.log_metrics({"data/episodes": data.n_episodes, "data/frames": data.n_frames})
    return data, data_uri


def publish_data_gate(gate: DataGateReport, docs_dir: Path) -> None:
    """The gate's verdict where people look: MLflow (Data Docs, JSON, tag) and a Prefect artifact."""
    if docs_dir.exists():
        mlflow.log_artifacts(str(docs_dir), "data_docs")
    store.log_json(gate.to_dict(), "data_gate.json")
    mlflow.set_tag("gate.data", "passed" if gate.passed else "failed: " + "; ".join(c.name for c in gate.failures))
    create_markdown_artifact(gate.markdown(), key="data-gate", description=f"data gate for {gate.dataset}")


def _summary_markdown(agent, profile, registered, data, evals, latency, history, failures, gates) -> str:
    rows = "\n".join(f"| {k} | {v.mean:.1f} | {v.std:.1f} | {sum(v.off_track_events)} |" for k, v in evals.items())
    gate_rows = "\n".join(f"| {g.name} | {g.tag} |" for g in gates)
    return (f"# {agent} ({profile}) -> {registered.uri}\n\n"
            f"Data: `{data.hash[:16]}` ({data.n_episodes} episodes, {data.n_frames} frames)\n\n"
            f"| policy | mean return | std | off-track events |\n|---|---|---|---|\n{rows}\n\n"
            f"Dream return of the final controller: {history['final_dream_return'][0]:.1f}\n\n"
            f"Full V-M-C step on 1 thread: p50 {latency['full_step']['p50_ms']:.2f} ms, "
            f"p99 {latency['full_step']['p99_ms']:.2f} ms\n\n"
            f"Failures: {failures['counts']}\n\n| gate | result |\n|---|---|\n{gate_rows}\n")


def summary_lines(result: TrainResult) -> list[str]:
    """What `dreamops train` prints about a registered version, under its URI."""
    r = result.family
    baselines = ", ".join(f"{k} {v:.1f}" for k, v in r["baselines"].items())
    return [f"real-env mean return {r['mean_reward']:.1f}" + (f" (baselines: {baselines})" if baselines else ""),
            f"dream return {r['dream_return']:.1f}; full-step p99 {r['latency_p99_ms']:.2f} ms",
            f"real frames in the training data: {r['real_frames']:,} over {max(1, len(r['rounds']))} "
            "round(s)" + "".join(f"\n    round {p['round']}: validation {p['real_return']:.1f} ({p['eval_episodes']} "
                                 f"episodes), dream {p['dream_return']:.1f}, {p['real_frames']:,} frames"
                                 + ("" if p["kept"] else f", below round {p['champion_round']}")
                                 for p in r["rounds"])
            + (f"\n    shipped: round {r['shipped_round']}; validation episodes played "
               f"{r['validation_frames']:,} real frames" if r["rounds"] else "")
            + f"\nreal simulator frames played in all: {r.get('total_frames', r['real_frames']):,}"]
