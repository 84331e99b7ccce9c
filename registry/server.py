"""The `mlflow server` command line dreamops runs, built from settings only.

Embedded default: SQLite backend and artifacts under DREAMOPS_HOME. Production:
  DREAMOPS_SERVER_BACKEND_STORE_URI=postgresql://mlflow@db:5432/mlflow
  DREAMOPS_SERVER_ARTIFACTS_DESTINATION=s3://models/mlflow
  MLFLOW_S3_ENDPOINT_URL=http://minio:9000  (or DREAMOPS_S3_ENDPOINT_URL; unset for AWS)
The server proxies artifacts (`--serve-artifacts`): clients need only the tracking URI, never S3
credentials; the server reaches S3 through boto3.
"""
from __future__ import annotations

import os
import sys

from dreamops.settings import Settings


def backend_store_uri(settings: Settings) -> str:
    if settings.server_backend_store_uri:
        return settings.server_backend_store_uri
    if settings.tracking_uri and settings.tracking_uri.startswith(("http://", "https://")):
        raise ValueError("DREAMOPS_TRACKING_URI points at a server; set DREAMOPS_SERVER_BACKEND_STORE_URI to the "
                         "database this server should use")
    return settings.mlflow_tracking_uri


def mlflow_server_command(settings: Settings, host: str, port: int, workers: int = 1) -> tuple[list[str], dict]:
    """(argv, environment) of the MLflow server for these settings."""
    artifacts = settings.server_artifacts_destination or settings.artifact_root.as_uri()
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend_store_uri(settings),
           "--artifacts-destination", artifacts, "--serve-artifacts", "--host", host, "--port", str(port),
           "--workers", str(workers)]
    env = dict(os.environ)
    if settings.s3_endpoint:
        env["MLFLOW_S3_ENDPOINT_URL"] = settings.s3_endpoint
    if settings.server_webhooks_to_private:
        env["MLFLOW_WEBHOOK_ALLOWED_SCHEMES"] = "http,https"
        env["MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS"] = "true"
    if settings.server_webhook_key:
        env["MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY"] = settings.server_webhook_key
    return cmd, env
