"""A normal run's log is its progress and its summary: no library warnings, no per-task log lines
(the smoke run itself: tests/flows/test_train_smoke.py); --verbose leaves the libraries' logging alone."""
from __future__ import annotations

import os


def test_verbose_leaves_the_libraries_alone(monkeypatch):
    from dreamops.quiet import quiet_libraries

    monkeypatch.delenv("PREFECT_LOGGING_LEVEL", raising=False)
    quiet_libraries(verbose=True)
    assert "PREFECT_LOGGING_LEVEL" not in os.environ
