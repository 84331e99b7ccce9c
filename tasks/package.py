"""package: everything a model version holds, written to one folder before registration.

Each family's on-robot graph ships in three formats next to its weights: TorchScript, torch.export
(.pt2) and ONNX (when its optional export succeeds; models.export logs what failed otherwise)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from dreamops.models.bundle import VMCBundle
from dreamops.models.export import export_all
from dreamops.models.pick_vla import PickVLA, chunk_graph
from dreamops.models.vmc import VMCStep, step_graph
from dreamops.tasks.encode import Latents


def reference_latents(latents: Latents, ids: list[str], max_rows: int = 2000, seed: int = 0) -> np.ndarray:
    """A sample of encoder means from held-out episodes: the reference for drift detection."""
    z = np.concatenate([latents[i]["mu"] for i in ids])
    rows = np.random.default_rng(seed).choice(len(z), size=min(max_rows, len(z)), replace=False)
    return z[np.sort(rows)].astype(np.float32)


def package_version(bundle: VMCBundle, config_yaml: str, report: dict, ref_latents: np.ndarray,
                    out_dir: Path) -> dict[str, str]:
    """-> pyfunc artifacts {name: path}: weights, the V-M-C step (TorchScript, torch.export, ONNX), config,
    evaluation report, latents."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"bundle": bundle.save(out_dir / "vmc_bundle.pt"),
             **export_all(step_graph(VMCStep(bundle.vae, bundle.mdnrnn, bundle.controller)), out_dir),
             "reference_latents": out_dir / "reference_latents.npy"}
    np.save(paths["reference_latents"], ref_latents)
    return _with_config_and_report(paths, config_yaml, report, out_dir)


def package_pick_version(model: PickVLA, config_yaml: str, report: dict, ref_latents: np.ndarray,
                         out_dir: Path) -> dict[str, str]:
    """-> pyfunc artifacts {name: path}: weights, the chunk graph (TorchScript, torch.export, ONNX), config,
    evaluation report, reference embeddings (drift)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"bundle": model.save(out_dir / "pick_vla.pt"), **export_all(chunk_graph(model), out_dir),
             "reference_latents": out_dir / "reference_latents.npy"}
    np.save(paths["reference_latents"], ref_latents)
    return _with_config_and_report(paths, config_yaml, report, out_dir)


def _with_config_and_report(paths: dict[str, Path], config_yaml: str, report: dict, out_dir: Path) -> dict[str, str]:
    paths |= {"config": out_dir / "config.yaml", "report": out_dir / "evaluation_report.json"}
    paths["config"].write_text(config_yaml)
    paths["report"].write_text(json.dumps(report, indent=2, default=float))
    return {k: str(v) for k, v in paths.items()}
