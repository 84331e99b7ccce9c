import argparse
import io
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import numpy as np
import pytest
import torch

from dreamops.api.schemas import Assignment, EpisodeUploadAck, TelemetryAck, TelemetryBatch
from dreamops.models.bundle import Architecture, VMCBundle
from dreamops.settings import Settings
from dreamops.sim.carracing import CarRacing
from dreamops.sim.fleet import (ApiError, BrokenController, FleetConfig, RobotApi, add_fleet_arguments,
                                config_from_args, encode_episode, parse_fault_spec, parse_faults,
                                play_and_measure, run_fleet, with_fault)
from dreamops.tasks.dataset import SHARD_ARRAYS
from dreamops.tasks.evaluate import count_off_track_events

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
    r = run.report
    assert np.isfinite(r.reward) and r.reward == pytest.approx(run.episode.total_reward)
    assert r.steps == run.episode.length == 60 and r.seed == 3
    assert r.collisions == count_off_track_events(run.episode.on_track)
    assert r.latency_p99_ms >= r.latency_p50_ms > 0
    assert run.latents.shape == (8, 32) and run.latents.dtype == np.float32
    # the first sampled latent is V's mean of the first frame
    assert np.allclose(run.latents[0], bundle.vae.encode(torch.from_numpy(run.episode.obs[:1]))[0].numpy())


def test_broken_controller_leaves_the_track_while_the_model_is_still_on_it(bundle):
    # seed 7: the fault's hard right leaves the track at frame ~41; this random model only at ~85
    env = CarRacing(max_steps=60)
    plain = play_and_measure(env, bundle.policy(), bundle.vae, seed=7, latent_sample=0)
    broken = play_and_measure(env, with_fault(bundle.policy(), "broken_controller"), bundle.vae, seed=7,
                              latent_sample=0)
    env.close()
    assert plain.report.collisions == 0
    assert broken.report.collisions >= 1
    assert np.all(broken.episode.actions == BrokenController.ACTION)
    assert broken.report.latency_p50_ms > 0  # the real model still ran
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


# --- against the API contract (api/schemas.py) ---

class ContractApi(ThreadingHTTPServer):
    """The three robot endpoints on loopback, as the contract in api/schemas.py states them: bodies are
    validated with the API's own models. Each robot's first poll finds nothing deployed, and the
    first telemetry post fails with a 503 once, as an API restart would."""

    def __init__(self, version: str):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.version = version
        self.lock = threading.Lock()
        self.polled: set[str] = set()
        self.telemetry: list[tuple[str, TelemetryBatch]] = []
        self.uploads: list[tuple[str, dict, dict[str, np.ndarray]]] = []
        self.unavailable_once = True

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: ContractApi

    def log_message(self, *args) -> None:
        pass

    def _reply(self, status: int, body: str, content_type: str = "application/json") -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _route(self) -> tuple[str, str, dict] | None:
        url = urlparse(self.path)
        parts = url.path.split("/")  # '', api, v1, robots, <id>, <what>
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            self._reply(401, "invalid token", "text/plain")
            return None
        return parts[4], parts[5], {k: v[0] for k, v in parse_qs(url.query).items()}

    def do_GET(self) -> None:
        route = self._route()
        if route:
            robot, _, query = route
            with self.server.lock:
                first = robot not in self.server.polled
                self.server.polled.add(robot)
            version = None if first else self.server.version
            self._reply(200, Assignment(robot_id=robot, warehouse_id=query["warehouse_id"], model=MODEL,
                                        version=version, deployment_id=version and "dep-1",
                                        arm=version and "canary").model_dump_json())

    def do_POST(self) -> None:
        route = self._route()
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if not route:
            return
        robot, what, query = route
        if what == "telemetry":
            with self.server.lock:
                unavailable, self.server.unavailable_once = self.server.unavailable_once, False
            if unavailable:
                return self._reply(503, "restarting", "text/plain")
            batch = TelemetryBatch.model_validate_json(body)
            with self.server.lock:
                self.server.telemetry.append((robot, batch))
            return self._reply(200, TelemetryAck(accepted=len(batch.episodes), deployment_status="running")
                               .model_dump_json())
        assert self.headers["Content-Type"] == "application/octet-stream"
        with np.load(io.BytesIO(body)) as data:
            arrays = {k: data[k] for k in data.files}
        with self.server.lock:
            self.server.uploads.append((robot, query, arrays))
        self._reply(200, EpisodeUploadAck(key=f"episodes/{robot}/{len(self.server.uploads)}.npz", uri="s3://b/k",
                                          frames=len(arrays["obs"])).model_dump_json())


@pytest.fixture
def contract_api():
    server = ContractApi(version="1")
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def registered_version(dreamops_home, tmp_path):
    """Version 1 of MODEL in an embedded MLflow registry: random weights, packaged as training does."""
    import mlflow

    from dreamops.registry import store
    from dreamops.registry.pyfunc import VMCPyfuncModel
    from dreamops.settings import get_settings

    store.configure(get_settings())
    torch.manual_seed(1)
    bundle = VMCBundle.create(Architecture(32, 256, 5, action_repeat=4))
    path = bundle.save(tmp_path / "vmc_bundle.pt")
    with mlflow.start_run():
        version = store.register_pyfunc(MODEL, VMCPyfuncModel(), {"bundle": str(path)}, store.frame_signature(),
                                        tags={f"weights.{k}": v for k, v in bundle.component_hashes().items()},
                                        pip_requirements=["torch"]).version
    mlflow.set_tracking_uri(None)  # the fleet must find the registry through its own config
    yield get_settings(), version
    mlflow.set_registry_uri(None)


def test_fleet_plays_the_assigned_version_and_reports_by_the_contract(contract_api, registered_version):
    settings, version = registered_version
    cfg = FleetConfig(api_url=contract_api.url, token=TOKEN, warehouse_id="WH-042", robots=2, max_steps=40,
                      episodes_per_robot=2, faults={version: "broken_controller"}, poll_interval_s=0.05,
                      mlflow_tracking_uri=settings.mlflow_tracking_uri,
                      mlflow_registry_uri=settings.mlflow_registry_uri)
    results = []
    summary = run_fleet(cfg, on_episode=results.append)

    assert summary.failed_episodes == 0 and set(summary.versions) == {version}
    stats = summary.versions[version]
    assert stats.episodes == 4 and stats.collisions == sum(r.collisions for r in results)
    assert stats.mean_reward == pytest.approx(np.mean([r.reward for r in results]))
    assert {r.robot_id for r in results} == {"WH-042-r001", "WH-042-r002"}
    assert len({r.seed for r in results}) == 4  # robots and episodes all differ
    assert {r.deployment_status for r in results} == {"running"}

    assert not contract_api.unavailable_once and len(contract_api.telemetry) == 4  # the 503 was retried
    for robot, batch in contract_api.telemetry:
        assert batch.warehouse_id == "WH-042" and batch.version == version and batch.deployment_id == "dep-1"
        assert len(batch.episodes) == 1 and batch.episodes[0].steps == 40
        assert np.asarray(batch.latents).shape == (8, 32)
    assert len(contract_api.uploads) == 4
    for robot, query, arrays in contract_api.uploads:
        assert query == {"warehouse_id": "WH-042", "version": version}
        assert arrays["obs"].shape == (40, 64, 64, 3)
        assert np.all(arrays["actions"] == BrokenController.ACTION)  # the fault was injected into that version


def test_a_4xx_raises_with_the_servers_explanation(contract_api):
    api = RobotApi(contract_api.url, "wrong-token")
    with pytest.raises(ApiError, match="GET /api/v1/robots/WH-1-r001/assignment -> 401: invalid token"):
        api.assignment("WH-1-r001", "WH-1")
    api.close()


def test_connection_errors_are_retried_then_reported():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    api = RobotApi(f"http://127.0.0.1:{port}", TOKEN, retries=2, backoff_s=0.01)
    with pytest.raises(ApiError, match="failed 3 times; last: ConnectError"):
        api.assignment("r1", "WH-1")
    api.close()
