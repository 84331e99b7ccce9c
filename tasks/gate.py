"""validate_data: the data gate for a dataset folder, with the profile's thresholds."""
from __future__ import annotations

from pathlib import Path

from dreamops.tasks.config import GateConfig
from dreamops.tasks.train_mdnrnn import zoom_steps
from dreamops.validation.data_gate import DataGateReport, DataGateThresholds, run_data_gate


def validate_data(path: Path, cfg: GateConfig, action_repeat: int, docs_dir: Path | None = None) -> DataGateReport:
    """The pixel checks skip the zoom-in at each episode's start (its first frames are black)."""
    return run_data_gate(path, DataGateThresholds(min_episodes=cfg.min_episodes, min_frames=cfg.min_frames,
                                                  max_corrupt_frame_fraction=cfg.max_corrupt_frame_fraction,
                                                  skip_start_steps=zoom_steps(action_repeat)),
                         docs_dir)
