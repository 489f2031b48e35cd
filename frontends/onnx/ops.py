"""ONNX op handlers (image classifiers) and numpy folding of constant sub-graphs."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from xconv.errors import UnsupportedAttrError

from .graph import Ctx, Value, _check, _where, handles, pads_of


def _two(v: Sequence[int], node: Any, what: str) -> tuple[int, int]:
    v = list(v)
    if len(v) != 2:
        raise UnsupportedAttrError(f"{_where(node)}: {what}={v} is not 2-D (only 2-D spatial ops)")
    return (int(v[0]), int(v[1]))


# --------------------------------------------------------------------------- constants
@handles("Constant")
def constant(ctx: Ctx, n: Any) -> Sequence[Value]:
    a = ctx.attrs(n)
    if "value" in a:
        from onnx import numpy_helper  # noqa: PLC0415
        return [numpy_helper.to_array(n.attribute[0].t)]
    for k in ("value_float", "value_int"):
        if k in a:
            return [np.asarray(a[k])]
    for k in ("value_floats", "value_ints"):
        if k in a:
            return [np.asarray(a[k])]
    raise UnsupportedAttrError(f"{_where(n)}: constant kind {sorted(a)}")


@handles("Shape")
def shape(ctx: Ctx, n: Any) -> Sequence[Value]:
    v = ctx.v(n, 0)
    s = np.asarray(v.shape if isinstance(v, np.ndarray) else ctx.shape(v), np.int64)
    a = ctx.attrs(n)
    return [s[a.get("start", 0):a.get("end", len(s))]]


def _fold(ctx: Ctx, n: Any) -> list[np.ndarray] | None:
    """All inputs constant -> the numpy result, else None."""
    r = _fold_raw(ctx, n)
    return None if r is None else [np.asarray(v) for v in r]


def _fold_raw(ctx: Ctx, n: Any) -> list[np.ndarray] | None:
    vals = [ctx.v(n, i) for i in range(len(n.input))]
    if not all(v is None or isinstance(v, np.ndarray) for v in vals):
        return None
    a = ctx.attrs(n)
    op = n.op_type
    x = vals[0]
    if op == "Gather":
        return [np.take(x, vals[1].astype(np.int64), axis=a.get("axis", 0))]
    if op == "Unsqueeze":
        axes = a.get("axes") if "axes" in a else [int(v) for v in vals[1]]
        out = x
        rank = np.ndim(x) + len(axes)
        for ax in sorted(int(v) % rank for v in axes):
            out = np.expand_dims(out, ax)
        return [out]
    if op == "Squeeze":
        axes = a.get("axes") if "axes" in a else (None if len(vals) < 2 or vals[1] is None else list(vals[1]))
        return [np.squeeze(x, axis=tuple(int(v) for v in axes) if axes is not None else None)]
    if op == "Concat":
        return [np.concatenate([np.atleast_1d(v) for v in vals], axis=a.get("axis", 0))]
    if op == "Cast":
        from onnx import helper  # noqa: PLC0415
        return [x.astype(helper.tensor_dtype_to_np_dtype(a["to"]))]
    if op in ("Add", "Sub", "Mul", "Div"):
        f = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide}[op]
        r = f(vals[0], vals[1])
        if op == "Div" and vals[0].dtype.kind in "iu":
            r = (vals[0] // vals[1]).astype(vals[0].dtype)
        return [np.asarray(r).astype(np.result_type(vals[0], vals[1]))]
    if op == "Reshape":
        return [x.reshape(_reshape_target(x.shape, vals[1], a.get("allowzero", 0)))]
    if op == "Slice":
        starts, ends = vals[1], vals[2]
        axes = vals[3] if len(vals) > 3 and vals[3] is not None else range(len(starts))
        steps = vals[4] if len(vals) > 4 and vals[4] is not None else [1] * len(starts)
        sl = [slice(None)] * x.ndim
        for s, e, ax, st in zip(starts, ends, axes, steps):
            sl[int(ax)] = slice(int(s), int(e), int(st))
        return [x[tuple(sl)]]
    if op == "ConstantOfShape":
        from onnx import numpy_helper  # noqa: PLC0415
        val = numpy_helper.to_array(n.attribute[0].t) if n.attribute else np.zeros(1, np.float32)
        return [np.full(tuple(int(v) for v in x), val.reshape(-1)[0], dtype=val.dtype)]
    if op in ("Identity", "Dropout"):
        return [x]
    return None


def _reshape_target(src: Sequence[int], spec: np.ndarray, allowzero: int = 0) -> tuple[int, ...]:
    out = [int(v) for v in spec]
    if not allowzero:
        out = [src[i] if v == 0 else v for i, v in enumerate(out)]
    if -1 in out:
        known = int(np.prod([v for v in out if v != -1]))
        out[out.index(-1)] = int(np.prod(src)) // known
    return tuple(out)


def _folding(*ops: str):  # noqa: ANN202
    """Handler for ``ops`` that folds constant inputs, else calls the wrapped handler."""
    def deco(fn):  # noqa: ANN001, ANN202
        def h(ctx: Ctx, n: Any) -> Sequence[Value]:
            r = _fold(ctx, n)
            return r if r is not None else fn(ctx, n)
        handles(*ops)(h)
        return fn
    return deco


def _const_only(ctx: Ctx, n: Any) -> Sequence[Value]:
    raise UnsupportedAttrError(f"{_where(n)}: only supported on constants (shape computations)")


for _op in ("Gather", "Unsqueeze", "Squeeze", "Cast", "ConstantOfShape"):
    _folding(_op)(_const_only)


# --------------------------------------------------------------------------- convolution / dense
@handles("Conv")
def conv(ctx: Ctx, n: Any) -> Sequence[Value]:
    a = ctx.attrs(n)
    _check(n, a, {"kernel_shape", "strides", "pads", "dilations", "group", "auto_pad"})
    x = ctx.act(n, 0)
    w = ctx.need_const(n, 1, "the weight")
    if w.ndim != 4:
        raise UnsupportedAttrError(f"{_where(n)}: only 2-D convolution")
    _, _, h, wd = ctx.shape(x)
    k = _two(a.get("kernel_shape", w.shape[2:]), n, "kernel_shape")
    s = _two(a.get("strides", [1, 1]), n, "strides")
    d = _two(a.get("dilations", [1, 1]), n, "dilations")
    ins = [x, ctx.param(n, 1, w)]
    bias = ctx.const(n, 2)
    if bias is not None:
        ins.append(ctx.param(n, 2, bias))
    return [ctx.add("Conv", ins, n, kernel_shape=k, strides=s, dilations=d, group=int(a.get("group", 1)),
                    pads=pads_of(n, a, (h, wd), k, s, d))]


@handles("Gemm")
def gemm(ctx: Ctx, n: Any) -> Sequence[Value]:
    a = ctx.attrs(n)
    _check(n, a, {"alpha", "beta", "transA", "transB"})
    if a.get("transA", 0):
        raise UnsupportedAttrError(f"{_where(n)}: transA=1 is not supported")
    x = ctx.act(n, 0)
    w = ctx.need_const(n, 1, "B (the weight)")
    w = (w if a.get("transB", 0) else w.T) * np.float32(a.get("alpha", 1.0))
    ins = [x, ctx.param(n, 1, np.ascontiguousarray(w))]
    c = ctx.const(n, 2)
    if c is not None:
        c = np.broadcast_to(c * np.float32(a.get("beta", 1.0)), (1, w.shape[0])).reshape(-1)
        ins.append(ctx.param(n, 2, np.ascontiguousarray(c)))
    elif ctx.v(n, 2) is not None:
        raise UnsupportedAttrError(f"{_where(n)}: C must be a constant")
    return [ctx.add("Gemm", ins, n)]


@handles("MatMul")
def matmul(ctx: Ctx, n: Any) -> Sequence[Value]:
    x = ctx.act(n, 0)
    w = ctx.need_const(n, 1, "the second operand")
    if w.ndim != 2 or len(ctx.shape(x)) != 2:
        raise UnsupportedAttrError(f"{_where(n)}: only [N, K] x constant [K, M]")
    return [ctx.add("Gemm", [x, ctx.param(n, 1, np.ascontiguousarray(w.T))], n)]


@handles("BatchNormalization")
def batch_norm(ctx: Ctx, n: Any) -> Sequence[Value]:
    a = ctx.attrs(n)
    _check(n, a, {"epsilon", "momentum", "training_mode", "spatial", "is_test", "consumed_inputs"})
    if a.get("training_mode", 0):
        raise UnsupportedAttrError(f"{_where(n)}: training_mode=1")
    x = ctx.act(n, 0)
    ins = [x] + [ctx.param(n, i, ctx.need_const(n, i, "a BN parameter").reshape(-1)) for i in range(1, 5)]
    return [ctx.add("BatchNormalization", ins, n, epsilon=float(a.get("epsilon", 1e-5)))]


# --------------------------------------------------------------------------- activations
_UNARY = {"Relu": "Relu", "Sigmoid": "Sigmoid", "Tanh": "Tanh", "HardSwish": "HardSwish", "Exp": "Exp",
          "Abs": "Abs", "Sqrt": "Sqrt", "Neg": "Neg"}


def _unary(ctx: Ctx, n: Any) -> Sequence[Value]:
    return [ctx.add(_UNARY[n.op_type], [ctx.act(n)], n)]


for _op in _UNARY:
    handles(_op)(_unary)


@handles("Identity", "Dropout")
def identity(ctx: Ctx, n: Any) -> Sequence[Value]:
    r = _fold(ctx, n)
    if r is not None:
        return r
    return [ctx.add("Identity", [ctx.act(n)], n)]


@handles("LeakyRelu")
def leaky(ctx: Ctx, n: Any) -> Sequence[Value]:
    return [ctx.add("LeakyRelu", [ctx.act(n)], n, alpha=float(ctx.attrs(n).get("alpha", 0.01)))]


@handles("Elu")
def elu(ctx: Ctx, n: Any) -> Sequence[Value]:
    return [ctx.add("Elu", [ctx.act(n)], n, alpha=float(ctx.attrs(n).get("alpha", 1.0)))]


@handles("HardSigmoid")
def hard_sigmoid(ctx: Ctx, n: Any) -> Sequence[Value]:
    a = ctx.attrs(n)
    return [ctx.add("HardSigmoid", [ctx.act(n)], n, alpha=float(a.get("alpha", 0.2)), beta=float(a.get("beta", 0.5)))]


@handles("Clip")
def clip(ctx: Ctx, n: Any) -> Sequence[Value]:
    a = ctx.attrs(n)
    lo, hi = a.get("min", -np.inf), a.get("max", np.inf)
    if len(n.input) > 1 and n.input[1]:
        lo = float(ctx.need_const(n, 1, "min"))
    if len(n.input) > 2 and n.input[2]:
        hi = float(ctx.need_const(n, 2, "max"))
    return [ctx.add("Clip", [ctx.act(n)], n, min=float(lo), max=float(hi))]


@handles("PRelu")
def prelu(ctx: Ctx, n: Any) -> Sequence[Value]:
    x = ctx.act(n)
    s = ctx.need_const(n, 1, "the slope").reshape(-1)
    return [ctx.add("PRelu", [x, ctx.param(n, 1, s)], n)]


@handles("Softmax")
def softmax(ctx: Ctx, n: Any) -> Sequence[Value]:
    x = ctx.act(n)
    rank = len(ctx.shape(x))
    axis = int(ctx.attrs(n).get("axis", -1 if ctx.opset >= 13 else 1)) % rank
    if ctx.opset < 13 and axis != rank - 1:
        raise UnsupportedAttrError(f"{_where(n)}: opset {ctx.opset} Softmax flattens from axis {axis}; only the "
                                   "last axis is supported")
    return [ctx.add("Softmax", [x], n, axis=axis)]


# --------------------------------------------------------------------------- pooling
def _pool(ctx: Ctx, n: Any, op: str) -> Sequence[Value]:
    a = ctx.attrs(n)
    _check(n, a, {"kernel_shape", "strides", "pads", "ceil_mode", "count_include_pad", "auto_pad", "dilations",
                  "storage_order"})
    if any(v != 1 for v in a.get("dilations", [1, 1])):
        raise UnsupportedAttrError(f"{_where(n)}: dilated pooling is not supported")
    x = ctx.act(n)
    _, _, h, w = ctx.shape(x)
    k = _two(a["kernel_shape"], n, "kernel_shape")
    s = _two(a.get("strides", [1, 1]), n, "strides")
    attrs: dict[str, Any] = dict(kernel_shape=k, strides=s, pads=pads_of(n, a, (h, w), k, s, (1, 1)),
                                 ceil_mode=bool(a.get("ceil_mode", 0)))
    if op == "AveragePool":
        attrs["count_include_pad"] = bool(a.get("count_include_pad", 0))
    return [ctx.add(op, [x], n, **attrs)]


@handles("MaxPool")
def max_pool(ctx: Ctx, n: Any) -> Sequence[Value]:
    if len(n.output) > 1 and n.output[1]:
        raise UnsupportedAttrError(f"{_where(n)}: the Indices output is not supported")
    return _pool(ctx, n, "MaxPool")


@handles("AveragePool")
def avg_pool(ctx: Ctx, n: Any) -> Sequence[Value]:
    return _pool(ctx, n, "AveragePool")


@handles("GlobalAveragePool", "GlobalMaxPool")
def global_pool(ctx: Ctx, n: Any) -> Sequence[Value]:
    return [ctx.add(n.op_type, [ctx.act(n)], n)]


@handles("ReduceMean")
def reduce_mean(ctx: Ctx, n: Any) -> Sequence[Value]:
    a = ctx.attrs(n)
    x = ctx.act(n)
    axes = a.get("axes") if "axes" in a else [int(v) for v in ctx.need_const(n, 1, "axes")]
    rank = len(ctx.shape(x))
    axes = sorted(int(v) % rank for v in axes)
    keep = bool(a.get("keepdims", 1))
    if rank == 4 and axes == [2, 3]:
        y = ctx.add("GlobalAveragePool", [x], n, "" if keep else "gap")
        return [y if keep else ctx.add("Flatten", [y], n, axis=1)]
    return [ctx.add("ReduceMean", [x], n, axes=axes, keepdims=keep)]


# --------------------------------------------------------------------------- shapes
@handles("Flatten")
def flatten(ctx: Ctx, n: Any) -> Sequence[Value]:
    axis = int(ctx.attrs(n).get("axis", 1))
    v = ctx.v(n, 0)
    if isinstance(v, np.ndarray):
        return [v.reshape(int(np.prod(v.shape[:axis])), -1)]
    if axis != 1:
        raise UnsupportedAttrError(f"{_where(n)}: Flatten axis {axis} (only 1)")
    return [ctx.add("Flatten", [ctx.act(n)], n, axis=1)]


@_folding("Reshape")
def reshape(ctx: Ctx, n: Any) -> Sequence[Value]:
    x = ctx.act(n)
    spec = ctx.need_const(n, 1, "the target shape")
    src = ctx.shape(x)
    out = _reshape_target(src, spec, ctx.attrs(n).get("allowzero", 0))
    if len(out) == 2 and out[0] == src[0] and len(src) > 2:
        return [ctx.add("Flatten", [x], n, axis=1)]
    return [ctx.add("Reshape", [x], n, shape=out)]


@handles("Transpose")
def transpose(ctx: Ctx, n: Any) -> Sequence[Value]:
    v = ctx.v(n, 0)
    perm = ctx.attrs(n).get("perm")
    if isinstance(v, np.ndarray):
        return [np.transpose(v, perm)]
    return [ctx.add("Transpose", [ctx.act(n)], n, perm=perm or list(range(len(ctx.shape(v))))[::-1])]


@_folding("Concat")
def concat(ctx: Ctx, n: Any) -> Sequence[Value]:
    xs = [ctx.act(n, i) for i in range(len(n.input))]
    rank = len(ctx.shape(xs[0]))
    return [ctx.add("Concat", xs, n, axis=int(ctx.attrs(n)["axis"]) % rank)]


@handles("Split")
def split(ctx: Ctx, n: Any) -> Sequence[Value]:
    a = ctx.attrs(n)
    x = ctx.act(n)
    rank = len(ctx.shape(x))
    axis = int(a.get("axis", 0)) % rank
    size = ctx.shape(x)[axis]
    parts = a.get("split")
    if parts is None and len(n.input) > 1 and n.input[1]:
        parts = [int(v) for v in ctx.need_const(n, 1, "split")]
    if parts is None:
        k = int(a.get("num_outputs", len(n.output)))
        parts = [size // k] * k
    return ctx.b.add("Split", [x], name=n.name or n.output[0], source=n.name, n_out=len(parts), axis=axis,
                     split=list(parts))


@_folding("Slice")
def slice_(ctx: Ctx, n: Any) -> Sequence[Value]:
    x = ctx.act(n)
    starts = ctx.need_const(n, 1, "starts")
    ends = ctx.need_const(n, 2, "ends")
    rank = len(ctx.shape(x))
    axes = ctx.const(n, 3)
    axes = list(range(len(starts))) if axes is None else [int(v) % rank for v in axes]
    steps = ctx.const(n, 4)
    if steps is not None and any(int(v) != 1 for v in steps):
        raise UnsupportedAttrError(f"{_where(n)}: steps other than 1")
    y = x
    for s, e, ax in zip(starts, ends, axes):
        size = ctx.shape(y)[ax]
        s, e = int(s), int(e)
        s = max(0, min(size, s + size if s < 0 else s))
        e = max(0, min(size, e + size if e < 0 else e))
        if (s, e) != (0, size):
            y = ctx.add("Slice", [y], n, f"axis{ax}", axis=ax, start=s, end=e)
    return [y]


@handles("Pad")
def pad(ctx: Ctx, n: Any) -> Sequence[Value]:
    a = ctx.attrs(n)
    x = ctx.act(n)
    p = list(a["pads"]) if "pads" in a else [int(v) for v in ctx.need_const(n, 1, "pads")]
    mode = a.get("mode", b"constant")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    value = float(a.get("value", 0.0))
    if len(n.input) > 2 and n.input[2]:
        value = float(ctx.need_const(n, 2, "the pad value"))
    if len(p) != 8 or any(p[i] for i in (0, 1, 4, 5)):
        raise UnsupportedAttrError(f"{_where(n)}: pads {p} (only the spatial dims of NCHW)")
    return [ctx.add("Pad", [x], n, pads=(p[2], p[3], p[6], p[7]), mode=mode, value=value)]


# --------------------------------------------------------------------------- arithmetic
_BIN = {"Add": "Add", "Sub": "Sub", "Mul": "Mul", "Div": "Div", "Max": "Max", "Min": "Min"}


def _binary(ctx: Ctx, n: Any) -> Sequence[Value]:
    r = _fold(ctx, n)
    if r is not None:
        return r
    if len(n.input) != 2:
        raise UnsupportedAttrError(f"{_where(n)}: {len(n.input)} inputs (only 2)")
    ins = []
    for i in range(2):
        v = ctx.v(n, i)
        ins.append(ctx.param(n, i, v) if isinstance(v, np.ndarray) else v)
    return [ctx.add(_BIN[n.op_type], ins, n)]


for _op in _BIN:
    handles(_op)(_binary)
