"""`dreamops up`: one command starts Prefect, MLflow, the serve process and the API on loopback;
one Ctrl-C (SIGINT) stops them all."""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
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


def test_up_starts_the_stack_and_ctrl_c_stops_it_twice_on_one_home(tmp_path):
    """The second start on the same home (its webhook secret, MLflow webhook key, token and
    databases already there) registers the MLflow webhook again and serves: before, its webhook
    registration answered 500 and the stack stopped."""
    first_token = None
    for start in range(2):
        ports = {"prefect": free_port(), "mlflow": free_port(), "api": free_port()}
        env = {**os.environ, "DREAMOPS_HOME": str(tmp_path / ".dreamops")}
        for key in ("DREAMOPS_TRACKING_URI", "PREFECT_API_URL", "DREAMOPS_DATABASE_URL", "DREAMOPS_WEBHOOK_SECRET"):
            env.pop(key, None)
        proc = subprocess.Popen([sys.executable, "-m", "dreamops.flows.cli", "up", "--prefect-port",
                                 str(ports["prefect"]), "--mlflow-port", str(ports["mlflow"]), "--api-port",
                                 str(ports["api"])], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
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
            # printed only after `dreamops webhook` registered the MLflow webhook with the API's secret
            assert any("dreamops is up" in line for line in lines), f"start {start + 1}:\n" + "".join(lines)
            token = (tmp_path / ".dreamops" / "api-token").read_text().strip()
            first_token = first_token or token
            assert token == first_token  # kept, still valid against the kept database
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


def _children(pid: int) -> list[int]:
    from pathlib import Path

    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def test_stopping_dreamops_api_stops_the_temporary_prefect_server_it_started(tmp_path):
    """Without PREFECT_API_URL the first trigger starts Prefect's temporary server as a child of the
    API; SIGTERM to the API stops it too (uvicorn used to re-raise SIGTERM and skip the exit hooks)."""
    import json

    port = free_port()
    env = {**os.environ, "DREAMOPS_HOME": str(tmp_path / ".dreamops")}
    for key in ("DREAMOPS_TRACKING_URI", "PREFECT_API_URL", "DREAMOPS_DATABASE_URL"):
        env.pop(key, None)
    cli = [sys.executable, "-m", "dreamops.flows.cli"]
    token = subprocess.run(cli + ["token", "create", "--name", "t", "--role", "engineer"], env=env, text=True,
                           capture_output=True, check=True, timeout=120).stdout.strip().splitlines()[-1]
    api = subprocess.Popen(cli + ["api", "--port", str(port)], env=env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    children: list[int] = []
    try:
        _served(f"http://127.0.0.1:{port}/healthz")
        request = urllib.request.Request(f"http://127.0.0.1:{port}/api/v1/training/trigger", method="POST",
                                         data=json.dumps({"warehouse_id": "WH-1", "profile": "smoke"}).encode(),
                                         headers={"Authorization": f"Bearer {token}",
                                                  "Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as answer:  # nothing serves the deployment
            urllib.request.urlopen(request, timeout=180)
        assert answer.value.code == 503
        children = _children(api.pid)
        assert children, "the trigger did not start Prefect's temporary server"
        api.send_signal(signal.SIGTERM)
        assert api.wait(60) == 0
        deadline = time.time() + 20
        while [c for c in children if os.path.exists(f"/proc/{c}")] and time.time() < deadline:
            time.sleep(0.2)
        assert not [c for c in children if os.path.exists(f"/proc/{c}")], "the temporary Prefect server lives on"
    finally:
        if api.poll() is None:
            api.kill()
        for child in children:  # only what this test started
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)
