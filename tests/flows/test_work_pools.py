"""Prefect work pools. A real process worker runs the training deployment that `prefect deploy` made
from prefect.yaml; the Docker and Kubernetes pool templates in infra/prefect are accepted by the
Prefect server and render, through the workers' own code, into a container or a Job that docker-py
and the Kubernetes schemas accept (no Docker engine or cluster here)."""
from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import kubernetes_validate
import pytest

ROOT = Path(__file__).resolve().parents[2]
POOLS = ROOT / "infra" / "prefect"
PREFECT = [sys.executable, "-m", "prefect"]
GPU = {"driver": "nvidia", "count": -1, "capabilities": [["gpu"]]}


def _api_url() -> str:
    from prefect.settings import PREFECT_API_URL

    return PREFECT_API_URL.value()


def _wait(predicate, timeout: float, what: str, log: Path | None = None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if result := predicate():
            return result
        time.sleep(1)
    raise AssertionError(f"{what} within {timeout} s" + (f":\n{log.read_text()[-3000:]}" if log else ""))


@pytest.mark.e2e
def test_process_worker_runs_the_deployment_from_prefect_yaml(prefect_server, dreamops_home, tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.deployments import run_deployment

    from dreamops.flows.up import stop_process
    from dreamops.registry import store
    from dreamops.settings import get_settings

    async def create_pool():
        async with get_client() as client:
            await client.create_work_pool(WorkPoolCreate(name="dreamops", type="process"), overwrite=True)

    asyncio.run(create_pool())
    with socket.socket() as s:  # a free port for the worker's health server (8080 in the containers)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PREFECT_API_URL": _api_url(), "PREFECT_HOME": str(tmp_path / "prefect"),
           "PREFECT_CLI_PROMPT": "false", "PREFECT_WORKER_QUERY_SECONDS": "1",
           "PREFECT_WORKER_WEBSERVER_PORT": str(port),
           "DREAMOPS_WORKERS": "1"}  # simulator episodes in the flow's own process: no pool to spawn on 2 cores
    log = tmp_path / "worker.log"
    with open(log, "w") as out:  # the worker command of infra/ (compose and k8s)
        worker = subprocess.Popen(PREFECT + ["worker", "start", "--pool", "dreamops", "--type", "process",
                                             "--limit", "1", "--with-healthcheck"],
                                  cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        # `prefect deploy` from the repository root, as the compose/k8s one-shots run it from /app
        deployed = subprocess.run(PREFECT + ["deploy", "--name", "dreamops-train"], cwd=ROOT, env=env,
                                  capture_output=True, text=True, timeout=180)
        assert deployed.returncode == 0, deployed.stdout + deployed.stderr
        health = [sys.executable, str(ROOT / "infra" / "healthcheck.py"), f"http://127.0.0.1:{port}/health"]
        _wait(lambda: subprocess.run(health, capture_output=True).returncode == 0, 120, "worker healthy", log)
        run = run_deployment("train/dreamops-train", timeout=600, poll_interval=2,
                             parameters={"profile": "smoke", "warehouse_id": "WH-POOL"})
        assert run.state.is_completed(), (run.state, log.read_text()[-3000:])
        assert run.work_pool_name == "dreamops" and run.infrastructure_pid  # a worker started its process
        assert str(run.id) in log.read_text()  # ... this worker
    finally:
        stop_process(worker, 30)

    client = store.configure(get_settings())  # the flow ran with the worker's DREAMOPS_HOME
    [version] = client.search_model_versions("name='carracing-vmc'")
    assert version.tags["warehouse_id"] == "WH-POOL" and version.tags["profile"] == "smoke"


def _template(name: str) -> dict:
    return json.loads((POOLS / name).read_text())


def _default_template(worker_type: str) -> dict:
    from prefect_docker.worker import DockerWorker
    from prefect_kubernetes.worker import KubernetesWorker

    return {"docker": DockerWorker, "kubernetes": KubernetesWorker}[worker_type].get_default_base_job_template()


def _render(worker_type: str, template: dict, values: dict):
    """The job configuration a worker of this type builds for one flow run."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.client.schemas.objects import FlowRun
    from prefect_docker.worker import DockerWorkerJobConfiguration
    from prefect_kubernetes.worker import KubernetesWorkerJobConfiguration

    config_class = {"docker": DockerWorkerJobConfiguration, "kubernetes": KubernetesWorkerJobConfiguration}[worker_type]

    async def render():
        async with get_client() as client:  # the server validates the template when the pool is made
            pool = await client.create_work_pool(
                WorkPoolCreate(name=f"dreamops-{worker_type}", type=worker_type, base_job_template=template),
                overwrite=True)
            return await config_class.from_template_and_values(pool.base_job_template, values, client=client)

    config = asyncio.run(render())
    config.prepare_for_flow_run(FlowRun(id=uuid.uuid4(), name="shy-robot", flow_id=uuid.uuid4()))
    return config


@pytest.mark.parametrize(("name", "worker_type"), [("docker-pool.json", "docker"), ("k8s-pool.json", "kubernetes")])
def test_pool_templates_keep_the_workers_interface(name, worker_type):
    """Every field and variable of the worker's default template is still there (ours only add)."""
    ours, default = _template(name), _default_template(worker_type)
    assert set(ours["job_configuration"]) == set(default["job_configuration"])
    assert set(default["variables"]["properties"]) <= set(ours["variables"]["properties"])


def test_docker_pool_renders_a_container_docker_py_accepts(prefect_server):
    from docker.models.containers import _create_container_args
    from prefect_docker.worker import DockerWorker

    def host_config(values: dict) -> dict:
        config = _render("docker", _template("docker-pool.json"), values)
        settings = DockerWorker._build_container_settings(None, None, config)  # no daemon needed: API URL is remote
        assert settings["image"] == values.get("image", "dreamops:latest") and settings["network"] == "dreamops_default"
        assert settings["environment"]["DREAMOPS_TRACKING_URI"] == "http://mlflow:5000"
        return _create_container_args({**settings, "version": "1.44"})["host_config"]

    api = {"env": {"PREFECT_API_URL": "http://prefect:4200/api"}}
    cpu = host_config(api)
    assert cpu["NanoCpus"] == 2_000_000_000 and cpu["Memory"] == 8 * 1024**3 and "DeviceRequests" not in cpu
    gpu = host_config({**api, "image": "dreamops:cuda",
                       "container_create_kwargs": {"nano_cpus": 4_000_000_000, "device_requests": [GPU]}})
    assert gpu["DeviceRequests"] == [{"Driver": "nvidia", "Count": -1, "DeviceIDs": [], "Capabilities": [["gpu"]],
                                      "Options": {}}]


def test_k8s_pool_renders_a_job_kubernetes_accepts(prefect_server):
    def job(values: dict) -> dict:
        manifest = _render("kubernetes", _template("k8s-pool.json"), values).job_manifest
        pod = manifest["spec"]["template"]["spec"]
        # prefect-kubernetes insists on these two Job fields inside the pod spec; the API server drops them
        assert pod.pop("parallelism") == 1 and pod.pop("completions") == 1
        kubernetes_validate.validate(manifest, "1.37.0", strict=True)
        return manifest

    cpu = job({})
    container = cpu["spec"]["template"]["spec"]["containers"][0]
    assert cpu["metadata"]["namespace"] == "dreamops" and container["image"] == "dreamops:latest"
    assert container["resources"] == {"requests": {"cpu": "2", "memory": "4Gi"}, "limits": {"cpu": "4", "memory": "8Gi"}}
    env = {e["name"] for e in container["env"]}
    assert {"PREFECT__FLOW_RUN_ID", "PREFECT_API_URL", "DREAMOPS_DATABASE_URL"} <= env  # the run's and ours
    assert container["envFrom"][1] == {"secretRef": {"name": "dreamops-secrets"}}
    gpu = job({"gpus": 1, "image": "registry.example.com/dreamops:cuda"})
    assert gpu["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
