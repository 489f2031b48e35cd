"""One handler per Caffe layer type (BVLC 1.0, BVLC master's Clip/Swish, the
brocolli fork's ReLU6/Pad/Permute/Upsample/HardSigmoid/HardSwish, SENet's Axpy).

Semantics are Caffe's own (read from its layer sources); where the IR spells a
thing differently the handler says how it maps.  Every parameter field is
either read, declared irrelevant to inference in the registration (fillers,
engines, training-only options), or reported by the driver when set.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from xconv.errors import InputFileError, UnsupportedAttrError
from xconv.passes.legalize_pool import caffe_pool_out

from .graph import Ctx, Fields, layer, variant
from .net import CaffeLayer

FILLERS = ("weight_filler", "bias_filler")


def _axis(lay: CaffeLayer, axis: int, rank: int, what: str = "axis") -> int:
    if not -rank <= axis < rank:
        raise InputFileError(f"{lay.where()}: {what} {axis} is out of range for a {rank}-D bottom")
    return axis % rank


def _bad(lay: CaffeLayer, text: str) -> UnsupportedAttrError:
    return UnsupportedAttrError(f"{lay.where()}: {text}")


def _pair(lay: CaffeLayer, p: Fields, square: str, stem: str, default: int | None) -> tuple[int, int]:
    """Caffe's (h, w) from ``square`` (a repeated field of 0-2 values, or a scalar) or ``stem_h``/``stem_w``."""
    h_name, w_name = f"{stem}_h", f"{stem}_w"
    repeated = p.msg.DESCRIPTOR.fields_by_name[square].is_repeated
    vals = [int(v) for v in p(square)] if repeated else ([int(p(square))] if p.has(square) else [])
    if p.has(h_name) or p.has(w_name):
        if vals:
            raise InputFileError(f"{lay.where()}: {square} and {h_name}/{w_name} are both set (Caffe refuses that)")
        hw = []
        for n in (h_name, w_name):
            if p.has(n):
                hw.append(int(p(n)))
            elif default is None:
                raise InputFileError(f"{lay.where()}: {h_name} and {w_name} must be set together")
            else:
                hw.append(default)
        return hw[0], hw[1]
    if not vals:
        if default is None:
            raise InputFileError(f"{lay.where()}: {square} (or {h_name} and {w_name}) is required")
        return default, default
    if len(vals) == 1:
        return vals[0], vals[0]
    if len(vals) == 2:
        return vals[0], vals[1]
    raise _bad(lay, f"{square} has {len(vals)} values: only 2-D (one or two values) is supported")


# --------------------------------------------------------------------------- convolution / inner product
@layer("Convolution", param="convolution_param", ignore=(*FILLERS, "engine", "force_nd_im2col"))
def _conv(ctx: Ctx, lay: CaffeLayer, p: Fields | None) -> list[str]:
    assert p is not None
    x = ctx.x(lay)
    xs = ctx.shape(x)
    if len(xs) != 4:
        raise _bad(lay, f"a {len(xs)}-D bottom {xs}: only 2-D convolution of NCHW blobs is supported")
    _axis(lay, p("axis"), 4)
    if p("axis") % 4 != 1:
        raise _bad(lay, f"axis {p('axis')}: only the channel axis 1 is supported")
    for f in ("width_group", "height_group"):  # brocolli fork: grouped along the spatial axes
        if p.get(f, 1) != 1:
            raise _bad(lay, f"{f}: {p(f)} (the fork's spatial groups) is not supported")
    kh, kw = _pair(lay, p, "kernel_size", "kernel", None)
    ph, pw = _pair(lay, p, "pad", "pad", 0)
    sh, sw = _pair(lay, p, "stride", "stride", 1)
    dil = p("dilation")
    if len(dil) > 2:
        raise _bad(lay, f"dilation has {len(dil)} values: only 2-D is supported")
    dh, dw = (1, 1) if not dil else (dil[0], dil[-1])
    group, n_out, bias = int(p("group")), int(p("num_output")), bool(p("bias_term"))
    c = xs[1]
    if group < 1 or c % group or n_out % group:
        raise InputFileError(f"{lay.where()}: group {group} does not divide {c} input and {n_out} output channels")
    want = [("weight", (n_out, c // group, kh, kw))] + ([("bias", (n_out,))] if bias else [])
    blobs = ctx.blobs(lay, want)
    ins = [x, ctx.const(lay, "weight", blobs[0])] + ([ctx.const(lay, "bias", blobs[1])] if bias else [])
    return [ctx.out("Conv", ins, lay, kernel_shape=(kh, kw), strides=(sh, sw), pads=(ph, pw, ph, pw),
                    dilations=(dh, dw), group=group)]


@layer("InnerProduct", param="inner_product_param", ignore=FILLERS)
def _inner(ctx: Ctx, lay: CaffeLayer, p: Fields | None) -> list[str]:
    assert p is not None
    x = ctx.x(lay)
    xs = ctx.shape(x)
    axis = _axis(lay, p("axis"), len(xs))
    n_out, transpose, bias = int(p("num_output")), bool(p("transpose")), bool(p("bias_term"))
    k = int(np.prod(xs[axis:], dtype=np.int64))
    want = [("weight", (k, n_out) if transpose else (n_out, k))] + ([("bias", (n_out,))] if bias else [])
    blobs = ctx.blobs(lay, want)
    w = blobs[0].T if transpose else blobs[0]  # the IR's Gemm weight is [out, in]
    ins = [ctx.const(lay, "weight", w)] + ([ctx.const(lay, "bias", blobs[1])] if bias else [])
    if axis == 1:
        flat = x if len(xs) == 2 else ctx.add("Flatten", [x], lay, "flatten", axis=1)
        return [ctx.out("Gemm", [flat, *ins], lay)]
    lead = xs[:axis]
    flat = ctx.add("Reshape", [x], lay, "flatten", shape=(int(np.prod(lead, dtype=np.int64)), k))
    y = ctx.add("Gemm", [flat, *ins], lay, "gemm")
    return [ctx.out("Reshape", [y], lay, shape=tuple(lead) + (n_out,))]


# --------------------------------------------------------------------------- pooling
@variant("Pooling")
def _pool_variant(msg: Any) -> str | None:
    return "pool: STOCHASTIC" if msg.pooling_param.pool == 2 else None


@layer("Pooling", param="pooling_param", ignore=("engine",))
def _pool(ctx: Ctx, lay: CaffeLayer, p: Fields | None) -> list[str]:
    assert p is not None
    x = ctx.x(lay)
    xs = ctx.shape(x)
    if len(xs) != 4:
        raise InputFileError(f"{lay.where()}: pooling needs a 4-D bottom, got {xs}")
    method = p("pool")  # MAX=0 AVE=1 (STOCHASTIC is refused before conversion)
    p.get("ceil_mode")
    p.get("round_mode")  # both resolved against the caffemodel's field 13 (rounding.py)
    ceil = ctx.rounding.get(lay.name, True)
    if p("global_pooling"):
        if p.has("kernel_size") or p.has("kernel_h") or p.has("kernel_w"):
            raise InputFileError(f"{lay.where()}: global_pooling with a kernel size (Caffe refuses that)")
        if _pair(lay, p, "pad", "pad", 0) != (0, 0) or _pair(lay, p, "stride", "stride", 1) != (1, 1):
            raise InputFileError(f"{lay.where()}: global_pooling takes only pad 0 and stride 1 (as in Caffe)")
        return [ctx.out("GlobalMaxPool" if method == 0 else "GlobalAveragePool", [x], lay)]
    kh, kw = _pair(lay, p, "kernel_size", "kernel", None)
    ph, pw = _pair(lay, p, "pad", "pad", 0)
    sh, sw = _pair(lay, p, "stride", "stride", 1)
    if ph >= kh or pw >= kw:
        raise InputFileError(f"{lay.where()}: pad ({ph}, {pw}) must be smaller than the kernel ({kh}, {kw})")
    any_pad = bool(ph or pw)
    want = (caffe_pool_out(xs[2], kh, sh, ph, ceil, any_pad), caffe_pool_out(xs[3], kw, sw, pw, ceil, any_pad))
    attrs: dict[str, Any] = dict(kernel_shape=(kh, kw), strides=(sh, sw), pads=(ph, pw, ph, pw), ceil_mode=ceil)
    if method == 1:
        attrs["count_include_pad"] = True  # Caffe divides by the window clipped to the padded extent
    out = ctx.out("MaxPool" if method == 0 else "AveragePool", [x], lay, **attrs)
    got = ctx.shape(out)[2:]
    if tuple(got) != want:
        # no padding, stride > kernel, ceil: Caffe keeps a last window that starts past the input
        raise _bad(lay, f"Caffe pools {xs[2]}x{xs[3]} to {want[0]}x{want[1]} here: with no padding and stride "
                   f"({sh}, {sw}) > kernel ({kh}, {kw}) its last window starts past the input and holds no "
                   f"values (-FLT_MAX or 0); the IR (like PyTorch and ONNX) drops it ({got[0]}x{got[1]}). Change "
                   "the input size, or the stride/kernel, so that no window starts past the input")
    return [out]


# --------------------------------------------------------------------------- normalisation
@layer("BatchNorm", param="batch_norm_param",
       ignore=("moving_average_fraction", *FILLERS, "do_all_reduce"))
def _batchnorm(ctx: Ctx, lay: CaffeLayer, p: Fields | None) -> list[str]:
    assert p is not None
    x = ctx.x(lay)
    xs = ctx.shape(x)
    if len(xs) < 2:
        raise InputFileError(f"{lay.where()}: BatchNorm needs an (N, C, ...) bottom, got {xs}")
    if p.has("use_global_stats") and not p("use_global_stats"):
        raise _bad(lay, "use_global_stats: false normalises with each batch's own statistics; a deploy net uses "
                   "the stored ones: remove the line")
    eps = float(p("eps"))
    c = xs[1]
    mean, var, factor = ctx.blobs(lay, [("mean", (c,)), ("variance", (c,)), ("scale factor", (1,))])
    f = float(factor.reshape(()))
    # Caffe multiplies the stored statistics by 1/blob[2][0], and by 0 when that is 0
    k = 0.0 if f == 0.0 else 1.0 / f
    mean64, var64 = mean.astype(np.float64) * k, var.astype(np.float64) * k
    sc = ctx.fused_scale(lay)
    if sc is not None:
        sp = ctx.open(sc, "scale_param", ("filler", "bias_filler"))
        sp("axis")
        sp("num_axes")  # both 1: checked when fusing
        bias = bool(sp("bias_term"))
        sb = ctx.blobs(sc, [("scale", (c,))] + ([("bias", (c,))] if bias else []))
        gamma, beta = sb[0], (sb[1] if bias else np.zeros(c, np.float32))
        out_of = sc
    else:
        gamma, beta, out_of = np.ones(c, np.float32), np.zeros(c, np.float32), lay
    ins = [x, ctx.const(lay, "gamma", gamma), ctx.const(lay, "beta", beta),
           ctx.const(lay, "mean", mean64), ctx.const(lay, "var", var64)]
    return [ctx.out("BatchNormalization", ins, lay, of=out_of, epsilon=eps)]


@variant("LRN")
def _lrn_variant(msg: Any) -> str | None:
    return "norm_region: WITHIN_CHANNEL" if msg.lrn_param.norm_region == 1 else None


@layer("LRN", param="lrn_param", ignore=("engine",))
def _lrn(ctx: Ctx, lay: CaffeLayer, p: Fields | None) -> list[str]:
    assert p is not None
    p("norm_region")  # WITHIN_CHANNEL is refused before conversion
    size = int(p("local_size"))
    if size % 2 == 0:
        raise InputFileError(f"{lay.where()}: local_size {size} must be odd (Caffe refuses even sizes)")
    x = ctx.x(lay)
    if len(ctx.shape(x)) != 4:
        raise InputFileError(f"{lay.where()}: LRN needs a 4-D bottom, got {ctx.shape(x)}")
    return [ctx.out("LRN", [x], lay, size=size, alpha=float(p("alpha")), beta=float(p("beta")), bias=float(p("k")))]


# --------------------------------------------------------------------------- activations
@layer("ReLU", param="relu_param", ignore=("engine",))
def _relu(ctx: Ctx, lay: CaffeLayer, p: Fields | None) -> list[str]:
    assert p is not None
    slope = float(p("negative_slope"))
    if slope == 0.0:
        return [ctx.out("Relu", [ctx.x(lay)], lay)]
    return [ctx.out("LeakyRelu", [ctx.x(lay)], lay, alpha=slope)]


@layer("Sigmoid", param="sigmoid_param", ignore=("engine",))
def _sigmoid(ctx: Ctx, lay: CaffeLayer, p: Fields | None) -> list[str]:
    return [ctx.out("Sigmoid", [ctx.x(lay)], lay)]


@layer("TanH", param="tanh_param", ignore=("engine",))
def _tanh(ctx: Ctx, lay: CaffeLayer, p: Fields | None) -> list[str]:
    return [ctx.out("Tanh", [ctx.x(lay)], lay)]


@layer("AbsVal")
def _abs(ctx: Ctx, lay: CaffeLayer, p: Fields | None) -> list[str]:
    return [ctx.out("Abs", [ctx.x(lay)], lay)]


@layer("HardSwish")
def _hswish(ctx: Ctx, lay: CaffeLayer, p: Fields | None) -> list[str]:
    # the fork: x * min(1, max(0, x/6 + 0.5)) = x * relu6(x + 3) / 6
    return [ctx.out("HardSwish", [ctx.x(lay)], lay)]


@layer("HardSigmoid", param="hardsigmoid_param")
def _hsigmoid(ctx: Ctx, lay: CaffeLayer, p: Fields | None) -> list[str]:
    assert p is not None
    return [ctx.out("HardSigmoid", [ctx.x(lay)], lay, alpha=float(p("alpha")), beta=float(p("beta")))]


@layer("ELU", param="elu_param")
def _elu(ctx: Ctx, lay: CaffeLayer, p: Fields | None) -> list[str]:
    assert p is not None
    return [ctx.out("Elu", [ctx.x(lay)], lay, alpha=float(p("alpha")))]


@layer("PReLU", param="prelu_param", ignore=("filler",))
def _prelu(ctx: Ctx, lay: CaffeLayer, p: Fields | None) -> list[str]:
    assert p is not None
    x = ctx.x(lay)
    xs = ctx.shape(x)
    shared = bool(p("channel_shared"))
    c = xs[1] if len(xs) >= 2 else 1
    (slope,) = ctx.blobs(lay, [("slope", () if shared else (c,))])  # Caffe's shared slope blob is 0-d
    return [ctx.out("PRelu", [x, ctx.const(lay, "slope", slope.reshape(1 if shared else c))], lay)]


@layer("ReLU6", param="relu6_param")
def _relu6(ctx: Ctx, lay: CaffeLayer, p: Fields | None) -> list[str]:
    assert p is not None
    # the fork: min(max(x, 0) + negative_slope * min(x, 0), threshold)
    slope, top = float(p("negative_slope")), float(p("threshold"))
    x = ctx.x(lay)
    if slope == 0.0:
        return [ctx.out("Clip", [x], lay, min=0.0, max=top)]
    y = ctx.add("LeakyRelu", [x], lay, "leaky", alpha=slope)
    return [ctx.out("Clip", [y], lay, max=top)]


@layer("Clip", param="clip_param")
def _clip(ctx: Ctx, lay: CaffeLayer, p: Fields | None) -> list[str]:
    assert p is not None
    return [ctx.out("Clip", [ctx.x(lay)], lay, min=float(p("min")), max=float(p("max")))]


@layer("Swish", param="swish_param")
def _swish(ctx: Ctx, lay: CaffeLayer, p: Fields | None) -> list[str]:
    assert p is not None
    beta = float(p("beta"))
    x = ctx.x(lay)
    if beta == 1.0:
        return [ctx.out("Silu", [x], lay)]
    bx = ctx.add("Mul", [x, ctx.const(lay, "beta", beta)], lay, "beta_x")
    s = ctx.add("Sigmoid", [bx], lay, "sigmoid")
    return [ctx.out("Mul", [x, s], lay)]


def _affine(ctx: Ctx, lay: CaffeLayer, x: str, scale: float, shift: float, final: bool) -> str:
    """shift + scale * x, as Caffe computes it (scale first); the last node named for the top when ``final``."""
    steps: list[tuple[str, float]] = [(op, v) for op, v, skip in (("Mul", scale, 1.0), ("Add", shift, 0.0))
                                      if v != skip]
    if not steps:
        return x if not final else ctx.out("Identity", [x], lay)
    for k, (op, v) in enumerate(steps):
        c = ctx.const(lay, "scale" if op == "Mul" else "shift", v)
        if final and k == len(steps) - 1:
            x = ctx.out(op, [x, c], lay)
        else:
            x = ctx.add(op, [x, c], lay, "scale" if op == "Mul" else "shift")
    return x


POWERS = (1.0, 2.0, 0.5, -1.0, -0.5)


@layer("Power", param="power_param")
def _power(ctx: Ctx, lay: CaffeLayer, p: Fields | None) -> list[str]:
    assert p is not None
    power, scale, shift = float(p("power")), float(p("scale")), float(p("shift"))
    x = ctx.x(lay)
    if power * scale == 0.0:
        # Caffe fills the constant (shift^power, or 1 when power is 0) without reading x
        # (the IR has no constant-of-shape: x * 0 + value, exact for finite x)
        value = 1.0 if power == 0.0 else math.pow(shift, power)
        zero = ctx.const(lay, "zero", 0.0)
        if value == 0.0:
            return [ctx.out("Mul", [x, zero], lay)]
        return [ctx.out("Add", [ctx.add("Mul", [x, zero], lay, "zero"), ctx.const(lay, "value", value)], lay)]
    if power not in POWERS:
        raise _bad(lay, f"power: {power:g} has no IR form (supported: {', '.join(f'{v:g}' for v in POWERS)})")
    if power == 1.0:
        return [_affine(ctx, lay, x, scale, shift, final=True)]
    z = _affine(ctx, lay, x, scale, shift, final=False)
    if power == 2.0:
        return [ctx.out("Mul", [z, z], lay)]
    if power == 0.5:
        return [ctx.out("Sqrt", [z], lay)]
    one = ctx.const(lay, "one", 1.0)
    if power == -1.0:
        return [ctx.out("Div", [one, z], lay)]
    r = ctx.add("Sqrt", [z], lay, "sqrt")
    return [ctx.out("Div", [one, r], lay)]


@layer("Exp", param="exp_param")
def _exp(ctx: Ctx, lay: CaffeLayer, p: Fields | None) -> list[str]:
    assert p is not None
    base, scale, shift = float(p("base")), float(p("scale")), float(p("shift"))
    if base != -1.0 and base <= 0.0:
        raise InputFileError(f"{lay.where()}: base {base:g} must be positive (or -1 for e)")
    # Caffe: y = outer * exp(inner * x), inner = ln(base) * scale, outer = base^shift
    log_base = 1.0 if base == -1.0 else math.log(base)
    inner = float(np.float32(log_base * scale))
    outer = 1.0 if shift == 0.0 else float(np.float32(math.exp(shift) if base == -1.0 else math.pow(base, shift)))
    x = ctx.x(lay)
    if inner != 1.0:
        x = ctx.add("Mul", [x, ctx.const(lay, "inner", inner)], lay, "inner")
    if outer == 1.0:
        return [ctx.out("Exp", [x], lay)]
    e = ctx.add("Exp", [x], lay, "exp")
    return [ctx.out("Mul", [e, ctx.const(lay, "outer", outer)], lay)]


@layer("Softmax", param="softmax_param", ignore=("engine",))
def _softmax(ctx: Ctx, lay: CaffeLayer, p: Fields | None) -> list[str]:
    assert p is not None
    x = ctx.x(lay)
    return [ctx.out("Softmax", [x], lay, axis=_axis(lay, p("axis"), len(ctx.shape(x))))]


@layer("Dropout", param="dropout_param")
def _dropout(ctx: Ctx, lay: CaffeLayer, p: Fields | None) -> list[str]:
    assert p is not None
    return [ctx.out("Dropout", [ctx.x(lay)], lay, ratio=float(p("dropout_ratio")))]  # the identity at inference


# --------------------------------------------------------------------------- elementwise
EltPROD, EltSUM, EltMAX = 0, 1, 2


def _chain(ctx: Ctx, lay: CaffeLayer, op: str, xs: Sequence[str]) -> str:
    acc = xs[0]
    for k, t in enumerate(xs[1:], 1):
        acc = ctx.out(op, [acc, t], lay) if k == len(xs) - 1 else ctx.add(op, [acc, t], lay, str(k))
    return acc


@layer("Eltwise", param="eltwise_param", ignore=("stable_prod_grad",), bottoms=(2, None))
def _eltwise(ctx: Ctx, lay: CaffeLayer, p: Fields | None) -> list[str]:
    assert p is not None
    xs = [ctx.x(lay, i) for i in range(len(lay.bottoms))]
    shapes = [ctx.shape(t) for t in xs]
    if any(s != shapes[0] for s in shapes):
        raise _bad(lay, f"bottoms of shapes {shapes}: Caffe's Eltwise does not broadcast (it reads past the "
                   "smaller blob); use a Scale/Bias layer with two bottoms for a broadcast product/sum")
    op, coeff = p("operation"), [float(c) for c in p("coeff")]
    if coeff and op != EltSUM:
        raise InputFileError(f"{lay.where()}: coeff is only for operation SUM (Caffe refuses it otherwise)")
    if coeff and len(coeff) != len(xs):
        raise InputFileError(f"{lay.where()}: {len(coeff)} coeff for {len(xs)} bottoms")
    if op == EltPROD:
        return [_chain(ctx, lay, "Mul", xs)]
    if op == EltMAX:
        return [_chain(ctx, lay, "Max", xs)]
    if not coeff or all(c == 1.0 for c in coeff):
        return [_chain(ctx, lay, "Add", xs)]
    if len(xs) == 2 and coeff == [1.0, -1.0]:
        return [ctx.out("Sub", xs, lay)]
    terms = [t if c == 1.0 else ctx.add("Mul", [t, ctx.const(lay, f"coeff{k}", c)], lay, f"coeff{k}")
             for k, (t, c) in enumerate(zip(xs, coeff))]
    if len(terms) == 1:
        return [ctx.out("Identity", terms, lay)]
    return [_chain(ctx, lay, "Add", terms)]


def _producer_input(ctx: Ctx, t: str, want: tuple[int, ...]) -> str | None:
    """When ``t`` is a Flatten/Reshape of a tensor of shape ``want``, that tensor (no reshape back needed)."""
    for n in reversed(ctx.b.nodes):
        if t in n.outputs:
            if n.op in ("Flatten", "Reshape") and ctx.shape(n.inputs[0]) == want:
                return n.inputs[0]
            return None
    return None


def _broadcast_operand(ctx: Ctx, lay: CaffeLayer, x: str, s: str, axis: int) -> str:
    """Bottom 1 of a two-bottom Scale/Bias reshaped to broadcast against bottom 0 from ``axis`` on."""
    xs, ss = ctx.shape(x), ctx.shape(s)
    if tuple(xs[axis:axis + len(ss)]) != tuple(ss):
        raise InputFileError(f"{lay.where()}: bottom 1 of shape {ss} does not match bottom 0 {xs} from axis "
                             f"{axis} on (Caffe needs shape {tuple(xs[axis:axis + len(ss)])} there)")
    target = tuple(ss) + (1,) * (len(xs) - axis - len(ss))
    if target == tuple(ss):
        return s
    src = _producer_input(ctx, s, target)
    return src if src is not None else ctx.add("Reshape", [s], lay, "broadcast", shape=target)


def _learned_shape(lay: CaffeLayer, xs: tuple[int, ...], axis: int, num_axes: int) -> tuple[int, ...]:
    if num_axes < -1:
        raise InputFileError(f"{lay.where()}: num_axes {num_axes} must be >= -1")
    end = len(xs) if num_axes == -1 else axis + num_axes
    if end > len(xs):
        raise InputFileError(f"{lay.where()}: axis {axis} + num_axes {num_axes} run past the {len(xs)}-D bottom")
    return tuple(xs[axis:end])


def _scale_or_bias(ctx: Ctx, lay: CaffeLayer, p: Fields, op: str) -> list[str]:
    x = ctx.x(lay)
    xs = ctx.shape(x)
    axis = _axis(lay, p("axis"), len(xs))
    num_axes = int(p("num_axes"))
    bias_term = bool(p("bias_term")) if op == "Mul" else False
    if len(lay.bottoms) == 2:
        s = _broadcast_operand(ctx, lay, x, ctx.x(lay, 1), axis)
        sshape = ctx.shape(ctx.x(lay, 1))
        blobs = ctx.blobs(lay, [("bias", tuple(sshape))]) if bias_term else []
        if not bias_term:
            return [ctx.out(op, [x, s], lay)]
        y = ctx.add(op, [x, s], lay, "scale")
        bshape = tuple(sshape) + (1,) * (len(xs) - axis - len(sshape))
        return [ctx.out("Add", [y, ctx.const(lay, "bias", blobs[0].reshape(bshape))], lay)]
    if num_axes == 0:
        axis = 0  # a scalar parameter: Caffe ignores the axis
    shape = _learned_shape(lay, xs, axis, num_axes)
    what = "scale" if op == "Mul" else "bias"
    blobs = ctx.blobs(lay, [(what, shape)] + ([("bias", shape)] if bias_term else []))
    bshape = shape + (1,) * (len(xs) - axis - len(shape))
    c = ctx.const(lay, what, blobs[0].reshape(bshape))
    if not bias_term:
        return [ctx.out(op, [x, c], lay)]
    y = ctx.add(op, [x, c], lay, "scale")
    return [ctx.out("Add", [y, ctx.const(lay, "bias", blobs[1].reshape(bshape))], lay)]


@layer("Scale", param="scale_param", ignore=("filler", "bias_filler"), bottoms=(1, 2))
def _scale(ctx: Ctx, lay: CaffeLayer, p: Fields | None) -> list[str]:
    assert p is not None
    return _scale_or_bias(ctx, lay, p, "Mul")


@layer("Bias", param="bias_param", ignore=("filler",), bottoms=(1, 2))
def _bias(ctx: Ctx, lay: CaffeLayer, p: Fields | None) -> list[str]:
    assert p is not None
    return _scale_or_bias(ctx, lay, p, "Add")


@layer("Axpy", bottoms=(3, 3))
def _axpy(ctx: Ctx, lay: CaffeLayer, p: Fields | None) -> list[str]:
    """The SENet authors' layer (their released SE-* prototxts use it): a * x + y, with the channel
    weights ``a`` of shape (N, C, 1, 1) or (N, C) broadcast over x's spatial axes."""
    a, x, y = (ctx.x(lay, i) for i in range(3))
    xs, ys, sa = ctx.shape(x), ctx.shape(y), ctx.shape(a)
    if xs != ys or len(xs) < 2 or tuple(sa[:2]) != tuple(xs[:2]) or any(d != 1 for d in sa[2:]):
        raise InputFileError(f"{lay.where()}: bottoms of shapes {sa}, {xs}, {ys}: Axpy needs a (N, C[, 1, 1]) "
                             "and two equal (N, C, ...) blobs")
    w = _broadcast_operand(ctx, lay, x, a, 0) if len(sa) == 2 else a
    ax = ctx.add("Mul", [x, w], lay, "scale")
    return [ctx.out("Add", [ax, y], lay)]


# --------------------------------------------------------------------------- structure
@layer("Concat", param="concat_param", bottoms=(1, None))
def _concat(ctx: Ctx, lay: CaffeLayer, p: Fields | None) -> list[str]:
    assert p is not None
    xs = [ctx.x(lay, i) for i in range(len(lay.bottoms))]
    rank = len(ctx.shape(xs[0]))
    if p.has("concat_dim"):
        if p.has("axis"):
            raise InputFileError(f"{lay.where()}: both axis and concat_dim are set (Caffe refuses that)")
        axis = _axis(lay, int(p("concat_dim")), rank, "concat_dim")
    else:
        axis = _axis(lay, int(p("axis")), rank)
    if len(xs) == 1:
        return [ctx.out("Identity", xs, lay)]
    return [ctx.out("Concat", xs, lay, axis=axis)]


@layer("Slice", param="slice_param", tops=(1, None))
def _slice(ctx: Ctx, lay: CaffeLayer, p: Fields | None) -> list[str]:
    assert p is not None
    x = ctx.x(lay)
    xs = ctx.shape(x)
    if p.has("slice_dim"):
        if p.has("axis"):
            raise InputFileError(f"{lay.where()}: both axis and slice_dim are set (Caffe refuses that)")
        axis = _axis(lay, int(p("slice_dim")), len(xs), "slice_dim")
    else:
        axis = _axis(lay, int(p("axis")), len(xs))
    dim, n = xs[axis], len(lay.tops)
    points = [int(v) for v in p("slice_point")]
    if points:
        if len(points) != n - 1:
            raise InputFileError(f"{lay.where()}: {len(points)} slice_point for {n} tops (needs {n - 1})")
        bounds = [0, *points, dim]
        sizes = [b - a for a, b in zip(bounds, bounds[1:])]
        if min(sizes) <= 0:
            raise InputFileError(f"{lay.where()}: slice_point {points} do not increase within axis size {dim}")
    else:
        if dim % n:
            raise InputFileError(f"{lay.where()}: axis {axis} of size {dim} does not split equally into {n} tops")
        sizes = [dim // n] * n
    if n == 1:
        return [ctx.out("Identity", [x], lay)]
    return ctx.out_all("Split", [x], lay, axis=axis, split=tuple(sizes))


@layer("Split", tops=(1, None))
def _split(ctx: Ctx, lay: CaffeLayer, p: Fields | None) -> list[str]:
    return [ctx.x(lay)] * len(lay.tops)  # copies: every top is the bottom


@layer("Silence", bottoms=(1, None), tops=(0, 0))
def _silence(ctx: Ctx, lay: CaffeLayer, p: Fields | None) -> list[str]:
    return []


@layer("Flatten", param="flatten_param")
def _flatten(ctx: Ctx, lay: CaffeLayer, p: Fields | None) -> list[str]:
    assert p is not None
    x = ctx.x(lay)
    xs = ctx.shape(x)
    a = _axis(lay, int(p("axis")), len(xs))
    e = _axis(lay, int(p("end_axis")), len(xs), "end_axis")
    if e < a:
        raise InputFileError(f"{lay.where()}: end_axis {e} comes before axis {a}")
    if a == 1 and e == len(xs) - 1:
        return [ctx.out("Flatten", [x], lay, axis=1)]
    shape = tuple(xs[:a]) + (int(np.prod(xs[a:e + 1], dtype=np.int64)),) + tuple(xs[e + 1:])
    return [ctx.out("Reshape", [x], lay, shape=shape)]


def caffe_reshape(lay: CaffeLayer, xs: tuple[int, ...], dims: Sequence[int], axis: int, num_axes: int
                  ) -> tuple[int, ...]:
    """Caffe's Reshape output shape: ``dims`` replace ``num_axes`` axes from ``axis``; 0 copies, -1 infers."""
    rank = len(xs)
    start = axis if axis >= 0 else rank + axis + 1
    if not 0 <= start <= rank:
        raise InputFileError(f"{lay.where()}: axis {axis} is out of range for a {rank}-D bottom")
    end = rank if num_axes == -1 else start + num_axes
    if num_axes < -1 or end > rank:
        raise InputFileError(f"{lay.where()}: num_axes {num_axes} from axis {start} does not fit a {rank}-D bottom")
    mid: list[int] = []
    infer = [i for i, d in enumerate(dims) if d == -1]
    if len(infer) > 1:
        raise InputFileError(f"{lay.where()}: more than one -1 in the shape {list(dims)}")
    for i, d in enumerate(dims):
        if d == 0:
            if start + i >= rank:
                raise InputFileError(f"{lay.where()}: dim {i} is 0 (copy) but the bottom {xs} has no axis {start + i}")
            mid.append(xs[start + i])
        elif d < -1:
            raise InputFileError(f"{lay.where()}: dim {d} in the shape {list(dims)}")
        else:
            mid.append(d)
    out = list(xs[:start]) + mid + list(xs[end:])
    total = int(np.prod(xs, dtype=np.int64))
    if infer:
        known = int(np.prod([d for d in out if d != -1], dtype=np.int64))
        if known == 0 or total % known:
            raise InputFileError(f"{lay.where()}: cannot infer the -1 in {list(dims)} for a bottom of shape {xs}")
        out[start + infer[0]] = total // known
    if int(np.prod(out, dtype=np.int64)) != total:
        raise InputFileError(f"{lay.where()}: shape {tuple(out)} does not hold the {total} values of {xs}")
    return tuple(out)


@layer("Reshape", param="reshape_param")
def _reshape(ctx: Ctx, lay: CaffeLayer, p: Fields | None) -> list[str]:
    assert p is not None
    x = ctx.x(lay)
    xs = ctx.shape(x)
    dims = [int(d) for d in p("shape").dim]
    shape = caffe_reshape(lay, xs, dims, int(p("axis")), int(p("num_axes")))
    return [ctx.out("Reshape", [x], lay, shape=shape)]


@layer("Permute", param="permute_param")
def _permute(ctx: Ctx, lay: CaffeLayer, p: Fields | None) -> list[str]:
    assert p is not None
    x = ctx.x(lay)
    rank = len(ctx.shape(x))
    order = [int(v) for v in p("order")]
    if any(not 0 <= v < rank for v in order) or len(set(order)) != len(order):
        raise InputFileError(f"{lay.where()}: order {order} is not a permutation of axes of a {rank}-D bottom")
    perm = order + [i for i in range(rank) if i not in order]  # the fork appends the axes not named, in order
    if perm == list(range(rank)):
        return [ctx.out("Identity", [x], lay)]
    return [ctx.out("Transpose", [x], lay, perm=tuple(perm))]


PAD_MODES = {0: "constant", 1: "edge", 2: "reflect"}  # PadParameter.PadType CONSTANT, REPLICATE, REFLECT


@layer("Pad", param="pad_param")
def _pad(ctx: Ctx, lay: CaffeLayer, p: Fields | None) -> list[str]:
    assert p is not None
    x = ctx.x(lay)
    xs = ctx.shape(x)
    if len(xs) != 4:
        raise _bad(lay, f"a {len(xs)}-D bottom {xs}: only NCHW padding is supported")
    u, d, left, r = (int(p(f)) for f in ("pad_u", "pad_d", "pad_l", "pad_r"))
    mode = PAD_MODES[int(p("pad_type"))]
    value = float(p("pad_value"))
    pads = (u, left, d, r)
    if min(pads) < 0:
        if max(pads) >= 0 and not all(v < 0 for v in pads):
            raise _bad(lay, f"pads (u, l, d, r) = {pads} mix cropping and padding; the fork crops only when all "
                       "four are negative")
        return [ctx.out("Pad", [x], lay, pads=pads, mode="constant", value=0.0)]  # all negative: a crop
    if mode == "reflect" and (max(u, d) >= xs[2] or max(left, r) >= xs[3]):
        raise InputFileError(f"{lay.where()}: REFLECT padding {pads} needs pads smaller than the input {xs[2:]}")
    return [ctx.out("Pad", [x], lay, pads=pads, mode=mode, value=value if mode == "constant" else 0.0)]


@layer("Upsample", param="upsample_param")
def _upsample(ctx: Ctx, lay: CaffeLayer, p: Fields | None) -> list[str]:
    assert p is not None
    x = ctx.x(lay)
    xs = ctx.shape(x)
    scale, dims = int(p("scale")), int(p("dims_num"))
    if dims != 4 or len(xs) != 4:
        raise _bad(lay, f"dims_num {dims} on a {len(xs)}-D bottom: only 4-D (NCHW) upsampling is supported")
    if scale < 1:
        raise InputFileError(f"{lay.where()}: scale {scale} must be a positive integer")
    # the fork copies input[h // scale][w // scale]: nearest, asymmetric coordinates, floor
    return [ctx.out("Resize", [x], lay, sizes=(xs[2] * scale, xs[3] * scale), mode="nearest",
                    coordinate_transformation_mode="asymmetric", nearest_mode="floor")]
