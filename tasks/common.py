"""Small shared helpers for tasks: metric sinks, progress bars, seeding."""
from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

MetricSink = Callable[[dict[str, float], int], None]


@dataclass
class VersionReport:
    """What `dreamops evaluate` prints for a version or baseline of any family: a few lines, or with
    --json the detail (JSON-able). Each family's evaluator (dreamops.families) builds one."""
    lines: list[str]
    detail: dict


def no_metrics(metrics: dict[str, float], step: int) -> None:
    return None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class _Progress(Progress):
    """Rich's live bar on a terminal. Elsewhere (CI, `make run > log`) Rich draws a bar only when it
    finishes, so a line every `every_s` seconds says how far long work has got."""

    def __init__(self, *columns, every_s: float = 30.0, **kwargs):
        super().__init__(*columns, **kwargs)
        self._every_s, self._last_line = every_s, {}

    def update(self, task_id, **kwargs) -> None:
        super().update(task_id, **kwargs)
        self._log_line(task_id)

    def advance(self, task_id, advance: float = 1) -> None:
        super().advance(task_id, advance)
        self._log_line(task_id)

    def _log_line(self, task_id) -> None:
        if self.disable or self.console.is_terminal:
            return
        now = time.monotonic()
        if now - self._last_line.setdefault(task_id, now) < self._every_s:
            return
        self._last_line[task_id] = now
        task = next(t for t in self.tasks if t.id == task_id)
        self.console.print(f"{task.description}: {task.completed:.0f}/{task.total:.0f} "
                           f"{task.fields.get('status', '')} ({task.elapsed:.0f} s)")


def progress(show: bool = True, every_s: float = 30.0) -> Progress:
    return _Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                     TextColumn("{task.fields[status]}"), TimeElapsedColumn(), disable=not show, every_s=every_s)
