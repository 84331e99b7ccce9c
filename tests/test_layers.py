"""Imports point one way (DESIGN.md's layers), enforced by import-linter's contracts in
pyproject.toml: a wrong arrow fails the suite, with the import that broke it.

import-linter (grimp) reads a package from its directory, and this repository maps `dreamops.*`
onto top-level folders (setuptools' package-dir), so the check runs on a copy of the sources laid
out as the wheel lays them out, built from that same mapping."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SETUPTOOLS = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _installed_layout(out: Path) -> Path:
    for package, folder in SETUPTOOLS["package-dir"].items():
        target = out.joinpath(*package.split("."))
        target.mkdir(parents=True, exist_ok=True)
        for source in (ROOT / folder).glob("*.py"):
            shutil.copy2(source, target / source.name)
    return out


def _lint(sources: Path) -> subprocess.CompletedProcess:
    # PYTHONPATH comes before the editable install's finder, so grimp reads the copy
    env = {**os.environ, "PYTHONPATH": str(sources)}
    return subprocess.run([str(LINT_IMPORTS), str(ROOT / "pyproject.toml"), "--no-cache"], cwd=sources, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def sources(tmp_path) -> Path:
    return _installed_layout(tmp_path / "src")


def test_every_package_the_wheel_ships_is_mapped_so_the_check_sees_it():
    assert set(SETUPTOOLS["packages"]) == set(SETUPTOOLS["package-dir"])


def test_the_import_contracts_hold(sources):
    result = _lint(sources)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(("module", "line", "message"), [
    ("sim/_robot_client.py", "from dreamops.api import schemas", "dreamops.sim is not allowed to import dreamops.api"),
    ("tasks/_tables.py", "from dreamops.api import main", "dreamops.tasks is not allowed to import dreamops.api"),
    ("models/_settings.py", "from dreamops import settings", "dreamops.models is not allowed to import dreamops.settings"),
])
def test_a_wrong_import_fails_the_check_and_names_itself(sources, module, line, message):
    package, name = module.split("/")
    (sources / "dreamops" / package / name).write_text(line + "\n")
    result = _lint(sources)
    assert result.returncode == 1
    assert message in result.stdout
    assert f"dreamops.{package}.{name.removesuffix('.py')} -> " in result.stdout


def test_a_new_core_module_has_to_be_placed_in_a_layer(sources):
    (sources / "dreamops" / "helpers.py").write_text("")
    result = _lint(sources)
    assert result.returncode != 0
    assert "dreamops.helpers" in result.stdout + result.stderr
