"""The `mlflow server` command line dreamops runs, built from settings only.

Embedded default: SQLite backend and artifacts under DREAMOPS_HOME. Production:
  DREAMOPS_SERVER_BACKEND_STORE_URI=postgresql://mlflow@db:5432/mlflow
  DREAMOPS_SERVER_ARTIFACTS_DESTINATION=s3://models/mlflow
  MLFLOW_S3_ENDPOINT_URL=http://minio:9000  (or DREAMOPS_S3_ENDPOINT_URL; unset for AWS)
The server proxies artifacts (`--serve-artifacts`): clients need only the tracking URI, never S3
credentials; the server reaches S3 through boto3.
"""
from __future__ import annotations

import base64
import contextlib
import os
import sys
from pathlib import Path

from dreamops.settings import Settings

WEBHOOK_KEY_FILE = "mlflow-webhook.key"


def webhook_key(settings: Settings) -> str:
    """The Fernet key MLflow encrypts webhook secrets with: DREAMOPS_SERVER_WEBHOOK_KEY, else one
    generated once into the home (mode 600) and kept, so a restarted server reads the secrets the
    one before it stored (MLflow's own default is a new key per process)."""
    if settings.server_webhook_key:
        return settings.server_webhook_key
    return home_secret(settings.resolved_home / WEBHOOK_KEY_FILE, lambda: base64.urlsafe_b64encode(os.urandom(32)).decode())


def home_secret(path: Path, make) -> str:
    """The secret kept in `path`, created once by `make()` readable by its owner only (mode 600);
    of two concurrent creators, the first file wins (O_EXCL)."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):  # another process created it first: read theirs
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(make() + "\n")
    return path.read_text().strip()


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
    env["MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY"] = webhook_key(settings)
    return cmd, env
