"""The onnx wheel's light model zoo through ONNX -> IR -> Caffe (pycaffe) and -> ONNX (onnxruntime).

``onnx/backend/test/data/light/*.onnx`` are the ONNX model zoo's classic
classifiers (AlexNet, DenseNet-121, GoogLeNet, BN-Inception, ResNet-50,
ShuffleNet, SqueezeNet, VGG-19, ZFNet-512; opset 9, exported from Caffe2)
with their weights stripped: every large tensor is a ``ConstantOfShape`` of
zeros fed by an int64 ``*__SHAPE`` initializer, the small ones are float
initializers.  Here every float weight, folded or not, becomes a seeded
random initializer of the same shape (the topology is untouched):

* Conv / Gemm weights: He normal, ``std = sqrt(2 / fan_in)``; biases N(0, 0.1);
* the Caffe "Scale" of DenseNet/BN-Inception (Unsqueeze -> Mul / Add after
  BatchNormalization): U(0.5, 1.5) / N(0, 0.2);
* BatchNormalization: scale U(0.5, 1.5), bias N(0, 0.2), and *realistic*
  statistics: the per-channel mean and variance of each BN's input measured
  on real photos with every BN normalising by batch statistics (a
  train-mode pass, as ``tests/zoo.py`` does for torchvision models), then
  perturbed (mean + 0.2 std N(0,1), variance x U(0.5, 2)).  Purely random
  statistics make deep random nets blow up or collapse every photo onto one
  class, which would hide a broken layer;
* the last Conv/Gemm is rescaled so the logits spread over ~3 units on the
  calibration photos, its bias centred (the field notes' recipe), so top-1
  agreement means something.

The reference is onnxruntime on the randomised file itself (code this
project did not write).  xconv loads the file, converts it to Caffe (BVLC
1.0 layers) run in the real pycaffe and to ONNX (opset 13) run in
onnxruntime; its IR also runs in xconv's float64 reference (the frontend
alone).  All are compared on real photos with the model's output and its
logits (the input of the final Softmax, added as a second graph output so
saturated probabilities cannot hide an error), and top-1 must agree.

Cost (measured single process on the shared 2-core machine): ~60-75 s for
the file, most of it VGG-19 (550 MB of weights: randomising, two
onnxruntime sessions, writing and loading the converted copies).
"""
from __future__ import annotations

import functools
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper, numpy_helper

import zoo
from xconv import reference
from xconv.backend import EmitOptions
from xconv.convert import convert
from xconv.frontends import onnx as xo
from xconv.verify.runners import locate, make_runner

os.environ.setdefault("GLOG_minloglevel", "2")
LIGHT = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
MODELS = sorted(p.stem for p in LIGHT.glob("*.onnx"))
SIZE = 224  # every light model has a static 1x3x224x224 input
PASS_THROUGH = ("Unsqueeze", "Reshape", "Identity", "Squeeze")


# --------------------------------------------------------------------------- onnxruntime helpers
def _session(m: onnx.ModelProto) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.intra_op_num_threads = 1
    return ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])


def ort_run(m: onnx.ModelProto, x: np.ndarray, names: list[str] | None = None) -> dict[str, np.ndarray]:
    """Run photo by photo (the light models have a static batch of 1)."""
    s = _session(m)
    inp = s.get_inputs()[0].name
    names = names or [o.name for o in s.get_outputs()]
    res = [s.run(names, {inp: x[i:i + 1]}) for i in range(len(x))]
    return {n: np.concatenate([r[k] for r in res]) for k, n in enumerate(names)}


def _with_outputs(m: onnx.ModelProto, names: list[str], copy: bool = True) -> onnx.ModelProto:
    """``m`` (a copy unless ``copy=False``) with ``names`` added to its graph outputs."""
    p = m
    if copy:
        p = onnx.ModelProto()
        p.CopyFrom(m)
    have = {o.name for o in p.graph.output}
    for t in dict.fromkeys(names):
        if t not in have:
            p.graph.output.append(helper.make_empty_tensor_value_info(t))
    return p


def _add_init(m: onnx.ModelProto, name: str, value: Any) -> None:
    m.graph.initializer.append(numpy_helper.from_array(np.asarray(value, np.float32), name))
    if m.ir_version < 4:  # IR 3: every initializer is also a graph input
        m.graph.input.append(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, np.shape(value)))


def _set_init(m: onnx.ModelProto, name: str, value: np.ndarray) -> None:
    for i in m.graph.initializer:
        if i.name == name:
            i.CopyFrom(numpy_helper.from_array(np.asarray(value, np.float32), name))
            return
    raise KeyError(name)


# --------------------------------------------------------------------------- randomisation
def _consumer(t: str, cons: dict[str, list[tuple[Any, int]]]) -> tuple[Any, int] | None:
    """(node, input index) of the first consumer of constant ``t`` that is not a reshaping op."""
    for _ in range(8):
        users = cons.get(t, [])
        if not users:
            return None
        n, i = users[0]
        if n.op_type in PASS_THROUGH and i == 0:
            t = n.output[0]
            continue
        return n, i
    return None


def _source_init(t: str, m: onnx.ModelProto) -> str:
    """The initializer a (reshaped) constant comes from."""
    prod = {o: n for n in m.graph.node for o in n.output}
    while t in prod and prod[t].op_type in PASS_THROUGH:
        t = prod[t].input[0]
    return t


def _random_value(node: Any, i: int, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    op = node.op_type
    if op == "Conv" and i == 1:
        return rng.standard_normal(shape, np.float32) * np.float32(np.sqrt(2.0 / np.prod(shape[1:])))
    if op == "Gemm" and i == 1:
        trans_b = any(a.name == "transB" and a.i for a in node.attribute)
        fan_in = shape[1] if trans_b else shape[0]
        return rng.standard_normal(shape, np.float32) * np.float32(np.sqrt(2.0 / fan_in))
    if op in ("Conv", "Gemm") and i == 2:
        return rng.standard_normal(shape, np.float32) * np.float32(0.1)
    if op == "BatchNormalization":  # mean / var are measured in _calibrate
        return {1: lambda: rng.uniform(0.5, 1.5, shape), 2: lambda: rng.standard_normal(shape) * 0.2,
                3: lambda: np.zeros(shape), 4: lambda: np.ones(shape)}[i]().astype(np.float32)
    if op == "Mul":
        return rng.uniform(0.5, 1.5, shape).astype(np.float32)
    if op in ("Add", "Sum"):
        return (rng.standard_normal(shape) * 0.2).astype(np.float32)
    raise AssertionError(f"no randomisation recipe for input {i} of {op} '{node.name}'")


def randomise(m: onnx.ModelProto, seed: int, calib: np.ndarray) -> tuple[onnx.ModelProto, str]:
    """A copy of light model ``m`` with seeded random weights; returns it and its logits tensor."""
    rng = np.random.default_rng(seed)
    r = onnx.ModelProto()
    r.CopyFrom(m)
    g = r.graph
    ints = {i.name: numpy_helper.to_array(i) for i in g.initializer if i.data_type == onnx.TensorProto.INT64}
    zeros: dict[str, tuple[int, ...]] = {}
    nodes = []
    for n in g.node:  # ConstantOfShape(shape initializer) -> an initializer of that shape
        if n.op_type == "ConstantOfShape" and n.input[0] in ints:
            zeros[n.output[0]] = tuple(int(v) for v in ints[n.input[0]])
        else:
            nodes.append(n)
    del g.node[:]
    g.node.extend(nodes)
    used = {t for n in g.node for t in n.input}
    shapes = {i.name: tuple(i.dims) for i in g.initializer
              if i.data_type == onnx.TensorProto.FLOAT and i.name in used}
    shapes.update(zeros)
    cons: dict[str, list[tuple[Any, int]]] = {}
    for n in g.node:
        for k, t in enumerate(n.input):
            cons.setdefault(t, []).append((n, k))
    new = {}
    for name, shape in shapes.items():
        c = _consumer(name, cons)
        if c is not None:
            new[name] = _random_value(c[0], c[1], shape, rng)
    drop = set(new) | {i.name for i in g.initializer if i.name not in used}
    keep = [i for i in g.initializer if i.name not in drop]
    del g.initializer[:]
    g.initializer.extend(keep)
    keep_in = [i for i in g.input if i.name not in drop]
    del g.input[:]
    g.input.extend(keep_in)
    for name, v in new.items():
        _add_init(r, name, v)
    logits = _calibrate(r, calib, rng)
    return r, logits


def _train_mode_probe(m: onnx.ModelProto) -> tuple[onnx.ModelProto, list[str]]:
    """``m`` with every BatchNormalization normalising by its input's own statistics
    (opset-9 ops only), and the BN inputs exposed as outputs."""
    p = onnx.ModelProto()
    p.CopyFrom(m)
    g = p.graph
    inits = {i.name: i for i in g.initializer}
    nodes, xs = [], []
    mk = helper.make_node
    for k, n in enumerate(g.node):
        if n.op_type != "BatchNormalization":
            nodes.append(n)
            continue
        eps = next((a.f for a in n.attribute if a.name == "epsilon"), 1e-5)
        x, y, q = n.input[0], n.output[0], f"probe{k}/"
        scale, bias = (numpy_helper.to_array(inits[n.input[j]]) for j in (1, 2))
        _add_init(p, q + "s", scale.reshape(-1, 1, 1))
        _add_init(p, q + "b", bias.reshape(-1, 1, 1))
        _add_init(p, q + "eps", np.float32(eps))
        nodes += [mk("ReduceMean", [x], [q + "mu"], axes=[0, 2, 3]), mk("Sub", [x, q + "mu"], [q + "d"]),
                  mk("Mul", [q + "d", q + "d"], [q + "d2"]), mk("ReduceMean", [q + "d2"], [q + "v"], axes=[0, 2, 3]),
                  mk("Add", [q + "v", q + "eps"], [q + "ve"]), mk("Sqrt", [q + "ve"], [q + "sd"]),
                  mk("Div", [q + "d", q + "sd"], [q + "xn"]), mk("Mul", [q + "xn", q + "s"], [q + "xs"]),
                  mk("Add", [q + "xs", q + "b"], [y])]
        xs.append(x)
    del g.node[:]
    g.node.extend(nodes)
    return _with_outputs(p, xs, copy=False), list(dict.fromkeys(xs))


def _calibrate(m: onnx.ModelProto, x: np.ndarray, rng: np.random.Generator) -> str:
    """Realistic BN statistics, then logits spread over ~3 units; returns the logits tensor."""
    g = m.graph
    bns = [n for n in g.node if n.op_type == "BatchNormalization"]
    if bns:
        probe, names = _train_mode_probe(m)
        acts = ort_run(probe, x, names)
        for n in bns:
            a = acts[n.input[0]].astype(np.float64)
            mu_i, var_i = a.mean(axis=(2, 3)), a.var(axis=(2, 3))  # per photo (the probe runs one at a time)
            mu = mu_i.mean(0)
            var = (var_i + (mu_i - mu) ** 2).mean(0)
            _set_init(m, n.input[3], mu + rng.standard_normal(mu.shape) * 0.2 * np.sqrt(var))
            _set_init(m, n.input[4], var * rng.uniform(0.5, 2.0, var.shape))
    last = [n for n in g.node if n.op_type in ("Conv", "Gemm")][-1]
    n_out = len(g.output)
    z = ort_run(_with_outputs(m, [last.output[0]], copy=False), x, [last.output[0]])[last.output[0]]
    del g.output[n_out:]  # (no copy of a 550 MB VGG-19 for one probe)
    z = z.astype(np.float64)
    if z.ndim == 4:  # a 1x1 conv classifier (SqueezeNet, DenseNet): spread the pooled logits
        z = z.mean(axis=(2, 3))
    mu = z.mean(0)
    s = 3.0 / float((z - mu).std())
    inits = {i.name: i for i in g.initializer}  # to numpy: only the two rescaled below
    w = _source_init(last.input[1], m)
    _set_init(m, w, numpy_helper.to_array(inits[w]) * s)
    if len(last.input) > 2 and last.input[2]:
        b = _source_init(last.input[2], m)
        bias = numpy_helper.to_array(inits[b])
        _set_init(m, b, (bias - mu.reshape(bias.shape)) * s)
    soft = [n for n in g.node if n.op_type == "Softmax"]
    return soft[-1].input[0] if soft else g.output[0].name


# --------------------------------------------------------------------------- the test
def _run_converted(g: Any, target: str, out: Path, x: np.ndarray) -> list[np.ndarray]:
    """The converted model's outputs, in the graph's output order."""
    opts = EmitOptions(dialect="bvlc") if target == "caffe" else EmitOptions(opset=13)
    res = convert(g, target, out, "m", opts)
    run = make_runner(locate(next(p for p in res.files if p.suffix in (".prototxt", ".onnx"))),
                      intermediates=list(res.graph.outputs) if target == "onnx" else ())
    names = list(res.graph.outputs)
    try:
        got = [run.tensors(x[i:i + 1], names) for i in range(len(x))]
    finally:
        if hasattr(run, "close"):
            run.close()
    return [np.concatenate([d[n] for d in got]) for n in names]


@functools.lru_cache(maxsize=1)  # a model's targets run back to back; keep one model in memory
def _prepared(name: str) -> tuple[Any, np.ndarray, list[np.ndarray], float]:
    """The randomised model loaded by xconv, the test photos, onnxruntime's outputs on them
    (final output, then the logits when they differ) and the seconds this took."""
    t0 = time.perf_counter()
    # calibration: the two test photos and two more (tests/zoo.py calibrates on its test photos too)
    calib = zoo.torchvision_inputs(SIZE, zoo.PHOTOS + tuple(p for p in zoo.CALIBRATION if p not in zoo.PHOTOS)[:2])
    x = calib[:len(zoo.PHOTOS)]
    model, logits = randomise(onnx.load(str(LIGHT / f"{name}.onnx")), seed=0, calib=calib)
    names = list(dict.fromkeys([model.graph.output[0].name, logits]))
    model = _with_outputs(model, names, copy=False)  # randomise() returned a private copy
    want = ort_run(model, x, names)
    top1 = want[names[-1]].reshape(len(x), -1).argmax(1)
    assert len(set(top1.tolist())) == len(x), f"{name}: the randomised model sends the photos to one class {top1}"
    g = xo.load(model, name=name)
    assert len(g.outputs) == len(names)
    return g, x, [want[k] for k in names], time.perf_counter() - t0


TARGETS = ("reference", "caffe", "onnx")


@pytest.mark.slow
@pytest.mark.parametrize("name,target", [(m, t) for m in MODELS for t in TARGETS])
def test_light_model(name: str, target: str, tmp_path: Path) -> None:
    """``reference``: the IR from xconv's ONNX frontend in xconv's float64 reference (checks the
    frontend alone); ``caffe`` / ``onnx``: the converted files in pycaffe / onnxruntime."""
    g, x, want, prep_s = _prepared(name)
    t = time.perf_counter()
    if target == "reference":  # numpy float64: one photo keeps VGG-19 to a few seconds
        x, want = x[:1], [w[:1] for w in want]
        ref = reference.run(g, {next(iter(g.inputs)): x})
        got = [ref[o] for o in g.outputs]
    else:
        got = _run_converted(g, target, tmp_path, x)
    for what, a, b in zip(("output", "logits"), got, want):
        b = b.reshape(a.shape) if a.size == b.size else b
        # float32 runtimes (and the float64 reference) summing in different orders over up to
        # ~120 layers: measured max|d| <= 3e-5 * (1 + max|b|) (ResNet-50 logits in pycaffe); 3x margin
        bound = 1e-4 * (1 + float(np.abs(b).max()))
        err = float(np.abs(a - b).max())
        print(f"{name} {target} {what}: max|d| {err:.3g} (bound {bound:.3g})")
        assert err <= bound, f"{name} -> {target}: {what} max|d| {err:.3g} > {bound:.3g}"
    # top-1 agrees on every photo (_prepared checked the photos land in different classes)
    np.testing.assert_array_equal(got[-1].reshape(len(x), -1).argmax(1), want[-1].reshape(len(x), -1).argmax(1))
    print(f"{name}: prepare {prep_s:.1f}s, {target} {time.perf_counter() - t:.1f}s")
