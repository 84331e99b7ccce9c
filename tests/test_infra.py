"""infra/ cannot run here (no Docker engine, no cluster), so check offline what can drift: the compose
file against the compose-spec schema, the Kubernetes manifests against Kubernetes' schemas, every
dreamops and prefect command line against the real parsers, every DREAMOPS_ variable against the
settings, secrets only by reference; and run the image's entrypoint commands as plain processes."""
from __future__ import annotations

import json
import os
import re
import shlex
import socket
import subprocess
import sys
from importlib.resources import files
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from dreamops.fleet.simulator import TOKEN_ENV
from dreamops.flows.cli import _parser
from dreamops.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
INFRA = ROOT / "infra"
K8S = INFRA / "k8s"
COMPOSE = yaml.safe_load((INFRA / "docker-compose.yml").read_text())
SECRET_KEYS = {line.split("=", 1)[0] for line in (INFRA / ".env.example").read_text().splitlines()
               if line and not line.startswith("#")}
# every DREAMOPS_ name a process reads: the settings, plus the fleet's token (not a setting: robots only)
DREAMOPS_NAMES = {f"DREAMOPS_{name.upper()}" for name in Settings.model_fields} | {TOKEN_ENV}
K8S_VERSIONS = ("1.30.0", "1.37.0")  # the oldest cluster we claim, and the newest schema shipped


def _dreamops_services() -> dict[str, dict]:
    return {name: svc for name, svc in COMPOSE["services"].items() if svc.get("image") == "dreamops:latest"}


def _k8s_docs() -> list[dict]:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = kustomization["resources"]
    assert sorted(listed) == sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
    return [doc for name in listed for doc in yaml.safe_load_all((K8S / name).read_text())]


def _k8s_containers() -> list[tuple[str, dict]]:
    out = []
    for doc in _k8s_docs():
        if doc["kind"] in {"Deployment", "StatefulSet", "Job"}:
            out += [(doc["metadata"]["name"], c) for c in doc["spec"]["template"]["spec"]["containers"]]
    return out


def _shell_dreamops(script: str) -> list[list[str]]:
    """The dreamops command lines inside a `sh -c` script (up to a pipe, `&&`, `;` or `)`)."""
    return [shlex.split(m) for m in re.findall(r'(?:^|[\s("])dreamops\s+([^|&;)"]+)', script)]


def _command_lines(entrypoint: list[str] | None, command: list[str]) -> list[tuple[str, list[str]]]:
    """(program, argv) run by a container of the dreamops image (ENTRYPOINT ["dreamops"])."""
    if not entrypoint or entrypoint == ["dreamops"]:
        return [("dreamops", command)]
    if entrypoint == ["prefect"]:
        return [("prefect", command)]
    assert entrypoint == ["/bin/sh", "-c"] and len(command) == 1, entrypoint
    return [("dreamops", argv) for argv in _shell_dreamops(command[0])]


def _parse(program: str, argv: list[str]) -> str:
    """Parse with the real CLI; returns the command's name. Bad options raise."""
    if program == "dreamops":
        return _parser().parse_args(argv).command
    from prefect.cli._app import _app  # Prefect's cyclopts app: parses without running

    command, _, _ = _app.parse_args(argv, exit_on_error=False, print_error=False)
    return command.__name__


# --- compose ---

def test_compose_file_matches_the_compose_spec():
    schema = json.loads(files("check_jsonschema.builtin_schemas.vendor").joinpath("compose-spec.json").read_text())
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
              for e in jsonschema.Draft202012Validator(schema).iter_errors(COMPOSE)]
    assert not errors, errors


def test_compose_runs_the_whole_stack_with_health_checks():
    services = COMPOSE["services"]
    assert {"postgres", "minio", "buckets", "mlflow", "prefect", "worker", "deployments", "api", "fleet"} <= set(services)
    one_shots = {"buckets", "deployments", "register-webhook"}
    for name, svc in services.items():
        if name not in one_shots | {"fleet"}:  # every server says when it is ready
            assert svc["healthcheck"]["test"][0] == "CMD", name
        for dep, cond in (svc.get("depends_on") or {}).items():
            condition = cond["condition"] if isinstance(cond, dict) else "service_started"
            assert dep in services, (name, dep)
            if condition == "service_healthy":
                assert "healthcheck" in services[dep], (name, dep)
            if condition == "service_completed_successfully":
                assert dep in one_shots, (name, dep)
    for svc in services.values():  # named volumes are declared (persistent), bind mounts exist
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            assert source in COMPOSE["volumes"] or (INFRA / source).exists(), source
    assert {"postgres", "minio"} <= set(COMPOSE["volumes"])
    worker = services["worker"]["command"]
    assert worker[:5] == ["worker", "start", "--pool", "dreamops", "--type"] and worker[5] == "process"


def test_compose_healthchecks_use_the_shipped_script_on_real_routes():
    routes = {"mlflow": "/health", "prefect": "/api/health", "worker": "/health", "api": "/healthz"}
    for name, route in routes.items():
        test = COMPOSE["services"][name]["healthcheck"]["test"]
        assert test[1:3] == ["python", "/app/infra/healthcheck.py"] and test[3].endswith(route), name
    from dreamops.api.main import create_app

    assert "/healthz" in create_app().openapi()["paths"]


def test_every_compose_command_parses_with_the_real_cli():
    seen = {}
    for name, svc in _dreamops_services().items():
        assert svc["build"] == {"context": "..", "dockerfile": "infra/Dockerfile", "args": {"TORCH_VARIANT": "${TORCH_VARIANT:-cpu}"}}
        for program, argv in _command_lines(svc.get("entrypoint"), svc["command"]):
            seen[name] = seen.get(name, []) + [_parse(program, argv)]
    assert seen == {"mlflow": ["server"], "prefect": ["start"], "deployments": ["deploy"], "worker": ["start"],
                    "api": ["api"], "register-webhook": ["webhook"], "fleet": ["token", "fleet"]}


def test_compose_secrets_come_from_the_environment():
    """Every password, key or secret is a required `${VAR:?...}` (or the MinIO user's default), and
    every variable interpolated is documented in infra/.env.example (or has a default)."""
    text = (INFRA / "docker-compose.yml").read_text()
    for name, svc in COMPOSE["services"].items():
        for key, value in (svc.get("environment") or {}).items():
            if re.search(r"PASSWORD|SECRET|_KEY$", key):
                assert re.fullmatch(r"\$\{[A-Z_]+(:\?[^}]*|:-dreamops)\}", str(value)), (name, key)
            if key.endswith(("DATABASE_URL", "STORE_URI", "CONNECTION_URL")) and "@" in str(value):
                assert ":${POSTGRES_PASSWORD:?" in value, (name, key)  # no password written into a URL
    for var, default in re.findall(r"\$\{([A-Z_]+)(:-[^}]*)?", text):
        assert var in SECRET_KEYS or default, var


def test_every_dreamops_variable_is_a_setting():
    names = set()
    for svc in COMPOSE["services"].values():
        names |= set(svc.get("environment") or {})
    for doc in _k8s_docs():
        if doc["kind"] == "ConfigMap":
            names |= set(doc["data"])
    for _, container in _k8s_containers():
        names |= {e["name"] for e in container.get("env", [])}
    for pool in ("docker-pool.json", "k8s-pool.json"):
        template = json.loads((INFRA / "prefect" / pool).read_text())
        names |= set(template["variables"]["properties"]["env"].get("default", {}))
    names |= set(re.findall(r"\b(DREAMOPS_[A-Z_]+)=", (INFRA / "Dockerfile").read_text()))
    names |= SECRET_KEYS
    dreamops = {n for n in names if n.startswith("DREAMOPS_")}
    assert {"DREAMOPS_TRACKING_URI", "DREAMOPS_DATABASE_URL", "DREAMOPS_HOME"} <= dreamops
    assert dreamops <= DREAMOPS_NAMES, dreamops - DREAMOPS_NAMES


def test_mlflow_answers_the_host_names_the_stack_uses():
    """MLflow rejects unknown Host headers (a DNS-rebinding guard), so each stack lists its names."""
    from mlflow.server.security_utils import is_allowed_host_header

    compose = COMPOSE["services"]["mlflow"]["environment"]["MLFLOW_SERVER_ALLOWED_HOSTS"]
    k8s = next(e["value"] for n, c in _k8s_containers() if n == "mlflow" for e in c["env"]
               if e["name"] == "MLFLOW_SERVER_ALLOWED_HOSTS")
    for allowed, client_host in ((compose, "mlflow:5000"), (k8s, "mlflow:5000"),
                                 (k8s, "mlflow.dreamops.svc.cluster.local:5000"), (k8s, "localhost:5000")):
        assert is_allowed_host_header(allowed.split(","), client_host), (allowed, client_host)
        assert not is_allowed_host_header(allowed.split(","), "attacker.example:5000")
    assert "http://mlflow:5000" == COMPOSE["x-dreamops-env"]["DREAMOPS_TRACKING_URI"]


# --- image ---

def test_image_is_multi_stage_non_root_and_installs_the_lock():
    dockerfile = (INFRA / "Dockerfile").read_text()
    stages = re.findall(r"^FROM \S+ AS (\w+)", dockerfile, re.M)
    assert stages == ["build", "runtime"]
    runtime = dockerfile.split("AS runtime", 1)[1]
    assert re.search(r"^USER 10001", runtime, re.M) and "COPY --from=build /opt/venv /opt/venv" in runtime
    assert "build-essential" not in runtime  # compilers stay in the build stage
    assert "ARG TORCH_VARIANT=cpu" in dockerfile and "whl/${TORCH_VARIANT}" in dockerfile
    lock = (ROOT / "requirements.lock").read_text().splitlines()
    torch_pin = next(line for line in lock if line.startswith("torch=="))
    assert torch_pin in dockerfile and "pip install -r /tmp/requirements.lock" in dockerfile
    assert 'ENTRYPOINT ["dreamops"]' in runtime and "WORKDIR /app" in runtime


def test_entrypoint_help_runs():
    out = subprocess.run([sys.executable, "-m", "dreamops.flows.cli", "--help"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0 and "fleet" in out.stdout


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.e2e  # a whole process and its servers: the full tier only
def test_api_entrypoint_answers_the_compose_healthcheck(tmp_path):
    """`dreamops api` as the container runs it (on loopback), probed by the compose healthcheck."""
    from dreamops.flows.up import stop_process, wait_http

    port = _free_port()
    env = {**os.environ, "DREAMOPS_HOME": str(tmp_path / "home"), "DREAMOPS_RECONCILE_INTERVAL_S": "0"}
    command = COMPOSE["services"]["api"]["command"]
    argv = [sys.executable, "-m", "dreamops.flows.cli", *command]
    argv[argv.index("--host") + 1], argv[argv.index("--port") + 1] = "127.0.0.1", str(port)
    check = [sys.executable, str(INFRA / "healthcheck.py"), f"http://127.0.0.1:{port}/healthz"]
    log = tmp_path / "api.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", proc, log, timeout=120)
        assert subprocess.run(check, timeout=30).returncode == 0
    finally:
        stop_process(proc, 30)
    assert subprocess.run(check, capture_output=True, timeout=30).returncode == 1  # nothing listens now


# --- Kubernetes ---

@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_k8s_manifests_match_the_kubernetes_schemas(version):
    docs = _k8s_docs()
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)
    kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
    for name in ("postgres", "minio", "mlflow", "prefect", "prefect-worker", "api", "fleet"):
        assert ("Deployment", name) in kinds or ("StatefulSet", name) in kinds, name
    assert not any(d["kind"] == "Secret" for d in docs)  # created from infra/.env, never committed


def test_k8s_servers_have_probes_resources_and_volumes():
    docs = _k8s_docs()
    for name, c in _k8s_containers():
        assert c["resources"]["requests"]["cpu"] and c["resources"]["requests"]["memory"], name
        if name not in {"fleet", "minio-buckets", "prefect-deployments", "register-webhook"}:
            assert c["readinessProbe"] and c["livenessProbe"], name
    claims = {d["metadata"]["name"]: d["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"]
              for d in docs if d["kind"] == "StatefulSet"}
    assert set(claims) == {"postgres", "minio"}
    for d in docs:
        if d["kind"] in {"Deployment", "Job"} and d["spec"]["template"]["spec"]["containers"][0]["image"] == "dreamops":
            assert d["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True, d["metadata"]["name"]
    init = next(d for d in docs if d["metadata"]["name"] == "postgres-init")["data"]["init.sql"]
    assert init == (INFRA / "postgres-init.sql").read_text()


def test_every_k8s_command_parses_with_the_real_cli():
    seen = {}
    for name, c in _k8s_containers():
        if c["image"] != "dreamops":
            continue
        # Kubernetes turns $$ into a literal $ in command and args
        args = [a.replace("$$", "$") for a in c.get("args", [])]
        for program, argv in _command_lines(c.get("command"), args):
            seen[name] = seen.get(name, []) + [_parse(program, argv)]
    assert seen == {"mlflow": ["server"], "prefect": ["start"], "prefect-worker": ["start"],
                    "prefect-deployments": ["deploy"], "api": ["api"], "register-webhook": ["webhook"],
                    "fleet": ["token", "fleet"]}


def test_k8s_secrets_are_references_to_the_documented_secret():
    config = {k for d in _k8s_docs() if d["metadata"]["name"] == "dreamops-config" for k in d["data"]}
    pool = json.loads((INFRA / "prefect" / "k8s-pool.json").read_text())["job_configuration"]["job_manifest"]
    for name, c in _k8s_containers() + [("k8s-pool", pool["spec"]["template"]["spec"]["containers"][0])]:
        defined = set()
        for source in c.get("envFrom", []):
            if "secretRef" in source:
                assert source["secretRef"]["name"] == "dreamops-secrets"
                defined |= SECRET_KEYS
            else:
                assert source["configMapRef"]["name"] == "dreamops-config"
                defined |= config
        for e in c.get("env", []):
            if "valueFrom" in e:
                ref = e["valueFrom"]["secretKeyRef"]
                assert ref["name"] == "dreamops-secrets" and ref["key"] in SECRET_KEYS, (name, e)
            else:
                assert not re.search(r"PASSWORD|SECRET|_KEY$", e["name"]) or "$(" in e["value"], (name, e)
                for var in re.findall(r"\$\(([A-Z_]+)\)", e["value"]):  # $(VAR) must be defined before use
                    assert var in defined, (name, e["name"], var)
            defined.add(e["name"])


# --- Prefect ---

def test_prefect_yaml_matches_the_served_deployments():
    """prefect.yaml (work-pool deployments) and flows/serve.py declare the same flows and trigger."""
    from dreamops.flows.serve import deployments

    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    declared = {d["name"]: d for d in spec["deployments"]}
    served = {d.name for d in deployments()}
    assert {"dreamops-train", "retrain-on-drift"} <= set(declared) & served
    trigger = declared["retrain-on-drift"]["triggers"][0]
    assert trigger["expect"] == ["dreamops.drift.detected"]
    assert trigger["match"]["dreamops.model"] == trigger["parameters"]["agent"]   # its own family's drift only
    for d in spec["deployments"]:
        assert d["work_pool"]["name"] == "dreamops"  # the pool the compose and k8s workers poll
        path, name = d["entrypoint"].split(":")
        assert (ROOT / path).exists() and f"def {name}(" in (ROOT / path).read_text()


def test_each_served_family_gets_its_drift_check_retrains_and_its_own_drift_trigger(monkeypatch):
    from dreamops.flows.serve import deployments
    from dreamops.settings import Settings

    served = {d.name: d for d in deployments(Settings(warehouses=["WH-1"], served_agents=["carracing-vmc", "pick-vla"]))}
    assert set(served) == {"dreamops-train", "retrain-on-drift", "weekly-retrain-WH-1", "drift-check-WH-1",
                           "retrain-on-drift-pick-vla", "weekly-retrain-WH-1-pick-vla", "drift-check-WH-1-pick-vla"}
    assert served["drift-check-WH-1-pick-vla"].parameters == {"warehouse_id": "WH-1", "model": "pick-vla"}
    vmc, pick = (served[n].triggers[0] for n in ("retrain-on-drift", "retrain-on-drift-pick-vla"))
    # each retrain matches only its own family's drift events (flows/drift.py labels the resource)
    assert vmc.match["dreamops.model"] == ["carracing-vmc"] and pick.match["dreamops.model"] == ["pick-vla"]
    assert vmc.parameters["agent"] == "carracing-vmc" and vmc.parameters["data_window_hours"] == 24.0
    assert pick.parameters["agent"] == "pick-vla" and pick.parameters["data_window_hours"] == 24.0
    assert served["weekly-retrain-WH-1-pick-vla"].parameters["data_window_hours"] == 7 * 24
    # a family without fleet data retrains on its own data instead of being refused
    import dataclasses

    from dreamops.families import FAMILIES

    monkeypatch.setitem(FAMILIES, "pick-vla", dataclasses.replace(FAMILIES["pick-vla"], fleet_data=False))
    served = {d.name: d for d in deployments(Settings(warehouses=["WH-1"], served_agents=["pick-vla"]))}
    assert served["retrain-on-drift-pick-vla"].triggers[0].parameters["data_window_hours"] is None
    assert served["weekly-retrain-WH-1-pick-vla"].parameters["data_window_hours"] is None
    with pytest.raises(ValueError, match="unknown agent 'humanoid'"):
        deployments(Settings(served_agents=["humanoid"]))
