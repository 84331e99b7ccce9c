"""package: everything a model version holds, written to one folder before registration."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from dreamops.models.bundle import VMCBundle
from dreamops.models.vmc import VMCStep, export_torchscript
from dreamops.tasks.encode import Latents


def reference_latents(latents: Latents, ids: list[str], max_rows: int = 2000, seed: int = 0) -> np.ndarray:
    """A sample of encoder means from held-out episodes: the reference for drift detection."""
    z = np.concatenate([latents[i]["mu"] for i in ids])
    rows = np.random.default_rng(seed).choice(len(z), size=min(max_rows, len(z)), replace=False)
    return z[np.sort(rows)].astype(np.float32)


def package_version(bundle: VMCBundle, config_yaml: str, report: dict, ref_latents: np.ndarray,
                    out_dir: Path) -> dict[str, str]:
    """-> pyfunc artifacts {name: path}: weights, TorchScript step, config, evaluation report, latents."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "bundle": bundle.save(out_dir / "vmc_bundle.pt"),
        "torchscript": export_torchscript(VMCStep(bundle.vae, bundle.mdnrnn, bundle.controller),
                                          out_dir / "vmc_step.torchscript.pt"),
        "config": out_dir / "config.yaml",
        "report": out_dir / "evaluation_report.json",
        "reference_latents": out_dir / "reference_latents.npy",
    }
    paths["config"].write_text(config_yaml)
    paths["report"].write_text(json.dumps(report, indent=2, default=float))
    np.save(paths["reference_latents"], ref_latents)
    return {k: str(v) for k, v in paths.items()}
