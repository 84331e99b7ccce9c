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


class PickVLAPyfuncModel(mlflow.pyfunc.PythonModel):
    """predict({"rgb": uint8 [B,64,64,3], "depth": float32 [B,64,64,1], "proprio": float32 [B,21]},
    params={"instruction": "pick up the red box", "seed": 0}) -> action chunks float32 [B, 16, 4] in
    [-1, 1]. Execute the first `execute` actions of a chunk (4 by default), then ask again. Versions
    trained before the end effector's entries read the first 15 proprioception entries."""

    def load_context(self, context) -> None:
        from dreamops.models.pick_vla import PickVLA

        self.model = PickVLA.load(context.artifacts["bundle"])

    def predict(self, context, model_input, params: dict | None = None):
        import torch

        params = params or {}
        instruction = str(params.get("instruction", "")).strip()
        if not instruction:
            raise ValueError("params must carry a non-empty 'instruction'")
        arrays = {k: np.asarray(model_input[k]) for k in ("rgb", "depth", "proprio")}
        n = arrays["rgb"].shape[0] if arrays["rgb"].ndim == 4 else 1
        arrays = {k: v if v.ndim in (2, 4) else v[None] for k, v in arrays.items()}
        generator = torch.Generator().manual_seed(int(params.get("seed", 0)))
        return self.model.generate(arrays["rgb"].astype(np.uint8), arrays["depth"].astype(np.float32),
                                   arrays["proprio"].astype(np.float32), [instruction] * n, generator)
