"""The MLflow server dreamops runs keeps one webhook key per home: a restarted server (a second
`dreamops up` on the same home) reads the webhook secrets the first one stored."""
from __future__ import annotations

import os

import pytest

from tests.stack import free_port, process, wait_http

pytestmark = pytest.mark.e2e


def test_webhook_key_is_generated_once_into_the_home(dreamops_home):
    from dreamops.registry.server import WEBHOOK_KEY_FILE, mlflow_server_command, webhook_key
    from dreamops.settings import get_settings

    settings = get_settings()
    key = webhook_key(settings)
    path = dreamops_home / WEBHOOK_KEY_FILE
    assert oct(path.stat().st_mode)[-3:] == "600" and webhook_key(settings) == key
    _, env = mlflow_server_command(settings, "127.0.0.1", 5000)
    assert env["MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY"] == key
    configured = settings.model_copy(update={"server_webhook_key": "from-the-environment"})
    assert webhook_key(configured) == "from-the-environment"


@pytest.mark.e2e  # a whole process and its servers: the full tier only
def test_a_restarted_server_on_the_same_home_accepts_the_webhook_registration(dreamops_home, tmp_path):
    """Before: the second start's registration answered 500 (the stored secret was encrypted with
    the first process's own key) and `dreamops up` stopped."""
    import mlflow

    from dreamops.registry import store
    from dreamops.registry.server import mlflow_server_command
    from dreamops.settings import get_settings

    settings = get_settings().model_copy(update={"server_webhooks_to_private": True})  # as `dreamops up` runs it
    dreamops_home.mkdir(parents=True, exist_ok=True)
    hook_ids = []
    for start in range(2):
        port = free_port()
        cmd, env = mlflow_server_command(settings, "127.0.0.1", port)
        with process(cmd, {**env, "DREAMOPS_HOME": str(dreamops_home)}, tmp_path / f"mlflow-{start}.log") as proc:
            wait_http(f"http://127.0.0.1:{port}/health", proc, tmp_path / f"mlflow-{start}.log", 120)
            mlflow.set_tracking_uri(f"http://127.0.0.1:{port}")
            mlflow.set_registry_uri(f"http://127.0.0.1:{port}")
            hook_ids.append(store.register_webhook("http://127.0.0.1:9/api/v1/webhooks/mlflow", f"secret-{start}"))
    assert hook_ids[0] == hook_ids[1]  # the same webhook, repointed
    assert os.path.exists(dreamops_home / "mlflow-webhook.key")
