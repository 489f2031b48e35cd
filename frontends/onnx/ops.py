"""ONNX op handlers (image classifiers) and numpy folding of constant sub-graphs.

Every handler reads its attributes through :func:`_attrs`, which rejects any
attribute the handler does not know; attributes a handler accepts but that
cannot matter at inference (``Dropout.seed``, ``BatchNormalization.momentum``,
``MaxPool.storage_order`` when no Indices output is used) are listed as such.
Inputs that must be constants for the IR (weights, shapes, axes) are read with
``Ctx.need_const``, which names the node when they are computed at run time.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from xconv.errors import UnsupportedAttrError

from .graph import Ctx, Value, _attrs, _opt_const, _rank, _where, handles, pads_of


def _two(v: Sequence[int], node: Any, what: str) -> tuple[int, int]:
    v = list(v)
    if len(v) != 2:
        raise UnsupportedAttrError(f"{_where(node)}: {what}={v} is not 2-D (only 2-D spatial ops)")
    return (int(v[0]), int(v[1]))


# --------------------------------------------------------------------------- constants
@handles("Constant")
def constant(ctx: Ctx, n: Any) -> Sequence[Value]:
    a = _attrs(ctx, n, {"value", "value_float", "value_int", "value_floats", "value_ints", "sparse_value",
                        "value_string", "value_strings"})
    if "value" in a:
        from onnx import numpy_helper  # noqa: PLC0415
        return [numpy_helper.to_array(next(x for x in n.attribute if x.name == "value").t)]
    for k in ("value_float", "value_int", "value_floats", "value_ints"):
        if k in a:
            return [np.asarray(a[k])]
    raise UnsupportedAttrError(f"{_where(n)}: constant kind {sorted(a)} (only numeric tensors)")


@handles("Shape")
def shape(ctx: Ctx, n: Any) -> Sequence[Value]:
    a = _attrs(ctx, n, {"start", "end"})
    v = ctx.v(n, 0)
    s = np.asarray(v.shape if isinstance(v, np.ndarray) else ctx.shape(v), np.int64)
    return [s[int(a.get("start", 0)):int(a.get("end", len(s)))]]


def _unsqueezed(shape: Sequence[int], axes: Sequence[Any]) -> list[int]:
    """``shape`` with 1s inserted at ``axes`` (negative axes count from the end of the output)."""
    out = list(shape)
    rank = len(out) + len(axes)
    for ax in sorted(int(v) % rank for v in axes):
        out.insert(ax, 1)
    return out


def _fold(ctx: Ctx, n: Any) -> list[np.ndarray] | None:
    """All inputs constant -> the numpy result, else None."""
    r = _fold_raw(ctx, n)
    return None if r is None else [np.asarray(v) for v in r]


def _fold_raw(ctx: Ctx, n: Any) -> list[np.ndarray] | None:
    vals = [ctx.v(n, i) for i in range(len(n.input))]
    if not vals or not all(v is None or isinstance(v, np.ndarray) for v in vals):
        return None
    a = ctx.attrs(n)
    op = n.op_type
    x = vals[0]
    if op == "Gather":
        return [np.take(x, vals[1].astype(np.int64), axis=a.get("axis", 0))]
    if op == "Unsqueeze":
        axes = a.get("axes") if "axes" in a else [int(v) for v in vals[1]]
        return [np.reshape(x, _unsqueezed(np.shape(x), axes))]
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
    if op in ("Max", "Min", "Sum", "Mean") and all(v is not None for v in vals):
        f = {"Max": np.maximum, "Min": np.minimum, "Sum": np.add, "Mean": np.add}[op]
        r = vals[0]
        for v in vals[1:]:
            r = f(r, v)
        return [r / len(vals) if op == "Mean" else r]
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
    raise UnsupportedAttrError(f"{_where(n)}: only supported on constants (shape computations); its input "
                               f"'{n.input[0]}' is computed at run time")


for _op in ("Gather", "ConstantOfShape"):
    _folding(_op)(_const_only)


@_folding("Cast")
def cast(ctx: Ctx, n: Any) -> Sequence[Value]:
    from onnx import TensorProto  # noqa: PLC0415
    a = _attrs(ctx, n, {"to", "saturate", "round_mode"})  # saturate/round_mode: float8 targets only
    if a["to"] not in (TensorProto.FLOAT, TensorProto.DOUBLE):  # float32 -> float64 is exact
        raise UnsupportedAttrError(f"{_where(n)}: Cast of a run-time tensor to "
                                   f"{TensorProto.DataType.Name(a['to'])}; the IR computes in float32 only")
    return [ctx.add("Identity", [ctx.act(n)], n)]


def _static_reshape(ctx: Ctx, n: Any, x: str, out: Sequence[int]) -> str:
    """IR Reshape to a complete static shape; Flatten for the (N, ...) -> (N, K) classifier idiom."""
    src = ctx.shape(x)
    out = tuple(int(v) for v in out)
    if any(v <= 0 for v in out):
        raise UnsupportedAttrError(f"{_where(n)}: output shape {out} is empty")
    if out == src:
        return ctx.add("Identity", [x], n)
    if len(out) == 2 and out[0] == src[0] and len(src) > 2:
        return ctx.add("Flatten", [x], n, axis=1)
    return ctx.add("Reshape", [x], n, shape=out)


@_folding("Squeeze")
def squeeze(ctx: Ctx, n: Any) -> Sequence[Value]:
    a = _attrs(ctx, n, {"axes"})
    x = ctx.act(n)
    s = ctx.shape(x)
    axes = a.get("axes") if "axes" in a else _opt_const(ctx, n, 1, "axes")
    drop = {i for i, d in enumerate(s) if d == 1} if axes is None else {int(v) % len(s) for v in axes}
    if any(s[i] != 1 for i in drop):
        raise UnsupportedAttrError(f"{_where(n)}: squeezes axes {sorted(drop)} of {s} that are not 1")
    return [_static_reshape(ctx, n, x, [d for i, d in enumerate(s) if i not in drop])]


@_folding("Unsqueeze")
def unsqueeze(ctx: Ctx, n: Any) -> Sequence[Value]:
    a = _attrs(ctx, n, {"axes"})
    x = ctx.act(n)
    axes = a.get("axes") if "axes" in a else ctx.need_const(n, 1, "axes")
    return [_static_reshape(ctx, n, x, _unsqueezed(ctx.shape(x), axes))]


# --------------------------------------------------------------------------- convolution / dense
@handles("Conv")
def conv(ctx: Ctx, n: Any) -> Sequence[Value]:
    a = _attrs(ctx, n, {"kernel_shape", "strides", "pads", "dilations", "group", "auto_pad"})
    x = ctx.act(n, 0)
    w = ctx.need_const(n, 1, "the weight")
    if w.ndim != 4:
        raise UnsupportedAttrError(f"{_where(n)}: a {w.ndim - 2}-D convolution; only 2-D")
    _rank(ctx, n, x, 4)
    _, _, h, wd = ctx.shape(x)
    k = _two(a.get("kernel_shape", w.shape[2:]), n, "kernel_shape")
    s = _two(a.get("strides", [1, 1]), n, "strides")
    d = _two(a.get("dilations", [1, 1]), n, "dilations")
    ins = [x, ctx.param(n, 1, w)]
    bias = _opt_const(ctx, n, 2, "the bias")
    if bias is not None:
        ins.append(ctx.param(n, 2, bias))
    return [ctx.add("Conv", ins, n, kernel_shape=k, strides=s, dilations=d, group=int(a.get("group", 1)),
                    pads=pads_of(n, a, (h, wd), k, s, d))]


@handles("Gemm")
def gemm(ctx: Ctx, n: Any) -> Sequence[Value]:
    """Y = alpha * A' @ B' + beta * C: B constant (folded into the IR weight with alpha); C a bias
    vector when its rows are all alike, else an Add after the product."""
    a = _attrs(ctx, n, {"alpha", "beta", "transA", "transB"})
    x = ctx.act(n)
    _rank(ctx, n, x, 2, "A")
    if a.get("transA", 0):
        x = ctx.add("Transpose", [x], n, "transA", perm=(1, 0))
    w = ctx.need_const(n, 1, "B (the weight)")
    if w.ndim != 2:
        raise UnsupportedAttrError(f"{_where(n)}: B has shape {w.shape}; Gemm takes a matrix")
    w = (w if a.get("transB", 0) else w.T) * np.float32(a.get("alpha", 1.0))
    ins = [x, ctx.param(n, 1, np.ascontiguousarray(w))]
    beta = float(a.get("beta", 1.0))
    c = ctx.v(n, 2)
    m_rows, n_cols = ctx.shape(x)[0], w.shape[0]
    if isinstance(c, np.ndarray) and beta != 0 and (c.ndim < 2 or c.shape[0] == 1):
        row = c.astype(np.float32).reshape(c.shape[-1:] if c.ndim else ()) * np.float32(beta)
        ins.append(ctx.param(n, 2, np.broadcast_to(row, (n_cols,)).copy()))
        return [ctx.add("Gemm", ins, n)]
    if c is None or beta == 0:
        return [ctx.add("Gemm", ins, n)]
    y = ctx.add("Gemm", ins, n, "matmul")
    if isinstance(c, np.ndarray):
        bias = ctx.param(n, 2, np.broadcast_to(c.astype(np.float32) * np.float32(beta), (m_rows, n_cols)).copy())
    else:
        bias = c if beta == 1 else ctx.add("Mul", [c, ctx.b.param(f"{n.name}/beta", np.float32(beta))], n, "beta")
    return [ctx.add("Add", [y, bias], n)]


@handles("MatMul")
def matmul(ctx: Ctx, n: Any) -> Sequence[Value]:
    """A [..., K] @ constant B [K, M] -> Gemm (leading dims flattened around it)."""
    _attrs(ctx, n, set())
    x = ctx.act(n)
    w = ctx.need_const(n, 1, "the second operand")
    s = ctx.shape(x)
    if w.ndim != 2 or len(s) < 2 or s[-1] != w.shape[0]:
        raise UnsupportedAttrError(f"{_where(n)}: {list(s)} x {list(w.shape)}; only [..., K] x constant [K, M]")
    wt = ctx.param(n, 1, np.ascontiguousarray(w.T))
    if len(s) == 2:
        return [ctx.add("Gemm", [x, wt], n)]
    flat = ctx.add("Reshape", [x], n, "rows", shape=(int(np.prod(s[:-1])), s[-1]))
    y = ctx.add("Gemm", [flat, wt], n, "matmul")
    return [ctx.add("Reshape", [y], n, shape=tuple(s[:-1]) + (w.shape[1],))]


@handles("BatchNormalization")
def batch_norm(ctx: Ctx, n: Any) -> Sequence[Value]:
    a = _attrs(ctx, n, {"epsilon", "momentum", "training_mode", "spatial"})
    if a.get("training_mode", 0):
        raise UnsupportedAttrError(f"{_where(n)}: training_mode=1 (normalises by batch statistics); export the "
                                   "model in eval mode")
    if not a.get("spatial", 1):
        raise UnsupportedAttrError(f"{_where(n)}: spatial=0 (per-element statistics)")
    x = ctx.act(n)
    c = ctx.shape(x)[1] if len(ctx.shape(x)) > 1 else 0
    params = []
    for i in range(1, 5):
        p = ctx.need_const(n, i, "a BN parameter")
        if p.size != c:
            raise UnsupportedAttrError(f"{_where(n)}: parameter {i} has shape {p.shape}; expected [{c}]")
        params.append(ctx.param(n, i, p.reshape(-1)))
    # momentum only updates running statistics in training
    return [ctx.add("BatchNormalization", [x] + params, n, epsilon=float(a.get("epsilon", 1e-5)))]


# --------------------------------------------------------------------------- activations
_UNARY = {"Relu": "Relu", "Sigmoid": "Sigmoid", "Tanh": "Tanh", "HardSwish": "HardSwish", "Exp": "Exp",
          "Abs": "Abs", "Sqrt": "Sqrt", "Neg": "Neg"}


def _unary(ctx: Ctx, n: Any) -> Sequence[Value]:
    _attrs(ctx, n, set())
    return [ctx.add(_UNARY[n.op_type], [ctx.act(n)], n)]


for _op in _UNARY:
    handles(_op)(_unary)


@handles("Identity")
def identity(ctx: Ctx, n: Any) -> Sequence[Value]:
    _attrs(ctx, n, set())
    r = _fold(ctx, n)
    return r if r is not None else [ctx.add("Identity", [ctx.act(n)], n)]


@handles("Dropout")
def dropout(ctx: Ctx, n: Any) -> Sequence[Value]:
    """Identity at inference.  ``ratio`` and ``seed`` only act in training; a true
    ``training_mode`` input (opset 12+) is refused."""
    _attrs(ctx, n, {"ratio", "seed"})
    if ctx.v(n, 2) is not None:
        t = ctx.need_const(n, 2, "training_mode")
        if bool(np.asarray(t).reshape(-1)[0]):
            raise UnsupportedAttrError(f"{_where(n)}: training_mode is true (random dropout)")
    _opt_const(ctx, n, 1, "ratio")
    r = _fold(ctx, n)
    return r if r is not None else [ctx.add("Identity", [ctx.act(n)], n)]


@handles("LeakyRelu")
def leaky(ctx: Ctx, n: Any) -> Sequence[Value]:
    a = _attrs(ctx, n, {"alpha"})
    return [ctx.add("LeakyRelu", [ctx.act(n)], n, alpha=float(a.get("alpha", 0.01)))]


@handles("Elu")
def elu(ctx: Ctx, n: Any) -> Sequence[Value]:
    a = _attrs(ctx, n, {"alpha"})
    return [ctx.add("Elu", [ctx.act(n)], n, alpha=float(a.get("alpha", 1.0)))]


@handles("HardSigmoid")
def hard_sigmoid(ctx: Ctx, n: Any) -> Sequence[Value]:
    a = _attrs(ctx, n, {"alpha", "beta"})
    return [ctx.add("HardSigmoid", [ctx.act(n)], n, alpha=float(a.get("alpha", 0.2)), beta=float(a.get("beta", 0.5)))]


@handles("Clip")
def clip(ctx: Ctx, n: Any) -> Sequence[Value]:
    """Bounds are attributes before opset 11, optional constant inputs from 11 on."""
    a = _attrs(ctx, n, {"min", "max"})
    lo, hi = float(a.get("min", -np.inf)), float(a.get("max", np.inf))
    for i, what in ((1, "min"), (2, "max")):
        v = _opt_const(ctx, n, i, what)
        if v is not None:
            if v.size != 1:
                raise UnsupportedAttrError(f"{_where(n)}: {what} has shape {v.shape}; Clip bounds are scalars")
            if i == 1:
                lo = float(v.reshape(-1)[0])
            else:
                hi = float(v.reshape(-1)[0])
    x = ctx.act(n)
    if lo > hi:  # ONNX: every output is max (numpy.clip order); keep that exact
        lo = hi
    return [ctx.add("Clip", [x], n, min=lo, max=hi)]


@handles("PRelu")
def prelu(ctx: Ctx, n: Any) -> Sequence[Value]:
    """A slope per channel (axis 1) or shared -> IR PRelu; any other broadcastable slope ->
    ``relu(x) - slope * relu(-x)``."""
    _attrs(ctx, n, set())
    x = ctx.act(n)
    s = ctx.need_const(n, 1, "the slope").astype(np.float32)
    xs = ctx.shape(x)
    try:
        np.broadcast_to(s.reshape((1,) * max(0, len(xs) - s.ndim) + s.shape), xs)
    except ValueError:
        raise UnsupportedAttrError(f"{_where(n)}: slope {s.shape} does not broadcast to {xs}") from None
    if s.size == 1:
        return [ctx.add("PRelu", [x, ctx.param(n, 1, s.reshape(1))], n)]
    if len(xs) >= 2 and s.ndim <= len(xs) - 1 and \
            all(d == 1 for i, d in enumerate((1,) * (len(xs) - s.ndim) + s.shape) if i != 1):
        return [ctx.add("PRelu", [x, ctx.param(n, 1, s.reshape(-1))], n)]
    pos = ctx.add("Relu", [x], n, "pos")
    neg = ctx.add("Relu", [ctx.add("Neg", [x], n, "negx")], n, "neg")
    scaled = ctx.add("Mul", [neg, ctx.param(n, 1, s)], n, "slope")
    return [ctx.add("Sub", [pos, scaled], n)]


@handles("Softmax")
def softmax(ctx: Ctx, n: Any) -> Sequence[Value]:
    """Opset 13+: softmax along ``axis``.  Before 13 the input is coerced to 2-D at ``axis``
    (softmax over all of ``shape[axis:]`` jointly): the same as along ``axis`` when the dims
    after it are 1, else Reshape -> Softmax -> Reshape."""
    a = _attrs(ctx, n, {"axis"})
    x = ctx.act(n)
    s = ctx.shape(x)
    rank = len(s)
    axis = int(a.get("axis", -1 if ctx.opset >= 13 else 1))
    if not -rank <= axis < rank:
        raise UnsupportedAttrError(f"{_where(n)}: axis {axis} out of range for rank {rank}")
    axis %= rank
    if ctx.opset >= 13 or int(np.prod(s[axis + 1:])) == 1:
        return [ctx.add("Softmax", [x], n, axis=axis)]
    lead, tail = int(np.prod(s[:axis])), int(np.prod(s[axis:]))
    flat = ctx.add("Reshape", [x], n, "2d", shape=(lead, tail))
    y = ctx.add("Softmax", [flat], n, "softmax", axis=1)
    return [ctx.add("Reshape", [y], n, shape=s)]


@handles("LRN")
def lrn(ctx: Ctx, n: Any) -> Sequence[Value]:
    a = _attrs(ctx, n, {"size", "alpha", "beta", "bias"})
    x = ctx.act(n)
    _rank(ctx, n, x, 4)
    if "size" not in a:
        raise UnsupportedAttrError(f"{_where(n)}: LRN without 'size'")
    return [ctx.add("LRN", [x], n, size=int(a["size"]), alpha=float(a.get("alpha", 1e-4)),
                    beta=float(a.get("beta", 0.75)), bias=float(a.get("bias", 1.0)))]


# --------------------------------------------------------------------------- pooling
def _pool(ctx: Ctx, n: Any, op: str) -> Sequence[Value]:
    a = _attrs(ctx, n, {"kernel_shape", "strides", "pads", "ceil_mode", "count_include_pad", "auto_pad",
                        "dilations", "storage_order"})
    # storage_order only orders the Indices output, which the graph driver refuses when it is used
    if any(v != 1 for v in a.get("dilations", [])):
        raise UnsupportedAttrError(f"{_where(n)}: dilations {a['dilations']}: dilated pooling is not supported")
    x = ctx.act(n)
    k = _two(a["kernel_shape"], n, "kernel_shape")
    _rank(ctx, n, x, 4)
    _, _, h, w = ctx.shape(x)
    s = _two(a.get("strides", [1, 1]), n, "strides")
    attrs: dict[str, Any] = dict(kernel_shape=k, strides=s, pads=pads_of(n, a, (h, w), k, s, (1, 1)),
                                 ceil_mode=bool(a.get("ceil_mode", 0)))
    if op == "AveragePool":
        attrs["count_include_pad"] = bool(a.get("count_include_pad", 0))
    return [ctx.add(op, [x], n, **attrs)]


@handles("MaxPool")
def max_pool(ctx: Ctx, n: Any) -> Sequence[Value]:
    return _pool(ctx, n, "MaxPool")


@handles("AveragePool")
def avg_pool(ctx: Ctx, n: Any) -> Sequence[Value]:
    return _pool(ctx, n, "AveragePool")


@handles("GlobalAveragePool", "GlobalMaxPool")
def global_pool(ctx: Ctx, n: Any) -> Sequence[Value]:
    _attrs(ctx, n, set())
    x = ctx.act(n)
    _rank(ctx, n, x, 4)
    return [ctx.add(n.op_type, [x], n)]


@handles("ReduceMean")
def reduce_mean(ctx: Ctx, n: Any) -> Sequence[Value]:
    """``axes`` an attribute before opset 18, an optional constant input from 18 on; no axes
    reduce everything unless ``noop_with_empty_axes``."""
    a = _attrs(ctx, n, {"axes", "keepdims", "noop_with_empty_axes"})
    x = ctx.act(n)
    rank = len(ctx.shape(x))
    axes = a.get("axes") if "axes" in a else _opt_const(ctx, n, 1, "axes")
    if axes is None or len(axes) == 0:
        if a.get("noop_with_empty_axes", 0):
            return [ctx.add("Identity", [x], n)]
        axes = range(rank)
    if any(not -rank <= int(v) < rank for v in axes):
        raise UnsupportedAttrError(f"{_where(n)}: axes {list(axes)} out of range for rank {rank}")
    axes = sorted({int(v) % rank for v in axes})
    keep = bool(a.get("keepdims", 1))
    if rank == 4 and axes == [2, 3]:
        y = ctx.add("GlobalAveragePool", [x], n, "" if keep else "gap")
        return [y if keep else ctx.add("Flatten", [y], n, axis=1)]
    return [ctx.add("ReduceMean", [x], n, axes=axes, keepdims=keep)]


# --------------------------------------------------------------------------- shapes
@handles("Flatten")
def flatten(ctx: Ctx, n: Any) -> Sequence[Value]:
    a = _attrs(ctx, n, {"axis"})
    axis = int(a.get("axis", 1))
    v = ctx.v(n, 0)
    rank = np.ndim(v) if isinstance(v, np.ndarray) else len(ctx.shape(ctx.act(n)))
    if not -rank <= axis <= rank:
        raise UnsupportedAttrError(f"{_where(n)}: axis {axis} out of range for rank {rank}")
    axis = axis + rank if axis < 0 else axis
    if isinstance(v, np.ndarray):
        return [v.reshape(int(np.prod(v.shape[:axis])), -1)]
    x = ctx.act(n)
    s = ctx.shape(x)
    if axis == 1:
        return [ctx.add("Flatten", [x], n, axis=1)]
    return [_static_reshape(ctx, n, x, (int(np.prod(s[:axis])), int(np.prod(s[axis:]))))]


@_folding("Reshape")
def reshape(ctx: Ctx, n: Any) -> Sequence[Value]:
    a = _attrs(ctx, n, {"allowzero", "shape"})
    x = ctx.act(n)
    if "shape" in a:  # opset < 5
        spec = np.asarray(a["shape"], np.int64)
    else:
        spec = ctx.need_const(n, 1, "the target shape")
    src = ctx.shape(x)
    if list(spec).count(-1) > 1:
        raise UnsupportedAttrError(f"{_where(n)}: target shape {list(spec)} has more than one -1")
    out = _reshape_target(src, spec, a.get("allowzero", 0))
    if int(np.prod(out)) != int(np.prod(src)):
        raise UnsupportedAttrError(f"{_where(n)}: cannot reshape {src} to {list(spec)}")
    return [_static_reshape(ctx, n, x, out)]


@handles("Transpose")
def transpose(ctx: Ctx, n: Any) -> Sequence[Value]:
    a = _attrs(ctx, n, {"perm"})
    v = ctx.v(n, 0)
    perm = a.get("perm")
    if isinstance(v, np.ndarray):
        return [np.transpose(v, perm)]
    x = ctx.act(n)
    perm = tuple(int(p) for p in perm) if perm is not None else tuple(range(len(ctx.shape(x))))[::-1]
    if perm == tuple(range(len(perm))):
        return [ctx.add("Identity", [x], n)]
    return [ctx.add("Transpose", [x], n, perm=perm)]


@_folding("Concat")
def concat(ctx: Ctx, n: Any) -> Sequence[Value]:
    a = _attrs(ctx, n, {"axis"})
    if "axis" not in a:
        raise UnsupportedAttrError(f"{_where(n)}: Concat without 'axis' (opset < 4)")
    xs = [ctx.act(n, i) for i in range(len(n.input)) if n.input[i]]
    rank = len(ctx.shape(xs[0]))
    return [ctx.add("Concat", xs, n, axis=int(a["axis"]) % rank)]


@handles("Split")
def split(ctx: Ctx, n: Any) -> Sequence[Value]:
    """Parts from the ``split`` attribute (< 13) or input (>= 13), else equal parts; with opset-18
    ``num_outputs`` the last part may be smaller (ceil-sized parts)."""
    a = _attrs(ctx, n, {"axis", "split", "num_outputs"})
    x = ctx.act(n)
    xs = ctx.shape(x)
    rank = len(xs)
    axis = int(a.get("axis", 0))
    if not -rank <= axis < rank:
        raise UnsupportedAttrError(f"{_where(n)}: axis {axis} out of range for rank {rank}")
    axis %= rank
    size = xs[axis]
    parts = a.get("split")
    if parts is None and ctx.v(n, 1) is not None:
        parts = [int(v) for v in ctx.need_const(n, 1, "split")]
    if parts is None:
        k = int(a.get("num_outputs", len(n.output)))
        step = -(-size // k)
        parts = [min(step, size - i * step) for i in range(k)]
    parts = [int(p) for p in parts]
    if len(parts) != len(n.output) or sum(parts) != size or min(parts) <= 0:
        raise UnsupportedAttrError(f"{_where(n)}: split {parts} of axis {axis} (size {size}) into "
                                   f"{len(n.output)} outputs: parts must be non-empty and cover the axis")
    name = n.name or n.output[0]
    return ctx.b.add("Split", [x], name=name, source=name, n_out=len(parts), axis=axis, split=parts)


@_folding("Slice")
def slice_(ctx: Ctx, n: Any) -> Sequence[Value]:
    """Inputs from opset 10 on, attributes before; step 1 only (one IR Slice per sliced axis)."""
    a = _attrs(ctx, n, {"starts", "ends", "axes"})
    x = ctx.act(n)
    rank = len(ctx.shape(x))
    if "starts" in a:
        starts, ends, axes, steps = a["starts"], a["ends"], a.get("axes"), None
    else:
        starts = ctx.need_const(n, 1, "starts")
        ends = ctx.need_const(n, 2, "ends")
        axes, steps = _opt_const(ctx, n, 3, "axes"), _opt_const(ctx, n, 4, "steps")
    axes = list(range(len(starts))) if axes is None else [int(v) for v in axes]
    if any(not -rank <= ax < rank for ax in axes):
        raise UnsupportedAttrError(f"{_where(n)}: axes {axes} out of range for rank {rank}")
    if steps is not None and any(int(v) != 1 for v in steps):
        raise UnsupportedAttrError(f"{_where(n)}: steps {[int(v) for v in steps]}; only step 1")
    y = x
    for s, e, ax in zip(starts, ends, (ax % rank for ax in axes)):
        size = ctx.shape(y)[ax]
        s, e = int(s), int(e)
        s = max(0, min(size, s + size if s < 0 else s))
        e = max(0, min(size, e + size if e < 0 else e))
        if e <= s:
            raise UnsupportedAttrError(f"{_where(n)}: slice [{s}:{e}] of axis {ax} is empty")
        if (s, e) != (0, size):
            y = ctx.add("Slice", [y], n, f"axis{ax}", axis=ax, start=s, end=e)
    return [y if y != x else ctx.add("Identity", [x], n)]


@handles("Pad")
def pad(ctx: Ctx, n: Any) -> Sequence[Value]:
    """Pads of H and W only (NCHW); ``pads``/``value`` attributes before opset 11, inputs from 11,
    ``axes`` from 18.  Modes constant, reflect, edge; ``wrap`` is refused."""
    a = _attrs(ctx, n, {"pads", "mode", "value"})
    x = ctx.act(n)
    _rank(ctx, n, x, 4)
    mode = str(a.get("mode", "constant"))
    if mode not in ("constant", "reflect", "edge"):
        raise UnsupportedAttrError(f"{_where(n)}: mode {mode!r}; supported: constant, reflect, edge")
    p = [int(v) for v in (a["pads"] if "pads" in a else ctx.need_const(n, 1, "pads"))]
    value = float(a.get("value", 0.0))
    cv = _opt_const(ctx, n, 2, "the pad value")
    if cv is not None and cv.size:
        value = float(cv.reshape(-1)[0])
    axes = _opt_const(ctx, n, 3, "axes")
    full = [0] * 8
    ax_list = list(range(4)) if axes is None else [int(v) % 4 for v in axes]
    if len(p) != 2 * len(ax_list):
        raise UnsupportedAttrError(f"{_where(n)}: {len(p)} pads for axes {ax_list}")
    for i, ax in enumerate(ax_list):
        full[ax], full[4 + ax] = p[i], p[len(ax_list) + i]
    if any(full[i] for i in (0, 1, 4, 5)):
        raise UnsupportedAttrError(f"{_where(n)}: pads {full} touch the batch or channel axis; only H and W")
    return [ctx.add("Pad", [x], n, pads=(full[2], full[3], full[6], full[7]), mode=mode, value=value)]


# --------------------------------------------------------------------------- arithmetic
_BIN = {"Add": "Add", "Sub": "Sub", "Mul": "Mul", "Div": "Div", "Max": "Max", "Min": "Min"}


def _operand(ctx: Ctx, n: Any, i: int) -> str:
    v = ctx.v(n, i)
    return ctx.param(n, i, v) if isinstance(v, np.ndarray) else ctx.act(n, i)


def _binary(ctx: Ctx, n: Any) -> Sequence[Value]:
    """Two operands with numpy broadcasting (Add/Sub/Mul/Div from opset 7); Max/Min/Sum/Mean take
    any number (chained pairwise; Mean divides the sum by the count)."""
    _attrs(ctx, n, set())
    r = _fold(ctx, n)
    if r is not None:
        return r
    present = [i for i in range(len(n.input)) if n.input[i]]
    if n.op_type in ("Add", "Sub", "Mul", "Div") and len(present) != 2:
        raise UnsupportedAttrError(f"{_where(n)}: {len(present)} inputs (takes 2)")
    if not present:
        raise UnsupportedAttrError(f"{_where(n)}: no inputs")
    ins = [_operand(ctx, n, i) for i in present]
    if len(ins) == 1:
        return [ctx.add("Identity", ins, n)]
    op = {"Sum": "Add", "Mean": "Add"}.get(n.op_type, n.op_type)
    y = ins[0]
    last = len(ins) - 1 if n.op_type != "Mean" else len(ins)
    for k, other in enumerate(ins[1:], start=1):
        y = ctx.add(op, [y, other], n, "" if k == last else f"{op.lower()}{k}")
    if n.op_type == "Mean":
        y = ctx.add("Mul", [y, ctx.b.param(f"{n.name or n.output[0]}/inv_count", np.float32(1.0 / len(ins)))], n)
    return [y]


for _op in list(_BIN) + ["Sum", "Mean"]:
    handles(_op)(_binary)

from . import resize  # noqa: E402,F401  (registers Resize / Upsample)
