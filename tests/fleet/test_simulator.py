"""The simulated fleet's parts without the network: measured episodes, faults, config, uploads.
The fleet against the real API is tested in tests/api (test_fleet_live.py, test_e2e_fleet.py)."""
import argparse
import io
import socket

import numpy as np
import pytest
import torch

from dreamops.fleet.simulator import (ApiError, RobotApi, add_fleet_arguments, config_from_args, parse_fault_spec,
                                      parse_faults)
from dreamops.models.bundle import Architecture, VMCBundle
from dreamops.settings import Settings
from dreamops.shards import SHARD_ARRAYS
from dreamops.sim.carracing import CarRacing
from dreamops.sim.rollout import count_off_track_events
from dreamops.tasks.robot_episode import BrokenController, encode_episode, play_and_measure, with_fault

MODEL = "carracing-vmc"
TOKEN = "robot-token"


@pytest.fixture(scope="module")
def bundle() -> VMCBundle:
    torch.manual_seed(0)
    return VMCBundle.create(Architecture(32, 256, 5, action_repeat=4))


def test_play_and_measure_reports_reward_latency_and_latents(bundle):
    env = CarRacing(max_steps=60)
    run = play_and_measure(env, bundle.policy(), bundle.vae, seed=3, latent_sample=8)
    env.close()
    r = run.measures
    assert np.isfinite(r.reward) and r.reward == pytest.approx(run.episode.total_reward)
    assert r.steps == run.episode.length == 60 and r.seed == 3
    assert r.collisions == count_off_track_events(run.episode.on_track)
    assert r.latency_p99_ms >= r.latency_p50_ms > 0
    assert run.latents.shape == (8, 32) and run.latents.dtype == np.float32
    # the first sampled latent is V's mean of the first frame
    assert np.allclose(run.latents[0], bundle.vae.encode(torch.from_numpy(run.episode.obs[:1]))[0].numpy())
    # M's prediction residual, averaged over the decisions after the zoom-in, for the drift check
    after_zoom = np.asarray(run.episode.extras["residual"], float)[50:]
    assert r.residual == pytest.approx(float(np.nanmean(after_zoom))) and r.residual > 0


def test_broken_controller_leaves_the_track_while_the_model_is_still_on_it(bundle):
    # seed 7: the fault's hard right leaves the track at frame ~41; this random model only at ~85
    env = CarRacing(max_steps=60)
    plain = play_and_measure(env, bundle.policy(), bundle.vae, seed=7, latent_sample=0)
    broken = play_and_measure(env, with_fault(bundle.policy(), "broken_controller"), bundle.vae, seed=7,
                              latent_sample=0)
    env.close()
    assert plain.measures.collisions == 0
    assert broken.measures.collisions >= 1
    assert np.all(broken.episode.actions == BrokenController.ACTION)
    assert broken.measures.latency_p50_ms > 0  # the real model still ran
    assert broken.latents.shape == (0, 32)


def test_unknown_fault_names_the_known_ones(bundle):
    with pytest.raises(ValueError, match="unknown fault 'stuck'.*broken_controller"):
        with_fault(bundle.policy(), "stuck")


def test_fault_specs():
    assert parse_fault_spec(" 3 = broken_controller ") == ("3", "broken_controller")
    assert parse_faults(["3=broken_controller", "3=broken_controller", "5=broken_controller"]) == {
        "3": "broken_controller", "5": "broken_controller"}


@pytest.mark.parametrize("spec, message", [
    ("3", "not VERSION=NAME"),
    ("=broken_controller", "not VERSION=NAME"),
    ("3=", "not VERSION=NAME"),
    ("v3=broken_controller", "must be a model version number"),
    ("3=stuck", "unknown fault 'stuck'; known faults: broken_controller"),
])
def test_bad_fault_specs_are_refused(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_fault_spec(spec)


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_fleet_arguments(parser)
    return parser.parse_args(list(argv))


def test_config_from_args(monkeypatch):
    monkeypatch.setenv("DREAMOPS_API_TOKEN", "from-env")
    settings = Settings(tracking_uri="http://mlflow:5000")
    cfg = config_from_args(_args("--warehouse", "WH-042", "--robots", "20", "--episodes", "5",
                                 "--fault", "3=broken_controller", "--no-upload"), settings)
    assert (cfg.api_url, cfg.token, cfg.robots, cfg.max_steps, cfg.episodes_per_robot) == (
        "http://127.0.0.1:8000", "from-env", 20, 300, 5)
    assert cfg.faults == {"3": "broken_controller"} and not cfg.upload_episodes
    assert cfg.robot_prefix == "WH-042-r" and cfg.model == MODEL
    assert cfg.mlflow_tracking_uri == cfg.mlflow_registry_uri == "http://mlflow:5000"
    assert config_from_args(_args("--warehouse", "W", "--token", "t"), settings).token == "t"


@pytest.mark.parametrize("argv, message", [
    (["--robots", "0"], "robots must be >= 1, got 0"),
    (["--max-steps", "0"], "max steps must be >= 1, got 0"),
    (["--episodes", "0"], "episodes per robot must be >= 1"),
    (["--latent-sample", "257"], r"latent sample must be in \[0, 256\]"),
    (["--api", "127.0.0.1:8000"], "must start with http:// or https://"),
    (["--fault", "3:broken_controller"], "not VERSION=NAME"),
    (["--fault", "3=broken_controller", "--fault", "3=other"], "unknown fault 'other'"),
])
def test_bad_configs_are_refused(monkeypatch, argv, message):
    monkeypatch.setenv("DREAMOPS_API_TOKEN", "t")
    with pytest.raises(ValueError, match=message):
        config_from_args(_args("--warehouse", "WH-1", *argv), Settings())


def test_a_token_is_required(monkeypatch):
    monkeypatch.delenv("DREAMOPS_API_TOKEN", raising=False)
    with pytest.raises(ValueError, match="no API token: pass --token or set DREAMOPS_API_TOKEN"):
        config_from_args(_args("--warehouse", "WH-1"), Settings())


def test_episode_npz_has_the_dataset_shard_arrays(bundle):
    env = CarRacing(max_steps=20)
    episode = play_and_measure(env, bundle.policy(), bundle.vae, seed=1, latent_sample=0).episode
    env.close()
    with np.load(io.BytesIO(encode_episode(episode))) as data:
        assert sorted(data.files) == sorted(SHARD_ARRAYS)
        arrays = {name: data[name] for name in data.files}
    assert arrays["obs"].shape == (20, 64, 64, 3) and arrays["obs"].dtype == np.uint8
    assert arrays["actions"].shape == (20, 3) and arrays["actions"].dtype == np.float32
    assert arrays["rewards"].shape == (20,) and arrays["rewards"].dtype == np.float32
    assert arrays["dones"].shape == (20,) and arrays["dones"].dtype == bool
    for name in SHARD_ARRAYS:
        assert np.array_equal(arrays[name], getattr(episode, name))


def test_connection_errors_are_retried_then_reported():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    api = RobotApi(f"http://127.0.0.1:{port}", TOKEN, retries=2, backoff_s=0.01)
    with pytest.raises(ApiError, match="failed 3 times; last: ConnectError"):
        api.assignment("r1", "WH-1")
    api.close()


def test_a_robot_retries_a_failed_episode_on_a_fresh_simulator(bundle):
    """A failure mid-episode can leave the simulator unusable (a half-loaded renderer did once): the
    robot drops its simulators, so its next episode does not fail the same way for ever."""
    import threading

    from dreamops.fleet.simulator import BundleCache, FleetConfig, Robot

    with socket.socket() as s:  # a port nobody listens on: the episode fails at its first request
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    stop = threading.Event()
    robot = Robot(0, FleetConfig(f"http://127.0.0.1:{port}", TOKEN, "WH-1", robots=1, max_steps=20,
                                 poll_interval_s=0.01), bundles=BundleCache(lambda version: bundle), stop=stop)
    robot.api.close()
    robot.api = RobotApi(f"http://127.0.0.1:{port}", TOKEN, retries=0, backoff_s=0.01)  # fail at once
    broken = robot._simulator("1")   # the simulator an earlier episode of version 1 used
    failures = []
    robot.run(record=lambda result: None, failed=lambda: (failures.append(1), stop.set()))
    assert failures == [1] and robot._simulators == {}
    fresh = robot._simulator("1")
    assert fresh is not broken and fresh.env.reset(seed=0).shape == (64, 64, 3)
    robot.close()
