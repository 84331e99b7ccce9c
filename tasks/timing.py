"""Where a run's wall time goes: seconds per stage, per round (bench/time_to_quality.py reads them)."""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

# The stages a carracing-vmc round spends its time in, in the order they run.
STAGES = ("collect", "data", "vae", "encode", "mdn", "starts", "cma", "validate")


class StageClock:
    """Wall seconds per named stage since the last `lap()`, and since the clock started."""

    def __init__(self) -> None:
        self._start = time.monotonic()
        self._lap: dict[str, float] = {}
        self._total: dict[str, float] = {}

    def run(self, stage: str, fn: Callable[..., T], *args, **kwargs) -> T:
        """fn(*args, **kwargs), its wall time added to `stage` (also when it raises)."""
        t0 = time.monotonic()
        try:
            return fn(*args, **kwargs)
        finally:
            seconds = time.monotonic() - t0
            self._lap[stage] = self._lap.get(stage, 0.0) + seconds
            self._total[stage] = self._total.get(stage, 0.0) + seconds

    def lap(self) -> dict[str, float]:
        """Seconds per stage since the previous lap (rounded to 0.1 s); starts a new lap."""
        out, self._lap = {k: round(v, 1) for k, v in self._lap.items()}, {}
        return out

    def totals(self) -> dict[str, float]:
        """Seconds per stage since the clock started, every lap together (rounded to 0.1 s)."""
        return {k: round(v, 1) for k, v in self._total.items()}

    def elapsed(self) -> float:
        return round(time.monotonic() - self._start, 1)
