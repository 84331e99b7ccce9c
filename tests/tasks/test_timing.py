import time

import pytest

from dreamops.tasks.timing import StageClock


def test_stage_clock_sums_a_stage_per_lap_and_counts_a_failed_call():
    clock = StageClock()
    assert clock.run("collect", lambda x: x + 1, 1) == 2
    clock.run("vae", time.sleep, 0.05)
    clock.run("vae", time.sleep, 0.05)
    with pytest.raises(ZeroDivisionError):
        clock.run("cma", lambda: 1 / 0)
    lap = clock.lap()
    assert set(lap) == {"collect", "vae", "cma"} and 0.1 <= lap["vae"] < 0.5
    assert clock.lap() == {}  # a new lap starts empty
    clock.run("vae", time.sleep, 0.05)
    totals = clock.totals()  # every lap together
    assert set(totals) == {"collect", "vae", "cma"} and totals["vae"] >= 0.15 and clock.lap().keys() == {"vae"}
    assert clock.elapsed() >= 0.1
