"""The MLflow pyfunc of a carracing-vmc version: frames in, actions out, memory kept between calls."""
from __future__ import annotations

import numpy as np
import mlflow.pyfunc


class VMCPyfuncModel(mlflow.pyfunc.PythonModel):
    """predict(frames uint8 [T, 64, 64, 3] or [64, 64, 3]) -> actions float32 [T, 3].

    Frames are taken as consecutive steps of one episode: M's memory carries over between calls
    until params={"reset": True} (send it with the first frame of each episode)."""

    def load_context(self, context) -> None:
        from dreamops.models.bundle import VMCBundle

        self.policy = VMCBundle.load(context.artifacts["bundle"]).policy()

    def predict(self, context, model_input, params: dict | None = None):
        frames = np.asarray(model_input)
        if frames.ndim == 3:
            frames = frames[None]
        if frames.ndim != 4 or frames.shape[1:] != (64, 64, 3):
            raise ValueError(f"expected frames [T, 64, 64, 3], got {frames.shape}")
        if (params or {}).get("reset", False):
            self.policy.reset(0)
        return np.stack([self.policy.act(f.astype(np.uint8)) for f in frames]).astype(np.float32)
