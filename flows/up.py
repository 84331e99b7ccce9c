"""`dreamops up`: the local stack as processes on loopback, one command, one Ctrl-C.

Starts a Prefect server, the MLflow server (on the configured stores: the embedded SQLite by
default), the serve process of the Prefect deployments and the REST API; registers MLflow's
webhook with the API; writes each process's log under <home>/logs and an engineer token to
<home>/api-token. If any process dies, the others are stopped and its log tail is printed.
"""
from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from dreamops.registry.server import home_secret, mlflow_server_command
from dreamops.settings import Settings


@dataclass
class Ports:
    prefect: int = 4200
    mlflow: int = 5000
    api: int = 8000


@dataclass
class Service:
    name: str
    proc: subprocess.Popen
    log: Path
    url: str


def wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    """Until `url` answers 200; a process that exits, or the deadline, raises with its log's tail."""
    deadline = time.time() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                if r.status == 200:
                    return
        except OSError:  # not listening yet
            pass
        if proc.poll() is not None or time.time() > deadline:
            raise RuntimeError(f"{url} did not come up (see {log}):\n{_tail(log)}")
        time.sleep(0.5)


def stop_process(proc: subprocess.Popen, timeout: float = 20, group: bool = False) -> None:
    """SIGTERM, then SIGKILL after `timeout` s. group: the process leads its own process group
    (start_new_session), and whatever of that group outlives it is killed too."""
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    if group:
        with contextlib.suppress(ProcessLookupError):  # the group is already gone
            os.killpg(proc.pid, signal.SIGKILL)


def _wait(service: Service, health: str, timeout: float) -> None:
    wait_http(health, service.proc, service.log, timeout)


def _tail(path: Path, lines: int = 20) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


def _start(name: str, cmd: list[str], env: dict, logs: Path, url: str) -> Service:
    log = logs / f"{name}.log"
    with open(log, "w") as out:
        # own process group: Ctrl-C reaches `up`, which stops the children in order
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    return Service(name, proc, log, url)


def _stop(services: list[Service]) -> None:
    for s in reversed(services):
        if s.proc.poll() is None:
            os.killpg(s.proc.pid, signal.SIGTERM)
    for s in reversed(services):
        try:
            s.proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(s.proc.pid, signal.SIGKILL)


def up(settings: Settings, host: str = "127.0.0.1", ports: Ports = Ports(), ready=lambda services: None,
       stop_when=lambda: False) -> int:
    home = settings.resolved_home
    logs = home / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    # kept in the home: a restarted stack's API and MLflow server agree with the stored webhook
    secret = settings.webhook_secret or home_secret(home / "webhook-secret", lambda: secrets.token_urlsafe(24))
    tracking = f"http://{host}:{ports.mlflow}"
    prefect_api = f"http://{host}:{ports.prefect}/api"
    base = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DREAMOPS_HOME": str(home)}
    child = {**base, "DREAMOPS_TRACKING_URI": tracking, "PREFECT_API_URL": prefect_api,
             "DREAMOPS_WEBHOOK_SECRET": secret, "PREFECT_HOME": str(home / "prefect")}
    services: list[Service] = []
    stopping = {"now": False}

    def on_signal(signum, frame):
        stopping["now"] = True

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        prefect_env = {**base, "PREFECT_HOME": str(home / "prefect-server")}
        services.append(_start("prefect", [sys.executable, "-m", "prefect", "server", "start", "--host", host,
                                           "--port", str(ports.prefect)], prefect_env, logs, f"http://{host}:{ports.prefect}"))
        server_settings = settings.model_copy(update={"server_webhooks_to_private": True})
        cmd, env = mlflow_server_command(server_settings, host, ports.mlflow)
        services.append(_start("mlflow", cmd, {**env, "DREAMOPS_HOME": str(home)}, logs, tracking))
        _wait(services[0], f"{prefect_api}/health", 180)
        _wait(services[1], f"{tracking}/health", 180)
        cli = [sys.executable, "-m", "dreamops.flows.cli"]
        services.append(_start("serve", cli + ["serve"], child, logs, "(Prefect deployment train/dreamops-train)"))
        services.append(_start("api", cli + ["api", "--host", host, "--port", str(ports.api)], child, logs,
                               f"http://{host}:{ports.api}"))
        _wait(services[3], f"http://{host}:{ports.api}/healthz", 120)
        webhook = subprocess.run(cli + ["webhook", "--url", f"http://{host}:{ports.api}/api/v1/webhooks/mlflow"],
                                 env=child, capture_output=True, text=True, timeout=120)
        if webhook.returncode != 0:
            raise RuntimeError(f"registering the MLflow webhook failed: {webhook.stderr.strip()}")
        token_file = _engineer_token(home, child, cli)
        print(f"dreamops is up (logs in {logs}); Ctrl-C stops everything", flush=True)
        for s in services:
            print(f"  {s.name:<8} {s.url:<45} log {s.log}")
        print(f"  engineer token in {token_file}\n  e.g. curl -H \"Authorization: Bearer $(cat {token_file})\" "
              f"http://{host}:{ports.api}/api/v1/models", flush=True)
        ready(services)
        while not stopping["now"] and not stop_when():
            dead = next((s for s in services if s.proc.poll() is not None), None)
            if dead is not None:
                raise RuntimeError(f"{dead.name} exited with {dead.proc.returncode} (see {dead.log}):\n{_tail(dead.log)}")
            time.sleep(0.5)
        print("stopping ...", flush=True)
        return 0
    except RuntimeError as exc:
        print(f"dreamops up: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        _stop(services)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _engineer_token(home: Path, env: dict, cli: list[str]) -> Path:
    """An engineer token for the person who ran `up`, created once and kept (mode 600)."""
    path = home / "api-token"
    if not path.exists():
        out = subprocess.run(cli + ["token", "create", "--name", "local-engineer", "--role", "engineer"], env=env,
                             capture_output=True, text=True, timeout=120, check=True)
        path.write_text(out.stdout.strip().splitlines()[-1] + "\n")
        path.chmod(0o600)
    return path
