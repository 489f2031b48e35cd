"""Handlers of MXNet symbol ops (the classic image classifiers, gluon's model
zoo exports, DPN / ResNeXt / SE nets)."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from xconv.errors import UnsupportedAttrError

from .graph import Ctx, handles, ir_pool_out, mx_pool_out
from .symbol import MxNode


def _two(node: MxNode, k: str, default: tuple[int, int] | None) -> tuple[int, int]:
    v = node.a.ints(k, default)
    if v is None:
        raise UnsupportedAttrError(f"{node.where()}: attribute {k} is required")
    if len(v) == 1:
        return (v[0], v[0])
    if len(v) != 2:
        raise UnsupportedAttrError(f"{node.where()}: {k}={v} is not 2-D (only 2-D spatial ops are supported)")
    return (int(v[0]), int(v[1]))


def _layout(node: MxNode) -> None:
    lay = node.a.str("layout")
    if lay not in (None, "NCHW"):
        raise UnsupportedAttrError(f"{node.where()}: layout {lay} (only NCHW)")


# --------------------------------------------------------------------------- convolution / dense
@handles("Convolution")
def conv(ctx: Ctx, n: MxNode) -> Sequence[str]:
    _layout(n)
    x = ctx.x(n)
    _, c, _, _ = ctx.shape(x)
    k = _two(n, "kernel", None)
    s = _two(n, "stride", (1, 1))
    d = _two(n, "dilate", (1, 1))
    p = _two(n, "pad", (0, 0))
    g = n.a.int("num_group", 1) or 1
    f = n.a.int("num_filter")
    if f is None:
        raise UnsupportedAttrError(f"{n.where()}: num_filter is required")
    w = ctx.weight(n, 1, (f, c // g, k[0], k[1]), "weight")
    ins = [x, ctx.param(n, 1, w)]
    if not n.a.bool("no_bias", False):
        ins.append(ctx.param(n, 2, ctx.weight(n, 2, (f,), "bias")))
    return [ctx.add("Conv", ins, n, kernel_shape=k, strides=s, dilations=d, pads=(p[0], p[1], p[0], p[1]),
                    group=g)]


@handles("FullyConnected")
def dense(ctx: Ctx, n: MxNode) -> Sequence[str]:
    x = ctx.x(n)
    units = n.a.int("num_hidden")
    shape = ctx.shape(x)
    if len(shape) != 2:
        if not n.a.bool("flatten", True):
            raise UnsupportedAttrError(f"{n.where()}: flatten=False on a rank-{len(shape)} input is not supported")
        x = ctx.add("Flatten", [x], n, "flatten", axis=1)
    else:
        n.a.bool("flatten", True)
    k = ctx.shape(x)[1]
    ins = [x, ctx.param(n, 1, ctx.weight(n, 1, (units, k), "weight"))]
    if not n.a.bool("no_bias", False):
        ins.append(ctx.param(n, 2, ctx.weight(n, 2, (units,), "bias")))
    return [ctx.add("Gemm", ins, n)]


# --------------------------------------------------------------------------- normalisation
@handles("BatchNorm")
def batch_norm(ctx: Ctx, n: MxNode) -> Sequence[str]:
    x = ctx.x(n)
    axis = n.a.int("axis", 1)
    rank = len(ctx.shape(x))
    if axis not in (1, 1 - rank):
        raise UnsupportedAttrError(f"{n.where()}: axis={axis}; only the channel axis 1 is supported")
    c = ctx.shape(x)[1]
    gamma = ctx.weight(n, 1, (c,), "gamma")
    if n.a.bool("fix_gamma", True):  # MXNet's default: gamma is 1 whatever is stored
        gamma_t = ctx.const(f"{n.name}/gamma_fixed_1", np.ones(c))
    else:
        gamma_t = ctx.param(n, 1, gamma)
    ins = [x, gamma_t, ctx.param(n, 2, ctx.weight(n, 2, (c,), "beta"))]
    for i, stat in ((3, "moving_mean"), (4, "moving_var")):
        if i < len(n.inputs):
            ins.append(ctx.param(n, i, ctx.weight(n, i, (c,), stat)))
        else:  # pre-1.0 symbols do not list auxiliary states: they are NAME_moving_mean/var by convention
            ins.append(ctx.named(n, f"{n.name}_{stat}", (c,)))
    return [ctx.add("BatchNormalization", ins, n, epsilon=n.a.float("eps", 1e-3))]


# --------------------------------------------------------------------------- activations
@handles("Activation")
def activation(ctx: Ctx, n: MxNode) -> Sequence[str]:
    t = n.a.str("act_type")
    op = {"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh"}.get(t or "")
    if op is None:
        raise UnsupportedAttrError(f"{n.where()}: act_type {t!r} (supported: relu, sigmoid, tanh)")
    return [ctx.add(op, [ctx.x(n)], n)]


@handles("LeakyReLU")
def leaky(ctx: Ctx, n: MxNode) -> Sequence[str]:
    t = n.a.str("act_type", "leaky")
    x = ctx.x(n)
    if t == "leaky":
        return [ctx.add("LeakyRelu", [x], n, alpha=n.a.float("slope", 0.25))]
    if t == "rrelu":  # inference: the mean of the sampling range
        lo, hi = n.a.float("lower_bound", 0.125), n.a.float("upper_bound", 0.334)
        return [ctx.add("LeakyRelu", [x], n, alpha=(lo + hi) / 2)]
    if t == "elu":
        return [ctx.add("Elu", [x], n, alpha=n.a.float("slope", 0.25))]
    if t == "prelu":
        c = ctx.shape(x)[1]
        g = ctx.weight(n, 1, None, "gamma").reshape(-1)
        if g.size not in (1, c):
            raise UnsupportedAttrError(f"{n.where()}: prelu gamma of {g.size} values for {c} channels")
        return [ctx.add("PRelu", [x, ctx.param(n, 1, g)], n)]
    raise UnsupportedAttrError(f"{n.where()}: act_type {t!r} (supported: leaky, rrelu, elu, prelu)")


@handles("clip")
def clip(ctx: Ctx, n: MxNode) -> Sequence[str]:
    return [ctx.add("Clip", [ctx.x(n)], n, min=n.a.float("a_min"), max=n.a.float("a_max"))]


@handles("relu")
def relu(ctx: Ctx, n: MxNode) -> Sequence[str]:
    return [ctx.add("Relu", [ctx.x(n)], n)]


@handles("sigmoid")
def sigmoid(ctx: Ctx, n: MxNode) -> Sequence[str]:
    return [ctx.add("Sigmoid", [ctx.x(n)], n)]


def _softmax_axis(ctx: Ctx, n: MxNode, x: str, axis: int) -> Sequence[str]:
    rank = len(ctx.shape(x))
    return [ctx.add("Softmax", [x], n, axis=axis % rank)]


@handles("SoftmaxOutput", "Softmax")
def softmax_output(ctx: Ctx, n: MxNode) -> Sequence[str]:
    x = ctx.x(n)
    if n.a.bool("multi_output", False):
        return _softmax_axis(ctx, n, x, 1)
    if n.a.bool("preserve_shape", False):
        return _softmax_axis(ctx, n, x, -1)
    if len(ctx.shape(x)) != 2:
        x = ctx.add("Flatten", [x], n, "flatten", axis=1)
    return _softmax_axis(ctx, n, x, 1)


@handles("softmax")
def softmax(ctx: Ctx, n: MxNode) -> Sequence[str]:
    t = n.a.float("temperature", 1.0)
    if t not in (None, 1.0):
        raise UnsupportedAttrError(f"{n.where()}: temperature {t} (only 1)")
    return _softmax_axis(ctx, n, ctx.x(n), n.a.int("axis", -1))


@handles("SoftmaxActivation")
def softmax_activation(ctx: Ctx, n: MxNode) -> Sequence[str]:
    x = ctx.x(n)
    if n.a.str("mode", "instance") == "channel":
        return _softmax_axis(ctx, n, x, 1)
    if len(ctx.shape(x)) != 2:
        x = ctx.add("Flatten", [x], n, "flatten", axis=1)
    return _softmax_axis(ctx, n, x, 1)


# --------------------------------------------------------------------------- pooling
@handles("Pooling")
def pooling(ctx: Ctx, n: MxNode) -> Sequence[str]:
    _layout(n)
    x = ctx.x(n)
    _, _, h, w = ctx.shape(x)
    ptype = n.a.str("pool_type", "max")
    if ptype not in ("max", "avg", "sum"):
        raise UnsupportedAttrError(f"{n.where()}: pool_type {ptype!r} (supported: max, avg, sum)")
    if n.a.bool("global_pool", False):
        n.a.raw("kernel"), n.a.raw("stride"), n.a.raw("pad"), n.a.raw("pooling_convention")
        n.a.raw("count_include_pad")
        if ptype == "max":
            return [ctx.add("GlobalMaxPool", [x], n)]
        y = ctx.add("GlobalAveragePool", [x], n, "avg" if ptype == "sum" else "")
        return [y] if ptype == "avg" else [ctx.add("Mul", [y, ctx.const(f"{n.name}/area", float(h * w))], n)]
    k = _two(n, "kernel", None)
    s = _two(n, "stride", (1, 1))
    p = _two(n, "pad", (0, 0))
    conv_ = n.a.str("pooling_convention", "valid")
    if conv_ not in ("valid", "full", "same"):
        raise UnsupportedAttrError(f"{n.where()}: pooling_convention {conv_!r}")
    include = n.a.bool("count_include_pad", True)
    want = (mx_pool_out(h, k[0], s[0], p[0], conv_), mx_pool_out(w, k[1], s[1], p[1], conv_))
    pads = (p[0], p[1], p[0], p[1])
    ceil = conv_ != "valid"
    if conv_ == "same":
        raise UnsupportedAttrError(f"{n.where()}: pooling_convention 'same' is not supported (MXNet 1.9.1 itself "
                                   "runs it only for 1-D max pooling without padding)")
    got = (ir_pool_out(h, k[0], s[0], p[0], ceil), ir_pool_out(w, k[1], s[1], p[1], ceil))
    if got != want:
        raise UnsupportedAttrError(
            f"{n.where()}: MXNet's '{conv_}' convention gives {want[0]}x{want[1]} outputs here, including a "
            f"window that lies wholly in the padding; the IR (and Caffe/ONNX/PyTorch) drop it ({got[0]}x{got[1]})")
    attrs: dict[str, Any] = dict(kernel_shape=k, strides=s, pads=pads, ceil_mode=ceil)
    if ptype == "max":
        return [ctx.add("MaxPool", [x], n, **attrs)]
    if ptype == "avg":
        return [ctx.add("AveragePool", [x], n, count_include_pad=include, **attrs)]
    # sum = average x window area, exact only when every window has the full area
    if any(pads) or ((h - k[0]) % s[0] and ceil) or ((w - k[1]) % s[1] and ceil):
        raise UnsupportedAttrError(f"{n.where()}: sum pooling with windows clipped at the border")
    y = ctx.add("AveragePool", [x], n, "avg", count_include_pad=True, **attrs)
    return [ctx.add("Mul", [y, ctx.const(f"{n.name}/area", float(k[0] * k[1]))], n)]


# --------------------------------------------------------------------------- shapes
@handles("Flatten", "flatten")
def flatten(ctx: Ctx, n: MxNode) -> Sequence[str]:
    return [ctx.add("Flatten", [ctx.x(n)], n, axis=1)]


@handles("Concat", "concat")
def concat(ctx: Ctx, n: MxNode) -> Sequence[str]:
    xs = [ctx.x(n, i) for i in range(len(n.inputs))]
    rank = len(ctx.shape(xs[0]))
    dim = n.a.int("dim", 1)
    if len(xs) == 1:
        return [ctx.add("Identity", xs, n)]
    return [ctx.add("Concat", xs, n, axis=dim % rank)]


@handles("SliceChannel", "split")
def split(ctx: Ctx, n: MxNode) -> Sequence[str]:
    x = ctx.x(n)
    k = n.a.int("num_outputs")
    axis = n.a.int("axis", 1) % len(ctx.shape(x))
    if n.a.bool("squeeze_axis", False):
        raise UnsupportedAttrError(f"{n.where()}: squeeze_axis=True is not supported")
    size = ctx.shape(x)[axis]
    if not k or size % k:
        raise UnsupportedAttrError(f"{n.where()}: {size} channels do not split into {k} equal parts")
    return ctx.add("Split", [x], n, n_out=k, axis=axis, split=[size // k] * k)


@handles("slice_axis")
def slice_axis(ctx: Ctx, n: MxNode) -> Sequence[str]:
    x = ctx.x(n)
    rank = len(ctx.shape(x))
    axis = n.a.int("axis") % rank
    size = ctx.shape(x)[axis]
    begin = n.a.int("begin", 0)
    end = n.a.int("end", None)
    begin = begin + size if begin < 0 else begin
    end = size if end is None else (end + size if end < 0 else end)
    return [ctx.add("Slice", [x], n, axis=axis, start=begin, end=end)]


@handles("Reshape", "reshape")
def reshape(ctx: Ctx, n: MxNode) -> Sequence[str]:
    x = ctx.x(n)
    src = ctx.shape(x)
    if n.a.bool("reverse", False):
        raise UnsupportedAttrError(f"{n.where()}: reverse=True is not supported")
    spec = n.a.ints("shape") or n.a.ints("target_shape")
    if not spec:
        raise UnsupportedAttrError(f"{n.where()}: no shape")
    out: list[int] = []
    i = 0
    j = 0
    while j < len(spec):
        d = spec[j]
        if d == 0:
            out.append(src[i]); i += 1
        elif d == -1:
            out.append(-1); i += 1
        elif d == -2:
            out.extend(src[i:]); i = len(src)
        elif d == -3:
            out.append(src[i] * src[i + 1]); i += 2
        elif d == -4:
            a, b = spec[j + 1], spec[j + 2]
            a = src[i] // b if a == -1 else a
            b = src[i] // a if b == -1 else b
            out.extend([a, b]); i += 1; j += 2
        elif d > 0:
            out.append(d); i += 1
        else:
            raise UnsupportedAttrError(f"{n.where()}: shape code {d}")
        j += 1
    total = int(np.prod(src))
    if out.count(-1) == 1:
        known = int(np.prod([d for d in out if d != -1]))
        out[out.index(-1)] = total // known
    if int(np.prod(out)) != total:
        raise UnsupportedAttrError(f"{n.where()}: cannot reshape {src} to {spec}")
    if len(out) == 2 and out[0] == src[0]:
        return [ctx.add("Flatten", [x], n, axis=1)]
    return [ctx.add("Reshape", [x], n, shape=tuple(out))]


@handles("Pad", "pad")
def pad(ctx: Ctx, n: MxNode) -> Sequence[str]:
    x = ctx.x(n)
    pw = n.a.ints("pad_width")
    if pw is None or len(pw) != 8 or any(pw[:4]):
        raise UnsupportedAttrError(f"{n.where()}: pad_width {pw} (only spatial padding of NCHW)")
    mode = n.a.str("mode", "constant")
    if mode not in ("constant", "edge", "reflect"):
        raise UnsupportedAttrError(f"{n.where()}: mode {mode!r}")
    t, b, l, r = pw[4:]
    return [ctx.add("Pad", [x], n, pads=(t, l, b, r), mode=mode, value=n.a.float("constant_value", 0.0) or 0.0)]


# --------------------------------------------------------------------------- identities
@handles("Dropout")
def dropout(ctx: Ctx, n: MxNode) -> Sequence[str]:
    if n.a.str("mode", "training") == "always":
        raise UnsupportedAttrError(f"{n.where()}: Dropout mode='always' drops at inference too")
    n.a.raw("p"), n.a.raw("axes"), n.a.raw("cudnn_off")
    return [ctx.add("Identity", [ctx.x(n)], n)]


@handles("_copy", "identity", "BlockGrad", "stop_gradient", "_copyto", "MakeLoss", "make_loss")
def identity(ctx: Ctx, n: MxNode) -> Sequence[str]:
    return [ctx.add("Identity", [ctx.x(n)], n)]


# --------------------------------------------------------------------------- arithmetic
_BINARY = {"elemwise_add": "Add", "_Plus": "Add", "_plus": "Add", "_add": "Add", "broadcast_add": "Add",
           "broadcast_plus": "Add", "elemwise_sub": "Sub", "_Minus": "Sub", "_minus": "Sub", "_sub": "Sub",
           "broadcast_sub": "Sub", "broadcast_minus": "Sub", "elemwise_mul": "Mul", "_Mul": "Mul", "_mul": "Mul",
           "broadcast_mul": "Mul", "elemwise_div": "Div", "_Div": "Div", "_div": "Div", "broadcast_div": "Div",
           "broadcast_maximum": "Max", "_maximum": "Max", "broadcast_minimum": "Min", "_minimum": "Min"}


def _binary(ctx: Ctx, n: MxNode) -> Sequence[str]:
    return [ctx.add(_BINARY[n.op], [ctx.x(n, 0), ctx.x(n, 1)], n)]


for _op in _BINARY:
    handles(_op)(_binary)


@handles("add_n", "ElementWiseSum")
def add_n(ctx: Ctx, n: MxNode) -> Sequence[str]:
    xs = [ctx.x(n, i) for i in range(len(n.inputs))]
    y = xs[0]
    for i, t in enumerate(xs[1:]):
        y = ctx.add("Add", [y, t], n, "" if i == len(xs) - 2 else f"add{i}")
    return [y]


_SCALAR = {"_plus_scalar": ("Add", False), "_PlusScalar": ("Add", False), "_minus_scalar": ("Sub", False),
           "_MinusScalar": ("Sub", False), "_rminus_scalar": ("Sub", True), "_RMinusScalar": ("Sub", True),
           "_mul_scalar": ("Mul", False), "_MulScalar": ("Mul", False), "_div_scalar": ("Div", False),
           "_DivScalar": ("Div", False), "_rdiv_scalar": ("Div", True), "_RDivScalar": ("Div", True),
           "_maximum_scalar": ("Max", False), "_minimum_scalar": ("Min", False)}


def _scalar(ctx: Ctx, n: MxNode) -> Sequence[str]:
    op, rev = _SCALAR[n.op]
    c = ctx.const(f"{n.name}/scalar", np.asarray(n.a.float("scalar")))
    n.a.raw("is_int")
    x = ctx.x(n)
    return [ctx.add(op, [c, x] if rev else [x, c], n)]


for _op in _SCALAR:
    handles(_op)(_scalar)
