"""Long work says how far it has got even when its output goes to a log file (no terminal)."""
from __future__ import annotations

import time

from dreamops.tasks.common import progress


def test_progress_prints_lines_when_not_on_a_terminal(capsys):
    with progress(every_s=0.05) as bar:
        task = bar.add_task("train V (VAE)", total=6, status="")
        for i in range(6):
            time.sleep(0.03)
            bar.update(task, advance=1, status=f"epoch {i}")
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("train V (VAE): ")]
    assert len(lines) >= 2 and "/6 epoch" in lines[0]


def test_no_lines_when_progress_is_off(capsys):
    with progress(show=False, every_s=0.0) as bar:
        task = bar.add_task("quiet", total=3, status="")
        for _ in range(3):
            bar.advance(task)
    assert "quiet" not in capsys.readouterr().out
