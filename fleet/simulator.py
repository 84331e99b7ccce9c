"""The simulated robot fleet: each robot (a thread) asks the API which model version to run, plays
real CarRacing episodes with it, and reports telemetry (reward, collisions, latency, latents) and
the episode itself back. Faults can be injected per version to show that a canary catches them.

The CLI wires this up with `add_fleet_arguments` and `config_from_args`, then calls `run_fleet`.
"""
from __future__ import annotations

import argparse
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
import torch

from dreamops.api.schemas import Assignment, EpisodeReport, EpisodeUploadAck, TelemetryAck, TelemetryBatch
from dreamops.families import DEFAULT_FAMILY, family
from dreamops.settings import Settings
from dreamops.tasks.robot_episode import FAULTS, RobotSetup, check_fault

log = logging.getLogger("dreamops.fleet")

DEFAULT_API_URL = "http://127.0.0.1:8000"
TOKEN_ENV = "DREAMOPS_API_TOKEN"
MAX_LATENTS = 256  # TelemetryBatch.latents accepts at most this many
SEED_STRIDE = 100_000  # robot i plays seeds seed + i * SEED_STRIDE + 0, 1, 2, ...


# --- faults ---

def parse_fault_spec(spec: str, known=FAULTS) -> tuple[str, str]:
    """'3=broken_controller' -> ('3', 'broken_controller'); `known`: the family's robot's faults."""
    version, sep, name = (part.strip() for part in spec.partition("="))
    if not sep or not version or not name:
        raise ValueError(f"fault spec {spec!r} is not VERSION=NAME (e.g. 3=broken_controller)")
    if not version.isdigit():
        raise ValueError(f"fault spec {spec!r}: the version must be a model version number, got {version!r}")
    return version, check_fault(name, known)


def parse_faults(specs: list[str], known=FAULTS) -> dict[str, str]:
    faults: dict[str, str] = {}
    for spec in specs:
        version, name = parse_fault_spec(spec, known)
        if faults.get(version, name) != name:
            raise ValueError(f"version {version} is given two faults: {faults[version]} and {name}")
        faults[version] = name
    return faults


# --- configuration ---

@dataclass
class FleetConfig:
    api_url: str
    token: str
    warehouse_id: str
    robots: int
    model: str = DEFAULT_FAMILY  # a registered family (dreamops.families): its robot plays the episodes
    max_steps: int = 300  # simulator frames (carracing-vmc) or control steps (pick-vla) per episode
    episodes_per_robot: int | None = None  # None: until stopped
    upload_episodes: bool = True
    latent_sample: int = 8  # V's latent means reported per episode, for drift checks
    seed: int = 0
    faults: dict[str, str] = field(default_factory=dict)  # model version -> fault name
    poll_interval_s: float = 5.0  # wait when nothing is assigned, and after a failed episode
    robot_prefix: str | None = None  # default: f"{warehouse_id}-r"
    mlflow_tracking_uri: str | None = None  # where versions are downloaded from; None: as configured
    mlflow_registry_uri: str | None = None
    scenario: str = "day"  # the robot's SCENARIOS: "night" (carracing-vmc), "novel" or "dim" (pick-vla) shift the world

    @property
    def robot_class(self):
        fam = family(self.model)
        fam.require("fleet")
        return fam.load("robot")

    def __post_init__(self) -> None:
        scenarios = self.robot_class.SCENARIOS
        if self.scenario not in scenarios:
            raise ValueError(f"unknown scenario {self.scenario!r} for {self.model}; choose one of {', '.join(scenarios)}")
        if not self.api_url.startswith(("http://", "https://")):
            raise ValueError(f"API URL must start with http:// or https://, got {self.api_url!r}")
        if not self.token:
            raise ValueError(f"no API token: pass --token or set {TOKEN_ENV}")
        if not self.warehouse_id:
            raise ValueError("warehouse id must not be empty")
        if self.robots < 1:
            raise ValueError(f"robots must be >= 1, got {self.robots}")
        if self.max_steps < 1:
            raise ValueError(f"max steps must be >= 1, got {self.max_steps}")
        if self.episodes_per_robot is not None and self.episodes_per_robot < 1:
            raise ValueError(f"episodes per robot must be >= 1 (or unset: until stopped), got {self.episodes_per_robot}")
        if not 0 <= self.latent_sample <= MAX_LATENTS:
            raise ValueError(f"latent sample must be in [0, {MAX_LATENTS}], got {self.latent_sample}")
        if self.poll_interval_s <= 0:
            raise ValueError(f"poll interval must be positive, got {self.poll_interval_s}")
        for version, fault in self.faults.items():
            parse_fault_spec(f"{version}={fault}", self.robot_class.FAULTS)
        if self.robot_prefix is None:
            self.robot_prefix = f"{self.warehouse_id}-r"


def add_fleet_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--api", default=DEFAULT_API_URL, help=f"dreamops API base URL (default {DEFAULT_API_URL})")
    parser.add_argument("--token", help=f"API bearer token (default: ${TOKEN_ENV})")
    parser.add_argument("--warehouse", required=True, help="warehouse id the robots belong to, e.g. WH-042")
    parser.add_argument("--robots", type=int, default=4, help="robots to simulate, one thread each")
    parser.add_argument("--max-steps", type=int, default=300, help="simulator frames per episode")
    parser.add_argument("--episodes", type=int, help="episodes per robot (default: until Ctrl-C)")
    parser.add_argument("--fault", dest="faults", action="append", default=[], metavar="VERSION=NAME",
                        help=f"inject a fault into one version, e.g. 3=broken_controller (repeatable; "
                             f"faults: {', '.join(sorted(FAULTS))})")
    parser.add_argument("--model", default=DEFAULT_FAMILY, help="the agent family the robots run (its registered model)")
    parser.add_argument("--scenario", default="day",
                        help="the world the robots work in: carracing-vmc day | night (darker: a drift to detect); "
                             "pick-vla day | novel (objects it never trained on) | dim (the cell's light dimmed)")
    parser.add_argument("--seed", type=int, default=0, help="base episode seed")
    parser.add_argument("--latent-sample", type=int, default=8, help="latents reported per episode")
    parser.add_argument("--no-upload", action="store_true", help="report telemetry only, not the episodes")
    parser.add_argument("--poll-interval", type=float, default=5.0, help="seconds between assignment polls "
                                                                         "while nothing is deployed")
    parser.add_argument("--robot-prefix", help="robot id prefix (default: WAREHOUSE-r)")


def config_from_args(args: argparse.Namespace, settings: Settings) -> FleetConfig:
    return FleetConfig(
        api_url=args.api, token=args.token or os.environ.get(TOKEN_ENV, ""), warehouse_id=args.warehouse,
        robots=args.robots, model=args.model, max_steps=args.max_steps, episodes_per_robot=args.episodes,
        upload_episodes=not args.no_upload, latent_sample=args.latent_sample, seed=args.seed,
        faults=parse_faults(args.faults, family(args.model).load("robot").FAULTS), scenario=args.scenario, poll_interval_s=args.poll_interval, robot_prefix=args.robot_prefix,
        mlflow_tracking_uri=settings.mlflow_tracking_uri, mlflow_registry_uri=settings.mlflow_registry_uri)


# --- the API, as a robot sees it ---

class ApiError(RuntimeError):
    """The API refused a request (4xx) or stayed unreachable after the retries."""


class RobotApi:
    """Connection errors and 5xx (the API restarting, a proxy hiccup) are retried with backoff; a 4xx
    means this client is wrong, so it raises at once with the server's explanation."""

    def __init__(self, base_url: str, token: str, retries: int = 3, backoff_s: float = 0.5, timeout_s: float = 30.0):
        self.http = httpx.Client(base_url=base_url.rstrip("/"), headers={"Authorization": f"Bearer {token}"},
                                 timeout=timeout_s)
        self.retries, self.backoff_s = retries, backoff_s

    def _request(self, method: str, path: str, **kwargs) -> httpx.Response:
        problem = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
            try:
                response = self.http.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                problem = f"{type(exc).__name__}: {exc}"
                continue
            if response.status_code < 400:
                return response
            if response.status_code < 500:
                raise ApiError(f"{method} {path} -> {response.status_code}: {response.text}")
            problem = f"{response.status_code}: {response.text}"
        raise ApiError(f"{method} {path} failed {self.retries + 1} times; last: {problem}")

    @staticmethod
    def _robot(robot_id: str) -> str:
        return f"/api/v1/robots/{quote(robot_id, safe='')}"

    def assignment(self, robot_id: str, warehouse_id: str, model: str = DEFAULT_FAMILY) -> Assignment:
        response = self._request("GET", f"{self._robot(robot_id)}/assignment",
                                 params={"warehouse_id": warehouse_id, "model": model})
        return Assignment.model_validate_json(response.content)

    def telemetry(self, robot_id: str, batch: TelemetryBatch) -> TelemetryAck:
        response = self._request("POST", f"{self._robot(robot_id)}/telemetry", json=batch.model_dump(mode="json"))
        return TelemetryAck.model_validate_json(response.content)

    def upload_episode(self, robot_id: str, warehouse_id: str, version: str, npz: bytes,
                       model: str = DEFAULT_FAMILY) -> EpisodeUploadAck:
        response = self._request("POST", f"{self._robot(robot_id)}/episodes",
                                 params={"warehouse_id": warehouse_id, "version": version, "model": model}, content=npz,
                                 headers={"Content-Type": "application/octet-stream"})
        return EpisodeUploadAck.model_validate_json(response.content)

    def close(self) -> None:
        self.http.close()


# --- robots ---

BundleLoader = Callable[[str], Any]  # model version -> the family's weights (VMCBundle, PickVLA, ...)


def registry_loader(config: FleetConfig) -> BundleLoader:
    """Versions from the MLflow registry, weights checked against their registered hashes."""
    import mlflow

    from dreamops.registry import store

    if config.mlflow_tracking_uri:
        mlflow.set_tracking_uri(config.mlflow_tracking_uri)
    if config.mlflow_registry_uri:
        mlflow.set_registry_uri(config.mlflow_registry_uri)
    return lambda version: store.load_bundle(config.model, version).bundle


class BundleCache:
    """Each version is downloaded once per fleet process, however many robots run it. Weights are
    only read (eval mode, no grad), so robots share them; each robot keeps its own policy state."""

    def __init__(self, load: BundleLoader):
        self._load = load
        self._bundles: dict[str, Any] = {}
        self._lock = threading.Lock()

    def get(self, version: str) -> Any:
        with self._lock:  # held while downloading: robots wanting the same version wait for one download
            if version not in self._bundles:
                self._bundles[version] = self._load(version)
            return self._bundles[version]


@dataclass
class EpisodeResult:
    robot_id: str
    version: str
    seed: int
    reward: float
    collisions: int
    latency_p99_ms: float
    deployment_status: str | None


class Robot:
    def __init__(self, index: int, config: FleetConfig, bundles: BundleCache, stop: threading.Event | None = None):
        self.index, self.config, self.bundles = index, config, bundles
        self.robot_id = f"{config.robot_prefix}{index + 1:03d}"
        self.stop = stop or threading.Event()
        self.api = RobotApi(config.api_url, config.token)
        self.episodes_played = 0
        self._simulators: dict[str, object] = {}   # version -> the family's robot (its simulator and policy)

    def _simulator(self, version: str):
        if version not in self._simulators:
            cfg = self.config
            setup = RobotSetup(cfg.max_steps, cfg.scenario, cfg.latent_sample, cfg.faults.get(version))
            self._simulators[version] = cfg.robot_class(self.bundles.get(version), setup)
        return self._simulators[version]

    def run_one_episode(self) -> EpisodeResult | None:
        """One episode of the assigned version, reported to the API; None (after a pause) when nothing
        is assigned."""
        cfg = self.config
        assignment = self.api.assignment(self.robot_id, cfg.warehouse_id, cfg.model)
        if assignment.version is None:
            self.stop.wait(cfg.poll_interval_s)
            return None
        if assignment.model != cfg.model:
            raise ValueError(f"{self.robot_id} runs {cfg.model!r} but was assigned {assignment.model!r}")
        seed = cfg.seed + self.index * SEED_STRIDE + self.episodes_played
        self.episodes_played += 1
        run = self._simulator(assignment.version).play(seed)
        ack = self.api.telemetry(self.robot_id, TelemetryBatch(
            warehouse_id=cfg.warehouse_id, model=cfg.model, version=assignment.version,
            deployment_id=assignment.deployment_id,
            episodes=[EpisodeReport(**run.measures.fields())], latents=run.latents.tolist()))
        body = run.upload_body() if cfg.upload_episodes else None
        if body is not None:   # a family without fleet data uploads nothing
            self.api.upload_episode(self.robot_id, cfg.warehouse_id, assignment.version, body, cfg.model)
        r = run.measures
        log.info("%s version %s reward %.1f collisions %d p99 %.2f ms", self.robot_id, assignment.version,
                 r.reward, r.collisions, r.latency_p99_ms)
        return EpisodeResult(self.robot_id, assignment.version, seed, r.reward, r.collisions, r.latency_p99_ms,
                             ack.deployment_status)

    def run(self, record: Callable[[EpisodeResult], None], failed: Callable[[], None]) -> None:
        """Episodes until episodes_per_robot are done or the fleet stops. A failed episode is logged
        and retried after a pause: one robot's trouble must not stop the fleet."""
        limit, done = self.config.episodes_per_robot, 0
        while not self.stop.is_set() and (limit is None or done < limit):
            try:
                result = self.run_one_episode()
            except Exception:
                log.exception("%s: episode failed; retrying in %.1f s", self.robot_id, self.config.poll_interval_s)
                failed()
                self._new_simulator()  # an episode that failed mid-way can leave the simulator unusable
                self.stop.wait(self.config.poll_interval_s)
                continue
            if result is not None:
                done += 1
                record(result)

    def _new_simulator(self) -> None:
        """Drop every simulator (rebuilt on the next episode): one that failed mid-way can be unusable."""
        simulators, self._simulators = self._simulators, {}
        for sim in simulators.values():
            try:
                sim.close()
            except Exception:  # the broken one's close may fail too; it is dropped either way
                log.debug("%s: closing the failed simulator raised", self.robot_id, exc_info=True)

    def close(self) -> None:
        self.api.close()
        self._new_simulator()


# --- the fleet ---

@dataclass
class VersionStats:
    episodes: int = 0
    total_reward: float = 0.0
    collisions: int = 0

    @property
    def mean_reward(self) -> float:
        return self.total_reward / self.episodes if self.episodes else 0.0


@dataclass
class FleetSummary:
    versions: dict[str, VersionStats] = field(default_factory=dict)
    failed_episodes: int = 0

    def add(self, result: EpisodeResult) -> None:
        stats = self.versions.setdefault(result.version, VersionStats())
        stats.episodes += 1
        stats.total_reward += result.reward
        stats.collisions += result.collisions


def run_fleet(config: FleetConfig, stop: threading.Event | None = None,
              on_episode: Callable[[EpisodeResult], None] | None = None) -> FleetSummary:
    """Run `config.robots` robots, one thread each, until each has played episodes_per_robot
    episodes or `stop` is set (Ctrl-C sets it too). Versions come from the MLflow registry."""
    torch.set_num_threads(1)  # many robots on few cores: intra-op threads would only contend
    stop = stop or threading.Event()
    bundles = BundleCache(registry_loader(config))
    summary, lock = FleetSummary(), threading.Lock()

    def record(result: EpisodeResult) -> None:
        with lock:
            summary.add(result)
        if on_episode:
            on_episode(result)

    def failed() -> None:
        with lock:
            summary.failed_episodes += 1

    robots = [Robot(i, config, bundles, stop) for i in range(config.robots)]
    threads = [threading.Thread(target=robot.run, args=(record, failed), name=robot.robot_id, daemon=True)
               for robot in robots]
    for thread in threads:
        thread.start()
    try:
        for thread in threads:
            while thread.is_alive():
                thread.join(0.5)  # a bare join() would not let Ctrl-C through
    except KeyboardInterrupt:
        log.info("stopping: robots finish their current episode")
        stop.set()
        for thread in threads:
            thread.join()
    finally:
        for robot in robots:
            robot.close()
    return summary
