"""Caffe as input: deploy prototxt + caffemodel -> IR -> ONNX / Caffe.

The reference is real pycaffe (the brocolli-caffe 9.0.2 fork built here) running
the source files: V2 nets get random weights written by pycaffe itself
(``net.save``); V1 nets are written by hand in the V1 text format and get a V1
caffemodel assembled from the schema's ``V1LayerParameter`` messages with
legacy num/channels/height/width blob dims, which pycaffe upgrades on load, so
it, not xconv, decides what they mean.  Each net is checked three ways: the
IR's float64 reference, the ONNX conversion in onnxruntime, and the Caffe
(bvlc) conversion in pycaffe, all against pycaffe on the source.

Tolerance (``_close``): ``atol = 2e-5 * (1 + max|want|)``.  pycaffe computes in
float32 (unit roundoff 6e-8); these nets have at most ~200-term dot products
and a dozen layers, whose accumulated rounding stays below ~2e-6 relative to the
largest activation, so 2e-5 leaves a 10x margin, while every semantic slip
these tests guard (ceil vs floor windows, a lost BatchNorm scale factor, a
wrong average divisor, a missed coefficient) moves outputs by 1e-2 or more.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import onnxruntime as ort
import pytest

import caffe_zoo
from irgraphs import try_import
from xconv import cli, reference, wire
from xconv.backend import EmitOptions
from xconv.backends.caffe.schema import get_schema, parse_caffemodel, parse_prototxt
from xconv.convert import convert
from xconv.errors import InputFileError, UnsupportedAttrError, UnsupportedOpError, XconvError
from xconv.frontends import caffe as xc
from xconv.ir import Graph
from xconv.verify.runners import InProcessCaffeRunner

os.environ.setdefault("GLOG_minloglevel", "2")
caffe = try_import("caffe")  # pycaffe is the reference of every test here
pytestmark = pytest.mark.xfail(caffe is None, run=False,
                               reason="pycaffe is not importable: the Caffe frontend's references did not run")
if caffe is not None:
    caffe.set_mode_cpu()


# --------------------------------------------------------------------------- helpers
def _close(got: np.ndarray, want: np.ndarray, what: str) -> None:
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    bound = 2e-5 * (1.0 + float(np.abs(want).max()))  # see the module docstring
    err = float(np.abs(got.astype(np.float64) - want.astype(np.float64)).max())
    assert err <= bound, f"{what}: max|diff| {err:.3g} > {bound:.3g}"


def _write(tmp: Path, name: str, text: str) -> Path:
    p = tmp / f"{name}.prototxt"
    p.write_text(text)
    return p


def _randomise(net: Any, seed: int) -> None:
    """Seeded weights with non-trivial BatchNorm statistics and a scale factor != 1."""
    rng = np.random.default_rng(seed)
    for lname, blobs in net.params.items():
        ltype = net.layers[list(net._layer_names).index(lname)].type
        for i, b in enumerate(blobs):
            v = rng.standard_normal(b.data.shape).astype(np.float32)
            if ltype == "BatchNorm":
                v = {0: v * 2.0, 1: np.abs(v) * 3.0 + 0.5, 2: np.full(b.data.shape, 4.0, np.float32)}[i]
            elif ltype in ("Convolution", "InnerProduct") and i == 0:
                fan_in = int(np.prod(b.data.shape[1:]))
                v = v / np.sqrt(fan_in)
            b.data[...] = v


def save_v2(tmp: Path, name: str, text: str, seed: int = 0) -> tuple[Path, Path]:
    proto = _write(tmp, name, text)
    net = caffe.Net(str(proto), caffe.TEST)
    _randomise(net, seed)
    model = tmp / f"{name}.caffemodel"
    net.save(str(model))
    return proto, model


def caffe_run(proto: Path, model: Path, x: np.ndarray, output: str | None = None) -> np.ndarray:
    return InProcessCaffeRunner(proto, model, output)(x)


def ir_run(g: Graph, x: np.ndarray) -> np.ndarray:
    return reference.run(g, {next(iter(g.inputs)): x})[g.outputs[0]]


def onnx_run(g: Graph, out: Path, x: np.ndarray) -> np.ndarray:
    res = convert(g, "onnx", out, "m", EmitOptions(opset=13))
    path = next(p for p in res.files if p.suffix == ".onnx")
    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return s.run(None, {s.get_inputs()[0].name: x})[0]


def caffe_convert(g: Graph, out: Path, name: str = "m", dialect: str = "bvlc") -> tuple[Path, Path]:
    convert(g, "caffe", out, name, EmitOptions(dialect=dialect))
    return out / f"{name}.prototxt", out / f"{name}.caffemodel"


def check_all(tmp: Path, proto: Path, model: Path, x: np.ndarray, targets: Sequence[str] = ("onnx", "caffe"),
              **opts: Any) -> Graph:
    want = caffe_run(proto, model, x)
    g = xc.load(proto, weights=model, input_shape=x.shape, **opts)
    _close(ir_run(g, x), want, "IR reference vs pycaffe")
    if "onnx" in targets:
        _close(onnx_run(g, tmp / "onnx", x), want, "ONNX (onnxruntime) vs pycaffe")
    if "caffe" in targets:
        p2, m2 = caffe_convert(g, tmp / "caffe")
        _close(caffe_run(p2, m2, x), want, "Caffe (bvlc) conversion vs pycaffe")
    return g


def inputs(shape: tuple[int, ...], seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def V2(body: str, shape: tuple[int, ...] = (10, 3, 15, 15), name: str = "t") -> str:
    dims = " ".join(f"dim: {d}" for d in shape)
    return (f'name: "{name}"\nlayer {{ name: "data" type: "Input" top: "data" input_param {{ shape {{ {dims} }} }} }}\n'
            + body)


# --------------------------------------------------------------------------- V2 nets
NET_CNN = V2("""
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  param { lr_mult: 1 } param { lr_mult: 2 }
  convolution_param { num_output: 8 kernel_size: 3 pad: 1 stride: 2 weight_filler { type: "xavier" } } }
layer { name: "bn1" type: "BatchNorm" bottom: "conv1" top: "conv1" batch_norm_param { eps: 0.001 } }
layer { name: "sc1" type: "Scale" bottom: "conv1" top: "conv1" scale_param { bias_term: true } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" relu_param { negative_slope: 0.1 } }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
  pooling_param { pool: MAX kernel_size: 3 stride: 2 } }
layer { name: "conv2" type: "Convolution" bottom: "pool1" top: "conv2"
  convolution_param { num_output: 8 kernel_h: 3 kernel_w: 1 pad_h: 1 pad_w: 0 group: 2 } }
layer { name: "prelu2" type: "PReLU" bottom: "conv2" top: "conv2" }
layer { name: "conv3" type: "Convolution" bottom: "pool1" top: "conv3"
  convolution_param { num_output: 8 kernel_size: 3 pad: 2 dilation: 2 bias_term: false } }
layer { name: "bn3" type: "BatchNorm" bottom: "conv3" top: "bn3" }
layer { name: "sum" type: "Eltwise" bottom: "conv2" bottom: "bn3" top: "sum"
  eltwise_param { operation: SUM coeff: 1 coeff: -0.5 } }
layer { name: "prod" type: "Eltwise" bottom: "sum" bottom: "conv2" top: "prod" eltwise_param { operation: PROD } }
layer { name: "max" type: "Eltwise" bottom: "prod" bottom: "sum" top: "max" eltwise_param { operation: MAX } }
layer { name: "pool2" type: "Pooling" bottom: "max" top: "pool2"
  pooling_param { pool: AVE kernel_size: 3 stride: 2 pad: 1 } }
layer { name: "pool3" type: "Pooling" bottom: "max" top: "pool3"
  pooling_param { pool: MAX kernel_h: 2 kernel_w: 3 stride_h: 2 stride_w: 2 pad_h: 1 pad_w: 1 } }
layer { name: "cat" type: "Concat" bottom: "pool2" bottom: "pool3" top: "cat" concat_param { axis: 1 } }
layer { name: "fc" type: "InnerProduct" bottom: "cat" top: "fc" inner_product_param { num_output: 10 } }
layer { name: "drop" type: "Dropout" bottom: "fc" top: "fc" dropout_param { dropout_ratio: 0.3 } }
""")  # logits, not a saturating softmax: the comparison must see every layer

# squeeze-excitation: global pooling, 1x1 convs, Sigmoid, Flatten + two-bottom Scale(axis 0), residual sum
NET_SE = V2("""
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param { num_output: 16 kernel_size: 3 pad: 1 } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "gap" type: "Pooling" bottom: "conv1" top: "gap" pooling_param { pool: AVE global_pooling: true } }
layer { name: "down" type: "Convolution" bottom: "gap" top: "down" convolution_param { num_output: 4 kernel_size: 1 } }
layer { name: "down_relu" type: "ReLU" bottom: "down" top: "down" }
layer { name: "up" type: "Convolution" bottom: "down" top: "up" convolution_param { num_output: 16 kernel_size: 1 } }
layer { name: "prob_se" type: "Sigmoid" bottom: "up" top: "up" }
layer { name: "flat_se" type: "Flatten" bottom: "up" top: "flat_se" }
layer { name: "excite" type: "Scale" bottom: "conv1" bottom: "flat_se" top: "excite" scale_param { axis: 0 } }
layer { name: "shift" type: "Bias" bottom: "excite" bottom: "flat_se" top: "shift" bias_param { axis: 0 } }
layer { name: "res" type: "Eltwise" bottom: "shift" bottom: "conv1" top: "res" }
layer { name: "gmax" type: "Pooling" bottom: "res" top: "gmax" pooling_param { pool: MAX global_pooling: true } }
layer { name: "fc" type: "InnerProduct" bottom: "gmax" top: "fc" inner_product_param { num_output: 7 transpose: true } }
""", shape=(1, 3, 9, 9))

# pre-activation (ResNet-v2) block, learned Scale/Bias, Power, Exp, TanH, ELU, AbsVal, Slice, Reshape,
# Flatten(axis, end_axis), InnerProduct(axis 2) and Softmax(axis 2)
NET_MISC = V2("""
layer { name: "bn0" type: "BatchNorm" bottom: "data" top: "bn0" }
layer { name: "sc0" type: "Scale" bottom: "bn0" top: "bn0" scale_param { bias_term: true } }
layer { name: "relu0" type: "ReLU" bottom: "bn0" top: "bn0" }
layer { name: "conv1" type: "Convolution" bottom: "bn0" top: "conv1" convolution_param { num_output: 6 kernel_size: 3 } }
layer { name: "bias" type: "Bias" bottom: "conv1" top: "bias" }
layer { name: "pow" type: "Power" bottom: "bias" top: "pow" power_param { power: 2 scale: 0.5 shift: 1 } }
layer { name: "sqrt" type: "Power" bottom: "pow" top: "sqrt" power_param { power: 0.5 shift: 0.25 } }
layer { name: "exp" type: "Exp" bottom: "conv1" top: "exp" exp_param { base: 2 scale: 0.3 shift: -0.5 } }
layer { name: "tanh" type: "TanH" bottom: "exp" top: "exp" }
layer { name: "elu" type: "ELU" bottom: "sqrt" top: "elu" elu_param { alpha: 0.7 } }
layer { name: "abs" type: "AbsVal" bottom: "conv1" top: "abs" }
layer { name: "slice" type: "Slice" bottom: "abs" top: "s0" top: "s1" top: "s2" slice_param { axis: 1 slice_point: 1 slice_point: 4 } }
layer { name: "silence" type: "Silence" bottom: "s1" }
layer { name: "cat" type: "Concat" bottom: "s2" bottom: "elu" bottom: "exp" bottom: "s0" top: "cat" }
layer { name: "scale2" type: "Scale" bottom: "cat" top: "cat2" scale_param { axis: 1 num_axes: 2 } }
layer { name: "reshape" type: "Reshape" bottom: "cat2" top: "r" reshape_param { shape { dim: 0 dim: 0 dim: -1 } } }
layer { name: "flat" type: "Flatten" bottom: "r" top: "f" flatten_param { axis: 0 end_axis: 1 } }
layer { name: "fc" type: "InnerProduct" bottom: "r" top: "fc" inner_product_param { num_output: 5 axis: 2 } }
layer { name: "sm" type: "Softmax" bottom: "fc" top: "sm" softmax_param { axis: 2 } }
""", shape=(1, 3, 7, 6))


@pytest.mark.parametrize("text,shape,seed", [(NET_CNN, (2, 3, 15, 15), 0), (NET_SE, (1, 3, 9, 9), 1)],
                         ids=["cnn", "se"])
def test_v2_net(text: str, shape: tuple[int, ...], seed: int, tmp_path: Path) -> None:
    proto, model = save_v2(tmp_path, "net", text, seed)
    g = check_all(tmp_path, proto, model, inputs(shape, seed))
    assert g.meta.source_framework == "caffe" and g.meta.extra["caffe_dialect"] == "bvlc"


def test_misc_layers(tmp_path: Path) -> None:
    proto, model = save_v2(tmp_path, "misc", NET_MISC, 3)
    x = inputs((1, 3, 7, 6), 3)
    g = xc.load(proto)  # the caffemodel is found beside the prototxt
    # the 'f' Flatten and Silence'd slice go nowhere; Caffe's outputs in name order: f, sm
    assert [o for o in g.outputs] == ["f", "sm"]
    net = caffe.Net(str(proto), caffe.TEST, weights=str(model))
    net.blobs["data"].data[...] = x
    net.forward()
    ref = reference.run(g, {"data": x})
    for o in ("f", "sm"):
        _close(ref[o], net.blobs[o].data, f"IR reference vs pycaffe, blob {o}")
    ops = g.op_counts()
    assert ops.get("BatchNormalization") == 1 and "Exp" in ops and ops.get("Split") == 1
    # a single output for the backends: the softmax
    g1 = xc.load(proto, outputs=["sm"])
    _close(onnx_run(g1, tmp_path / "onnx", x), net.blobs["sm"].data, "ONNX vs pycaffe")
    p2, m2 = caffe_convert(g1, tmp_path / "caffe")
    _close(caffe_run(p2, m2, x, "sm"), net.blobs["sm"].data, "Caffe conversion vs pycaffe")


NET_POWERS = V2("""
layer { name: "c0" type: "Power" bottom: "data" top: "c0" power_param { power: 2 scale: 0 shift: 3 } }
layer { name: "c1" type: "Power" bottom: "data" top: "c1" power_param { power: 0 scale: 2 shift: 3 } }
layer { name: "c2" type: "Power" bottom: "data" top: "c2" power_param { power: -1 scale: 2 shift: 10 } }
layer { name: "c3" type: "Power" bottom: "data" top: "c3" power_param { power: -0.5 scale: 2 shift: 10 } }
layer { name: "c4" type: "Exp" bottom: "data" top: "c4" }
layer { name: "c5" type: "Power" bottom: "data" top: "c5" }
layer { name: "c6" type: "Power" bottom: "data" top: "c6" power_param { power: 1.5 } }
""", shape=(1, 2, 3, 3))


def test_power_and_exp_forms(tmp_path: Path) -> None:
    """Caffe's constant cases (scale or power 0), reciprocal powers, the identity; other powers are refused."""
    proto, model = save_v2(tmp_path, "pow", NET_POWERS.replace('layer { name: "c6"', '# '))
    x = inputs((1, 2, 3, 3), 4)
    net = caffe.Net(str(proto), caffe.TEST, weights=str(model))
    net.blobs["data"].data[...] = x
    net.forward()
    g = xc.load(proto)
    ref = reference.run(g, {"data": x})
    for k in ("c0", "c1", "c2", "c3", "c4", "c5"):
        _close(ref[k], net.blobs[k].data, f"IR vs pycaffe, {k}")
    bad = _write(tmp_path, "bad", NET_POWERS)
    with pytest.raises(UnsupportedAttrError, match="layer 'c6'.*power: 1.5"):
        xc.load(bad, weights=model)


def test_in_place_layers_become_ssa_tensors(tmp_path: Path) -> None:
    proto, _ = save_v2(tmp_path, "net", NET_CNN, 0)
    g = xc.load(proto)
    by_name = {n.name: n for n in g.nodes}
    # conv1 -> bn1+sc1 (one BatchNormalization, gamma/beta from the Scale) -> relu1, all in place in Caffe
    assert by_name["conv1"].outputs == ["conv1"]
    assert by_name["bn1"].op == "BatchNormalization" and by_name["bn1"].outputs == ["sc1"]
    assert "sc1" not in by_name  # fused
    assert by_name["relu1"].inputs == ["sc1"] and by_name["relu1"].op == "LeakyRelu"
    assert by_name["pool1"].inputs == ["relu1"]
    # the un-fused BatchNorm (no Scale after it) has gamma 1, beta 0
    bn3 = by_name["bn3"]
    np.testing.assert_array_equal(g.params[bn3.inputs[1]], np.ones(8, np.float32))
    assert by_name["pool2"].op == "AveragePool" and by_name["pool2"].attrs["count_include_pad"] is True
    assert by_name["pool2"].attrs["ceil_mode"] is True and by_name["pool2"].attrs["pads"] == (1, 1, 1, 1)
    assert next(iter(g.inputs.values())).shape == (1, 3, 15, 15)  # the prototxt's batch 10 -> 1


# --------------------------------------------------------------------------- V1 nets
NET_V1 = """name: "v1net"
input: "data"
input_dim: 1
input_dim: 3
input_dim: 13
input_dim: 13
layers { name: "conv1" type: CONVOLUTION bottom: "data" top: "conv1"
  blobs_lr: 1 blobs_lr: 2 weight_decay: 1 weight_decay: 0
  convolution_param { num_output: 6 kernel_size: 3 stride: 2 weight_filler { type: "gaussian" std: 0.01 } } }
layers { name: "relu1" type: RELU bottom: "conv1" top: "conv1" }
layers { name: "pool1" type: POOLING bottom: "conv1" top: "pool1" pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layers { name: "slice" type: SLICE bottom: "pool1" top: "a" top: "b" slice_param { slice_dim: 1 slice_point: 2 } }
layers { name: "sig" type: SIGMOID bottom: "a" top: "a" }
layers { name: "tanh" type: TANH bottom: "b" top: "b" }
layers { name: "cat" type: CONCAT bottom: "b" bottom: "a" top: "cat" concat_param { concat_dim: 1 } }
layers { name: "elt" type: ELTWISE bottom: "cat" bottom: "pool1" top: "elt"
  eltwise_param { operation: SUM coeff: 0.5 coeff: 2 } }
layers { name: "pow" type: POWER bottom: "elt" top: "pow" power_param { power: 1 scale: 3 shift: -0.25 } }
layers { name: "fc6" type: INNER_PRODUCT bottom: "pow" top: "fc6" blobs_lr: 1 blobs_lr: 2
  inner_product_param { num_output: 8 } }
layers { name: "relu6" type: RELU bottom: "fc6" top: "fc6" }
layers { name: "drop6" type: DROPOUT bottom: "fc6" top: "fc6" dropout_param { dropout_ratio: 0.5 } }
layers { name: "fc7" type: INNER_PRODUCT bottom: "fc6" top: "fc7" inner_product_param { num_output: 5 } }
layers { name: "loss" type: SOFTMAX_LOSS bottom: "fc7" bottom: "label" top: "loss" include { phase: TRAIN } }
"""
V1_BLOBS = {  # layer -> (V1 type, legacy (num, channels, height, width) of each blob)
    "conv1": ("CONVOLUTION", [(6, 3, 3, 3), (1, 1, 1, 6)]),
    "fc6": ("INNER_PRODUCT", [(1, 1, 8, 54), (1, 1, 1, 8)]),
    "fc7": ("INNER_PRODUCT", [(1, 1, 5, 8), (1, 1, 1, 5)]),
}


def save_v1_caffemodel(path: Path, blobs: dict[str, tuple[str, list[tuple[int, int, int, int]]]], seed: int) -> None:
    """A V1 caffemodel of NET_V1 (``layers``, enum types, legacy blob dims): caffe_zoo's V1 writer."""
    rng = np.random.default_rng(seed)
    params: dict[str, list[np.ndarray]] = {}
    for name, (type_, shapes) in blobs.items():
        params[name] = []
        for k, (n, c, h, w) in enumerate(shapes):
            data = rng.standard_normal(n * c * h * w).astype(np.float32)
            if k == 0:
                data /= np.sqrt(c * h * w if type_ == "CONVOLUTION" else w)
            params[name].append(data.reshape(n, c, h, w))
    path.write_bytes(caffe_zoo.v1_caffemodel(NET_V1, params))


def test_v1_net(tmp_path: Path) -> None:
    proto = _write(tmp_path, "v1", NET_V1)
    model = tmp_path / "v1w.caffemodel"
    save_v1_caffemodel(model, V1_BLOBS, 5)
    g = check_all(tmp_path, proto, model, inputs((1, 3, 13, 13), 5))
    assert g.meta.extra["caffe_format"] == "V1 layers" and g.meta.extra["caffemodel_format"] == "V1 layers"
    assert g.outputs == ["fc7"] and "loss" not in {n.name for n in g.nodes}


def test_v1_prototxt_with_v2_caffemodel(tmp_path: Path) -> None:
    """BVLC's own model zoo mixes formats (e.g. AlexNet: V1 caffemodel, V2 deploy): blobs match by name."""
    proto = _write(tmp_path, "v1", NET_V1)
    model = tmp_path / "v1w.caffemodel"
    save_v1_caffemodel(model, V1_BLOBS, 6)
    net = caffe.Net(str(proto), caffe.TEST, weights=str(model))
    v2 = tmp_path / "v2.caffemodel"
    net.save(str(v2))  # pycaffe writes the upgraded (V2) form
    x = inputs((1, 3, 13, 13), 6)
    g = xc.load(proto, weights=v2)
    assert xc.read_caffemodel(v2).format == "V2 layer"
    _close(ir_run(g, x), caffe_run(proto, model, x), "IR (V2 weights) vs pycaffe (V1 weights)")


# --------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("which", ["cnn", "v1", "se"])
def test_caffe_ir_caffe_round_trip_is_stable(which: str, tmp_path: Path) -> None:
    if which == "v1":
        proto = _write(tmp_path, "src", NET_V1)
        model = tmp_path / "src.caffemodel"
        save_v1_caffemodel(model, V1_BLOBS, 7)
        shape: tuple[int, ...] = (1, 3, 13, 13)
    else:
        text, shape = (NET_CNN, (1, 3, 15, 15)) if which == "cnn" else (NET_SE, (1, 3, 9, 9))
        proto, model = save_v2(tmp_path, "src", text, 7)
    x = inputs(shape, 7)
    want = caffe_run(proto, model, x)
    texts, blobs = [], []
    cur_p, cur_m = proto, model
    for k in range(3):
        g = xc.load(cur_p, weights=cur_m, input_shape=shape)
        cur_p, cur_m = caffe_convert(g, tmp_path / f"round{k}", name="rt")
        texts.append(cur_p.read_text())
        blobs.append(cur_m.read_bytes())
        _close(caffe_run(cur_p, cur_m, x), want, f"round {k + 1} vs the source")
    assert texts[1] == texts[2], "caffe -> IR -> caffe is not a fixed point after the first round"
    assert blobs[1] == blobs[2]


# --------------------------------------------------------------------------- fork dialects
NET_FORK_FLOOR = V2("""
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1" convolution_param { num_output: 4 kernel_size: 3 pad: 1 } }
layer { name: "relu1" type: "ReLU6" bottom: "conv1" top: "conv1" }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
  pooling_param { pool: MAX kernel_size: 3 stride: 2 ceil_mode: false } }
layer { name: "pool2" type: "Pooling" bottom: "pool1" top: "pool2"
  pooling_param { pool: AVE kernel_size: 3 stride: 2 pad: 1 ceil_mode: false } }
layer { name: "fc" type: "InnerProduct" bottom: "pool2" top: "fc" inner_product_param { num_output: 6 } }
""", shape=(1, 3, 14, 14))


def test_fork_to_stock_caffe(tmp_path: Path) -> None:
    """A fork prototxt (ceil_mode: false, ReLU6) -> BVLC 1.0 layers only, run by pycaffe, same numbers."""
    proto, model = save_v2(tmp_path, "fork", NET_FORK_FLOOR, 8)
    x = inputs((1, 3, 14, 14), 8) * 4.0  # spread past ReLU6's 6
    g = check_all(tmp_path, proto, model, x)
    assert g.meta.extra["caffe_dialect"] == "ceil-mode"
    pools = [n for n in g.nodes if n.op in ("MaxPool", "AveragePool")]
    assert [n.attrs["ceil_mode"] for n in pools] == [False, False]
    assert g.type_of("pool2").shape == (1, 4, 3, 3)  # floor; ceil would give 4x4
    stock = parse_prototxt((tmp_path / "caffe" / "m.prototxt").read_text(), "bvlc")  # no fork field left
    assert "ReLU6" not in {lay.type for lay in stock.layer}


NET_BROCOLLI = V2("""
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1" convolution_param { num_output: 4 kernel_size: 3 } }
layer { name: "relu1" type: "ReLU6" bottom: "conv1" top: "conv1" relu6_param { threshold: 4 negative_slope: 0.1 } }
layer { name: "pad" type: "Pad" bottom: "conv1" top: "pad" pad_param { pad_u: 1 pad_d: 2 pad_l: 0 pad_r: 1 pad_value: 0.5 } }
layer { name: "hsig" type: "HardSigmoid" bottom: "pad" top: "hsig" hardsigmoid_param { alpha: 0.3 beta: 0.4 } }
layer { name: "hswish" type: "HardSwish" bottom: "pad" top: "hswish" }
layer { name: "sum" type: "Eltwise" bottom: "hsig" bottom: "hswish" top: "sum" }
layer { name: "perm" type: "Permute" bottom: "sum" top: "perm" permute_param { order: 0 order: 2 order: 3 order: 1 } }
layer { name: "flat" type: "Flatten" bottom: "perm" top: "flat" }
layer { name: "fc" type: "InnerProduct" bottom: "flat" top: "fc" inner_product_param { num_output: 6 } }
""", shape=(1, 3, 8, 7))


def test_brocolli_layers(tmp_path: Path) -> None:
    proto, model = save_v2(tmp_path, "fork", NET_BROCOLLI, 9)
    # Transpose has no stock Caffe layer: IR and ONNX only
    g = check_all(tmp_path, proto, model, inputs((1, 3, 8, 7), 9) * 3.0, targets=("onnx",))
    assert g.meta.extra["caffe_dialect"] == "brocolli"
    assert {"Transpose", "Pad", "HardSigmoid", "HardSwish", "Clip", "LeakyRelu"} <= set(g.op_counts())


NET_LRN_UP = V2("""
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1" convolution_param { num_output: 7 kernel_size: 1 } }
layer { name: "norm1" type: "LRN" bottom: "conv1" top: "norm1" lrn_param { local_size: 5 alpha: 0.3 beta: 0.75 k: 2 } }
layer { name: "up" type: "Upsample" bottom: "norm1" top: "up" upsample_param { scale: 2 } }
layer { name: "pad" type: "Pad" bottom: "up" top: "pad" pad_param { pad_type: REFLECT pad_u: 2 pad_l: 1 pad_r: 3 } }
layer { name: "pad2" type: "Pad" bottom: "pad" top: "pad2" pad_param { pad_type: REPLICATE pad_d: 2 pad_r: 1 } }
""", shape=(1, 3, 4, 5))


def test_lrn_upsample_pad_modes(tmp_path: Path) -> None:
    """LRN (GoogLeNet's), the fork's nearest Upsample and Pad modes against pycaffe on the IR reference."""
    proto, model = save_v2(tmp_path, "lrn", NET_LRN_UP, 10)
    x = inputs((1, 3, 4, 5), 10) * 3.0
    g = xc.load(proto, weights=model)
    _close(ir_run(g, x), caffe_run(proto, model, x), "IR reference vs pycaffe")
    assert {"LRN", "Resize", "Pad"} <= set(g.op_counts())


def test_master_clip_and_swish(tmp_path: Path) -> None:
    """BVLC master's Clip and Swish: this pycaffe has neither, so pycaffe computes the convolution in front
    of them and numpy applies Caffe's formulas (clip; x * sigmoid(beta * x))."""
    base = V2('layer { name: "conv" type: "Convolution" bottom: "data" top: "conv" '
              'convolution_param { num_output: 4 kernel_size: 3 } }', shape=(1, 3, 6, 6))
    proto, model = save_v2(tmp_path, "base", base, 15)
    x = inputs((1, 3, 6, 6), 15) * 3.0
    conv = caffe_run(proto, model, x).astype(np.float64)
    text = base + """
layer { name: "clip" type: "Clip" bottom: "conv" top: "clip" clip_param { min: -0.5 max: 1.25 } }
layer { name: "swish" type: "Swish" bottom: "conv" top: "swish" swish_param { beta: 1.5 } }
layer { name: "silu" type: "Swish" bottom: "conv" top: "silu" }
"""
    master = _write(tmp_path, "master", text)
    g = xc.load(master, weights=model)
    assert g.meta.extra["caffe_dialect"] == "bvlc-master"
    ref = reference.run(g, {"data": x})
    _close(ref["clip"], np.clip(conv, -0.5, 1.25), "Clip vs numpy")
    _close(ref["swish"], conv / (1.0 + np.exp(-1.5 * conv)), "Swish(beta 1.5) vs numpy")
    _close(ref["silu"], conv / (1.0 + np.exp(-conv)), "Swish vs numpy")
    with pytest.raises(XconvError, match="Clip, Swish"):
        xc.make_runner(master, weights=model)


def test_senet_axpy(tmp_path: Path) -> None:
    """The SENet authors' Axpy (a * x + y; this pycaffe lacks it): pycaffe computes its bottoms, numpy the sum."""
    base = V2("""
layer { name: "x" type: "Convolution" bottom: "data" top: "x" convolution_param { num_output: 4 kernel_size: 3 } }
layer { name: "y" type: "Convolution" bottom: "data" top: "y" convolution_param { num_output: 4 kernel_size: 3 } }
layer { name: "gap" type: "Pooling" bottom: "x" top: "gap" pooling_param { pool: AVE global_pooling: true } }
layer { name: "a" type: "Sigmoid" bottom: "gap" top: "a" }
""", shape=(1, 3, 6, 6))
    proto, model = save_v2(tmp_path, "base", base, 17)
    x = inputs((1, 3, 6, 6), 17)
    net = caffe.Net(str(proto), caffe.TEST, weights=str(model))
    net.blobs["data"].data[...] = x
    net.forward()
    b = {k: net.blobs[k].data.astype(np.float64) for k in ("a", "x", "y")}
    text = base + 'layer { name: "se" type: "Axpy" bottom: "a" bottom: "x" bottom: "y" top: "se" }\n'
    g = xc.load(_write(tmp_path, "axpy", text), weights=model)
    _close(reference.run(g, {"data": x})["se"], b["a"] * b["x"] + b["y"], "Axpy vs numpy")


TRAIN_VAL = """name: "tv"
layer { name: "data" type: "Data" top: "data" top: "label" include { phase: TRAIN }
  data_param { source: "train_lmdb" batch_size: 32 backend: LMDB } transform_param { mirror: true } }
layer { name: "data" type: "Data" top: "data" top: "label" include { phase: TEST }
  data_param { source: "val_lmdb" batch_size: 10 backend: LMDB } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1" convolution_param { num_output: 4 kernel_size: 3 } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "fc" type: "InnerProduct" bottom: "conv1" top: "fc" inner_product_param { num_output: 3 } }
layer { name: "drop" type: "Dropout" bottom: "fc" top: "fc" include { phase: TRAIN } }
layer { name: "acc" type: "Accuracy" bottom: "fc" bottom: "label" top: "acc" include { phase: TEST } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "fc" bottom: "label" top: "loss" }
"""
TV_DEPLOY = """name: "tv"
input: "data"
input_shape { dim: 1 dim: 3 dim: 6 dim: 6 }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1" convolution_param { num_output: 4 kernel_size: 3 } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "fc" type: "InnerProduct" bottom: "conv1" top: "fc" inner_product_param { num_output: 3 } }
"""


def test_train_val_prototxt(tmp_path: Path) -> None:
    """Data, loss and accuracy layers and TRAIN-phase rules are left out; the data top becomes the input."""
    proto, model = save_v2(tmp_path, "deploy", TV_DEPLOY, 16)  # net-level input: + input_shape
    tv = _write(tmp_path, "tv", TRAIN_VAL)
    with pytest.raises(InputFileError, match="--input-shape"):
        xc.load(tv, weights=model)
    g = xc.load(tv, weights=model, input_shape=(1, 3, 6, 6))
    assert set(g.op_counts()) == {"Conv", "Relu", "Flatten", "Gemm"} and g.outputs == ["fc"]
    x = inputs((1, 3, 6, 6), 16)
    _close(ir_run(g, x), caffe_run(proto, model, x), "IR of the train_val vs pycaffe on the deploy net")


# --------------------------------------------------------------------------- field 13
def _pool_net(rounding: str) -> str:
    # global average after the pooling: ceil adds a partial last window, which moves every output
    return V2(f"""
layer {{ name: "conv1" type: "Convolution" bottom: "data" top: "conv1" convolution_param {{ num_output: 4 kernel_size: 3 }} }}
layer {{ name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1" pooling_param {{ pool: MAX kernel_size: 3 stride: 2 {rounding} }} }}
layer {{ name: "gap" type: "Pooling" bottom: "pool1" top: "gap" pooling_param {{ pool: AVE global_pooling: true }} }}
""", shape=(1, 3, 10, 10))


SILENT, FORK_FLOOR, MASTER_FLOOR = _pool_net(""), _pool_net("ceil_mode: false"), _pool_net("round_mode: FLOOR")


def _hand_made_caffemodel(path: Path, text: str, dialect: str, blobs_from: Path) -> Path:
    """A caffemodel written as ``dialect``'s Caffe would: the text's layer params (pooling field 13 in
    that dialect's meaning) plus the blobs of ``blobs_from``."""
    net = parse_prototxt(text, dialect)
    src = {lay.name: lay for lay in parse_caffemodel(blobs_from.read_bytes(), dialect).layer}
    for lay in net.layer:
        if lay.name in src:
            lay.blobs.extend(src[lay.name].blobs)
    path.write_bytes(net.SerializeToString())
    return path


@pytest.fixture(scope="module")
def field13(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    d = tmp_path_factory.mktemp("field13")
    fork_p, fork_m = save_v2(d, "fork", FORK_FLOOR, 11)  # pycaffe (the fork) writes ceil_mode: false -> 13 = 0
    silent_p = _write(d, "silent", SILENT)
    x = inputs((1, 3, 10, 10), 11)
    return {
        "dir": d, "x": x, "fork_p": fork_p, "fork_m": fork_m, "silent_p": silent_p,
        "master_p": _write(d, "master", MASTER_FLOOR),
        "master_m": _hand_made_caffemodel(d / "master.caffemodel", MASTER_FLOOR, "bvlc-master", fork_m),
        "floor": caffe_run(fork_p, fork_m, x),   # pycaffe, floor rounding
        "ceil": caffe_run(silent_p, fork_m, x),  # pycaffe, ceil rounding (BVLC's only one)
    }


def _ceil_of(g: Graph) -> bool:
    return bool(g.node("pool1").attrs["ceil_mode"])


def test_field13_raw_values(field13: dict[str, Any]) -> None:
    assert xc.read_caffemodel(field13["fork_m"]).layers["pool1"].field13 == 0  # ceil_mode: false
    assert xc.read_caffemodel(field13["master_m"]).layers["pool1"].field13 == 1  # round_mode: FLOOR
    assert field13["floor"].shape == field13["ceil"].shape and not np.allclose(field13["floor"], field13["ceil"])


@pytest.mark.parametrize("proto,model", [("master_p", "master_m"), ("fork_p", "fork_m")])
def test_field13_agreeing_files_load(field13: dict[str, Any], proto: str, model: str) -> None:
    g = xc.load(field13[proto], weights=field13[model])
    assert not _ceil_of(g)
    _close(ir_run(g, field13["x"]), field13["floor"], "IR (floor) vs pycaffe with ceil_mode: false")


def test_master_round_mode_cannot_run_in_this_pycaffe(field13: dict[str, Any]) -> None:
    with pytest.raises(XconvError, match="round_mode"):
        xc.make_runner(field13["master_p"], weights=field13["master_m"])


@pytest.mark.parametrize("model,dialect,ceil", [
    ("master_m", "bvlc-master", False),  # 1 = FLOOR
    ("master_m", "ceil-mode", True),     # 1 = ceil_mode: true
    ("fork_m", "ceil-mode", False),      # 0 = ceil_mode: false
    ("fork_m", "bvlc-master", True),     # 0 = CEIL
])
def test_field13_only_in_caffemodel(field13: dict[str, Any], model: str, dialect: str, ceil: bool) -> None:
    with pytest.raises(InputFileError) as e:
        xc.load(field13["silent_p"], weights=field13[model])
    msg = str(e.value)
    assert "pool1" in msg and "field 13" in msg and "--source-dialect" in msg
    assert ("round_mode: FLOOR" in msg) == (model == "master_m") and ("ceil_mode: false" in msg) == (model == "fork_m")
    g = xc.load(field13["silent_p"], weights=field13[model], source_dialect=dialect)
    assert _ceil_of(g) is ceil
    _close(ir_run(g, field13["x"]), field13["ceil" if ceil else "floor"], f"IR read as {dialect} vs pycaffe")


def test_field13_disagreement(field13: dict[str, Any], caplog: pytest.LogCaptureFixture) -> None:
    # the fork's prototxt says ceil_mode: false, the master caffemodel's 1 reads as ceil_mode: true in the fork
    with pytest.raises(InputFileError, match=r"(?s)pool1.*says floor.*says ceil.*--source-dialect"):
        xc.load(field13["fork_p"], weights=field13["master_m"])
    with caplog.at_level(logging.WARNING, logger="xconv.frontends.caffe"):
        g = xc.load(field13["fork_p"], weights=field13["master_m"], source_dialect="ceil-mode")
    assert not _ceil_of(g) and "the prototxt wins" in caplog.text
    with pytest.raises(InputFileError, match="ceil_mode.*bvlc-master"):  # the text cannot be master's
        xc.load(field13["fork_p"], weights=field13["master_m"], source_dialect="bvlc-master")


def test_text_mixing_dialects_is_refused(tmp_path: Path) -> None:
    text = MASTER_FLOOR.replace('layer { name: "gap"', 'layer { name: "p2" type: "Pooling" bottom: "pool1" '
                                'top: "p2" pooling_param { pool: MAX kernel_size: 2 ceil_mode: false } }\nlayer { name: "gap"')
    proto = _write(tmp_path, "mixed", text)
    (tmp_path / "mixed.caffemodel").write_bytes(b"")
    with pytest.raises(InputFileError, match=r"incompatible Caffe dialects.*ceil_mode.*round_mode"):
        xc.load(proto)


# --------------------------------------------------------------------------- errors
def test_unsupported_layers_listed_together(tmp_path: Path) -> None:
    proto = _write(tmp_path, "bad", V2("""
layer { name: "deconv" type: "Deconvolution" bottom: "data" top: "deconv" convolution_param { num_output: 3 kernel_size: 2 } }
layer { name: "foo1" type: "FooBar" bottom: "deconv" top: "foo1" }
layer { name: "foo2" type: "FooBar" bottom: "foo1" top: "foo2" }
layer { name: "lrn" type: "LRN" bottom: "foo2" top: "lrn" lrn_param { norm_region: WITHIN_CHANNEL } }
layer { name: "sto" type: "Pooling" bottom: "lrn" top: "sto" pooling_param { pool: STOCHASTIC kernel_size: 2 } }
layer { name: "relu" type: "ReLU" bottom: "sto" top: "relu" }
"""))
    (tmp_path / "bad.caffemodel").write_bytes(b"")
    with pytest.raises(UnsupportedOpError) as e:
        xc.load(proto)
    assert e.value.ops == {"Deconvolution": ["deconv"], "FooBar": ["foo1", "foo2"],
                           "LRN (norm_region: WITHIN_CHANNEL)": ["lrn"], "Pooling (pool: STOCHASTIC)": ["sto"]}
    # a part of the net before them still converts
    g = xc.load(proto, outputs=["data"])
    assert g.nodes == []


BN_NET = V2("""
layer { name: "bn" type: "BatchNorm" bottom: "data" top: "bn" batch_norm_param { moving_average_fraction: 0.9 } }
""", shape=(1, 3, 4, 4))


def test_unread_fields_are_errors(tmp_path: Path) -> None:
    proto, model = save_v2(tmp_path, "bn", BN_NET, 12)
    xc.load(proto)  # moving_average_fraction only matters for training: accepted
    bad = _write(tmp_path, "bad", BN_NET.replace("moving_average_fraction: 0.9", "use_alpha_beta: true"))
    with pytest.raises(UnsupportedAttrError, match=r"layer 'bn'.*use_alpha_beta: True"):
        xc.load(bad, weights=model)
    off = _write(tmp_path, "off", BN_NET.replace("moving_average_fraction: 0.9", "use_global_stats: false"))
    with pytest.raises(UnsupportedAttrError, match="layer 'bn'.*use_global_stats"):
        xc.load(off, weights=model)
    conv = _write(tmp_path, "conv", V2('layer { name: "c" type: "Convolution" bottom: "data" top: "c" '
                                       'convolution_param { num_output: 2 kernel_size: 1 axis: 1 width_group: 2 } }'))
    with pytest.raises(UnsupportedAttrError, match="layer 'c'.*width_group"):
        xc.load(conv, weights=model)


def test_pooling_window_past_the_input_is_refused(tmp_path: Path) -> None:
    text = V2('layer { name: "p" type: "Pooling" bottom: "data" top: "p" pooling_param { pool: MAX kernel_size: 1 '
              'stride: 2 } }', shape=(1, 1, 6, 6))
    proto, model = save_v2(tmp_path, "p", text)
    assert caffe.Net(str(proto), caffe.TEST).blobs["p"].data.shape == (1, 1, 4, 4)  # Caffe's empty 4th window
    with pytest.raises(UnsupportedAttrError, match="layer 'p'.*starts past the input"):
        xc.load(proto)


def test_weights_errors(tmp_path: Path) -> None:
    proto, model = save_v2(tmp_path, "net", NET_SE, 13)
    # missing caffemodel
    with pytest.raises(InputFileError, match="--weights"):
        xc.load(proto, weights=tmp_path / "nope.caffemodel")
    other = _write(tmp_path, "other", NET_SE)
    with pytest.raises(InputFileError, match="other.caffemodel does not exist.*--weights"):
        xc.load(other)
    # truncated caffemodel
    data = model.read_bytes()
    cut = tmp_path / "cut.caffemodel"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputFileError, match="truncated"):
        xc.load(proto, weights=cut)
    # a prototxt given as the caffemodel
    with pytest.raises(InputFileError, match="not a caffemodel"):
        xc.load(proto, weights=proto)
    # shape mismatch: the caffemodel of a net whose 'down' conv has 5 outputs
    wide = _write(tmp_path, "wide", NET_SE.replace("num_output: 4", "num_output: 5"))
    _, wide_m = save_v2(tmp_path, "wide", wide.read_text(), 13)
    with pytest.raises(InputFileError, match=r"layer 'down'.*\(5, 16, 1, 1\).*\(4, 16, 1, 1\)"):
        xc.load(proto, weights=wide_m)
    # a blob missing: a caffemodel without the 'fc' layer
    S = get_schema("bvlc")
    m = parse_caffemodel(data, "bvlc")
    kept = [lay for lay in m.layer if lay.name != "fc"]
    del m.layer[:]
    m.layer.extend(kept)
    short = tmp_path / "short.caffemodel"
    short.write_bytes(m.SerializeToString())
    assert S.NetParameter.FromString(short.read_bytes()).layer
    with pytest.raises(InputFileError, match="layer 'fc'.*no blobs"):
        xc.load(proto, weights=short)


# --------------------------------------------------------------------------- CLI
def test_cli_convert_verify_inspect(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    proto, model = save_v2(tmp_path, "se", NET_SE, 14)
    weights = tmp_path / "trained_weights.caffemodel"  # not the prototxt's stem: --weights needed
    model.rename(weights)
    out = tmp_path / "out"
    assert cli.main(["convert", str(proto), "--from", "caffe", "--weights", str(weights), "--to", "onnx",
                     "-o", str(out)]) == 0
    assert cli.main(["convert", str(proto), "--from", "caffe", "--weights", str(weights), "--to", "caffe",
                     "-o", str(out)]) == 0
    capsys.readouterr()
    # verify reads --weights back from the sidecar NAME.xconv.json
    rc = cli.main(["verify", str(proto), str(out / "se.onnx"), str(out / "se.prototxt")])
    text = capsys.readouterr().out
    assert rc == 0 and "PARITY: PASS" in text, text
    assert cli.main(["inspect", str(proto), "--from", "caffe", "--weights", str(weights)]) == 0
    assert "Conv" in capsys.readouterr().out
    assert cli.main(["convert", str(proto), "--from", "caffe", "--to", "onnx", "-o", str(out)]) == 2
    assert "--weights" in capsys.readouterr().err


# --------------------------------------------------------------------------- blob wire encodings
def _tag(num: int, wt: int) -> bytes:
    return wire.varint((num << 3) | wt)


_len_field = wire.field


def test_blob_encodings_read_as_caffes_protobuf_reads_them() -> None:
    """float data packed and unpacked, double_data packed and unpacked (double wins, as in
    Blob::FromProto), each checked against pycaffe's own protobuf parse of the same bytes."""
    from caffe.proto import caffe_pb2  # noqa: PLC0415  (the reference reader, not this project's)

    f32 = np.array([1.5, -2.25, 3.0], "<f4")
    f64 = np.array([0.1, -7.0, 1e-3], "<f8")
    shape = _len_field(7, _len_field(1, bytes([3])))          # BlobShape { dim: 3 }
    packed_f = _len_field(5, f32.tobytes())
    unpacked_f = b"".join(_tag(5, 5) + v.tobytes() for v in f32)
    packed_d = _len_field(8, f64.tobytes())
    unpacked_d = b"".join(_tag(8, 1) + v.tobytes() for v in f64)
    for blob, want in ((shape + packed_f, f32), (shape + unpacked_f, f32),
                       (shape + packed_d, f64), (shape + unpacked_d, f64), (shape + packed_f + unpacked_d, f64)):
        ref = caffe_pb2.BlobProto.FromString(blob)
        ref_vals = np.array(ref.double_data if len(ref.double_data) else ref.data, np.float32)
        np.testing.assert_array_equal(ref_vals, want.astype(np.float32))
        layer = _len_field(1, b"ip") + _len_field(2, b"InnerProduct") + _len_field(7, blob)
        got = xc.parse_caffemodel_bytes(_len_field(100, layer)).layers["ip"].blobs[0]
        assert got.data.dtype == np.float32 and got.dims == (3,)
        np.testing.assert_array_equal(got.data, ref_vals)


@pytest.mark.parametrize("num, size", [(5, 4), (8, 8)])
def test_packed_blob_of_ragged_length_is_refused(num: int, size: int, tmp_path: Path) -> None:
    layer = _len_field(1, b"ip") + _len_field(2, b"InnerProduct") + _len_field(7, _len_field(num, bytes(size + 2)))
    bad = tmp_path / "bad.caffemodel"
    bad.write_bytes(_len_field(100, layer))
    with pytest.raises(InputFileError, match=rf"bad\.caffemodel is truncated or not a caffemodel.*multiple of {size}"):
        xc.read_caffemodel(bad)
