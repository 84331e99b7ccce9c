"""Small shared helpers for tasks: metric sinks, progress bars, seeding."""
from __future__ import annotations

import random
from collections.abc import Callable

import numpy as np
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

MetricSink = Callable[[dict[str, float], int], None]


def no_metrics(metrics: dict[str, float], step: int) -> None:
    return None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def progress(show: bool = True) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[status]}"), TimeElapsedColumn(), disable=not show)
