"""bench_api.archive_code: an older commit's packages laid out as installed, for PYTHONPATH."""
import subprocess
import sys
import tomllib
from pathlib import Path

from tests.bench import bench_module

bench_api = bench_module("bench_api")
REPO = Path(__file__).resolve().parent.parent


def test_the_archive_holds_every_package_and_its_code_is_the_one_imported(tmp_path):
    """The before/after benches run old code through PYTHONPATH ahead of the editable install: a
    package left out of the archive is silently imported from this working tree instead (the fleet
    package was, until this test)."""
    pkg = bench_api.archive_code("HEAD", tmp_path)
    dirs = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    for name, source in dirs.items():
        target = pkg / name.replace(".", "/")
        assert (target / "__init__.py").read_bytes() == (REPO / source / "__init__.py").read_bytes(), name
    names = sorted(dirs)
    code = "import importlib\nfor n in %r: print(importlib.import_module(n).__file__)" % names
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(pkg), "PATH": "/usr/bin:/bin"}).stdout.split()
    assert len(out) == len(names) and all(Path(f).is_relative_to(pkg) for f in out), out


def test_an_archive_of_code_older_than_a_package_leaves_that_package_out(tmp_path, monkeypatch):
    """The end-to-end bench's default "before" (3f554a2) predates the fleet package: a commit without
    one of the packages is archived without it (it used to fail copying the missing directory)."""
    old = tmp_path / "repo"
    for source in set(bench_api.PACKAGE_DIRS.values()) - {"fleet"}:
        (old / source).mkdir(parents=True, exist_ok=True)
        (old / source / "__init__.py").write_text(f"# {source}\n")
    git = ["git", "-C", str(old), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q", str(old)], check=True)
    subprocess.run(git + ["add", "."], check=True)
    subprocess.run(git + ["commit", "-qm", "before fleet"], check=True)
    monkeypatch.setattr(bench_api, "REPO", old)
    pkg = bench_api.archive_code("HEAD", tmp_path / "archive")
    assert (pkg / "dreamops" / "tasks" / "__init__.py").read_text() == "# tasks\n"
    assert not (pkg / "dreamops" / "fleet").exists()
