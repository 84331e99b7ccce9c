"""A normal run's log is its progress and its summary: no library warnings, no per-task log lines."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest


@pytest.mark.e2e
def test_a_smoke_run_prints_no_library_warnings_or_log_lines(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_", "DREAMOPS_"))}
    env.update(DREAMOPS_HOME=str(tmp_path / ".dreamops"), DREAMOPS_WORKERS="2")
    proc = subprocess.run([sys.executable, "-m", "dreamops.flows.cli", "train", "--profile", "smoke"],
                          env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "every gate passed" in out and "collect episodes" in out  # the summary and the progress
    timing = [line for line in out.splitlines() if "time in the flow" in line]  # where the minutes went
    assert len(timing) == 1 and all(f" {stage} " in timing[0] for stage in ("collect", "vae", "mdn", "cma",
                                                                             "evaluate", "other")), timing
    for noise in ("Warning", "WARNING", "| INFO", " INFO ", "Downloading artifacts"):
        assert noise not in out, f"{noise!r} in a normal run's log:\n{out}"


def test_verbose_leaves_the_libraries_alone(monkeypatch):
    from dreamops.quiet import quiet_libraries

    monkeypatch.delenv("PREFECT_LOGGING_LEVEL", raising=False)
    quiet_libraries(verbose=True)
    assert "PREFECT_LOGGING_LEVEL" not in os.environ
