"""The wheel is what the container image installs: it must carry the API's migrations and declare
every third-party package dreamops imports; the API starts from it alone."""
from __future__ import annotations

import ast
import os
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e  # whole processes (servers, a Ray cluster, a wheel build): the full tier only

ROOT = Path(__file__).resolve().parents[1]
# import name -> distribution, where they differ
DISTRIBUTIONS = {"yaml": "pyyaml", "PIL": "pillow", "pydantic_settings": "pydantic-settings", "gymnasium": "gymnasium",
                 "great_expectations": "great-expectations", "psycopg": "psycopg", "sklearn": "scikit-learn",
                 "pybullet_data": "pybullet"}
PACKAGES = ("api", "registry", "tasks", "flows", "fleet", "models", "sim", "validation", "dreamops")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    import shutil

    out, src = tmp_path_factory.mktemp("wheel"), tmp_path_factory.mktemp("source")
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, check=True, text=True,
                           capture_output=True).stdout.split()
    for name in files:  # a clean copy: no build/ folder left from an earlier build
        if (ROOT / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, src / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
                    str(src)], check=True, timeout=300, capture_output=True)
    (path,) = out.glob("dreamops-*.whl")
    return path


def _imported_top_levels() -> set[str]:
    names = set()
    for package in PACKAGES:
        for source in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(source.read_text())):
                if isinstance(node, ast.Import):
                    names |= {a.name.split(".")[0] for a in node.names}
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    names.add(node.module.split(".")[0])
    return names


def test_the_wheel_carries_the_migrations_and_declares_what_dreamops_imports(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        requires = Parser().parsestr(z.read(metadata).decode()).get_all("Requires-Dist") or []
    assert {"dreamops/migrations/env.py", "dreamops/migrations/script.py.mako",
            "dreamops/migrations/versions/0001_api_tables.py",
            "dreamops/api/ui/dashboard.html"} <= names  # the rollout dashboard the API serves at /ui
    declared = {r.split(";")[0].split("[")[0].split(">")[0].split("=")[0].split("<")[0].strip().lower()
                for r in requires if "extra ==" not in r}
    third_party = {n for n in _imported_top_levels() - set(sys.stdlib_module_names) if n not in ("dreamops", "tests")}
    missing = sorted(n for n in third_party if DISTRIBUTIONS.get(n, n).lower().replace("_", "-") not in declared)
    assert missing == [], f"imported but not declared in pyproject.toml: {missing}"


def test_the_api_migrates_and_serves_openapi_from_the_wheel_alone(wheel, tmp_path):
    """The wheel unpacked ahead of the editable checkout on the path: its dreamops is the one imported."""
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as z:
        z.extractall(site)
    script = (
        "import dreamops.db as db, sys\n"
        "assert db.__file__.startswith(sys.argv[1]), db.__file__\n"
        "from fastapi.testclient import TestClient\n"
        "from dreamops.api.main import create_app\n"
        "with TestClient(create_app()) as c:\n"
        "    r = c.get('/openapi.json')\n"
        "    assert r.status_code == 200 and '/api/v1/models/{version}/deploy' in r.json()['paths']\n"
        "import sqlalchemy as sa\n"
        "e = sa.create_engine(sys.argv[2])\n"
        "print(sorted(sa.inspect(e).get_table_names()))\n")
    env = {**os.environ, "PYTHONPATH": str(site), "DREAMOPS_HOME": str(tmp_path / ".dreamops"),
           "DREAMOPS_RECONCILE_INTERVAL_S": "0"}
    env.pop("DREAMOPS_DATABASE_URL", None)
    out = subprocess.run([sys.executable, "-c", script, str(site), f"sqlite:///{tmp_path / '.dreamops' / 'dreamops.db'}"],
                         env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "deployments" in out.stdout and "dreamops_alembic_version" in out.stdout
