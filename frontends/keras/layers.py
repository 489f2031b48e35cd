"""Handlers of the Keras layers used by ``keras.applications`` classifiers (and
their near relatives), registered by class name in :data:`graph.HANDLERS`.

Every handler reads the config keys that change the numbers and refuses
values it does not implement (``data_format='channels_first'``, a ReLU
``threshold``, ...) with an error naming the layer.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from xconv.errors import UnsupportedAttrError, UnsupportedOpError

from ..tensorflow.common import depthwise_to_oihw, hwio_to_oihw, nhwc_flatten_rows_to_nchw, tf_pads
from .graph import FRAMEWORK, IDENTITY_LAYERS, KT, Ctx, register_layer
from .reader import Call, LayerSpec

KERAS_EPSILON = 1e-7  # keras.backend.epsilon(), Keras 2 and 3


# --------------------------------------------------------------------------- helpers
def _pair(v: Any, what: str, layer: LayerSpec) -> tuple[int, int]:
    if isinstance(v, (int, float)):
        return (int(v), int(v))
    v = list(v)
    if len(v) == 1:
        return (int(v[0]), int(v[0]))
    if len(v) != 2:
        raise UnsupportedAttrError(f"{layer.where()}: {what}={v} is not 2-D")
    return (int(v[0]), int(v[1]))


def _channels_last(layer: LayerSpec) -> None:
    fmt = layer.config.get("data_format") or "channels_last"
    if fmt != "channels_last":
        raise UnsupportedAttrError(f"{layer.where()}: data_format={fmt!r} is not supported (keras.applications "
                                   "and TF's CPU kernels use channels_last; re-save the model channels_last)")


def _one(ctx: Ctx, layer: LayerSpec, ins: list[KT], rank: int | tuple[int, ...] | None = None) -> KT:
    if len(ins) != 1:
        raise UnsupportedAttrError(f"{layer.where()}: called on {len(ins)} tensors, expected 1")
    x = ctx.act(ins[0], layer)
    if rank is not None:
        ranks = (rank,) if isinstance(rank, int) else rank
        if len(ctx.shape(x)) not in ranks:
            raise UnsupportedAttrError(f"{layer.where()}: input of rank {len(ctx.shape(x))} (Keras shape "
                                       f"{ctx.kshape(x)}); this layer is supported on rank {ranks} only")
    return x


def _act_name(act: Any) -> str | None:
    if isinstance(act, dict):  # Keras 3 serialised function
        act = act.get("config") if isinstance(act.get("config"), str) else act.get("class_name")
    return None if act is None else str(act)


def activation(ctx: Ctx, layer: LayerSpec, x: KT, act: Any, suffix: str = "act") -> KT:
    """Apply a Keras activation (by its serialised name) to ``x``."""
    name = _act_name(act)
    if name in (None, "linear"):
        return x
    x = ctx.act(x, layer)
    ins = [x.ir]
    if name == "relu":
        y = ctx.add("Relu", ins, layer, suffix)
    elif name == "relu6":
        y = ctx.add("Clip", ins, layer, suffix, min=0.0, max=6.0)
    elif name == "sigmoid":
        y = ctx.add("Sigmoid", ins, layer, suffix)
    elif name == "tanh":
        y = ctx.add("Tanh", ins, layer, suffix)
    elif name in ("swish", "silu"):
        y = ctx.add("Silu", ins, layer, suffix)
    elif name == "hard_sigmoid":
        # Keras 2: clip(0.2 x + 0.5, 0, 1); Keras 3: relu6(x + 3) / 6
        alpha = 0.2 if ctx.keras_major < 3 else 1.0 / 6.0
        y = ctx.add("HardSigmoid", ins, layer, suffix, alpha=alpha, beta=0.5)
    elif name in ("hard_swish", "hard_silu"):
        y = ctx.add("HardSwish", ins, layer, suffix)
    elif name == "softmax":
        y = ctx.add("Softmax", ins, layer, suffix, axis=1)  # Keras: last axis = IR channel axis for rank 4
    elif name == "elu":
        y = ctx.add("Elu", ins, layer, suffix, alpha=1.0)
    elif name == "leaky_relu":
        y = ctx.add("LeakyRelu", ins, layer, suffix, alpha=0.2)  # keras.activations.leaky_relu default
    elif name == "exponential":
        y = ctx.add("Exp", ins, layer, suffix)
    else:
        raise UnsupportedOpError(FRAMEWORK, [(f"activation '{name}'", layer.name)],
                                 "supported: linear, relu, relu6, sigmoid, tanh, swish/silu, hard_sigmoid, "
                                 "hard_swish/hard_silu, softmax, elu, leaky_relu, exponential")
    return KT(y)


def _bias(ctx: Ctx, layer: LayerSpec, n: int) -> list[str]:
    if not layer.config.get("use_bias", True):
        return []
    return [ctx.param(layer, "bias", lambda: ctx.weight(layer, "bias", (n,)))]


def _padding(layer: LayerSpec) -> str:
    p = str(layer.config.get("padding", "valid")).lower()
    if p not in ("valid", "same"):
        raise UnsupportedAttrError(f"{layer.where()}: padding={p!r} (only 'valid' and 'same' exist in 2-D)")
    return p


# --------------------------------------------------------------------------- convolutions
@register_layer("Conv2D")
def conv2d(ctx: Ctx, layer: LayerSpec, ins: list[KT], call: Call) -> KT:
    _channels_last(layer)
    x = _one(ctx, layer, ins, 4)
    cfg = layer.config
    _, c, h, w = ctx.shape(x)
    k = _pair(cfg["kernel_size"], "kernel_size", layer)
    s = _pair(cfg.get("strides", 1), "strides", layer)
    d = _pair(cfg.get("dilation_rate", 1), "dilation_rate", layer)
    groups = int(cfg.get("groups", 1) or 1)
    filters = int(cfg["filters"])
    kernel = ctx.weight(layer, "kernel", (k[0], k[1], c // groups, filters))
    wt = ctx.param(layer, "kernel", lambda: hwio_to_oihw(kernel))
    y = ctx.add("Conv", [x.ir, wt] + _bias(ctx, layer, filters), layer, kernel_shape=k, strides=s,
                pads=tf_pads(_padding(layer), (h, w), k, s, d), dilations=d, group=groups)
    return activation(ctx, layer, KT(y), cfg.get("activation"))


def _depthwise(ctx: Ctx, layer: LayerSpec, x: KT, kernel_name: str, with_bias: bool) -> str:
    cfg = layer.config
    _, c, h, w = ctx.shape(x)
    k = _pair(cfg["kernel_size"], "kernel_size", layer)
    s = _pair(cfg.get("strides", 1), "strides", layer)
    d = _pair(cfg.get("dilation_rate", 1), "dilation_rate", layer)
    m = int(cfg.get("depth_multiplier", 1))
    kernel = ctx.weight(layer, kernel_name, (k[0], k[1], c, m))
    wt = ctx.param(layer, kernel_name, lambda: depthwise_to_oihw(kernel))
    bias = _bias(ctx, layer, c * m) if with_bias else []
    return ctx.add("Conv", [x.ir, wt] + bias, layer, "depthwise" if not with_bias else "", kernel_shape=k,
                   strides=s, pads=tf_pads(_padding(layer), (h, w), k, s, d), dilations=d, group=c)


@register_layer("DepthwiseConv2D")
def depthwise_conv2d(ctx: Ctx, layer: LayerSpec, ins: list[KT], call: Call) -> KT:
    # Keras 2 configs carry "groups": 1 here (the key Keras 3 refuses); it has no effect on the op
    _channels_last(layer)
    x = _one(ctx, layer, ins, 4)
    y = _depthwise(ctx, layer, x, "depthwise_kernel", True)
    return activation(ctx, layer, KT(y), layer.config.get("activation"))


@register_layer("SeparableConv2D")
def separable_conv2d(ctx: Ctx, layer: LayerSpec, ins: list[KT], call: Call) -> KT:
    _channels_last(layer)
    x = _one(ctx, layer, ins, 4)
    dw = _depthwise(ctx, layer, x, "depthwise_kernel", False)
    cm = ctx.shape(dw)[1]
    filters = int(layer.config["filters"])
    pk = ctx.weight(layer, "pointwise_kernel", (1, 1, cm, filters))
    wt = ctx.param(layer, "pointwise_kernel", lambda: hwio_to_oihw(pk))
    y = ctx.add("Conv", [dw, wt] + _bias(ctx, layer, filters), layer, kernel_shape=(1, 1))
    return activation(ctx, layer, KT(y), layer.config.get("activation"))


@register_layer("Dense")
def dense(ctx: Ctx, layer: LayerSpec, ins: list[KT], call: Call) -> KT:
    if len(ins) != 1:
        raise UnsupportedAttrError(f"{layer.where()}: called on {len(ins)} tensors, expected 1")
    v = ins[0]
    units = int(layer.config["units"])
    if v.flat_src is not None:  # Flatten of NHWC -> permute the weight rows to NCHW order
        _, c, h, w = ctx.shape(v.flat_src)
        kernel = ctx.weight(layer, "kernel", (h * w * c, units))
        wt = ctx.param(layer, "kernel_nchw_rows", lambda: nhwc_flatten_rows_to_nchw(kernel, h, w, c))
        y = ctx.add("Gemm", [v.ir, wt] + _bias(ctx, layer, units), layer)
        return activation(ctx, layer, KT(y), layer.config.get("activation"))
    shape = ctx.shape(v)
    if len(shape) == 2:
        kernel = ctx.weight(layer, "kernel", (shape[1], units))
        wt = ctx.param(layer, "kernel_t", lambda: np.ascontiguousarray(kernel.T))
        y = ctx.add("Gemm", [v.ir, wt] + _bias(ctx, layer, units), layer)
    elif len(shape) == 4:  # Dense on the last (channel) axis = 1x1 convolution
        kernel = ctx.weight(layer, "kernel", (shape[1], units))
        wt = ctx.param(layer, "kernel_1x1", lambda: np.ascontiguousarray(kernel.T.reshape(units, shape[1], 1, 1)))
        y = ctx.add("Conv", [v.ir, wt] + _bias(ctx, layer, units), layer, kernel_shape=(1, 1))
    else:
        raise UnsupportedAttrError(f"{layer.where()}: Dense on a rank-{len(shape)} tensor is not supported")
    return activation(ctx, layer, KT(y), layer.config.get("activation"))


# --------------------------------------------------------------------------- normalisation
def _bn_axis_ok(ctx: Ctx, layer: LayerSpec, x: KT, axis: Any) -> None:
    rank = len(ctx.shape(x))
    if rank not in (2, 4) or ctx.axis(axis, rank, layer) != 1:
        raise UnsupportedAttrError(f"{layer.where()}: axis={axis} on a rank-{rank} tensor; only the channel "
                                   "(last) axis of a 2-D or 4-D tensor is supported")


@register_layer("BatchNormalization")
def batch_norm(ctx: Ctx, layer: LayerSpec, ins: list[KT], call: Call) -> KT:
    x = _one(ctx, layer, ins, (2, 4))
    cfg = layer.config
    _bn_axis_ok(ctx, layer, x, cfg.get("axis", -1))
    if cfg.get("renorm"):
        pass  # renorm only changes training; inference uses the moving statistics
    c = ctx.shape(x)[1]
    ones, zeros = np.ones(c, np.float32), np.zeros(c, np.float32)
    gamma = ctx.param(layer, "gamma", lambda: ctx.weight(layer, "gamma", (c,)) if cfg.get("scale", True) else ones)
    beta = ctx.param(layer, "beta", lambda: ctx.weight(layer, "beta", (c,)) if cfg.get("center", True) else zeros)
    mean = ctx.param(layer, "moving_mean", lambda: ctx.weight(layer, "moving_mean", (c,)))
    var = ctx.param(layer, "moving_variance", lambda: ctx.weight(layer, "moving_variance", (c,)))
    y = ctx.add("BatchNormalization", [x.ir, gamma, beta, mean, var], layer, epsilon=float(cfg.get("epsilon", 1e-3)))
    return KT(y)


def _per_channel(v: Any, c: int, layer: LayerSpec, what: str) -> np.ndarray:
    a = np.asarray(v, np.float64).reshape(-1)
    if a.size == 1:
        a = np.full(c, a[0])
    if a.size != c:
        raise UnsupportedAttrError(f"{layer.where()}: {what} has {a.size} values for {c} channels")
    return a


@register_layer("Normalization")
def normalization(ctx: Ctx, layer: LayerSpec, ins: list[KT], call: Call) -> KT:
    """(x - mean) / max(sqrt(var), epsilon) as an exact BatchNormalization (eps 0)."""
    x = _one(ctx, layer, ins, (2, 4))
    cfg = layer.config
    if cfg.get("invert"):
        raise UnsupportedAttrError(f"{layer.where()}: invert=True (de-normalisation) is not supported")
    _bn_axis_ok(ctx, layer, x, cfg.get("axis", -1) if cfg.get("axis", -1) is not None else -1)
    c = ctx.shape(x)[1]
    if cfg.get("mean") is not None and cfg.get("variance") is not None:
        mean, var = cfg["mean"], cfg["variance"]
    else:
        mean, var = ctx.weight(layer, "mean"), ctx.weight(layer, "variance")
    m = _per_channel(mean, c, layer, "mean")
    sd = np.maximum(np.sqrt(_per_channel(var, c, layer, "variance")), KERAS_EPSILON)
    ins_ = [x.ir, ctx.param(layer, "one", lambda: np.ones(c)), ctx.param(layer, "zero", lambda: np.zeros(c)),
            ctx.param(layer, "mean", lambda: m), ctx.param(layer, "var", lambda: sd * sd)]
    return KT(ctx.add("BatchNormalization", ins_, layer, epsilon=0.0))


@register_layer("Rescaling")
def rescaling(ctx: Ctx, layer: LayerSpec, ins: list[KT], call: Call) -> KT:
    x = _one(ctx, layer, ins)
    shape = ctx.shape(x)
    cfg = layer.config

    def const(v: Any, tag: str) -> str | None:
        a = np.asarray(v, np.float64)
        if a.size == 1:
            return None if float(a.reshape(-1)[0]) == (1.0 if tag == "scale" else 0.0) else \
                ctx.param(layer, tag, lambda: a.reshape(()))
        a = a.reshape(-1)
        target = (1, a.size, 1, 1) if len(shape) == 4 else (1, a.size)
        return ctx.param(layer, tag, lambda: a.reshape(target))

    y = x.ir
    sc, off = const(cfg.get("scale", 1.0), "scale"), const(cfg.get("offset", 0.0), "offset")
    if sc is not None:
        y = ctx.add("Mul", [y, sc], layer, "scale")
    if off is not None:
        y = ctx.add("Add", [y, off], layer, "offset")
    if sc is None and off is None:
        y = ctx.add("Identity", [y], layer)
    return KT(y)


# --------------------------------------------------------------------------- activations
@register_layer("Activation")
def activation_layer(ctx: Ctx, layer: LayerSpec, ins: list[KT], call: Call) -> KT:
    x = _one(ctx, layer, ins)
    y = activation(ctx, layer, x, layer.config.get("activation"), suffix="")
    return y if y.ir != x.ir else KT(ctx.add("Identity", [x.ir], layer))


@register_layer("ReLU")
def relu_layer(ctx: Ctx, layer: LayerSpec, ins: list[KT], call: Call) -> KT:
    x = _one(ctx, layer, ins)
    cfg = layer.config
    mx = cfg.get("max_value")
    slope = float(cfg.get("negative_slope", 0.0) or 0.0)
    th = float(cfg.get("threshold", 0.0) or 0.0)
    if th != 0.0:
        raise UnsupportedAttrError(f"{layer.where()}: threshold={th} has no exact form in the IR (only 0)")
    if slope == 0.0:
        if mx is None:
            return KT(ctx.add("Relu", [x.ir], layer))
        return KT(ctx.add("Clip", [x.ir], layer, min=0.0, max=float(mx)))
    y = ctx.add("LeakyRelu", [x.ir], layer, "leaky" if mx is not None else "", alpha=slope)
    if mx is not None:
        y = ctx.add("Clip", [y], layer, max=float(mx))
    return KT(y)


@register_layer("LeakyReLU")
def leaky_relu_layer(ctx: Ctx, layer: LayerSpec, ins: list[KT], call: Call) -> KT:
    x = _one(ctx, layer, ins)
    cfg = layer.config
    alpha = cfg.get("negative_slope", cfg.get("alpha", 0.3))
    return KT(ctx.add("LeakyRelu", [x.ir], layer, alpha=float(alpha)))


@register_layer("ELU")
def elu_layer(ctx: Ctx, layer: LayerSpec, ins: list[KT], call: Call) -> KT:
    x = _one(ctx, layer, ins)
    return KT(ctx.add("Elu", [x.ir], layer, alpha=float(layer.config.get("alpha", 1.0))))


@register_layer("Softmax")
def softmax_layer(ctx: Ctx, layer: LayerSpec, ins: list[KT], call: Call) -> KT:
    x = _one(ctx, layer, ins)
    rank = len(ctx.shape(x))
    return KT(ctx.add("Softmax", [x.ir], layer, axis=ctx.axis(layer.config.get("axis", -1), rank, layer)))


@register_layer("PReLU")
def prelu_layer(ctx: Ctx, layer: LayerSpec, ins: list[KT], call: Call) -> KT:
    x = _one(ctx, layer, ins, (2, 4))
    c = ctx.shape(x)[1]
    alpha = np.asarray(ctx.weight(layer, "alpha"))
    if alpha.size not in (1, c) or (alpha.ndim and alpha.shape[-1] != alpha.size):
        raise UnsupportedAttrError(f"{layer.where()}: alpha of shape {alpha.shape} varies over space; only a "
                                   "per-channel slope (shared_axes=[1, 2]) is supported")
    slope = ctx.param(layer, "alpha", lambda: alpha.reshape(-1))
    return KT(ctx.add("PRelu", [x.ir, slope], layer))


def _identity(ctx: Ctx, layer: LayerSpec, ins: list[KT], call: Call) -> KT:
    if len(ins) != 1:
        raise UnsupportedAttrError(f"{layer.where()}: called on {len(ins)} tensors, expected 1")
    return ins[0]


for _n in IDENTITY_LAYERS:
    register_layer(_n)(_identity)


# --------------------------------------------------------------------------- padding and pooling
def _pad_spec(v: Any, layer: LayerSpec, what: str) -> tuple[int, int, int, int]:
    """Keras 2-D padding/cropping forms -> (top, left, bottom, right)."""
    if isinstance(v, (int, float)):
        p = int(v)
        return (p, p, p, p)
    v = list(v)
    if len(v) == 2 and all(isinstance(e, (int, float)) for e in v):
        return (int(v[0]), int(v[1]), int(v[0]), int(v[1]))
    if len(v) == 2 and all(isinstance(e, (list, tuple)) and len(e) == 2 for e in v):
        (t, b), (l, r) = v
        return (int(t), int(l), int(b), int(r))
    raise UnsupportedAttrError(f"{layer.where()}: {what}={v!r} is not a 2-D padding")


@register_layer("ZeroPadding2D")
def zero_padding(ctx: Ctx, layer: LayerSpec, ins: list[KT], call: Call) -> KT:
    _channels_last(layer)
    x = _one(ctx, layer, ins, 4)
    return KT(ctx.add("Pad", [x.ir], layer, pads=_pad_spec(layer.config.get("padding", 1), layer, "padding")))


@register_layer("Cropping2D")
def cropping(ctx: Ctx, layer: LayerSpec, ins: list[KT], call: Call) -> KT:
    _channels_last(layer)
    x = _one(ctx, layer, ins, 4)
    t, l, b, r = _pad_spec(layer.config.get("cropping", 0), layer, "cropping")
    return KT(ctx.add("Pad", [x.ir], layer, pads=(-t, -l, -b, -r)))


def _pool(ctx: Ctx, layer: LayerSpec, ins: list[KT], op: str) -> KT:
    _channels_last(layer)
    x = _one(ctx, layer, ins, 4)
    cfg = layer.config
    _, _, h, w = ctx.shape(x)
    k = _pair(cfg.get("pool_size", 2), "pool_size", layer)
    s = _pair(cfg.get("strides") or k, "strides", layer)
    attrs: dict[str, Any] = dict(kernel_shape=k, strides=s, pads=tf_pads(_padding(layer), (h, w), k, s),
                                 ceil_mode=False)
    if op == "AveragePool":
        attrs["count_include_pad"] = False  # TF/Keras SAME averages over real cells only
    return KT(ctx.add(op, [x.ir], layer, **attrs))


@register_layer("MaxPooling2D", "MaxPool2D")
def max_pool(ctx: Ctx, layer: LayerSpec, ins: list[KT], call: Call) -> KT:
    return _pool(ctx, layer, ins, "MaxPool")


@register_layer("AveragePooling2D", "AvgPool2D")
def avg_pool(ctx: Ctx, layer: LayerSpec, ins: list[KT], call: Call) -> KT:
    return _pool(ctx, layer, ins, "AveragePool")


def _global(ctx: Ctx, layer: LayerSpec, ins: list[KT], op: str) -> KT:
    _channels_last(layer)
    x = _one(ctx, layer, ins, 4)
    y = ctx.add(op, [x.ir], layer, "pool" if not layer.config.get("keepdims") else "")
    if not layer.config.get("keepdims"):
        y = ctx.add("Flatten", [y], layer, axis=1)
    return KT(y)


@register_layer("GlobalAveragePooling2D", "GlobalAvgPool2D")
def global_avg_pool(ctx: Ctx, layer: LayerSpec, ins: list[KT], call: Call) -> KT:
    return _global(ctx, layer, ins, "GlobalAveragePool")


@register_layer("GlobalMaxPooling2D", "GlobalMaxPool2D")
def global_max_pool(ctx: Ctx, layer: LayerSpec, ins: list[KT], call: Call) -> KT:
    return _global(ctx, layer, ins, "GlobalMaxPool")


# --------------------------------------------------------------------------- merging
def _merge_inputs(ctx: Ctx, layer: LayerSpec, ins: list[KT], n: int | None = None) -> list[str]:
    xs = [ctx.act(v, layer) for v in ins]
    if len(xs) < 2 or (n is not None and len(xs) != n):
        raise UnsupportedAttrError(f"{layer.where()}: called on {len(xs)} tensors")
    ranks = {len(ctx.shape(x)) for x in xs}
    if len(ranks) != 1:
        raise UnsupportedAttrError(f"{layer.where()}: inputs of different ranks {sorted(ranks)}")
    return [x.ir for x in xs]


def _chain(ctx: Ctx, layer: LayerSpec, op: str, xs: list[str], last_suffix: str = "") -> str:
    y = xs[0]
    for i, x in enumerate(xs[1:]):
        last = i == len(xs) - 2
        y = ctx.add(op, [y, x], layer, last_suffix if last else f"{op.lower()}{i}")
    return y


# n-ary merge layers: a chain of the binary IR op
_MERGE_OPS = {"Add": "Add", "Multiply": "Mul", "Maximum": "Max", "Minimum": "Min"}


def _merge(ctx: Ctx, layer: LayerSpec, ins: list[KT], call: Call) -> KT:
    op = _MERGE_OPS[layer.class_name.rpartition(">")[2]]
    return KT(_chain(ctx, layer, op, _merge_inputs(ctx, layer, ins)))


register_layer(*_MERGE_OPS)(_merge)


@register_layer("Subtract")
def subtract_layer(ctx: Ctx, layer: LayerSpec, ins: list[KT], call: Call) -> KT:
    a, b = _merge_inputs(ctx, layer, ins, 2)
    return KT(ctx.add("Sub", [a, b], layer))


@register_layer("Average")
def average_layer(ctx: Ctx, layer: LayerSpec, ins: list[KT], call: Call) -> KT:
    xs = _merge_inputs(ctx, layer, ins)
    s = _chain(ctx, layer, "Add", xs, "sum")
    k = ctx.param(layer, "inv_n", lambda: np.asarray(1.0 / len(xs)))
    return KT(ctx.add("Mul", [s, k], layer))


@register_layer("Concatenate")
def concatenate(ctx: Ctx, layer: LayerSpec, ins: list[KT], call: Call) -> KT:
    xs = _merge_inputs(ctx, layer, ins)
    rank = len(ctx.shape(xs[0]))
    return KT(ctx.add("Concat", xs, layer, axis=ctx.axis(layer.config.get("axis", -1), rank, layer)))


@register_layer("CustomScaleLayer")
def custom_scale(ctx: Ctx, layer: LayerSpec, ins: list[KT], call: Call) -> KT:
    """keras.applications InceptionResNetV2's residual scaling: ``inputs[0] + inputs[1] * scale``."""
    a, b = _merge_inputs(ctx, layer, ins, 2)
    scale = float(layer.config["scale"])
    k = ctx.param(layer, "scale", lambda: np.asarray(scale))
    return KT(ctx.add("Add", [a, ctx.add("Mul", [b, k], layer, "scale")], layer))


# --------------------------------------------------------------------------- shapes
@register_layer("Flatten")
def flatten(ctx: Ctx, layer: LayerSpec, ins: list[KT], call: Call) -> KT:
    if len(ins) != 1:
        raise UnsupportedAttrError(f"{layer.where()}: called on {len(ins)} tensors, expected 1")
    _channels_last(layer)
    v = ins[0]
    if v.flat_src is not None:
        return v
    shape = ctx.shape(v)
    if len(shape) == 2:
        return v
    if len(shape) != 4:
        raise UnsupportedAttrError(f"{layer.where()}: Flatten of a rank-{len(shape)} tensor is not supported")
    y = ctx.add("Flatten", [v.ir], layer, axis=1)
    return KT(y) if shape[2] * shape[3] == 1 else KT(y, flat_src=v.ir)


@register_layer("Reshape")
def reshape(ctx: Ctx, layer: LayerSpec, ins: list[KT], call: Call) -> KT:
    if len(ins) != 1:
        raise UnsupportedAttrError(f"{layer.where()}: called on {len(ins)} tensors, expected 1")
    v = ins[0]
    ks = ctx.kshape(ctx.act(v, layer)) if v.flat_src is None else (ctx.shape(v)[0], ctx.shape(v)[1])
    n, total = ks[0], int(math.prod(ks[1:]))
    target = [int(d) for d in layer.config["target_shape"]]
    if target.count(-1) == 1:
        known = int(math.prod(d for d in target if d != -1))
        target[target.index(-1)] = total // known
    if int(math.prod(target)) != total:
        raise UnsupportedAttrError(f"{layer.where()}: cannot reshape {ks[1:]} to {target}")
    target_t = tuple(target)
    if v.flat_src is not None:
        _, c, h, w = ctx.shape(v.flat_src)
        if target_t == (total,):
            return v
        if target_t == (h, w, c):
            return KT(v.flat_src)
        v = ctx.act(v, layer)
    shape = ctx.shape(v)
    if tuple(ks[1:]) == target_t:
        return v
    if target_t == (total,):  # a flatten
        return flatten(ctx, layer, [v], call)
    if len(target_t) == 3 and target_t[:2] == (1, 1) and (len(shape) == 2 or shape[2] * shape[3] == 1):
        return KT(ctx.add("Reshape", [v.ir], layer, shape=(n, target_t[2], 1, 1)))
    # general case: into Keras's layout, reshape, back to the IR's
    x = v.ir
    if len(shape) == 4:
        x = ctx.add("Transpose", [x], layer, "to_nhwc", perm=(0, 2, 3, 1))
    x = ctx.add("Reshape", [x], layer, "reshape" if len(target_t) == 3 else "", shape=(n,) + target_t)
    if len(target_t) == 3:
        x = ctx.add("Transpose", [x], layer, perm=(0, 3, 1, 2))
    return KT(x)
