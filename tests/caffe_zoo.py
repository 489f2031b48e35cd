"""Caffe test models: three residual nets written from their papers, plus
random weights for any Caffe deploy prototxt, with pycaffe as the reference.

Architectures (this project's own code, written from the papers):

* ``se_resnet50``: He et al. 2015 ResNet-50 as released in Caffe (stride in
  the first 1x1 of a downsampling bottleneck, ``BatchNorm`` + ``Scale`` after
  every conv) with Hu et al. "Squeeze-and-Excitation Networks": an SE block
  (global average pool -> reduce by 16 -> ReLU -> expand -> Sigmoid) on the
  output of each bottleneck's last 1x1 conv + BN, scaling it channel-wise
  before the residual add.  The SE projections are ``InnerProduct`` layers.
* ``resnet101_v2``: He et al. 2016 "Identity Mappings in Deep Residual
  Networks", full pre-activation bottlenecks (BN -> ReLU before each conv,
  the projection shortcut of a stage's first block fed from the block's
  pre-activation, nothing after the add), stride in the 3x3 conv, and a
  final BN -> ReLU before the pooling.  Blocks (3, 4, 23, 3).
* ``se_resnext50_32x4d``: ResNeXt-50 (32x4d, Xie et al. 2017: grouped 3x3
  conv, ``group: 32``, stride in the 3x3) with the same SE blocks, whose
  projections here are 1x1 ``Convolution`` layers (so the gate is flattened
  to (N, C) before the scaling).

The channel-wise scaling is stock BVLC 1.0: ``Scale`` with two bottoms and
``axis: 0``; bottom[1] of shape (N, C) matches bottom[0]'s dims from axis 0
on, which is what ``scale_layer.cpp`` requires.

One description (:class:`NetDesc`, a list of abstract :class:`Op`) is written
in both Caffe formats:

* V2 (``layer { type: "Convolution" }``, an ``Input`` layer);
* V1 (``layers { type: CONVOLUTION }``, ``input``/``input_dim``).  V1's
  layer-type enum has no BatchNorm, Scale, Input, Flatten-free broadcast or
  Reshape, so the V1 writer lowers, with stock V1 types only: BN + Scale ->
  a per-channel affine written as a 1x1 depthwise ``CONVOLUTION``
  (``group: C``); the SE projections -> 1x1 ``CONVOLUTION``; the channel-wise
  scaling -> the gate tiled to (N, C, H, W) by ``CONCAT`` of the gate H
  times along axis 2 and W times along axis 3, then ``ELTWISE { PROD }``.
  The V1 weights are derived from the V2 ones (BN folded in float64), so the
  two files compute the same function up to float32 rounding.

Weights are seeded random values set through pycaffe: convolutions and
inner products He-normal; BatchNorm statistics measured on real photos at
that layer (one layer-by-layer sweep) then perturbed (mean shifted by 0.2
std, variance scaled by 0.7..1.4, always positive; scale-factor blob 1);
``Scale`` gamma 0.7..1.3 and beta N(0, 0.2); the classifier rescaled so its
logits on the photos spread ~3 units with a centred bias.  A conv read only
by a BatchNorm is scaled so that its output variance is ~2 eps, which makes
the BN's eps matter (~15 % of its output; BN would normalise any scale away
otherwise).  For nets without BN (the BVLC deploys) each conv is rescaled so
its output std is ~100 (pixel scale: AlexNet's first LRN then divides
activations by 1.15 (median) up to ~2.3, so a wrong LRN would show).

Everything that touches pycaffe runs in a child process (``python
tests/caffe_zoo.py SPEC.json``): pycaffe cannot be imported after
TensorFlow, which other tests of the same session may have loaded.  The
parent gets the files and ``NAME.ref.npz`` with pycaffe's outputs.
"""
from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
# photos: PHOTOS at test time, CALIBRATION for the BatchNorm statistics and the logit scale
from zoo import CALIBRATION, PHOTOS, center_photos  # noqa: E402

# BGR mean of the Caffe ImageNet models (SENet/ResNet releases)
BGR_MEAN = (104.0, 117.0, 123.0)
LOGIT_SPREAD = 3.0
CONV_STD_NO_BN = 100.0


# --------------------------------------------------------------------------- description

@dataclass
class Op:
    """One abstract layer: ``kind`` is lowered per format by the writers."""

    kind: str                 # conv | bn | relu | sigmoid | pool | fc | se_fc | chscale | add
    name: str
    bottoms: tuple[str, ...]
    top: str
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass
class NetDesc:
    name: str
    input_name: str
    input_shape: tuple[int, int, int]          # C, H, W (batch given at write time)
    ops: list[Op]
    output: str
    shapes: dict[str, tuple[int, ...]]         # per-sample shape of every top, as V2 computes it


@dataclass(frozen=True)
class ResNetSpec:
    """Architecture parameters; the presets below are the papers' values."""

    arch: str                                  # se_resnet | preact | se_resnext
    depths: tuple[int, ...] = (3, 4, 6, 3)
    width: int = 64                            # stem width; stage-1 bottleneck width (ResNet)
    groups: int = 1                            # ResNeXt cardinality
    group_width: int = 4                       # ResNeXt width per group at stage 1
    se_reduction: int = 16
    classes: int = 1000
    size: int = 224
    eps: float | None = None                   # BatchNorm eps written to the file (None: Caffe's 1e-5)


FULL: dict[str, ResNetSpec] = {
    "se_resnet50": ResNetSpec("se_resnet", (3, 4, 6, 3)),
    "resnet101_v2": ResNetSpec("preact", (3, 4, 23, 3), eps=2e-5),
    "se_resnext50_32x4d": ResNetSpec("se_resnext", (3, 4, 6, 3), groups=32, group_width=4),
}
# reduced width and depth for the per-commit tests (every block kind kept: projection and
# identity blocks, stride 2 in every later stage); sizes picked so Caffe's ceil pooling and
# odd feature maps occur (100 -> pool1 25, where floor rounding would give 24)
SMALL: dict[str, ResNetSpec] = {
    "se_resnet50": replace(FULL["se_resnet50"], depths=(2, 1, 2, 1), width=16, size=96),
    "resnet101_v2": replace(FULL["resnet101_v2"], depths=(2, 1, 3, 1), width=16, size=100),
    "se_resnext50_32x4d": replace(FULL["se_resnext50_32x4d"], depths=(2, 1, 2, 1), width=16,
                                  groups=8, group_width=2, size=64),
}


def conv_out(n: int, k: int, s: int, p: int) -> int:
    return (n + 2 * p - k) // s + 1


def caffe_pool_out(n: int, k: int, s: int, p: int) -> int:
    """Caffe's pooling size: ceil, minus one if the last window starts in the padding."""
    out = int(math.ceil((n + 2 * p - k) / s)) + 1
    if p > 0 and (out - 1) * s >= n + p:
        out -= 1
    return out


class Builder:
    """Collects :class:`Op` and tracks per-sample shapes."""

    def __init__(self, name: str, input_shape: tuple[int, int, int], input_name: str = "data") -> None:
        self.name = name
        self.input_name = input_name
        self.input_shape = input_shape
        self.ops: list[Op] = []
        self.shapes: dict[str, tuple[int, ...]] = {input_name: input_shape}

    def _add(self, kind: str, name: str, bottoms: Sequence[str], top: str, shape: tuple[int, ...],
             **attrs: Any) -> str:
        self.ops.append(Op(kind, name, tuple(bottoms), top, attrs))
        self.shapes[top] = shape
        return top

    def conv(self, name: str, x: str, c: int, k: int, s: int = 1, p: int = 0, group: int = 1,
             bias: bool = False) -> str:
        _, h, w = self.shapes[x]
        return self._add("conv", name, [x], name, (c, conv_out(h, k, s, p), conv_out(w, k, s, p)),
                         num_output=c, kernel=k, stride=s, pad=p, group=group, bias=bias)

    def bn(self, name: str, x: str, eps: float | None) -> str:
        return self._add("bn", name, [x], name, self.shapes[x], eps=eps)

    def relu(self, name: str, x: str) -> str:
        return self._add("relu", name, [x], x, self.shapes[x])  # in place

    def sigmoid(self, name: str, x: str) -> str:
        return self._add("sigmoid", name, [x], name, self.shapes[x])

    def pool(self, name: str, x: str, method: str, k: int = 0, s: int = 1, p: int = 0,
             global_: bool = False) -> str:
        c, h, w = self.shapes[x]
        shape = (c, 1, 1) if global_ else (c, caffe_pool_out(h, k, s, p), caffe_pool_out(w, k, s, p))
        return self._add("pool", name, [x], name, shape, method=method, kernel=k, stride=s, pad=p,
                         global_=global_)

    def fc(self, name: str, x: str, n: int) -> str:
        return self._add("fc", name, [x], name, (n,), num_output=n)

    def se_fc(self, name: str, x: str, n: int, style: str) -> str:
        """An SE projection: ``InnerProduct`` (style "ip": out (N, n)) or 1x1 conv ("conv": (N, n, 1, 1))."""
        shape = (n,) if style == "ip" else (n, 1, 1)
        return self._add("se_fc", name, [x], name, shape, num_output=n, style=style)

    def chscale(self, name: str, x: str, gate: str) -> str:
        return self._add("chscale", name, [x, gate], name, self.shapes[x])

    def add(self, name: str, a: str, b: str) -> str:
        return self._add("add", name, [a, b], name, self.shapes[a])

    def build(self, output: str) -> NetDesc:
        return NetDesc(self.name, self.input_name, self.input_shape, list(self.ops), output, dict(self.shapes))


def _block_names(n: int) -> list[str]:
    """Kaiming's naming: a, b, c ... or a, b1, b2 ... when a stage has more than 3 blocks."""
    return [chr(ord("a") + i) for i in range(n)] if n <= 3 else ["a"] + [f"b{i}" for i in range(1, n)]


def _se(b: Builder, prefix: str, x: str, reduction: int, style: str) -> str:
    c = b.shapes[x][0]
    g = b.pool(f"{prefix}/se/pool", x, "AVE", global_=True)
    g = b.se_fc(f"{prefix}/se/reduce", g, max(c // reduction, 1), style)
    g = b.relu(f"{prefix}/se/relu", g)
    g = b.se_fc(f"{prefix}/se/expand", g, c, style)
    g = b.sigmoid(f"{prefix}/se/gate", g)
    return b.chscale(f"{prefix}/se/scale", x, g)


def _post_act_block(b: Builder, spec: ResNetSpec, tag: str, x: str, mid: int, out: int, stride: int,
                    project: bool) -> str:
    """ResNet / ResNeXt bottleneck with BN after each conv and an SE block before the add."""
    nxt = spec.arch == "se_resnext"
    s1, s3 = (1, stride) if nxt else (stride, 1)   # ResNeXt strides the 3x3; Caffe ResNet-50 the first 1x1
    r = f"res{tag}"
    y = b.conv(f"{r}_branch2a", x, mid, 1, s1)
    y = b.relu(f"{r}_branch2a_relu", b.bn(f"bn{tag}_branch2a", y, spec.eps))
    y = b.conv(f"{r}_branch2b", y, mid, 3, s3, 1, group=spec.groups)
    y = b.relu(f"{r}_branch2b_relu", b.bn(f"bn{tag}_branch2b", y, spec.eps))
    y = b.bn(f"bn{tag}_branch2c", b.conv(f"{r}_branch2c", y, out, 1), spec.eps)
    y = _se(b, r, y, spec.se_reduction, "conv" if nxt else "ip")
    sc = b.bn(f"bn{tag}_branch1", b.conv(f"{r}_branch1", x, out, 1, stride), spec.eps) if project else x
    return b.relu(f"{r}_relu", b.add(r, sc, y))


def _pre_act_block(b: Builder, spec: ResNetSpec, tag: str, x: str, mid: int, out: int, stride: int,
                   project: bool) -> str:
    """Full pre-activation bottleneck (He et al. 2016, fig. 4e)."""
    r = f"res{tag}"
    pre = b.relu(f"{r}_preact_relu", b.bn(f"bn{tag}_preact", x, spec.eps))
    y = b.conv(f"{r}_branch2a", pre, mid, 1)
    y = b.relu(f"{r}_branch2a_relu", b.bn(f"bn{tag}_branch2a", y, spec.eps))
    y = b.conv(f"{r}_branch2b", y, mid, 3, stride, 1)
    y = b.relu(f"{r}_branch2b_relu", b.bn(f"bn{tag}_branch2b", y, spec.eps))
    y = b.conv(f"{r}_branch2c", y, out, 1)
    sc = b.conv(f"{r}_branch1", pre, out, 1, stride) if project else x
    return b.add(r, sc, y)


def resnet(spec: ResNetSpec, name: str) -> NetDesc:
    """The description of ``spec`` (see the module doc for the three architectures)."""
    b = Builder(name, (3, spec.size, spec.size))
    x = b.conv("conv1", "data", spec.width, 7, 2, 3, bias=True)
    if spec.arch != "preact":  # pre-activation: the stem conv's output is normalised by block 2a's preact
        x = b.relu("conv1_relu", b.bn("bn_conv1", x, spec.eps))
    x = b.pool("pool1", x, "MAX", 3, 2)
    block = _pre_act_block if spec.arch == "preact" else _post_act_block
    for stage, depth in enumerate(spec.depths):
        if spec.arch == "se_resnext":
            mid = spec.groups * spec.group_width * 2 ** stage
        else:
            mid = spec.width * 2 ** stage
        out = 4 * spec.width * 2 ** stage
        for i, letter in enumerate(_block_names(depth)):
            stride = 2 if (i == 0 and stage > 0) else 1
            x = block(b, spec, f"{stage + 2}{letter}", x, mid, out, stride, project=(i == 0))
    if spec.arch == "preact":
        x = b.relu("post_relu", b.bn("bn_post", x, spec.eps))
        k = b.shapes[x][1]
        x = b.pool("pool5", x, "AVE", k, 1)      # a fixed kernel, as in the Caffe ResNet releases
    else:
        x = b.pool("pool5", x, "AVE", global_=True)
    return b.build(b.fc("fc1000", x, spec.classes))


# --------------------------------------------------------------------------- writers

def _conv_param(msg: Any, a: dict[str, Any]) -> None:
    msg.num_output = a["num_output"]
    msg.kernel_size.append(a["kernel"])
    if a["stride"] != 1:
        msg.stride.append(a["stride"])
    if a["pad"]:
        msg.pad.append(a["pad"])
    if a["group"] != 1:
        msg.group = a["group"]
    if not a["bias"]:
        msg.bias_term = False


def _pool_param(msg: Any, a: dict[str, Any], pb: Any) -> None:
    msg.pool = pb.PoolingParameter.MAX if a["method"] == "MAX" else pb.PoolingParameter.AVE
    if a["global_"]:
        msg.global_pooling = True
        return
    msg.kernel_size = a["kernel"]
    if a["stride"] != 1:
        msg.stride = a["stride"]
    if a["pad"]:
        msg.pad = a["pad"]


def _v2_layer(net: Any, type_: str, name: str, bottoms: Sequence[str], tops: Sequence[str]) -> Any:
    layer = net.layer.add()
    layer.name, layer.type = name, type_
    layer.bottom.extend(bottoms)
    layer.top.extend(tops)
    return layer


def to_v2(desc: NetDesc, pb: Any, batch: int = 1) -> Any:
    """The V2 ``NetParameter`` (``pb``: a caffe_pb2-like module)."""
    net = pb.NetParameter()
    net.name = desc.name
    inp = _v2_layer(net, "Input", desc.input_name, [], [desc.input_name])
    inp.input_param.shape.add().dim.extend((batch,) + desc.input_shape)
    for op in desc.ops:
        a, top = op.attrs, [op.top]
        if op.kind == "conv":
            _conv_param(_v2_layer(net, "Convolution", op.name, op.bottoms, top).convolution_param, a)
        elif op.kind == "bn":
            bn = _v2_layer(net, "BatchNorm", op.name, op.bottoms, top)
            if a["eps"] is not None:
                bn.batch_norm_param.eps = a["eps"]
            _v2_layer(net, "Scale", f"{op.name}/scale", top, top).scale_param.bias_term = True
        elif op.kind in ("relu", "sigmoid"):
            _v2_layer(net, "ReLU" if op.kind == "relu" else "Sigmoid", op.name, op.bottoms, top)
        elif op.kind == "pool":
            _pool_param(_v2_layer(net, "Pooling", op.name, op.bottoms, top).pooling_param, a, pb)
        elif op.kind == "fc" or (op.kind == "se_fc" and a["style"] == "ip"):
            _v2_layer(net, "InnerProduct", op.name, op.bottoms, top).inner_product_param.num_output = a["num_output"]
        elif op.kind == "se_fc":
            _conv_param(_v2_layer(net, "Convolution", op.name, op.bottoms, top).convolution_param,
                        dict(num_output=a["num_output"], kernel=1, stride=1, pad=0, group=1, bias=True))
        elif op.kind == "chscale":
            x, gate = op.bottoms
            if len(desc.shapes[gate]) > 1:      # (N, C, 1, 1) -> (N, C): Scale's bottom[1] must match from axis 0
                gate = _v2_layer(net, "Flatten", f"{op.name}/flatten", [gate], [f"{gate}/flat"]).top[0]
            _v2_layer(net, "Scale", op.name, [x, gate], top).scale_param.axis = 0
        elif op.kind == "add":
            _v2_layer(net, "Eltwise", op.name, op.bottoms, top)
        else:
            raise ValueError(f"{op.name}: no V2 lowering for {op.kind!r}")
    return net


def _v1_layer(net: Any, pb: Any, type_: str, name: str, bottoms: Sequence[str], tops: Sequence[str]) -> Any:
    layer = net.layers.add()
    layer.name = name
    layer.type = getattr(pb.V1LayerParameter, type_)
    layer.bottom.extend(bottoms)
    layer.top.extend(tops)
    return layer


def to_v1(desc: NetDesc, pb: Any, batch: int = 1) -> Any:
    """The V1 ``NetParameter`` (``layers`` with enum types), lowered as the module doc says."""
    net = pb.NetParameter()
    net.name = desc.name
    net.input.append(desc.input_name)
    net.input_dim.extend((batch,) + desc.input_shape)
    for op in desc.ops:
        a, top = op.attrs, [op.top]
        if op.kind == "conv":
            _conv_param(_v1_layer(net, pb, "CONVOLUTION", op.name, op.bottoms, top).convolution_param, a)
        elif op.kind == "bn":
            c = desc.shapes[op.bottoms[0]][0]
            _conv_param(_v1_layer(net, pb, "CONVOLUTION", op.name, op.bottoms, top).convolution_param,
                        dict(num_output=c, kernel=1, stride=1, pad=0, group=c, bias=True))
        elif op.kind in ("relu", "sigmoid"):
            _v1_layer(net, pb, "RELU" if op.kind == "relu" else "SIGMOID", op.name, op.bottoms, top)
        elif op.kind == "pool":
            _pool_param(_v1_layer(net, pb, "POOLING", op.name, op.bottoms, top).pooling_param, a, pb)
        elif op.kind == "fc":
            _v1_layer(net, pb, "INNER_PRODUCT", op.name, op.bottoms, top).inner_product_param.num_output = \
                a["num_output"]
        elif op.kind == "se_fc":
            _conv_param(_v1_layer(net, pb, "CONVOLUTION", op.name, op.bottoms, top).convolution_param,
                        dict(num_output=a["num_output"], kernel=1, stride=1, pad=0, group=1, bias=True))
        elif op.kind == "chscale":
            x, gate = op.bottoms
            _, h, w = desc.shapes[x]
            for axis, n in ((2, h), (3, w)):
                if n > 1:
                    tiled = f"{gate}/tile{axis}"
                    _v1_layer(net, pb, "CONCAT", f"{op.name}/tile{axis}", [gate] * n, [tiled]).concat_param.axis = axis
                    gate = tiled
            _v1_layer(net, pb, "ELTWISE", op.name, [x, gate], top).eltwise_param.operation = \
                pb.EltwiseParameter.PROD
        elif op.kind == "add":
            _v1_layer(net, pb, "ELTWISE", op.name, op.bottoms, top)
        else:
            raise ValueError(f"{op.name}: no V1 lowering for {op.kind!r}")
    return net


def v1_params(desc: NetDesc, v2: dict[str, list[np.ndarray]]) -> dict[str, list[np.ndarray]]:
    """The V1 net's weights from the V2 net's (layer name -> blobs)."""
    out: dict[str, list[np.ndarray]] = {}
    for op in desc.ops:
        if op.kind == "bn":
            mean, var, sf = (np.asarray(v, np.float64) for v in v2[op.name])
            gamma, beta = (np.asarray(v, np.float64) for v in v2[f"{op.name}/scale"])
            f = 0.0 if sf.ravel()[0] == 0 else 1.0 / sf.ravel()[0]
            eps = 1e-5 if op.attrs["eps"] is None else op.attrs["eps"]
            a = gamma / np.sqrt(var * f + eps)
            out[op.name] = [a.reshape(-1, 1, 1, 1).astype(np.float32), (beta - a * mean * f).astype(np.float32)]
        elif op.kind == "se_fc":
            w, bias = v2[op.name]
            out[op.name] = [w.reshape(w.shape[0], -1, 1, 1).copy(), bias.copy()]
        elif op.kind in ("conv", "fc"):
            out[op.name] = [v.copy() for v in v2[op.name]]
    return out


def v1_caffemodel(v1_text: str, params: dict[str, list[np.ndarray]]) -> bytes:
    """A V1-format caffemodel (``layers`` = V1LayerParameter, the net definition plus blobs with the
    legacy num/channels/height/width dims, as 2014-era Caffe wrote them), built with xconv's own
    BVLC schema."""
    from xconv.backends.caffe.schema import get_schema, parse_prototxt, to_caffemodel

    s = get_schema("bvlc")
    net = parse_prototxt(v1_text, "bvlc")
    assert len(net.layers) and not len(net.layer)
    for layer in net.layers:
        for arr in params.get(layer.name, []):
            blob = layer.blobs.add()
            dims = (1,) * (4 - arr.ndim) + tuple(arr.shape)
            blob.num, blob.channels, blob.height, blob.width = dims
            blob.data.extend(np.asarray(arr, np.float32).ravel().tolist())
    assert isinstance(net, s.NetParameter)
    return to_caffemodel(net)


# --------------------------------------------------------------------------- inputs

def photos(size: int, names: Sequence[str]) -> np.ndarray:
    """Caffe-style NCHW BGR float32 photos minus the mean (short side resized, centre crop)."""
    rgb = center_photos(size, names)
    bgr = rgb[..., ::-1] - np.asarray(BGR_MEAN, np.float32)
    return np.ascontiguousarray(bgr.transpose(0, 3, 1, 2), dtype=np.float32)


# --------------------------------------------------------------------------- weights (child process)

def _set_input(net: Any, x: np.ndarray) -> None:
    blob = net.blobs[net.inputs[0]]
    if tuple(blob.data.shape) != x.shape:
        blob.reshape(*x.shape)
        net.reshape()
    blob.data[...] = x


def _he(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    fan_in = int(np.prod(shape[1:]))
    return rng.normal(0.0, math.sqrt(2.0 / fan_in), shape)


def bn_eps_by_bottom(net_param: Any) -> dict[str, float]:
    """blob name -> eps of the BatchNorm layer reading it (from a caffe_pb2 NetParameter)."""
    return {lay.bottom[0]: float(lay.batch_norm_param.eps) for lay in net_param.layer if lay.type == "BatchNorm"}


def _consumers(net: Any) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name in net._layer_names:
        for b in net.bottom_names[name]:
            out.setdefault(b, []).append(name)
    return out


def randomize(net: Any, x: np.ndarray, seed: int, head: str, bn_eps: dict[str, float] | None = None
              ) -> dict[str, float]:
    """Seeded random weights for every layer of ``net``, calibrated on ``x`` (see the module doc).

    One layer-by-layer sweep: each layer's blobs are set before it runs, BN statistics from the
    blob it reads.  ``head`` is the classifier layer, rescaled at the end.  A conv whose only
    reader is a BatchNorm (``bn_eps``: blob -> that BN's eps) is scaled so that its output variance
    is ~2 eps: the BN's eps then changes its output by ~20 %, so a converter using another eps
    fails the parity tests (BN normalises the scale away otherwise)."""
    rng = np.random.default_rng(seed)
    _set_input(net, x)
    has_bn = any(layer.type == "BatchNorm" for layer in net.layers)
    bn_eps = bn_eps or {}
    consumers = _consumers(net)
    types = dict(zip(net._layer_names, (layer.type for layer in net.layers)))
    info: dict[str, float] = {}
    for i, (name, layer) in enumerate(zip(net._layer_names, net.layers)):
        blobs, kind = layer.blobs, layer.type
        if kind in ("Convolution", "InnerProduct"):
            blobs[0].data[...] = _he(rng, blobs[0].data.shape)
            if len(blobs) > 1:
                blobs[1].data[...] = rng.normal(0.0, 0.1, blobs[1].data.shape)
        elif kind == "BatchNorm":
            src = net.blobs[net.bottom_names[name][0]].data
            axes = (0,) + tuple(range(2, src.ndim))
            mean, std = src.mean(axis=axes), src.std(axis=axes) + 1e-3
            blobs[0].data[...] = mean + 0.2 * std * rng.standard_normal(mean.shape)
            blobs[1].data[...] = std ** 2 * rng.uniform(0.7, 1.4, std.shape)
            blobs[2].data[...] = 1.0
        elif kind == "Scale" and len(blobs):
            blobs[0].data[...] = rng.uniform(0.7, 1.3, blobs[0].data.shape)
            if len(blobs) > 1:
                blobs[1].data[...] = rng.normal(0.0, 0.2, blobs[1].data.shape)
        elif len(blobs):
            raise ValueError(f"layer {name!r} ({kind}) has blobs but no random-weight rule")
        net._forward(i, i)
        top_name = net.top_names[name][0]
        readers = consumers.get(top_name, [])
        target = None
        if kind == "Convolution" and not has_bn:
            target = CONV_STD_NO_BN
        elif kind == "Convolution" and len(readers) == 1 and types[readers[0]] == "BatchNorm":
            target = math.sqrt(2.0 * bn_eps[top_name])
        if target is not None:
            k = target / max(float(net.blobs[top_name].data.std()), 1e-30)
            for blob in blobs:
                blob.data[...] *= k
            net._forward(i, i)
    # the classifier: logits spread ~LOGIT_SPREAD over the photos, bias centred per class
    idx = list(net._layer_names).index(head)
    layer = net.layers[idx]
    layer.blobs[1].data[...] = 0.0
    _set_input(net, x)
    net._forward(0, idx)
    z = net.blobs[net.top_names[head][0]].data.reshape(len(x), -1).astype(np.float64)
    k = LOGIT_SPREAD / max(float((z - z.mean(axis=0)).std()), 1e-12)
    layer.blobs[0].data[...] *= k
    layer.blobs[1].data[...] = -(z * k).mean(axis=0).reshape(layer.blobs[1].data.shape)
    net.forward()
    info["logit_std"] = float(net.blobs[net.top_names[head][0]].data.std())
    return info


def check_scale_shapes(net: Any) -> None:
    """BVLC 1.0's two-bottom ``Scale`` check (the brocolli fork commented it out): bottom[1]'s
    shape equals bottom[0]'s dims from ``axis`` (0 in these files) on."""
    for name, layer in zip(net._layer_names, net.layers):
        bottoms = net.bottom_names[name]
        if layer.type == "Scale" and len(bottoms) == 2:
            a, b = (net.blobs[n].data.shape for n in bottoms)
            if tuple(a[:len(b)]) != tuple(b):
                raise ValueError(f"Scale {name!r}: bottom shapes {a} and {b} fail BVLC 1.0's check (axis 0)")


def net_params(net: Any) -> dict[str, list[np.ndarray]]:
    return {name: [b.data.copy() for b in blobs] for name, blobs in net.params.items()}


def forward(caffe: Any, prototxt: Path, caffemodel: Path, x: np.ndarray, blobs: Sequence[str]) -> dict[str, np.ndarray]:
    """pycaffe's outputs (and named blobs) for ``x``, from the files on disk."""
    net = caffe.Net(str(prototxt), caffe.TEST, weights=str(caffemodel))
    _set_input(net, x)
    net.forward()
    names = list(net.outputs) + [b for b in blobs if b not in net.outputs]
    return {n: net.blobs[n].data.copy() for n in names}


# --------------------------------------------------------------------------- generation (child process)

@dataclass
class GenSpec:
    """What the child makes: a paper net (``arch`` + ``full``) or an existing deploy (``prototxt``)."""

    name: str
    out_dir: str
    arch: str | None = None
    full: bool = False
    size: int | None = None
    formats: tuple[str, ...] = ("v2",)
    prototxt: str | None = None
    head: str | None = None                    # the classifier layer (deploys)
    blobs: tuple[str, ...] = ()                # extra blobs recorded in the reference
    batch: int = 2
    calib: int = 8
    seed: int = 0
    v1_legacy_model: bool = True


def spec_for(arch: str, full: bool, size: int | None = None) -> ResNetSpec:
    spec = (FULL if full else SMALL)[arch]
    return replace(spec, size=size) if size else spec


def _generate(g: GenSpec) -> dict[str, Any]:
    os.environ.setdefault("GLOG_minloglevel", "2")
    import caffe  # noqa: PLC0415
    from caffe.proto import caffe_pb2  # noqa: PLC0415
    from google.protobuf import text_format  # noqa: PLC0415

    caffe.set_mode_cpu()
    out = Path(g.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t: dict[str, Any] = {}
    files: dict[str, str] = {}
    desc = None
    if g.arch:
        spec = spec_for(g.arch, g.full, g.size)
        desc = resnet(spec, g.name)
        size, head = spec.size, "fc1000"
        v2_path = out / f"{g.name}.prototxt"
        v2_path.write_text(text_format.MessageToString(to_v2(desc, caffe_pb2)))
    else:
        assert g.prototxt and g.head and g.size
        v2_path, size, head = Path(g.prototxt), g.size, g.head
    files["v2_prototxt"] = str(v2_path)
    x_cal = photos(size, CALIBRATION[:g.calib])
    x = photos(size, PHOTOS[:g.batch])
    t0 = time.perf_counter()
    net = caffe.Net(str(v2_path), caffe.TEST)
    net_param = text_format.Parse(v2_path.read_text(), caffe_pb2.NetParameter())
    t.update(randomize(net, x_cal, g.seed, head, bn_eps_by_bottom(net_param)))
    check_scale_shapes(net)
    v2_model = v2_path.with_suffix(".caffemodel")
    net.save(str(v2_model))
    files["v2_caffemodel"] = str(v2_model)
    t["make_s"] = time.perf_counter() - t0
    params = net_params(net)
    del net
    t0 = time.perf_counter()
    ref = {f"v2:{k}": v for k, v in forward(caffe, v2_path, v2_model, x, g.blobs).items()}
    t["ref_s"] = time.perf_counter() - t0
    if "v1" in g.formats:
        assert desc is not None, "V1 files are written for the paper nets only"
        v1_text = text_format.MessageToString(to_v1(desc, caffe_pb2))
        v1_path = out / f"{g.name}_v1.prototxt"
        v1_path.write_text(v1_text)
        p1 = v1_params(desc, params)
        net1 = caffe.Net(str(v1_path), caffe.TEST)
        for lname, blobs in net1.params.items():
            for blob, arr in zip(blobs, p1[lname]):
                blob.data[...] = arr
        v1_model = out / f"{g.name}_v1.caffemodel"     # pycaffe writes V2 `layer` messages
        net1.save(str(v1_model))
        del net1
        files.update(v1_prototxt=str(v1_path), v1_caffemodel=str(v1_model))
        ref.update({f"v1:{k}": v for k, v in forward(caffe, v1_path, v1_model, x, g.blobs).items()})
        if g.v1_legacy_model:
            legacy = out / f"{g.name}_v1_legacy.caffemodel"
            legacy.write_bytes(v1_caffemodel(v1_text, p1))
            files["v1_legacy_caffemodel"] = str(legacy)
            ref.update({f"v1legacy:{k}": v for k, v in forward(caffe, v1_path, legacy, x, g.blobs).items()})
    ref_path = out / f"{g.name}.ref.npz"
    np.savez(ref_path, x=x, **ref)
    files["ref"] = str(ref_path)
    return {"files": files, "info": t}


def make_files(g: GenSpec, timeout: float = 900) -> dict[str, Any]:
    """Run :func:`_generate` in a child process (pycaffe must not meet TensorFlow); returns
    ``{"files": {...}, "info": {...}}``."""
    spec_path = Path(g.out_dir) / f"{g.name}.gen.json"
    spec_path.parent.mkdir(parents=True, exist_ok=True)
    spec_path.write_text(json.dumps(asdict(g)))
    env = {**os.environ, "GLOG_minloglevel": "2", "PYTHONPATH": os.pathsep.join(
        [str(HERE.parent), str(HERE)] + [p for p in [os.environ.get("PYTHONPATH", "")] if p])}
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), str(spec_path)],
                          capture_output=True, text=True, timeout=timeout, env=env)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-30:])
        raise RuntimeError(f"generating {g.name} failed (exit {proc.returncode}):\n{tail}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def load_ref(path: str | Path) -> dict[str, np.ndarray]:
    with np.load(path) as r:
        return {k: r[k] for k in r.files}


def _main(argv: Sequence[str]) -> int:
    d = json.loads(Path(argv[0]).read_text())
    d["formats"], d["blobs"] = tuple(d["formats"]), tuple(d["blobs"])
    res = _generate(GenSpec(**d))
    sys.stdout.write(json.dumps(res) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
