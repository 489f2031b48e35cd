"""One handler per IR op: IR node -> ONNX nodes (+ initializers).

Handlers are registered with ``@_handler("Op")`` in :data:`HANDLERS`.  Ops
whose emission can fail for some attribute values also register a
``@_precheck("Op")`` that returns the reason (or ``None``), so
``OnnxBackend.check`` can report every problem before anything is emitted.
"""
from __future__ import annotations

import logging
import math
from typing import Any, Callable, Sequence

import numpy as np

from xconv.errors import BackendError
from xconv.ir import Node
from xconv.ops import lrn_window_matrix, pool_out

from .emitter import Emitter, Lowering, ModelContext

log = logging.getLogger(__name__)

Handler = Callable[[Node, ModelContext], Lowering]
Precheck = Callable[[Node, ModelContext], "str | None"]

HANDLERS: dict[str, Handler] = {}
PRECHECKS: dict[str, Precheck] = {}

#: Name of the xconv pass that rewrites adaptive pooling with uneven windows.
ADAPTIVE_POOL_PASS = "lower_adaptive_pool"


def _handler(*ops: str) -> Callable[[Handler], Handler]:
    def deco(fn: Handler) -> Handler:
        for op in ops:
            if op in HANDLERS:
                raise ValueError(f"ONNX handler for {op} registered twice")
            HANDLERS[op] = fn
        return fn
    return deco


def _precheck(*ops: str) -> Callable[[Precheck], Precheck]:
    def deco(fn: Precheck) -> Precheck:
        for op in ops:
            PRECHECKS[op] = fn
        return fn
    return deco


def _same_op(onnx_op: str, node: Node, ctx: ModelContext, **attrs: Any) -> Lowering:
    em = Emitter(ctx, node)
    em.add(onnx_op, node.inputs, node.outputs, **attrs)
    return em.done()


# --------------------------------------------------------------------------- conv / gemm / bn
@_handler("Conv")
def _conv(node: Node, ctx: ModelContext) -> Lowering:
    a = node.attrs
    return _same_op("Conv", node, ctx, kernel_shape=list(a["kernel_shape"]), strides=list(a["strides"]),
                    pads=list(a["pads"]), dilations=list(a["dilations"]), group=a["group"])


@_handler("Gemm")
def _gemm(node: Node, ctx: ModelContext) -> Lowering:
    # IR Gemm weight is [out, in]: Y = A @ W.T + B.
    return _same_op("Gemm", node, ctx, transB=1)


@_handler("BatchNormalization")
def _bn(node: Node, ctx: ModelContext) -> Lowering:
    # Inference form only (training_mode defaults to 0 from opset 14 on).
    return _same_op("BatchNormalization", node, ctx, epsilon=node.attrs["epsilon"])


# --------------------------------------------------------------------------- pooling
def _floor_end_pad(size: int, k: int, s: int, pb: int, pe: int, ceil_mode: bool) -> tuple[int, int]:
    """(output size, end padding) such that *floor* pooling with that end
    padding produces exactly the IR's output size, windows and all."""
    out = pool_out(size, k, s, pb, pe, ceil_mode)
    end = max(pe, (out - 1) * s + k - size - pb)
    assert (size + pb + end - k) // s + 1 == out and end < k, (size, k, s, pb, pe, ceil_mode)
    return out, end


@_handler("MaxPool", "AveragePool")
def _pool(node: Node, ctx: ModelContext) -> Lowering:
    """Pooling is always emitted with ``ceil_mode=0``.

    onnx's shape inference (1.23) does not apply the "drop the last window if
    it starts inside the end padding" rule of ceil mode (ops.py), while
    onnxruntime does, so a ceil-mode node whose last window is dropped fails
    ``check_model(full_check=True)``.  Ceil mode is therefore rewritten as
    floor mode with just enough extra end padding to produce the same
    windows; padding never wins a max and is excluded from the divisor with
    ``count_include_pad=0``, so for those cases this is exact.

    ``AveragePool`` with ``count_include_pad`` divides by the window clipped to
    ``[-pt, H + pb)``.  If the extra end padding reaches past ``H + pb`` the
    divisor would change, so the IR padding is materialised with an explicit
    zero ``Pad`` node and the pool runs with ``count_include_pad=0`` over it:
    the zeros of the Pad are counted, the extra end padding is not.
    (onnxruntime's own ``ceil_mode=1, count_include_pad=1`` kernel agrees with
    the IR divisor; the rewrite is only for the shape-inference mismatch.)
    """
    em = Emitter(ctx, node)
    a = node.attrs
    x = node.inputs[0]
    _, _, h, w = ctx.type_of(x).shape
    (kh, kw), (sh, sw) = a["kernel_shape"], a["strides"]
    t, l, b, r = a["pads"]
    _, eb = _floor_end_pad(h, kh, sh, t, b, a["ceil_mode"])
    _, er = _floor_end_pad(w, kw, sw, l, r, a["ceil_mode"])
    common: dict[str, Any] = dict(kernel_shape=[kh, kw], strides=[sh, sw], ceil_mode=0)
    if node.op == "MaxPool":
        em.add("MaxPool", [x], node.outputs, pads=[t, l, eb, er], **common)
    elif not a["count_include_pad"]:
        em.add("AveragePool", [x], node.outputs, pads=[t, l, eb, er], count_include_pad=0, **common)
    elif (eb, er) == (b, r):
        em.add("AveragePool", [x], node.outputs, pads=[t, l, b, r], count_include_pad=1, **common)
    else:
        src = x
        if any((t, l, b, r)):
            src = em.add("Pad", [x, em.ints("pads", [0, 0, t, l, 0, 0, b, r]), em.scalar("pad_value", 0.0, x)],
                         role="pad", mode="constant")[0]
        em.add("AveragePool", [src], node.outputs, pads=[0, 0, eb - b, er - r], count_include_pad=0, **common)
    return em.done()


@_handler("GlobalAveragePool", "GlobalMaxPool")
def _global_pool(node: Node, ctx: ModelContext) -> Lowering:
    return _same_op(node.op, node, ctx)


def _adaptive_problem(node: Node, ctx: ModelContext) -> str | None:
    _, _, h, w = ctx.type_of(node.inputs[0]).shape
    oh, ow = node.attrs["output_size"]
    if (oh, ow) == (1, 1) or (h % oh == 0 and w % ow == 0):
        return None
    return (f"{node.where()}: {node.op} from {h}x{w} to {oh}x{ow} has uneven windows, which ONNX pooling "
            f"cannot express; run the '{ADAPTIVE_POOL_PASS}' pass first (it lowers it to Slice/pool/Concat)")


_precheck("AdaptiveAvgPool", "AdaptiveMaxPool")(_adaptive_problem)


@_handler("AdaptiveAvgPool", "AdaptiveMaxPool")
def _adaptive_pool(node: Node, ctx: ModelContext) -> Lowering:
    problem = _adaptive_problem(node, ctx)
    if problem:
        raise BackendError(problem)
    em = Emitter(ctx, node)
    _, _, h, w = ctx.type_of(node.inputs[0]).shape
    oh, ow = node.attrs["output_size"]
    is_avg = node.op == "AdaptiveAvgPool"
    if (oh, ow) == (1, 1):
        em.add("GlobalAveragePool" if is_avg else "GlobalMaxPool", node.inputs[:1], node.outputs)
    else:
        # Even split: window i spans [i*k, (i+1)*k), exactly PyTorch's bounds.
        k = [h // oh, w // ow]
        attrs: dict[str, Any] = dict(kernel_shape=k, strides=k, pads=[0, 0, 0, 0])
        if is_avg:
            attrs["count_include_pad"] = 0
        em.add("AveragePool" if is_avg else "MaxPool", node.inputs[:1], node.outputs, **attrs)
    return em.done()


# --------------------------------------------------------------------------- padding
@_handler("Pad")
def _pad(node: Node, ctx: ModelContext) -> Lowering:
    """Negative IR pads crop *before* padding (reference.py).  Cropping is
    emitted as an explicit Slice so the result never depends on how a runtime
    orders crop and reflect/edge padding on the same axis."""
    problem = _pad_problem(node, ctx)
    if problem:
        raise BackendError(problem)
    em = Emitter(ctx, node)
    a = node.attrs
    x = node.inputs[0]
    t, l, b, r = a["pads"]
    _, _, h, w = ctx.type_of(x).shape
    crop = [max(0, -t), max(0, -l), max(0, -b), max(0, -r)]
    grow = [max(0, t), max(0, l), max(0, b), max(0, r)]
    src = x
    if any(crop):
        out = node.outputs if not any(grow) else None
        src = em.add("Slice", [x, em.ints("starts", [crop[0], crop[1]]),
                               em.ints("ends", [h - crop[2], w - crop[3]]), em.ints("axes", [2, 3])],
                     out, role=None if out else "crop")[0]
    if any(grow) and a["mode"] == "constant" and a["value"] == 0.0 and _feeds_maxpool(node, ctx):
        _zero_pad_concat(em, src, ctx.type_of(x), crop, grow, node.outputs)
    elif any(grow) or not any(crop):
        gt, gl, gb, gr = grow
        inputs = [src, em.ints("pads", [0, 0, gt, gl, 0, 0, gb, gr])]
        if a["mode"] == "constant":
            inputs.append(em.scalar("value", a["value"], x))
        em.add("Pad", inputs, node.outputs, mode=a["mode"])
    return em.done()


def _feeds_maxpool(node: Node, ctx: ModelContext) -> bool:
    cons = getattr(ctx, "_consumers", None)
    if cons is None:
        cons = ctx.graph.consumers()
        ctx._consumers = cons  # type: ignore[attr-defined]
    return any(c.op == "MaxPool" for c in cons.get(node.outputs[0], []))


def _zero_pad_concat(em: Emitter, x: str, xtype: Any, crop: Sequence[int], grow: Sequence[int],
                     outputs: Sequence[str]) -> None:
    """Zero padding as ``Concat`` with zero blocks, for a Pad that feeds a MaxPool.

    onnxruntime (1.31 and earlier) fuses ``Pad(0) -> MaxPool`` into the pool's
    own pads, which act as -inf: the zeros stop winning the max and results
    change (a Keras ZeroPadding2D before MaxPooling2D, as in ResNet-V2's stem).
    A Concat of constant zeros is the same tensor and is not fused.
    """
    n, c, h, w = xtype.shape
    h -= crop[0] + crop[2]
    w -= crop[1] + crop[3]
    gt, gl, gb, gr = grow
    dtype = np.dtype(xtype.dtype)
    parts = []
    if gt:
        parts.append(em.const("zeros_top", np.zeros((n, c, gt, w), dtype)))
    parts.append(x)
    if gb:
        parts.append(em.const("zeros_bottom", np.zeros((n, c, gb, w), dtype)))
    last_h = not (gl or gr)
    y = x if len(parts) == 1 else em.add("Concat", parts, outputs if last_h else None, role="pad_h", axis=2)[0]
    if last_h:
        return
    hh = h + gt + gb
    parts = []
    if gl:
        parts.append(em.const("zeros_left", np.zeros((n, c, hh, gl), dtype)))
    parts.append(y)
    if gr:
        parts.append(em.const("zeros_right", np.zeros((n, c, hh, gr), dtype)))
    em.add("Concat", parts, outputs, axis=3)


_PAD_MODES = ("constant", "reflect", "edge")


@_precheck("Pad")
def _pad_problem(node: Node, ctx: ModelContext) -> str | None:
    mode = node.attrs["mode"]
    if mode not in _PAD_MODES:
        return f"{node.where()}: Pad mode {mode!r} has no ONNX form (supported: {list(_PAD_MODES)})"
    if mode == "reflect":
        # numpy reflects repeatedly; ONNX needs each pad < the (cropped) size.
        t, l, b, r = node.attrs["pads"]
        _, _, h, w = ctx.type_of(node.inputs[0]).shape
        h -= max(0, -t) + max(0, -b)
        w -= max(0, -l) + max(0, -r)
        if max(t, b) >= h or max(l, r) >= w:
            return (f"{node.where()}: reflect pads {node.attrs['pads']} need the padded sides to be smaller "
                    f"than the {h}x{w} input; ONNX cannot reflect more than once")
    return None


# --------------------------------------------------------------------------- elementwise
_DIRECT = {
    "Relu": "Relu", "Sigmoid": "Sigmoid", "Tanh": "Tanh", "Neg": "Neg", "Exp": "Exp", "Abs": "Abs",
    "Sqrt": "Sqrt", "Identity": "Identity", "Dropout": "Identity",  # Dropout is the identity at inference
    "Add": "Add", "Sub": "Sub", "Mul": "Mul", "Div": "Div", "Max": "Max", "Min": "Min",
}


@_handler(*_DIRECT)
def _direct(node: Node, ctx: ModelContext) -> Lowering:
    return _same_op(_DIRECT[node.op], node, ctx)


@_handler("LeakyRelu", "Elu")
def _alpha_act(node: Node, ctx: ModelContext) -> Lowering:
    return _same_op(node.op, node, ctx, alpha=node.attrs["alpha"])


@_handler("HardSigmoid")
def _hard_sigmoid(node: Node, ctx: ModelContext) -> Lowering:
    return _same_op("HardSigmoid", node, ctx, alpha=node.attrs["alpha"], beta=node.attrs["beta"])


@_handler("HardSwish")
def _hard_swish(node: Node, ctx: ModelContext) -> Lowering:
    if ctx.opset >= 14:
        return _same_op("HardSwish", node, ctx)
    # opset 13: x * HardSigmoid(x; 1/6, 1/2) == x * clip(x + 3, 0, 6) / 6
    em = Emitter(ctx, node)
    gate = em.add("HardSigmoid", node.inputs[:1], role="gate", alpha=1.0 / 6.0, beta=0.5)[0]
    em.add("Mul", [node.inputs[0], gate], node.outputs)
    return em.done()


@_handler("Silu")
def _silu(node: Node, ctx: ModelContext) -> Lowering:
    em = Emitter(ctx, node)
    gate = em.add("Sigmoid", node.inputs[:1], role="sigmoid")[0]
    em.add("Mul", [node.inputs[0], gate], node.outputs)
    return em.done()


@_handler("Clip")
def _clip(node: Node, ctx: ModelContext) -> Lowering:
    # min/max are optional inputs since opset 11; an infinite bound is left out.
    em = Emitter(ctx, node)
    x = node.inputs[0]
    lo, hi = node.attrs["min"], node.attrs["max"]
    inputs = [x, "" if math.isinf(lo) and lo < 0 else em.scalar("min", lo, x)]
    if not (math.isinf(hi) and hi > 0):
        inputs.append(em.scalar("max", hi, x))
    while inputs[-1] == "":
        inputs.pop()
    em.add("Clip", inputs, node.outputs)
    return em.done()


@_handler("PRelu")
def _prelu(node: Node, ctx: ModelContext) -> Lowering:
    """ONNX PRelu broadcasts the slope unidirectionally from the right, so a
    per-channel slope [C] becomes [C, 1, ..., 1] (rank - 1 dims)."""
    em = Emitter(ctx, node)
    x, slope = node.inputs[0], node.inputs[1]
    rank = ctx.type_of(x).rank
    sshape = ctx.type_of(slope).shape
    if sshape == (1,) or rank <= 2:
        em.add("PRelu", [x, slope], node.outputs)
        return em.done()
    target = sshape + (1,) * (rank - 2)
    if ctx.is_param(slope):
        s = em.const("slope", ctx.graph.params[slope].reshape(target))
    else:
        s = em.add("Reshape", [slope, em.ints("slope_shape", target)], role="slope")[0]
    em.add("PRelu", [x, s], node.outputs)
    return em.done()


@_handler("Softmax")
def _softmax(node: Node, ctx: ModelContext) -> Lowering:
    # Opset >= 13 Softmax normalises along one axis, like the IR.
    return _same_op("Softmax", node, ctx, axis=node.attrs["axis"])


# --------------------------------------------------------------------------- structure
@_handler("Concat")
def _concat(node: Node, ctx: ModelContext) -> Lowering:
    return _same_op("Concat", node, ctx, axis=node.attrs["axis"])


@_handler("Split")
def _split(node: Node, ctx: ModelContext) -> Lowering:
    # The 'split' input exists from opset 13 on; with it given, opset 18's
    # 'num_outputs' must be absent.
    em = Emitter(ctx, node)
    em.add("Split", [node.inputs[0], em.ints("split", node.attrs["split"])], node.outputs,
           axis=node.attrs["axis"])
    return em.done()


@_handler("Slice")
def _slice(node: Node, ctx: ModelContext) -> Lowering:
    em = Emitter(ctx, node)
    a = node.attrs
    em.add("Slice", [node.inputs[0], em.ints("starts", [a["start"]]), em.ints("ends", [a["end"]]),
                     em.ints("axes", [a["axis"]])], node.outputs)
    return em.done()


@_handler("Flatten")
def _flatten(node: Node, ctx: ModelContext) -> Lowering:
    rank = ctx.type_of(node.inputs[0]).rank
    return _same_op("Flatten", node, ctx, axis=node.attrs["axis"] % max(rank, 1))


@_handler("Reshape")
def _reshape(node: Node, ctx: ModelContext) -> Lowering:
    # The IR shape is static and complete (no 0 / -1), so allowzero is moot.
    em = Emitter(ctx, node)
    em.add("Reshape", [node.inputs[0], em.ints("shape", node.attrs["shape"])], node.outputs)
    return em.done()


@_handler("Transpose")
def _transpose(node: Node, ctx: ModelContext) -> Lowering:
    return _same_op("Transpose", node, ctx, perm=list(node.attrs["perm"]))


@_handler("ChannelShuffle")
def _channel_shuffle(node: Node, ctx: ModelContext) -> Lowering:
    em = Emitter(ctx, node)
    x = node.inputs[0]
    n, c, h, w = ctx.type_of(x).shape
    g = node.attrs["group"]
    split = em.add("Reshape", [x, em.ints("grouped_shape", [n, g, c // g, h, w])], role="group")[0]
    swapped = em.add("Transpose", [split], role="swap", perm=[0, 2, 1, 3, 4])[0]
    em.add("Reshape", [swapped, em.ints("shape", [n, c, h, w])], node.outputs)
    return em.done()


@_handler("ReduceMean", "ReduceMax")
def _reduce(node: Node, ctx: ModelContext) -> Lowering:
    # axes: attribute before opset 18, input from 18 on.
    em = Emitter(ctx, node)
    axes = list(node.attrs["axes"])
    keep = int(node.attrs["keepdims"])
    if ctx.opset >= 18:
        em.add(node.op, [node.inputs[0], em.ints("axes", axes)], node.outputs, keepdims=keep)
    else:
        em.add(node.op, node.inputs[:1], node.outputs, axes=axes, keepdims=keep)
    return em.done()



# --------------------------------------------------------------------------- normalisation / resampling
@_handler("LRN")
def _lrn(node: Node, ctx: ModelContext) -> Lowering:
    """ONNX LRN is the IR op (the same window [c - (size-1)//2, c + size//2] and alpha / size).

    onnxruntime (1.31) refuses an even size (``size_ % 2 == 1`` in its kernel), although the
    ONNX spec defines it; an even size is written as the same formula in elementary ops:
    the window sum of squares as a 1x1 Conv with a 0/1 band matrix (exact: products by 1
    and 0), then ``x / (bias + alpha/size * sum) ^ beta``."""
    a = node.attrs
    if a["size"] % 2:
        return _same_op("LRN", node, ctx, size=a["size"], alpha=a["alpha"], beta=a["beta"], bias=a["bias"])
    em = Emitter(ctx, node)
    x = node.inputs[0]
    c = ctx.type_of(x).shape[1]
    band = em.const("window", lrn_window_matrix(c, a["size"]).reshape(c, c, 1, 1).astype(ctx.type_of(x).dtype))
    sq = em.add("Mul", [x, x], role="square")[0]
    acc = em.add("Conv", [sq, band], role="window_sum", kernel_shape=[1, 1])[0]
    scaled = em.add("Mul", [acc, em.scalar("alpha_over_size", a["alpha"] / a["size"], x)], role="scale")[0]
    base = em.add("Add", [scaled, em.scalar("bias", a["bias"], x)], role="shift")[0]
    den = em.add("Pow", [base, em.scalar("beta", a["beta"], x)], role="power")[0]
    em.add("Div", [x, den], node.outputs)
    return em.done()


@_handler("Resize")
def _resize(node: Node, ctx: ModelContext) -> Lowering:
    """ONNX Resize (opset 13 and later: ``roi`` and ``scales`` may be empty) with the
    ``sizes`` input: the IR's output size given exactly, the scale then being
    ``sizes / input`` per axis as in the IR (a ``scales`` input would make a runtime
    compute the size as ``floor(input * scale)`` in float).  ``nearest_mode`` is written
    only for nearest; ``cubic_coeff_a``/``exclude_outside``/``extrapolation_value`` do not
    apply to these modes, and opset 18's ``antialias``/``axes``/``keep_aspect_ratio_policy``
    keep their defaults (no antialiasing, all axes, sizes taken as given)."""
    em = Emitter(ctx, node)
    a = node.attrs
    n, c, _, _ = ctx.type_of(node.inputs[0]).shape
    sizes = em.ints("sizes", [n, c, *a["sizes"]])
    attrs: dict[str, Any] = dict(mode=a["mode"], coordinate_transformation_mode=a["coordinate_transformation_mode"])
    if a["mode"] == "nearest":
        attrs["nearest_mode"] = a["nearest_mode"]
    em.add("Resize", [node.inputs[0], "", "", sizes], node.outputs, **attrs)
    return em.done()
