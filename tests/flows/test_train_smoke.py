"""End to end: `dreamops train --profile smoke` registers a version that MLflow loads and that drives
a real CarRacing episode; evaluate/profile work on it; bad input gives one-line errors."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import mlflow
import numpy as np
import pytest

from dreamops.flows.cli import main
from dreamops.flows.up import stop_process
from dreamops.registry import store
from dreamops.sim.carracing import CarRacing
from tests.bench import bench_module

pytestmark = pytest.mark.e2e


def test_smoke_run_registers_a_version_that_drives_carracing(prefect_server, dreamops_home, capsys):
    """`dreamops train --profile smoke` as a user runs it (a process of its own, no Prefect or MLflow
    settings: it starts Prefect's temporary server): its log is its progress and its summary, no
    library warnings or per-task log lines; then the version it registered."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_", "DREAMOPS_"))}
    env.update(DREAMOPS_HOME=str(dreamops_home), DREAMOPS_WORKERS="2")
    proc = subprocess.run([sys.executable, "-m", "dreamops.flows.cli", "train", "--profile", "smoke"],
                          env=env, capture_output=True, text=True, timeout=600, cwd=dreamops_home.parent)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "Registered models:/carracing-vmc/1" in out
    assert "every gate passed" in out and "collect episodes" in out  # the summary and the progress
    timing = [line for line in out.splitlines() if "time in the flow" in line]  # where the minutes went
    assert len(timing) == 1 and all(f" {stage} " in timing[0] for stage in ("collect", "vae", "mdn", "cma",
                                                                             "evaluate", "other")), timing
    for noise in ("Warning", "WARNING", "| INFO", " INFO ", "Downloading artifacts"):
        assert noise not in out, f"{noise!r} in a normal run's log:\n{out}"

    from dreamops.registry import store
    from dreamops.settings import get_settings

    client = store.configure(get_settings())
    mv = client.get_model_version("carracing-vmc", "1")
    assert len(mv.tags["data_hash"]) == 64 and mv.tags["profile"] == "smoke"
    assert {"weights.vae", "weights.mdnrnn", "weights.controller", "git_sha"} <= set(mv.tags)
    run = client.get_run(mv.run_id)
    assert run.data.params["cma.population"] == "4"
    assert {"vae/holdout_recon", "mdn/holdout_nll", "cma/best_fitness", "eval/mean_reward"} <= set(run.data.metrics)
    artifacts = {a.path for a in client.list_artifacts(mv.run_id, "plots")}
    assert {"plots/reconstruction_grid.png", "plots/dream_vs_real.png", "plots/reward_curves.png",
            "plots/rollout_fidelity.png"} <= artifacts
    metrics = client.get_run(mv.run_id).data.metrics   # how far ahead M is trusted, at every horizon
    assert all(f"fidelity/k{k}/latent_nmse" in metrics and f"fidelity/k{k}/psnr" in metrics for k in (1, 5, 15, 50))
    assert mv.tags["gate.mdn_fidelity"].startswith("passed")   # smoke's thresholds pass anything

    model = mlflow.pyfunc.load_model("models:/carracing-vmc/1")
    env = CarRacing(max_steps=80)
    frame, total, steps = env.reset(seed=4242), 0.0, 0
    action = model.predict(frame[None], params={"reset": True})
    first_frame, first_action = frame[None], action.copy()
    while True:
        assert action.shape == (1, 3) and -1 <= action[0, 0] <= 1 and 0 <= action[0, 1] <= 1
        frame, reward, terminated, truncated = env.step(action[0])
        total, steps = total + reward, steps + 1
        if terminated or truncated:
            break
        action = model.predict(frame[None])
    env.close()
    assert steps == 80 and np.isfinite(total)
    # `reset` is in the signature (MLflow drops undeclared params): it restores the first call's actions
    assert np.array_equal(model.predict(first_frame, params={"reset": True}), first_action)

    assert main(["evaluate", "--model", "latest", "--episodes", "2", "--max-steps", "50"]) == 0
    assert "mean return" in capsys.readouterr().out
    assert main(["profile", "--model", "1.0.0", "--iterations", "20"]) == 0  # by semver
    assert "full_step" in capsys.readouterr().out
    _ui_lists_the_model(dreamops_home)


def test_warm_start_records_the_parent_and_reuses_its_vae(prefect_server, dreamops_home, capsys):
    assert main(["train", "--profile", "smoke", "--no-progress"]) == 0
    assert main(["train", "--profile", "smoke", "--no-progress", "--parent", "1", "--set", "vae.epochs=0"]) == 0
    assert "semver 1.0.1" in capsys.readouterr().out  # same architecture and data, other hyperparameters
    client = mlflow.MlflowClient()
    v1, v2 = client.get_model_version("carracing-vmc", "1"), client.get_model_version("carracing-vmc", "2")
    assert v2.tags["parent_version"] == "1"
    assert v2.tags["weights.vae"] == v1.tags["weights.vae"]  # reused unchanged
    assert v2.tags["weights.mdnrnn"] != v1.tags["weights.mdnrnn"]  # warm-started, then trained further
    assert main(["lineage", "2"]) == 0
    out = capsys.readouterr().out
    assert "parent version: 1" in out and "semver 1.0.1" in out and v1.tags["data_hash"] in out
    assert main(["train", "--profile", "smoke", "--set", "vae.epochs=0", "--no-progress"]) == 2
    assert "name the parent version with --parent" in capsys.readouterr().err
    assert main(["train", "--profile", "smoke", "--parent", "1", "--set", "vae.latent_dim=16", "--no-progress"]) == 2
    assert "cannot warm-start from version 1" in capsys.readouterr().err

    # versions are immutable: weights that no longer match their registered hash are not served
    client.set_model_version_tag("carracing-vmc", "1", "weights.controller", "0" * 64)
    assert main(["evaluate", "--model", "1", "--episodes", "1", "--max-steps", "10"]) == 1
    assert "controller weights hash to" in capsys.readouterr().err


def test_rounds_collect_with_the_controller_and_register_only_the_final_round(prefect_server, dreamops_home, capsys):
    """The data flywheel: round 1 drives with round 0's controller; each round is a nested run with
    its real and dream return; the parent logs the learning curve; one version, with every round's
    dataset in its lineage and the real frames it used. Two CMA-ES checkpoints per round: the
    validation episode of each chooses the round's controller."""
    sets = ["rounds=2", "collect.episodes_per_round=4", "eval.round_episodes=1", "eval.compare_baselines=true",
            "cma.checkpoints=2"]
    assert main(["train", "--profile", "smoke", "--no-progress", *[a for s in sets for a in ("--set", s)]]) == 0
    out = capsys.readouterr().out
    assert "real frames" in out and "(baselines: random" in out
    # the baselines are cached in the home for the next run on the same evaluation seeds
    assert sorted(p.name.split("-")[0] for p in (dreamops_home / "baselines").glob("*.json")) == ["random", "rule_based"]
    client = mlflow.MlflowClient()
    versions = client.search_model_versions("name='carracing-vmc'")
    assert len(versions) == 1
    mv = versions[0]
    round_hashes = mv.tags["round_data_hashes"].split(",")
    assert len(round_hashes) == 2 and mv.tags["data_hash"] not in round_hashes  # the union has its own hash
    parent = client.get_run(mv.run_id)
    rounds = client.search_runs([parent.info.experiment_id],
                                f"tags.mlflow.parentRunId = '{mv.run_id}'", order_by=["tags.round"])
    assert [r.data.tags["round"] for r in rounds] == ["0", "1"]
    assert all({"round/real_return", "round/dream_return", "round/real_frames"} <= set(r.data.metrics) for r in rounds)
    frames = [r.data.metrics["round/real_frames"] for r in rounds]
    assert frames[1] > frames[0] and int(mv.tags["real_frames"]) == frames[1] == parent.data.metrics["data/real_frames"]
    assert {"mdn/holdout_nll", "cma/best_fitness"} <= set(rounds[1].data.metrics)  # round 1 trained M and C
    # where the time went: every round's stages, the collection of round 1 included (bench/time_to_quality.py)
    assert {f"time/{s}_s" for s in ("collect", "vae", "encode", "mdn", "cma", "validate")} <= set(rounds[1].data.metrics)
    curve = json.loads(store.read_run_artifact(mv.run_id, "rounds.json"))
    assert curve[1]["wall_s"] > curve[0]["wall_s"] > sum(curve[0]["stage_s"].values()) * 0.99
    assert [p["validation_frames"] for p in curve] == [120, 240]  # 2 checkpoints x 1 episode x 60 frames
    for p in curve:  # the round's controller is the checkpoint that drove best (the later on a tie)
        returns = {int(g): v for g, v in p["checkpoint_returns"].items()}
        assert len(returns) == 2 and p["real_return"] == returns[p["chosen_generation"]] == max(returns.values())
        assert p["chosen_generation"] == max(g for g, v in returns.items() if v == max(returns.values()))
    assert "0" in curve[1]["checkpoint_returns"]  # a warm round's first checkpoint: its starting controller
    assert parent.data.metrics["time/total_s"] >= curve[1]["wall_s"] and "time/final_evaluate_s" in parent.data.metrics
    ttq = bench_module("time_to_quality")
    low, high = min(p["real_return"] for p in curve) - 1, max(p["real_return"] for p in curve) + 1
    report = ttq.seed_report({"train_seed": 0, "mean": 0.0, "episodes": 2, "wall_s": 1.0, "rounds": curve}, [low, high])
    first = report["reached"][str(low)]
    assert first["round"] == 0 and first["real_frames"] == curve[0]["real_frames"] + 120 and report["reached"][str(high)] is None
    assert first["stage_s"] == curve[0]["stage_s"] and report["stage_s_total"]["collect"] >= curve[1]["stage_s"]["collect"]
    # the round that ships is the best on the validation seeds (the earliest on a tie), whole: its weights
    validation = [r.data.metrics["round/real_return"] for r in rounds]
    shipped = int(mv.tags["shipped_round"])
    assert shipped == validation.index(max(validation)) and parent.data.tags["shipped_round"] == str(shipped)
    assert all(mv.tags[f"weights.{c}"] == rounds[shipped].data.tags[f"weights.{c}"]
               for c in ("vae", "mdnrnn", "controller"))
    assert [r.data.metrics["round/kept"] for r in rounds] == [1.0, float(validation[1] > validation[0])]
    assert int(mv.tags["validation_frames"]) == 2 * 2 * 60  # rounds x checkpoints x 1 episode of 60 frames
    assert "plots/learning_curve.png" in {a.path for a in client.list_artifacts(mv.run_id, "plots")}
    from dreamops.tasks.dataset import open_dataset
    from dreamops.settings import get_settings

    new = open_dataset(get_settings().datasets, round_hashes[1])
    assert sorted(new.manifest["policy"]) == ["controller"] * 3 + ["noisy_baseline"]  # the round's mix, 75/25
    assert new.manifest["episode_id"].str.startswith("r01_").all()
    assert main(["lineage", "1"]) == 0
    out = capsys.readouterr().out
    assert f"round 0 data {round_hashes[0]}" in out and f"round 1 data {round_hashes[1]}" in out
    assert f"real simulator frames in the training data: {int(frames[1]):,}" in out
    assert f"models shipped from round {shipped} (best on the validation seeds)" in out


def test_validation_episodes_join_the_next_rounds_data_and_frames_count_once(prefect_server, dreamops_home, capsys):
    """collect.validation_as_data: each checkpoint's validation episode is recorded and becomes
    round 1's new data (no separate collection); round 1 validates on fresh seeds; the total of real
    frames counts a recorded validation frame once."""
    sets = ["rounds=2", "collect.episodes_per_round=0", "collect.validation_as_data=true", "eval.max_steps=240",
            "eval.round_episodes=1", "cma.checkpoints=2"]
    assert main(["train", "--profile", "smoke", "--no-progress", *[a for s in sets for a in ("--set", s)]]) == 0
    assert "real simulator frames played in all" in capsys.readouterr().out
    from dreamops.settings import get_settings
    from dreamops.tasks.dataset import open_dataset

    mv = mlflow.MlflowClient().search_model_versions("name='carracing-vmc'")[0]
    round_hashes = mv.tags["round_data_hashes"].split(",")
    assert len(round_hashes) == 3  # round 0's collection and round 0's two recorded checkpoints
    recorded = [open_dataset(get_settings().datasets, h).manifest for h in round_hashes[1:]]
    assert all(m["episode_id"].str.startswith("r00_v").all() and list(m["seed"]) == [50_000] for m in recorded)
    curve = json.loads(store.read_run_artifact(mv.run_id, "rounds.json"))
    in_data = sum(int(m["env_frames"].sum()) for m in recorded)
    assert curve[1]["real_frames"] == curve[0]["real_frames"] + in_data
    assert curve[1]["validation_frames"] == 4 * 240 and in_data == 2 * 240  # 2 rounds x 2 checkpoints x 1 episode
    total = curve[1]["real_frames"] + curve[1]["validation_frames"] - in_data
    assert curve[1]["total_frames"] == total == int(mv.tags["total_frames"])
    # round 1 was judged on a fresh track: its recorded episodes (the last round's, in no training data)
    datasets = get_settings().datasets
    manifests = [open_dataset(datasets, p.name).manifest for p in datasets.iterdir() if (p / "manifest.parquet").exists()]
    round1 = [m for m in manifests if m["episode_id"].str.startswith("r01_v").all()]
    assert len(round1) == 2 and all(list(m["seed"]) == [50_001] for m in round1)


def _ui_lists_the_model(home):
    """`dreamops ui` serves the MLflow UI and its API on the embedded store."""
    import os
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "DREAMOPS_HOME": str(home)}
    proc = subprocess.Popen([sys.executable, "-m", "dreamops.flows.cli", "ui", "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 90
        while True:
            try:
                url = f"http://127.0.0.1:{port}/ajax-api/2.0/mlflow/registered-models/search"
                with urllib.request.urlopen(url, timeout=5) as r:
                    assert b'"carracing-vmc"' in r.read()
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
                    assert r.status == 200
                break
            except OSError:
                assert proc.poll() is None and time.time() < deadline, "MLflow UI did not come up"
                time.sleep(1)
    finally:
        stop_process(proc, 30)


@pytest.mark.parametrize("argv,message", [
    (["train", "--agent", "humanoid", "--profile", "smoke"], "unknown agent 'humanoid'"),
    (["train", "--profile", "enormous"], "unknown profile 'enormous'"),
    (["train", "--profile", "smoke", "--set", "cma.population=1"], "cma.population must be >= 2"),
    (["evaluate", "--model", "99"], "no version '99' of model 'carracing-vmc'"),
    (["drift-eval", "--scenario", "day"], "--scenario must be a shifted scenario of carracing-vmc: night"),
    (["drift-eval", "--window", "0"], "window_episodes must be >= 1"),
    (["drift-eval", "--model", "99"], "no version '99' of model 'carracing-vmc'"),
])
def test_bad_input_is_one_line_not_a_traceback(dreamops_home, capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err
    ours = [line for line in err.splitlines() if line.startswith("dreamops: error:")]
    assert len(ours) == 1 and message in ours[0] and "Traceback" not in err


def test_the_controller_can_be_trained_by_actor_critic_in_two_rounds(prefect_server, dreamops_home, capsys):
    """controller_trainer=actor_critic: round 0 trains C from zero by actor-critic in M's dream, round 1
    warm-starts it for ac.round_updates (its critic fitted first, at its own learning rate); each keeps
    cma.checkpoints of the actor for the validation episodes to choose from; the version ships that
    linear controller like CMA-ES's."""
    sets = ["controller_trainer=actor_critic", "ac.updates=4", "ac.round_updates=2", "ac.batch=8", "ac.horizon=3",
            "ac.log_every=1", "ac.round_critic_warmup=2", "ac.round_actor_lr=5e-4", "rounds=2",
            "collect.episodes_per_round=4", "eval.round_episodes=1", "cma.checkpoints=2"]
    assert main(["train", "--profile", "smoke", "--no-progress", *[a for s in sets for a in ("--set", s)]]) == 0
    capsys.readouterr()
    client = mlflow.MlflowClient()
    mv = client.search_model_versions("name='carracing-vmc'")[0]
    parent = client.get_run(mv.run_id)
    assert parent.data.params["controller_trainer"] == "actor_critic" and mv.tags["validation_status"] == "passed"
    rounds = client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{mv.run_id}'",
                                order_by=["tags.round"])
    steps = [[m.step for m in client.get_metric_history(r.info.run_id, "ac/dream_reward_per_step")] for r in rounds]
    assert steps == [[1, 2, 3, 4], [1, 2]]   # 4 updates from zero, then 2 warm
    assert all("ac/final_dream_return" in r.data.metrics and "cma/best_fitness" not in r.data.metrics for r in rounds)
    chosen = [mlflow.MlflowClient().get_metric_history(parent.info.run_id, "round/chosen_generation")]
    assert [m.value in ((2.0, 4.0), (0.0, 2.0))[m.step] for m in chosen[0]] == [True, True]   # updates kept
    with pytest.raises(ValueError, match="controller_trainer must be one of cma, actor_critic"):
        from dreamops.tasks.config import resolve_config
        resolve_config("smoke", {"controller_trainer": "ppo"})
    with pytest.raises(ValueError, match="ac.horizon must be positive"):
        from dreamops.tasks.config import resolve_config
        resolve_config("smoke", {"ac.horizon": 0})
