"""ONNX as input (issue 7, first slice): ONNX -> IR -> Caffe/ONNX.

References this project did not write: torchvision classifiers (random weights,
calibrated BN, spread logits: tests/zoo.py) exported by ``torch.onnx.export``
(the legacy TorchScript exporter, opset 13), run in onnxruntime from the
exported file.  Node cases are built with ``onnx.helper`` for the attribute
forms exporters rarely write (auto_pad SAME_LOWER, Gemm alpha/beta/transB=0,
opset-11 Clip inputs, shape sub-graphs folded to constants).

Tolerance: float32 runtimes against float32 onnxruntime on the same file;
atol = 2e-5 * (1 + max|output|) for node cases, and for whole nets the bound
``xconv verify`` uses by default (1e-3 + 1e-4 * max|logit|) with top-1
agreement on every photo.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import zoo
from xconv import reference
from xconv.backend import EmitOptions
from xconv.convert import convert
from xconv.errors import InputFileError, UnsupportedOpError
from xconv.frontends import onnx as xo
from xconv.verify.runners import locate, make_runner

ENV = {**os.environ, "GLOG_minloglevel": "2"}


def ort_run(path_or_model: Any, x: np.ndarray) -> np.ndarray:
    m = path_or_model if isinstance(path_or_model, onnx.ModelProto) else onnx.load(str(path_or_model))
    s = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    return s.run(None, {s.get_inputs()[0].name: x})[0]


def run_target(g: Any, target: str, out: Path, x: np.ndarray) -> np.ndarray:
    opts = EmitOptions(dialect="bvlc") if target == "caffe" else EmitOptions(opset=13)
    res = convert(g, target, out, "m", opts)
    run = make_runner(locate(next(p for p in res.files if p.suffix in (".prototxt", ".onnx"))))
    try:
        return np.concatenate([np.asarray(run(x[i:i + 1])) for i in range(len(x))])
    finally:
        if hasattr(run, "close"):
            run.close()


# --------------------------------------------------------------------------- torchvision exports
NETS = ["resnet18", "mobilenet_v2", "squeezenet1_1", "densenet121", "inception_v3", "mobilenet_v3_large",
        "shufflenet_v2_x1_0"]
# shufflenet's channel shuffle is exported as Reshape/Transpose/Reshape; the Caffe path still converts it


@pytest.mark.slow
@pytest.mark.parametrize("name", NETS)
def test_torchvision_export(name: str, tmp_path: Path) -> None:
    import torch
    model = zoo.build(name)
    x = zoo.torchvision_inputs(zoo.ZOO[name])
    path = tmp_path / f"{name}.onnx"
    torch.onnx.export(model, (torch.from_numpy(x[:1]),), str(path), opset_version=13, dynamo=False)
    want = np.concatenate([ort_run(path, x[i:i + 1]) for i in range(len(x))])
    g = xo.load(path)
    bound = 1e-3 + 1e-4 * float(np.abs(want).max())
    ir = np.concatenate([reference.run(g, {next(iter(g.inputs)): x[i:i + 1]})[g.outputs[0]] for i in range(len(x))])
    assert float(np.abs(ir - want).max()) <= bound
    for t in ("caffe", "onnx"):
        got = run_target(g, t, tmp_path / t, x)
        err = float(np.abs(got - want).max())
        assert err <= bound, f"{name} -> {t}: max|dlogit| {err:.3g} > {bound:.3g}"
        np.testing.assert_array_equal(got.argmax(1), want.argmax(1))


# --------------------------------------------------------------------------- node cases
def _model(nodes: list[Any], x_shape: list[int], inits: dict[str, np.ndarray], opset: int = 13,
           out: str = "y") -> onnx.ModelProto:
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
                          [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)],
                          [numpy_helper.from_array(v, k) for k, v in inits.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)
    # (no onnx.checker here: its full check wants output shapes these hand-built graphs leave to inference)
    return m


R = np.random.default_rng(0)


def _w(*s: int) -> np.ndarray:
    return (R.standard_normal(s) * 0.5).astype(np.float32)


CASES = {
    "conv_same_lower": (lambda: _model(
        [helper.make_node("Conv", ["x", "w", "b"], ["y"], auto_pad="SAME_LOWER", strides=[2, 2], kernel_shape=[3, 3])],
        [1, 3, 9, 8], {"w": _w(4, 3, 3, 3), "b": _w(4)}), [1, 3, 9, 8]),
    "conv_same_upper_group": (lambda: _model(
        [helper.make_node("Conv", ["x", "w"], ["y"], auto_pad="SAME_UPPER", group=2, strides=[1, 2])],
        [1, 4, 9, 8], {"w": _w(6, 2, 3, 2)}), [1, 4, 9, 8]),
    "gemm_alpha_beta_transb0": (lambda: _model(
        [helper.make_node("Flatten", ["x"], ["f"]),
         helper.make_node("Gemm", ["f", "w", "c"], ["y"], alpha=0.5, beta=2.0, transB=0)],
        [2, 2, 3, 2], {"w": _w(12, 5), "c": _w(1, 5)}), [2, 2, 3, 2]),
    "matmul_add": (lambda: _model(
        [helper.make_node("Flatten", ["x"], ["f"]), helper.make_node("MatMul", ["f", "w"], ["m"]),
         helper.make_node("Add", ["m", "c"], ["y"])], [2, 2, 3, 2], {"w": _w(12, 5), "c": _w(5)}), [2, 2, 3, 2]),
    "avgpool_pads_ceil_include": (lambda: _model(
        [helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 0, 1, 1],
                          ceil_mode=1, count_include_pad=1)], [1, 2, 8, 7], {}), [1, 2, 8, 7]),
    "maxpool_same_upper": (lambda: _model(
        [helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER")],
        [1, 2, 8, 7], {}), [1, 2, 8, 7]),
    "shape_subgraph_reshape": (lambda: _model(
        [helper.make_node("Shape", ["x"], ["s"]),
         helper.make_node("Gather", ["s", "i0"], ["n"], axis=0),
         helper.make_node("Unsqueeze", ["n", "ax"], ["n1"]),
         helper.make_node("Concat", ["n1", "m1"], ["shp"], axis=0),
         helper.make_node("Reshape", ["x", "shp"], ["y"])],
        [2, 3, 4, 4], {"i0": np.array(0, np.int64), "ax": np.array([0], np.int64),
                       "m1": np.array([-1], np.int64)}), [2, 3, 4, 4]),
    "clip11_prelu_pad": (lambda: _model(
        [helper.make_node("Clip", ["x", "lo", "hi"], ["c"]), helper.make_node("PRelu", ["c", "s"], ["p"]),
         helper.make_node("Pad", ["p", "pads"], ["y"], mode="constant")],
        [1, 3, 4, 5], {"lo": np.array(-0.5, np.float32), "hi": np.array(0.8, np.float32),
                       "s": _w(3, 1, 1), "pads": np.array([0, 0, 1, 2, 0, 0, 2, 0], np.int64)}, opset=11),
     [1, 3, 4, 5]),
    "split_slice_concat_softmax": (lambda: _model(
        [helper.make_node("Split", ["x", "sp"], ["a", "b"], axis=1),
         helper.make_node("Slice", ["b", "st", "en", "axs"], ["bs"]),
         helper.make_node("Concat", ["bs", "a"], ["c"], axis=1),
         helper.make_node("Softmax", ["c"], ["y"], axis=1)],
        [1, 6, 3, 3], {"sp": np.array([2, 4], np.int64), "st": np.array([1], np.int64),
                       "en": np.array([3], np.int64), "axs": np.array([1], np.int64)}), [1, 6, 3, 3]),
    "bn_hardsigmoid_leaky": (lambda: _model(
        [helper.make_node("BatchNormalization", ["x", "g", "be", "mu", "va"], ["bn"], epsilon=1e-3),
         helper.make_node("HardSigmoid", ["bn"], ["h"], alpha=0.3, beta=0.4),
         helper.make_node("LeakyRelu", ["h"], ["y"], alpha=0.2)],
        [1, 3, 4, 4], {"g": _w(3), "be": _w(3), "mu": _w(3), "va": np.abs(_w(3)) + 0.5}), [1, 3, 4, 4]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_node_case(case: str, tmp_path: Path) -> None:
    make, shape = CASES[case]
    m = make()
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    want = ort_run(m, x)
    g = xo.load(m)
    got = reference.run(g, {next(iter(g.inputs)): x})[g.outputs[0]]
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-5 * (1 + float(np.abs(want).max())))
    out = run_target(g, "onnx", tmp_path, x) if shape[0] == 1 else None
    if out is not None:
        np.testing.assert_allclose(out.reshape(want.shape), want, rtol=0, atol=2e-5 * (1 + float(np.abs(want).max())))


def test_errors(tmp_path: Path) -> None:
    m = _model([helper.make_node("LRN", ["x"], ["l"], size=3), helper.make_node("Resize", ["l", "", "sc"], ["y"])],
               [1, 3, 4, 4], {"sc": np.array([1, 1, 2, 2], np.float32)})
    with pytest.raises(UnsupportedOpError) as e:
        xo.load(m)
    assert "LRN" in str(e.value) and "Resize" in str(e.value)
    dyn = _model([helper.make_node("Relu", ["x"], ["y"])], ["N", 3, "H", "W"], {})
    with pytest.raises(InputFileError, match="--input-shape"):
        xo.load(dyn)
    assert xo.load(dyn, input_shape=(1, 3, 8, 8)).inputs["x"].shape == (1, 3, 8, 8)
    p = tmp_path / "cut.onnx"
    data = CASES["conv_same_lower"][0]().SerializeToString()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputFileError, match="cannot read"):
        xo.load(p)


@pytest.mark.slow
def test_cli_onnx_to_caffe_and_verify(tmp_path: Path) -> None:
    import torch
    model = zoo.build("resnet18")
    src = tmp_path / "resnet18.onnx"
    torch.onnx.export(model, (torch.zeros(1, 3, 224, 224),), str(src), opset_version=13, dynamo=False)
    r = subprocess.run([sys.executable, "-m", "xconv.cli", "convert", "--from", "onnx", str(src), "--to", "caffe",
                        "-o", str(tmp_path / "out")], capture_output=True, text=True, env=ENV, timeout=600)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([sys.executable, "-m", "xconv.cli", "verify", str(src), str(tmp_path / "out" / "resnet18.prototxt"),
                        "--images", str(zoo.photo_dir()), "--limit", "6"], capture_output=True, text=True, env=ENV,
                       timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "PARITY: PASS" in r.stdout and "onnx (source)" in r.stdout
