"""The production parts on loopback, for real: PostgreSQL (the machine's server, fresh databases),
an S3 endpoint (moto's server mode), `mlflow server` started from dreamops's settings, a Prefect
server with the serve process of dreamops's deployments, and the dreamops API (uvicorn), which
receives MLflow's webhooks and can be restarted mid-test."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from dreamops.flows.up import stop_process, wait_http

PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}
BUCKET = "dreamops"
WEBHOOK_SECRET = "test-webhook-secret"
DRIFT_WAREHOUSE = "WH-DRIFT"  # the stack serves its weekly retrain and hourly drift check


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawn(cmd: list[str], env: dict, log: Path, append: bool = False) -> subprocess.Popen:
    with open(log, "a" if append else "w") as out:
        return subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


@contextmanager
def process(cmd: list[str], env: dict, log: Path):
    proc = _spawn(cmd, env, log)
    try:
        yield proc
    finally:
        stop_process(proc)


@contextmanager
def postgres_database(prefix: str):
    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(dbname="postgres", autocommit=True, **PG) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://{PG['user']}@{PG['host']}:{PG['port']}/{name}"
    finally:
        with psycopg.connect(dbname="postgres", autocommit=True, **PG) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass
class Stack:
    tracking_uri: str
    api_url: str
    s3_endpoint: str
    env: dict[str, str]  # what a dreamops client (CLI, flow) needs to use this stack
    logs: Path
    api_cmd: list[str]
    api_env: dict[str, str]
    api_proc: subprocess.Popen | None = None
    prefect_api: str = ""

    def restart_api(self) -> float:
        """Stop the API process (SIGTERM, as a deploy would) and start it again; returns seconds down."""
        started = time.time()
        stop_process(self.api_proc, 30)
        self.api_proc = _spawn(self.api_cmd, self.api_env, self.logs / "api.log", append=True)
        wait_http(f"{self.api_url}/healthz", self.api_proc, self.logs / "api.log")
        return time.time() - started

    def s3(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.s3_endpoint)

    def s3_keys(self, prefix: str = "") -> list[str]:
        keys = []
        for page in self.s3().get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
            keys += [o["Key"] for o in page.get("Contents", [])]
        return keys


@contextmanager
def production_stack(workdir: Path):
    from cryptography.fernet import Fernet

    from dreamops.registry.server import mlflow_server_command
    from dreamops.settings import Settings

    workdir.mkdir(parents=True, exist_ok=True)
    aws = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    base_env = {**os.environ, **aws}
    with ExitStack() as stack:
        mlflow_db = stack.enter_context(postgres_database("dreamops_mlflow"))
        dreamops_db = stack.enter_context(postgres_database("dreamops_app"))

        s3_port = free_port()
        s3_endpoint = f"http://127.0.0.1:{s3_port}"
        moto = stack.enter_context(process([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p",
                                            str(s3_port)], base_env, workdir / "moto.log"))
        wait_http(f"{s3_endpoint}/moto-api/", moto, workdir / "moto.log")
        import boto3

        boto3.client("s3", endpoint_url=s3_endpoint, **{k.lower(): v for k, v in aws.items()
                                                         if k != "AWS_DEFAULT_REGION"},
                     region_name="us-east-1").create_bucket(Bucket=BUCKET)

        mlflow_port = free_port()
        server_settings = Settings(home=workdir / "server-home", server_backend_store_uri=mlflow_db,
                                   server_artifacts_destination=f"s3://{BUCKET}/mlflow", s3_endpoint_url=s3_endpoint,
                                   server_webhooks_to_private=True, server_webhook_key=Fernet.generate_key().decode())
        cmd, env = mlflow_server_command(server_settings, "127.0.0.1", mlflow_port, workers=2)
        env = {**env, **aws, "MLFLOW_WEBHOOK_CACHE_TTL": "1"}  # tests move aliases seconds after registering
        mlflow_proc = stack.enter_context(process(cmd, env, workdir / "mlflow.log"))
        tracking_uri = f"http://127.0.0.1:{mlflow_port}"
        wait_http(f"{tracking_uri}/health", mlflow_proc, workdir / "mlflow.log", timeout=180)

        prefect_port = free_port()
        prefect_api = f"http://127.0.0.1:{prefect_port}/api"
        prefect = stack.enter_context(process(
            [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(prefect_port)],
            {**base_env, "PREFECT_HOME": str(workdir / "prefect-server"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"},
            workdir / "prefect.log"))
        wait_http(f"{prefect_api}/health", prefect, workdir / "prefect.log", timeout=180)

        client_env = {**aws, "DREAMOPS_TRACKING_URI": tracking_uri, "DREAMOPS_DATABASE_URL": dreamops_db,
                      "DREAMOPS_STORAGE_URI": f"s3://{BUCKET}/store", "DREAMOPS_S3_ENDPOINT_URL": s3_endpoint,
                      "DREAMOPS_WEBHOOK_SECRET": WEBHOOK_SECRET}
        cli = [sys.executable, "-m", "dreamops.flows.cli"]
        served_env = {**base_env, **client_env, "PREFECT_API_URL": prefect_api, "DREAMOPS_WORKERS": "2",
                      "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DREAMOPS_WAREHOUSES": f'["{DRIFT_WAREHOUSE}"]',
                      "DREAMOPS_RETRAIN_PROFILE": "smoke",
                      "DREAMOPS_SERVED_AGENTS": '["carracing-vmc", "pick-vla"]'}
        serve = stack.enter_context(process(cli + ["serve"], {**served_env, "DREAMOPS_HOME": str(workdir / "serve-home")},
                                            workdir / "serve.log"))
        # the serve process registers the deployment the training trigger starts
        wait_http(f"{prefect_api}/deployments/name/train/dreamops-train", serve, workdir / "serve.log", timeout=180)
        api_port = free_port()
        api_cmd = cli + ["api", "--port", str(api_port)]
        # no background alias reconciler: the stack's tests check what the webhooks do, and with two API
        # workers two reconcilers (every 30 s each) raced a webhook delivery to the same alias move
        api_env = {**served_env, "DREAMOPS_HOME": str(workdir / "api-home"), "DREAMOPS_CANARY_TICK_S": "0.5",
                   "DREAMOPS_RECONCILE_INTERVAL_S": "0"}
        s = Stack(tracking_uri, f"http://127.0.0.1:{api_port}", s3_endpoint, client_env, workdir, api_cmd, api_env,
                  prefect_api=prefect_api)
        s.api_proc = _spawn(api_cmd, api_env, workdir / "api.log")
        try:
            wait_http(f"{s.api_url}/healthz", s.api_proc, workdir / "api.log")
            yield s
        finally:
            stop_process(s.api_proc)
