"""End to end: `dreamops train --agent pick-vla --profile smoke` registers a pick-vla version that
loads through MLflow and runs a real PyBullet episode with receding-horizon chunks."""
from __future__ import annotations

import json

import mlflow
import numpy as np
import pytest

from dreamops.flows.cli import main
from dreamops.sim.pick import PickCell, PickConfig

pytestmark = pytest.mark.e2e


def test_smoke_run_registers_a_pick_vla_version_that_runs_the_cell(prefect_server, dreamops_home, capsys):
    assert main(["train", "--agent", "pick-vla", "--profile", "smoke", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "Registered models:/pick-vla/1" in out and "chunk generation p99" in out

    from dreamops.registry import store
    from dreamops.settings import get_settings

    client = store.configure(get_settings())
    mv = client.get_model_version("pick-vla", "1")
    assert mv.tags["validation_status"] == "passed" and mv.tags["semver"] == "1.0.0"
    assert {f"weights.{c}" for c in ("encoder", "rssm", "head", "grasp_head")} <= set(mv.tags)
    assert {"gate.seen_success", "gate.novel_success", "gate.wm_cosine", "gate.chunk_latency_p99",
            "gate.collision_rate", "gate.data"} <= set(mv.tags) | set(client.get_run(mv.run_id).data.tags)
    assert store.aliases("pick-vla") == {"staging": "1"}
    run = client.get_run(mv.run_id)
    assert run.data.params["agent"] == "pick-vla" and run.data.params["train.steps"] == "4"
    assert {"pick/flow/loss", "holdout/wm_cosine", "eval/pick-vla/seen_success_rate",
            "latency/chunk_p99_ms", "fidelity/k1/cosine", "fidelity/success_brier",
            "fidelity/success_ece"} <= set(run.data.metrics)
    report = json.loads(mlflow.artifacts.load_text(f"runs:/{mv.run_id}/evaluation_report.json"))
    assert report["fidelity"]["fidelity/starts"] > 0
    assert {(r["policy"], r["object_set"]) for r in report["evaluation"]} == {
        (p, s) for p in ("pick-vla", "pick-vla-cem") for s in ("seen", "novel")}
    assert "eval/pick-vla-cem/novel_success_rate" in run.data.metrics

    # the registered version through the family-agnostic commands: evaluate (seen and novel) and profile
    capsys.readouterr()
    assert main(["evaluate", "--agent", "pick-vla", "--model", "1", "--episodes", "2", "--max-steps", "12",
                 "--json"]) == 0
    detail = json.loads(capsys.readouterr().out)   # stdout is the JSON alone: pipe it
    assert {s: (d["policy"], d["episodes"]) for s, d in detail.items()} == {"seen": ("pick-vla v1", 2),
                                                                           "novel": ("pick-vla v1", 2)}
    assert main(["evaluate", "--agent", "pick-vla", "--baseline", "expert", "--episodes", "2"]) == 0
    assert "seen   success 100%" in capsys.readouterr().out   # the expert, 80 steps, on seeds 100000-1
    assert main(["profile", "--agent", "pick-vla", "--model", "staging", "--iterations", "10"]) == 0
    assert "chunk" in capsys.readouterr().out
    # drift-eval: the robot's episodes on seen (day) and novel objects, judged with pick's signals
    assert main(["drift-eval", "--agent", "pick-vla", "--model", "1", "--baseline-episodes", "4", "--window", "2",
                 "--holdout-windows", "1", "--shifted-windows", "1", "--max-steps", "8", "--workers", "1",
                 "--json", str(dreamops_home / "drift.json")]) == 0
    out = capsys.readouterr().out
    assert "novel windows: 1" in out and "calibration" in out and "success_prob" in out
    drift = json.loads((dreamops_home / "drift.json").read_text())
    assert set(drift["signal_rates"]["shifted"]) == {"latents", "calibration", "performance", "evidently"}
    assert drift["day"]["episodes"] == 4 and 0 <= drift["day"]["success_prob_mean"] <= 1
    assert main(["drift-eval", "--agent", "pick-vla", "--scenario", "night"]) == 2
    assert "--scenario must be a shifted scenario of pick-vla: novel, dim" in capsys.readouterr().err

    # a warm start from version 1: checked against this config's architecture before any work
    assert main(["train", "--agent", "pick-vla", "--profile", "smoke", "--parent", "1", "--set", "model.embed_dim=24"]) == 2
    assert "cannot warm-start from version 1: its architecture differs from this config's in {'embed_dim'" in \
        capsys.readouterr().err
    assert main(["train", "--agent", "pick-vla", "--profile", "smoke", "--no-progress", "--parent", "1",
                 "--set", "eval.planner=false"]) == 0
    assert client.get_model_version("pick-vla", "2").tags["parent_version"] == "1"

    # the fleet's episodes: two cells play version 1 and upload; a retrain with data_window_hours
    # adds them (world-model data) to the demonstrations
    from dreamops.flows.train import train
    from dreamops.storage import open_store
    from dreamops.tasks.pick_robot import PickRobot
    from dreamops.tasks.robot_episode import RobotSetup
    from dreamops.uploads import upload_key

    _, bundle, _ = store.load_bundle("pick-vla", "1")
    robot = PickRobot(bundle, RobotSetup(max_steps=30, scenario="day", latent_sample=2))
    objects = open_store(get_settings())
    for i, seed in enumerate((21, 22)):
        body = robot.play(seed).upload_body()
        path = dreamops_home / "upload.npz"
        path.write_bytes(body)
        objects.put_file(path, upload_key("WH-P", f"c{i}", "1", body, model="pick-vla"))
    robot.close()
    result = train(agent="pick-vla", profile="smoke", overrides={"eval.planner": False}, warehouse_id="WH-P",
                   show_progress=False, data_window_hours=1)
    fleet_run = client.get_run(result.run_id)
    assert fleet_run.data.metrics["data/fleet_episodes"] == 2 and fleet_run.data.metrics["data/fleet_skipped"] == 0
    assert result.data_hash != mv.tags["data_hash"]   # a new dataset: the demonstrations plus the fleet's

    # the registry's commands take the pick-vla model like any other
    capsys.readouterr()
    assert main(["versions", "pick-vla"]) == 0
    assert "1.0.0" in capsys.readouterr().out
    assert main(["lineage", "2", "--model", "pick-vla", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["parent_version"] == "1"
    assert main(["promote", "1", "--to", "production", "--model", "pick-vla"]) == 0
    assert main(["promote", "2", "--to", "production", "--model", "pick-vla"]) == 0
    assert main(["rollback", "pick-vla", "--reason", "smoke"]) == 0
    assert store.aliases("pick-vla")["production"] == "1"
    capsys.readouterr()
    assert main(["history", "pick-vla", "--limit", "3"]) == 0
    assert "smoke: the production holder before 1" in capsys.readouterr().out   # the rollback, newest first

    model = mlflow.pyfunc.load_model("models:/pick-vla/1")
    env = PickCell(PickConfig(object_set="novel", max_steps=12))
    obs, info = env.reset(seed=7)
    steps, done = 0, False
    while not done:
        chunk = model.predict({"rgb": obs["rgb"][None], "depth": obs["depth"][None], "proprio": obs["proprio"][None]},
                              params={"instruction": env.instruction, "seed": steps})
        assert chunk.shape == (1, 16, 4) and chunk.dtype == np.float32 and np.abs(chunk).max() <= 1.0
        for action in chunk[0, :4]:   # receding horizon: execute 4 of 16, then ask again
            obs, _, terminated, truncated, info = env.step(action)
            steps += 1
            done = terminated or truncated
            if done:
                break
    env.close()
    assert steps == 12 or info["success"]


def test_pick_vla_refuses_options_it_does_not_support(prefect_server, dreamops_home, capsys):
    assert main(["train", "--agent", "pick-vla", "--set", "model.execute=32"]) == 2
    assert "model.execute" in capsys.readouterr().err
    assert main(["evaluate", "--agent", "pick-vla", "--baseline", "random"]) == 2
    assert "pick-vla has the baselines expert, no_language, not 'random'" in capsys.readouterr().err


def test_dagger_rounds_add_labelled_on_policy_episodes_and_log_the_learning_curve(prefect_server, dreamops_home,
                                                                                  capsys):
    assert main(["train", "--agent", "pick-vla", "--profile", "smoke", "--no-progress", "--set", "rounds=2",
                 "--set", "dagger.episodes_per_round=2", "--set", "dagger.steps=2", "--set", "dagger.warmup_steps=1",
                 "--set", "eval.planner=false", "--set", "train.grounding_scenes=3", "--set", "train.grounding_steps=2"]) == 0
    capsys.readouterr()
    from dreamops.registry import store
    from dreamops.settings import get_settings

    client = store.configure(get_settings())
    mv = store.get_version("pick-vla", "latest")
    run = client.get_run(mv.run_id)
    curve = json.loads(store.read_run_artifact(mv.run_id, "rounds.json"))
    assert [p["round"] for p in curve] == [0, 1]
    assert curve[1]["episodes"] == curve[0]["episodes"] + 2     # round 1's on-policy episodes joined the data
    assert curve[0]["on_policy_episodes"] == 2 and 0.0 <= curve[0]["on_policy_success"] <= 1.0
    assert curve[1]["data_hash"] == mv.tags["data_hash"] != curve[0]["data_hash"]  # the registered data is all of it
    assert curve[1]["steps"] == 4 + 2 and "eval_seen_success" in curve[1]
    assert "learning_curve.png" in {a.path for a in client.list_artifacts(mv.run_id)}
    nested = client.search_runs([run.info.experiment_id], f"tags.mlflow.parentRunId = '{mv.run_id}'")
    assert sorted(r.data.tags["round"] for r in nested) == ["0", "1"]
    # the 3 rendered scenes join every round's steps; only the fresh round-0 model pretrains on them alone
    by_round = {r.data.tags["round"]: r.data.metrics for r in nested}
    assert by_round["0"]["train/grounding_scenes"] == by_round["1"]["train/grounding_scenes"] == 3.0
    assert by_round["1"]["pick/grounding/ce"] > 0
    assert by_round["0"]["grounding/pretrain_scenes"] == 3.0 and "grounding/pretrain_scenes" not in by_round["1"]
    assert run.data.metrics["round/episodes"] == curve[1]["episodes"]
