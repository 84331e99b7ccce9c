"""On-robot exports, over every family: the packaged torch.export program and ONNX file (run with
onnxruntime) compute what eager computes on random inputs of the right shapes, carry a recurrent
state over several steps as eager does, refuse a wrong input shape with an error that names the
input, and the loading examples in docs/how-to/run-on-a-robot.md run as written."""
from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from dreamops.models import export
from tests.models.test_agent_contract import FAMILIES

# torch.export runs the same ATen kernels as eager: equal up to float rounding. onnxruntime has its
# own float32 kernels (measured: under 5e-6 apart on these graphs); the packager checks the same bar.
PROGRAM_TOL = {"atol": 1e-6, "rtol": 1e-6}
ONNX_TOL = {"atol": export.ONNX_ATOL, "rtol": export.ONNX_RTOL}
STEPS = 6   # steps with the recurrent state carried from one to the next
DOC = Path(__file__).resolve().parents[2] / "docs" / "how-to" / "run-on-a-robot.md"


class Exported:
    """One family's packaged version, its graph and the three formats loaded."""

    def __init__(self, family, out_dir: Path):
        model = family.make()
        self.graph = family.robot_graph(model)
        _perturb(self.graph.module)
        self.artifacts = family.package(model, out_dir)
        self.torchscript = torch.jit.load(self.artifacts["torchscript"])
        self.program = export.load_program(self.artifacts["program"])
        self.session = export.onnx_session(self.artifacts["onnx"])

    @torch.no_grad()
    def run(self, backend: str, inputs: tuple[torch.Tensor, ...]) -> tuple[np.ndarray, ...]:
        if backend == "onnx":
            return export.run_onnx(self.session, self.graph, *inputs)
        out = self.graph.eager(*inputs) if backend == "eager" else getattr(self, backend)(*inputs)
        return tuple(np.asarray(o) for o in (out if isinstance(out, (tuple, list)) else (out,)))


def _perturb(module: torch.nn.Module, seed: int = 0) -> None:
    """Fresh modules start as identities in places (zero-initialised FiLM and velocity outputs): noise on
    every weight makes every layer count in the comparison."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def exported(request, tmp_path_factory) -> Exported:
    family = FAMILIES[request.param]
    return Exported(family, tmp_path_factory.mktemp(family.name))


def test_a_version_carries_all_three_formats(exported):
    for fmt in export.FORMATS:
        assert Path(exported.artifacts[fmt]) == exported.graph.path(Path(exported.artifacts["bundle"]).parent, fmt)
        assert Path(exported.artifacts[fmt]).stat().st_size > 0
    assert [i.name for i in exported.session.get_inputs()] == list(exported.graph.inputs)
    assert [o.name for o in exported.session.get_outputs()] == list(exported.graph.outputs)


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("backend, tol", [("program", PROGRAM_TOL), ("onnx", ONNX_TOL)])
def test_exports_equal_eager_on_random_inputs(exported, backend, tol, batch):
    for seed in range(3):
        inputs = exported.graph.example(batch, seed=10 + seed)
        for name, want, got in zip(exported.graph.outputs, exported.run("eager", inputs), exported.run(backend, inputs)):
            assert got.shape == want.shape
            np.testing.assert_allclose(got, want, **tol, err_msg=f"{backend} {name}")


def test_torchscript_equals_eager_at_batch_1(exported):
    inputs = exported.graph.example(1, seed=4)
    for want, got in zip(exported.run("eager", inputs), exported.run("torchscript", inputs)):
        np.testing.assert_allclose(got, want, **PROGRAM_TOL)


def _carried_run(exported: Exported, backend: str) -> list[tuple[np.ndarray, ...]]:
    """STEPS steps on fresh observations; the outputs the graph names in `carry` go back in as inputs."""
    graph, state = exported.graph, {}
    outputs = []
    for step in range(STEPS):
        inputs = {n: state.get(n, x) for n, x in zip(graph.inputs, graph.example(1, seed=100 + step))}
        out = exported.run(backend, tuple(inputs[n] for n in graph.inputs))
        state = {graph.carry[o]: torch.from_numpy(np.array(v)) for o, v in zip(graph.outputs, out) if o in graph.carry}
        outputs.append(out)
    return outputs


@pytest.mark.parametrize("backend, tol", [("program", PROGRAM_TOL), ("onnx", ONNX_TOL)])
def test_recurrent_state_carried_over_steps_matches_eager(exported, backend, tol):
    eager, other = _carried_run(exported, "eager"), _carried_run(exported, backend)
    for step, (want, got) in enumerate(zip(eager, other)):
        for name, w, g in zip(exported.graph.outputs, want, got):
            np.testing.assert_allclose(g, w, **tol, err_msg=f"{backend} step {step} {name}")
    carried = [exported.graph.outputs.index(o) for o in exported.graph.carry]
    assert all(not np.allclose(eager[0][i], eager[-1][i]) for i in carried)  # the state did move


def test_vmc_carries_its_memory():
    graph = FAMILIES["carracing-vmc"].robot_graph(FAMILIES["carracing-vmc"].make())
    assert graph.carry == {"h_next": "h", "c_next": "c"}


def _wrong_shapes(graph: export.RobotGraph):
    """(input name, inputs with that input one element too long in its last dimension, expected size)."""
    for i, name in enumerate(graph.inputs):
        inputs = list(graph.example(1))
        size = inputs[i].shape[-1]
        inputs[i] = torch.cat([inputs[i], inputs[i][..., :1]], dim=-1)
        yield name, tuple(inputs), size, inputs[i].dim() - 1


def test_a_wrong_input_shape_is_refused_naming_the_input(exported):
    for name, inputs, size, dim in _wrong_shapes(exported.graph):
        with pytest.raises(AssertionError, match=re.escape(f"{name}.size()[{dim}] == {size}")):
            exported.program(*inputs)
        with pytest.raises(Exception, match=rf"(?s)invalid dimensions for input: {name}\b.*Expected: {size}"):
            exported.run("onnx", inputs)


def test_a_missing_batch_dimension_is_refused(exported):
    inputs = list(exported.graph.example(1))
    name, inputs[0] = exported.graph.inputs[0], inputs[0][0]
    with pytest.raises(AssertionError, match=rf"{name}"):
        exported.program(*inputs)
    with pytest.raises(Exception, match=rf"(?s)Invalid rank for input: {name}"):
        exported.run("onnx", tuple(inputs))


class QR(torch.nn.Module):
    """A graph torch.export takes and torch.onnx cannot translate (no ONNX function for linalg_qr)."""

    def forward(self, x):
        return torch.linalg.qr(x)[0]


def test_a_failed_onnx_export_keeps_the_other_formats_and_says_why(tmp_path, caplog):
    graph = export.RobotGraph("qr", QR(), ("x",), ("q",), lambda b, g: (torch.randn(b, 3, 3, generator=g),))
    with caplog.at_level(logging.WARNING, logger="dreamops.models.export"):
        paths = export.export_all(graph, tmp_path)
    assert set(paths) == {"torchscript", "program"} and all(p.exists() for p in paths.values())
    assert not (tmp_path / "qr.onnx").exists()
    [record] = [r for r in caplog.records if r.name == "dreamops.models.export"]
    assert "ONNX export of qr failed" in record.message and "linalg_qr" in record.message
    with pytest.raises(Exception, match="linalg_qr"):
        export.to_onnx(graph, tmp_path / "qr.onnx")   # called directly (as the tests do), it raises


def _doc_blocks(marker: str) -> list[str]:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    return [b for b in blocks if marker in b]


def _registered_files(family, model, tmp_path) -> Path:
    """Register a packaged version in the embedded MLflow store and download it as a robot would."""
    import mlflow

    from dreamops.registry import store
    from dreamops.settings import get_settings

    store.configure(get_settings())
    python_model, _, signature, *_ = family.pyfunc(model, tmp_path)
    with mlflow.start_run():
        registered = store.register_pyfunc(family.name, python_model, family.package(model, tmp_path / "package"),
                                           signature, tags={}, pip_requirements=["torch"])
    return Path(mlflow.artifacts.download_artifacts(registered.uri, dst_path=str(tmp_path / "robot"))) / "artifacts"


def _doc_model(name: str):
    """The docs' shapes are each family's defaults (carracing-vmc: M's LSTM of 256)."""
    if name == "carracing-vmc":
        from dreamops.models.bundle import Architecture, VMCBundle

        return VMCBundle.create(Architecture())
    return FAMILIES[name].make()


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_the_robot_loading_examples_in_the_docs_run(name, dreamops_home, tmp_path, monkeypatch):
    """Each example block runs as written in the downloaded version's artifacts folder."""
    family, model = FAMILIES[name], _doc_model(name)
    stem = family.robot_graph(model).name
    files = _registered_files(family, model, tmp_path)
    assert {p.name for p in files.iterdir()} >= {f"{stem}{s}" for s in export.SUFFIXES.values()}
    monkeypatch.chdir(files)
    blocks = _doc_blocks(stem)
    assert len(blocks) >= 2, f"{DOC.name} has no examples for {stem}"
    for block in blocks:
        exec(compile(block, f"{DOC.name}:{stem}", "exec"), {})
