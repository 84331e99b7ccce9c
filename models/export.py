"""On-robot graphs in three formats a robot can load: TorchScript, torch.export (.pt2) and ONNX.

A family describes its per-step graph once (`RobotGraph`); the exporters here turn it into files.
TorchScript and torch.export are required; ONNX (torch.onnx's dynamo exporter, run with
onnxruntime) is optional at packaging time: `export_all` logs what failed and keeps the others.
"""
from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

log = logging.getLogger(__name__)

FORMATS = ("torchscript", "program", "onnx")
SUFFIXES = {"torchscript": ".torchscript.pt", "program": ".pt2", "onnx": ".onnx"}
# The ONNX file is checked against eager on random inputs before it is kept: onnxruntime's float32
# kernels differ from torch's in the last bits (under 5e-6 on our graphs), a wrong translation by more.
ONNX_ATOL, ONNX_RTOL = 1e-4, 1e-4


@dataclass(frozen=True)
class RobotGraph:
    """A family's on-robot graph: the module, its input and output names, a sampler of random inputs
    of the right shapes and dtypes for a given batch size, and which outputs the robot feeds back as
    which inputs on its next step (a recurrent state)."""
    name: str
    module: nn.Module
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    sample: Callable[[int, torch.Generator], tuple[torch.Tensor, ...]]
    carry: dict[str, str] = field(default_factory=dict)

    def example(self, batch: int = 2, seed: int = 0) -> tuple[torch.Tensor, ...]:
        return self.sample(batch, torch.Generator().manual_seed(seed))

    def path(self, out_dir: Path, fmt: str) -> Path:
        return out_dir / f"{self.name}{SUFFIXES[fmt]}"

    @torch.no_grad()
    def eager(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.module.eval()(*inputs)
        return tuple(out) if isinstance(out, (tuple, list)) else (out,)


def _batch_dims(graph: RobotGraph) -> dict[str, dict[int, torch.export.Dim]]:
    """Every input's dimension 0 is the batch and stays dynamic; every other dimension is fixed, so a
    wrong shape is refused by the exported graph itself."""
    batch = torch.export.Dim("batch", min=1, max=4096)
    return {name: {0: batch} for name in graph.inputs}


def to_torchscript(graph: RobotGraph, path: Path) -> Path:
    """Trace at batch 1 (what a robot runs; the graphs have no data-dependent control flow)."""
    with torch.no_grad(), warnings.catch_warnings():
        # the modules' input-shape checks read static sizes: constants in the trace, as they should be
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        traced = torch.jit.trace(graph.module.eval(), graph.example(batch=1))
    path.parent.mkdir(parents=True, exist_ok=True)
    traced.save(str(path))
    return path


def export_program(graph: RobotGraph) -> torch.export.ExportedProgram:
    # batch 2 in the example: torch.export specialises a size-1 dimension to the constant 1
    return torch.export.export(graph.module.eval(), graph.example(batch=2), dynamic_shapes=_batch_dims(graph))


def to_program(graph: RobotGraph, path: Path, program: torch.export.ExportedProgram | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.export.save(program if program is not None else export_program(graph), str(path))
    return path


def load_program(path: Path | str) -> nn.Module:
    """A saved torch.export program as a callable module (inputs and outputs as for eager)."""
    return torch.export.load(str(path)).module()


def to_onnx(graph: RobotGraph, path: Path, program: torch.export.ExportedProgram | None = None) -> Path:
    """ONNX by the dynamo exporter, one self-contained file, verified with onnxruntime against eager;
    raises (and leaves no file) when either step fails. `program`: the graph's torch.export program
    when already made (export_all), which the exporter would otherwise trace again."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with _quiet_onnx_exporter():
            model = program if program is not None else graph.module.eval()
            shapes = None if program is not None else _batch_dims(graph)   # a program carries its own
            torch.onnx.export(model, graph.example(batch=2), str(path), dynamo=True,
                              input_names=list(graph.inputs), output_names=list(graph.outputs),
                              dynamic_shapes=shapes, external_data=False, verbose=False)
        check_onnx(graph, path)
    except Exception:
        path.unlink(missing_ok=True)
        raise
    return path


@contextmanager
def _quiet_onnx_exporter():
    """What torch.onnx says on every export although nothing is wrong (a normal run prints no library
    warnings): every input's dim 0 is the one `batch` symbol, which it names only once; its own use of
    a deprecated pytree check; and, once a process, that it skips torchvision's ops (not installed)."""
    registration = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registration.level
    registration.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*axis name: batch will not be used", category=UserWarning)
            warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)", category=FutureWarning)
            yield
    finally:
        registration.setLevel(level)


def onnx_session(path: Path | str, threads: int = 1):
    """An onnxruntime CPU session on `threads` threads (robots run one step at a time)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run_onnx(session, graph: RobotGraph, *inputs: torch.Tensor) -> tuple[np.ndarray, ...]:
    return tuple(session.run(list(graph.outputs), {n: x.numpy() for n, x in zip(graph.inputs, inputs)}))


def check_onnx(graph: RobotGraph, path: Path) -> None:
    inputs = graph.example(batch=2, seed=1)
    got = run_onnx(onnx_session(path), graph, *inputs)
    for name, want, have in zip(graph.outputs, graph.eager(*inputs), got):
        if not np.allclose(have, want.numpy(), atol=ONNX_ATOL, rtol=ONNX_RTOL):
            raise ValueError(f"{path.name}: output {name!r} differs from eager by "
                             f"{np.abs(have - want.numpy()).max():.3g} (> atol {ONNX_ATOL})")


def export_all(graph: RobotGraph, out_dir: Path) -> dict[str, Path]:
    """-> {"torchscript", "program"[, "onnx"]: path}. An ONNX failure is logged and leaves that file out:
    the version still ships TorchScript and torch.export."""
    program = export_program(graph)   # traced once: saved as .pt2 and translated to ONNX
    paths = {"torchscript": to_torchscript(graph, graph.path(out_dir, "torchscript")),
             "program": to_program(graph, graph.path(out_dir, "program"), program)}
    try:
        paths["onnx"] = to_onnx(graph, graph.path(out_dir, "onnx"), program)
    except Exception as exc:  # the optional exporter can fail in many ways (unsupported op, I/O, mismatch)
        log.warning("ONNX export of %s failed, the version ships TorchScript and torch.export only: %s",
                    graph.name, root_cause(exc))
    return paths


def root_cause(exc: BaseException) -> str:
    """'Type: first line' of the innermost cause: torch.onnx wraps the failing op in pages of advice."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    return f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
