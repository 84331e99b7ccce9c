"""The API's background jobs (canary tick, alias reconciler) end with the app: a job already in its
thread when the app stops finishes before shutdown returns, and none starts afterwards. A job that
outlived its app ran against whatever settings came next (in the suite: the next test's database)."""
from __future__ import annotations

import threading
import time

from fastapi.testclient import TestClient

from tests.api.conftest import configure_api, reset_api_caches


def test_shutdown_waits_for_a_tick_in_flight_and_no_tick_starts_after(dreamops_home, monkeypatch):
    from dreamops.api import main

    configure_api(f"sqlite:///{dreamops_home / 'dreamops.db'}", monkeypatch)
    started, calls, finished = threading.Event(), [], []

    def slow_tick() -> int:
        calls.append(time.monotonic())
        started.set()
        time.sleep(1.0)  # still in its thread when the app is asked to stop
        finished.append(time.monotonic())
        return 0

    monkeypatch.setattr(main, "tick_deployments", slow_tick)
    try:
        with TestClient(main.create_app()):
            assert started.wait(10), "the tick never ran"
        stopped = time.monotonic()
        assert len(finished) == len(calls) and finished[-1] <= stopped  # the tick in flight ended first
        time.sleep(0.5)  # longer than two tick intervals (0.2 s)
        assert len(calls) == len(finished) and calls[-1] < stopped  # and no tick began afterwards
    finally:
        reset_api_caches()
