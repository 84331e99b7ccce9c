"""infra/ cannot run here (no Docker engine), so check what can drift: every dreamops command in the
compose file parses with the real CLI, and every DREAMOPS_ variable is a real setting."""
from __future__ import annotations

from pathlib import Path

import yaml

from dreamops.flows.cli import _parser
from dreamops.settings import Settings

INFRA = Path(__file__).resolve().parents[1] / "infra"


def _dreamops_services() -> dict[str, dict]:
    compose = yaml.safe_load((INFRA / "docker-compose.yml").read_text())
    return {name: svc for name, svc in compose["services"].items()
            if svc.get("build", {}).get("dockerfile") == "infra/Dockerfile"}


def test_every_dreamops_service_runs_a_real_command():
    services = _dreamops_services()
    assert {"mlflow", "api", "reconciler", "register-webhook"} <= set(services)
    for name, svc in services.items():
        args = _parser().parse_args(svc["command"])
        assert args.command in {"server", "api", "reconcile", "webhook"}, name


def test_every_dreamops_variable_is_a_setting():
    fields = {f"DREAMOPS_{name.upper()}" for name in Settings.model_fields}
    for name, svc in _dreamops_services().items():
        env = {k for k in svc["environment"] if k.startswith("DREAMOPS_")}
        assert env <= fields, (name, env - fields)


def test_image_installs_the_lock():
    dockerfile = (INFRA / "Dockerfile").read_text()
    assert "requirements.lock" in dockerfile and "torch==2.13.0" in dockerfile
    assert 'ENTRYPOINT ["dreamops"]' in dockerfile


def test_prefect_yaml_matches_the_served_deployments():
    """prefect.yaml (work-pool deployments) and flows/serve.py declare the same flows and trigger."""
    from dreamops.flows.serve import deployments

    spec = yaml.safe_load((INFRA.parent / "prefect.yaml").read_text())
    declared = {d["name"]: d for d in spec["deployments"]}
    served = {d.name for d in deployments()}
    assert {"dreamops-train", "retrain-on-drift"} <= set(declared) & served
    trigger = declared["retrain-on-drift"]["triggers"][0]
    assert trigger["expect"] == ["dreamops.drift.detected"]
    for d in spec["deployments"]:
        path, name = d["entrypoint"].split(":")
        assert (INFRA.parent / path).exists() and f"def {name}(" in (INFRA.parent / path).read_text()
