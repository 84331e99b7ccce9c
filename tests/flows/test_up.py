"""`dreamops up`: one command starts Prefect, MLflow, the serve process and the API on loopback;
one Ctrl-C (SIGINT) stops them all."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.stack import free_port

pytestmark = pytest.mark.e2e


def _get(url: str, token: str | None = None) -> int:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    with urllib.request.urlopen(request, timeout=10) as r:
        return r.status


def _served(url: str, timeout: float = 120) -> None:
    """The serve process has registered the deployment the training trigger runs."""
    deadline = time.time() + timeout
    while True:
        try:
            assert _get(url) == 200
            return
        except OSError:
            assert time.time() < deadline, f"{url} never answered"
            time.sleep(1)


def test_up_starts_the_stack_and_ctrl_c_stops_it(tmp_path):
    ports = {"prefect": free_port(), "mlflow": free_port(), "api": free_port()}
    env = {**os.environ, "DREAMOPS_HOME": str(tmp_path / ".dreamops")}
    for key in ("DREAMOPS_TRACKING_URI", "PREFECT_API_URL", "DREAMOPS_DATABASE_URL"):
        env.pop(key, None)
    proc = subprocess.Popen([sys.executable, "-m", "dreamops.flows.cli", "up", "--prefect-port", str(ports["prefect"]),
                             "--mlflow-port", str(ports["mlflow"]), "--api-port", str(ports["api"])],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    try:
        deadline = time.time() + 240
        while time.time() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("  engineer token in"):
                break
        assert any("dreamops is up" in line for line in lines), "".join(lines)
        token = (tmp_path / ".dreamops" / "api-token").read_text().strip()
        assert oct((tmp_path / ".dreamops" / "api-token").stat().st_mode)[-3:] == "600"
        assert _get(f"http://127.0.0.1:{ports['api']}/api/v1/models", token) == 200
        assert _get(f"http://127.0.0.1:{ports['mlflow']}/health") == 200
        _served(f"http://127.0.0.1:{ports['prefect']}/api/deployments/name/train/dreamops-train")
        logs = {p.name for p in (tmp_path / ".dreamops" / "logs").iterdir()}
        assert logs == {"prefect.log", "mlflow.log", "serve.log", "api.log"}
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    for port in ports.values():  # every process is gone
        with pytest.raises(OSError):
            _get(f"http://127.0.0.1:{port}/")
