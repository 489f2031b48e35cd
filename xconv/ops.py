"""One spec per IR op: inputs, attrs (types and defaults) and the shape rule.

Op names follow ONNX where ONNX has the op.  Semantics that differ from ONNX
are spelled out in the op's docstring.  Canonical attrs:

* 2-D spatial ops use ``kernel_shape=(kh, kw)``, ``strides=(sh, sw)``,
  ``dilations=(dh, dw)`` and ``pads=(top, left, bottom, right)``.
* Pooling output size: ``floor_or_ceil((H + pt + pb - ((k-1)*d + 1)) / s) + 1``;
  in ceil mode the last window is dropped when it would start at or past
  ``H + pt`` (inside the end padding) — the rule of PyTorch, ONNX and Caffe.
* ``AveragePool`` with ``count_include_pad`` divides by the window clipped to
  the padded extent ``[-pt, H + pb)`` (Caffe's and PyTorch's divisor);
  without it, by the number of real input cells in the window.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence, TYPE_CHECKING

import numpy as np

from .errors import InvalidGraphError, UnsupportedAttrError
from .ir import Node, TensorType

if TYPE_CHECKING:
    from .ir import Graph

REQUIRED = object()

# attr kinds and their canonicalisers
_KINDS: dict[str, Callable[[Any], Any]] = {
    "int": int,
    "float": float,
    "bool": bool,
    "str": str,
    "ints": lambda v: tuple(int(x) for x in v),
    "floats": lambda v: tuple(float(x) for x in v),
}


@dataclass(frozen=True)
class AttrSpec:
    kind: str
    default: Any = REQUIRED
    length: int | None = None  # fixed length for ints/floats


InferFn = Callable[[Node, Sequence[TensorType | None]], list[TensorType]]


@dataclass(frozen=True)
class OpSpec:
    name: str
    inputs: tuple[str, ...]  # names; a trailing '?' marks an optional input, '*' variadic
    attrs: dict[str, AttrSpec] = field(default_factory=dict)
    infer: InferFn | None = None
    outputs: int = 1  # -1: variadic (as many as node.outputs)
    doc: str = ""


OPS: dict[str, OpSpec] = {}


def register(spec: OpSpec) -> OpSpec:
    if spec.name in OPS:
        raise ValueError(f"op {spec.name} registered twice")
    OPS[spec.name] = spec
    return spec


def spec_of(op: str) -> OpSpec:
    try:
        return OPS[op]
    except KeyError:
        raise InvalidGraphError(f"unknown IR op '{op}'") from None


def make_attrs(op: str, **given: Any) -> dict[str, Any]:
    """Complete and canonicalise attrs for ``op`` (defaults filled in)."""
    spec = spec_of(op)
    extra = set(given) - set(spec.attrs)
    if extra:
        raise InvalidGraphError(f"op {op} has no attrs {sorted(extra)}")
    out: dict[str, Any] = {}
    for name, a in spec.attrs.items():
        if name in given and given[name] is not None:
            out[name] = _KINDS[a.kind](given[name])
        elif a.default is REQUIRED:
            raise InvalidGraphError(f"op {op}: attr '{name}' is required")
        else:
            out[name] = a.default
    return out


def check_attrs(node: Node) -> None:
    spec = spec_of(node.op)
    missing = set(spec.attrs) - set(node.attrs)
    extra = set(node.attrs) - set(spec.attrs)
    if missing or extra:
        raise InvalidGraphError(f"{node.where()}: attrs not canonical (missing {sorted(missing)}, "
                                f"unknown {sorted(extra)})")
    for name, a in spec.attrs.items():
        v = node.attrs[name]
        try:
            canon = _KINDS[a.kind](v)
        except (TypeError, ValueError):
            raise InvalidGraphError(f"{node.where()}: attr {name}={v!r} is not {a.kind}") from None
        if canon != v and not (isinstance(v, float) and math.isnan(v)):
            raise InvalidGraphError(f"{node.where()}: attr {name}={v!r} is not canonical {a.kind}")
        if a.length is not None and len(v) != a.length:
            raise InvalidGraphError(f"{node.where()}: attr {name} needs {a.length} values, got {v!r}")
    n_req = sum(1 for i in spec.inputs if not i.endswith(("?", "*")))
    variadic = any(i.endswith("*") for i in spec.inputs)
    if len(node.inputs) < n_req or (not variadic and len(node.inputs) > len(spec.inputs)):
        raise InvalidGraphError(f"{node.where()}: takes inputs {spec.inputs}, got {node.inputs}")
    if spec.outputs >= 0 and len(node.outputs) != spec.outputs:
        raise InvalidGraphError(f"{node.where()}: must have {spec.outputs} output(s)")


def infer_node(node: Node, in_types: Sequence[TensorType | None], graph: "Graph | None" = None) -> list[TensorType]:
    spec = spec_of(node.op)
    if spec.infer is None:
        raise InvalidGraphError(f"op {node.op} has no shape rule")
    try:
        outs = spec.infer(node, in_types)
    except InvalidGraphError:
        raise
    except Exception as e:  # noqa: BLE001 - turned into a located error
        shapes = [str(t) for t in in_types]
        raise InvalidGraphError(f"{node.where()}: shape inference failed for inputs {shapes}: {e}") from e
    if len(outs) != len(node.outputs):
        raise InvalidGraphError(f"{node.where()}: produces {len(outs)} outputs, node lists {len(node.outputs)}")
    return outs


# --------------------------------------------------------------------------- helpers
def conv_out(size: int, k: int, s: int, pb: int, pe: int, d: int = 1) -> int:
    return (size + pb + pe - d * (k - 1) - 1) // s + 1


def pool_out(size: int, k: int, s: int, pb: int, pe: int, ceil_mode: bool) -> int:
    span = size + pb + pe - k
    if ceil_mode:
        out = -(-span // s) + 1
        if (out - 1) * s >= size + pb:
            out -= 1
    else:
        out = span // s + 1
    return out


def broadcast_shapes(*shapes: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(np.broadcast_shapes(*shapes))


def _t(t: TensorType | None, what: str) -> TensorType:
    if t is None:
        raise InvalidGraphError(f"missing input {what}")
    return t


def _same(node: Node, ins: Sequence[TensorType | None]) -> list[TensorType]:
    return [_t(ins[0], "X")]


def _bcast(node: Node, ins: Sequence[TensorType | None]) -> list[TensorType]:
    shapes = [_t(t, "X").shape for t in ins]
    return [TensorType(broadcast_shapes(*shapes), _t(ins[0], "X").dtype)]


def _sp() -> AttrSpec:
    """A required (h, w) pair."""
    return AttrSpec("ints", REQUIRED, 2)


# --------------------------------------------------------------------------- conv / gemm
def _infer_conv(node: Node, ins: Sequence[TensorType | None]) -> list[TensorType]:
    x, w = _t(ins[0], "X"), _t(ins[1], "W")
    a = node.attrs
    n, c, h, wd = x.shape
    o, ci, kh, kw = w.shape
    if (kh, kw) != a["kernel_shape"]:
        raise InvalidGraphError(f"weight {w.shape} disagrees with kernel_shape {a['kernel_shape']}")
    if ci * a["group"] != c or o % a["group"]:
        raise InvalidGraphError(f"weight {w.shape} with group {a['group']} does not fit {c} input channels")
    if len(ins) > 2 and ins[2] is not None and ins[2].shape != (o,):
        raise InvalidGraphError(f"bias {ins[2].shape} does not match {o} output channels")
    t, l, b, r = a["pads"]
    oh = conv_out(h, kh, a["strides"][0], t, b, a["dilations"][0])
    ow = conv_out(wd, kw, a["strides"][1], l, r, a["dilations"][1])
    if oh <= 0 or ow <= 0:
        raise InvalidGraphError(f"empty output {oh}x{ow}")
    return [TensorType((n, o, oh, ow), x.dtype)]


register(OpSpec("Conv", ("X", "W", "B?"), {
    "kernel_shape": _sp(),
    "strides": AttrSpec("ints", (1, 1), 2),
    "pads": AttrSpec("ints", (0, 0, 0, 0), 4),
    "dilations": AttrSpec("ints", (1, 1), 2),
    "group": AttrSpec("int", 1),
}, _infer_conv, doc="2-D convolution, NCHW input, OIHW weight (O, C/group, kh, kw)."))


def _infer_gemm(node: Node, ins: Sequence[TensorType | None]) -> list[TensorType]:
    x, w = _t(ins[0], "A"), _t(ins[1], "W")
    if x.rank != 2 or w.rank != 2 or x.shape[1] != w.shape[1]:
        raise InvalidGraphError(f"Gemm needs A [N,K] and W [M,K], got {x.shape} and {w.shape}")
    if len(ins) > 2 and ins[2] is not None and ins[2].shape != (w.shape[0],):
        raise InvalidGraphError(f"bias {ins[2].shape} does not match {w.shape[0]} outputs")
    return [TensorType((x.shape[0], w.shape[0]), x.dtype)]


register(OpSpec("Gemm", ("A", "W", "B?"), {}, _infer_gemm,
                doc="Y = A @ W.T + B; W is [out, in] (PyTorch Linear / Caffe InnerProduct layout)."))


def _infer_bn(node: Node, ins: Sequence[TensorType | None]) -> list[TensorType]:
    x = _t(ins[0], "X")
    c = x.shape[1]
    for t in ins[1:]:
        if _t(t, "BN param").shape != (c,):
            raise InvalidGraphError(f"BN params must be [{c}], got {t.shape if t else None}")
    return [x]


register(OpSpec("BatchNormalization", ("X", "scale", "bias", "mean", "var"),
                {"epsilon": AttrSpec("float", 1e-5)}, _infer_bn,
                doc="Inference BN over axis 1: (x - mean) / sqrt(var + eps) * scale + bias."))


# --------------------------------------------------------------------------- pooling
def _infer_pool(node: Node, ins: Sequence[TensorType | None]) -> list[TensorType]:
    x = _t(ins[0], "X")
    a = node.attrs
    n, c, h, w = x.shape
    kh, kw = a["kernel_shape"]
    sh, sw = a["strides"]
    t, l, b, r = a["pads"]
    if max(t, b) >= kh or max(l, r) >= kw:
        # PyTorch/ONNX require pad < kernel; also keeps windows non-empty.
        raise InvalidGraphError(f"pads {a['pads']} must be smaller than kernel {a['kernel_shape']}")
    oh = pool_out(h, kh, sh, t, b, a["ceil_mode"])
    ow = pool_out(w, kw, sw, l, r, a["ceil_mode"])
    if oh <= 0 or ow <= 0:
        raise InvalidGraphError(f"empty output {oh}x{ow}")
    return [TensorType((n, c, oh, ow), x.dtype)]


_POOL = {
    "kernel_shape": _sp(),
    "strides": AttrSpec("ints", (1, 1), 2),
    "pads": AttrSpec("ints", (0, 0, 0, 0), 4),
    "ceil_mode": AttrSpec("bool", False),
}
register(OpSpec("MaxPool", ("X",), dict(_POOL), _infer_pool, doc="Max pooling; padding never wins."))
register(OpSpec("AveragePool", ("X",), {**_POOL, "count_include_pad": AttrSpec("bool", True)}, _infer_pool))


def _infer_global(node: Node, ins: Sequence[TensorType | None]) -> list[TensorType]:
    x = _t(ins[0], "X")
    return [TensorType(x.shape[:2] + (1, 1), x.dtype)]


register(OpSpec("GlobalAveragePool", ("X",), {}, _infer_global))
register(OpSpec("GlobalMaxPool", ("X",), {}, _infer_global))


def _infer_adaptive(node: Node, ins: Sequence[TensorType | None]) -> list[TensorType]:
    x = _t(ins[0], "X")
    return [TensorType(x.shape[:2] + tuple(node.attrs["output_size"]), x.dtype)]


register(OpSpec("AdaptiveAvgPool", ("X",), {"output_size": _sp()}, _infer_adaptive,
                doc="PyTorch adaptive average pooling: window i spans [floor(i*H/o), ceil((i+1)*H/o))."))
register(OpSpec("AdaptiveMaxPool", ("X",), {"output_size": _sp()}, _infer_adaptive))


# --------------------------------------------------------------------------- padding
def _infer_pad(node: Node, ins: Sequence[TensorType | None]) -> list[TensorType]:
    x = _t(ins[0], "X")
    t, l, b, r = node.attrs["pads"]
    n, c, h, w = x.shape
    if h + t + b <= 0 or w + l + r <= 0:
        raise InvalidGraphError("padding removes the whole tensor")
    return [TensorType((n, c, h + t + b, w + l + r), x.dtype)]


register(OpSpec("Pad", ("X",), {
    "pads": AttrSpec("ints", REQUIRED, 4),
    "mode": AttrSpec("str", "constant"),
    "value": AttrSpec("float", 0.0),
}, _infer_pad, doc="Spatial padding of an NCHW tensor; negative pads crop."))


# --------------------------------------------------------------------------- elementwise
for _name in ("Relu", "Sigmoid", "Tanh", "HardSwish", "Silu", "Neg", "Identity", "Exp", "Abs", "Sqrt"):
    register(OpSpec(_name, ("X",), {}, _same))
register(OpSpec("Dropout", ("X",), {"ratio": AttrSpec("float", 0.5)}, _same, doc="Identity at inference."))
register(OpSpec("LeakyRelu", ("X",), {"alpha": AttrSpec("float", 0.01)}, _same))
register(OpSpec("Elu", ("X",), {"alpha": AttrSpec("float", 1.0)}, _same))
register(OpSpec("Clip", ("X",), {"min": AttrSpec("float", -math.inf), "max": AttrSpec("float", math.inf)}, _same))
register(OpSpec("HardSigmoid", ("X",), {"alpha": AttrSpec("float", 0.2), "beta": AttrSpec("float", 0.5)}, _same,
                doc="max(0, min(1, alpha*x + beta))."))


def _infer_prelu(node: Node, ins: Sequence[TensorType | None]) -> list[TensorType]:
    x, s = _t(ins[0], "X"), _t(ins[1], "slope")
    if s.shape not in ((1,), (x.shape[1],)):
        raise InvalidGraphError(f"PRelu slope must be [1] or [C], got {s.shape}")
    return [x]


register(OpSpec("PRelu", ("X", "slope"), {}, _infer_prelu, doc="Slope per channel (axis 1) or shared."))


def _infer_softmax(node: Node, ins: Sequence[TensorType | None]) -> list[TensorType]:
    x = _t(ins[0], "X")
    ax = node.attrs["axis"]
    if not -x.rank <= ax < x.rank:
        raise InvalidGraphError(f"axis {ax} out of range for rank {x.rank}")
    return [x]


register(OpSpec("Softmax", ("X",), {"axis": AttrSpec("int", 1)}, _infer_softmax))

for _name in ("Add", "Sub", "Mul", "Div", "Max", "Min"):
    register(OpSpec(_name, ("A", "B"), {}, _bcast, doc="numpy broadcasting"))


# --------------------------------------------------------------------------- structure
def _norm_axis(ax: int, rank: int) -> int:
    if not -rank <= ax < rank:
        raise InvalidGraphError(f"axis {ax} out of range for rank {rank}")
    return ax % rank


def _infer_concat(node: Node, ins: Sequence[TensorType | None]) -> list[TensorType]:
    ts = [_t(t, "X") for t in ins]
    ax = _norm_axis(node.attrs["axis"], ts[0].rank)
    base = list(ts[0].shape)
    total = 0
    for t in ts:
        s = list(t.shape)
        if len(s) != len(base) or s[:ax] + s[ax + 1:] != base[:ax] + base[ax + 1:]:
            raise InvalidGraphError(f"Concat shapes disagree off axis {ax}: {[x.shape for x in ts]}")
        total += s[ax]
    base[ax] = total
    return [TensorType(tuple(base), ts[0].dtype)]


register(OpSpec("Concat", ("X*",), {"axis": AttrSpec("int", 1)}, _infer_concat, outputs=1))


def _infer_split(node: Node, ins: Sequence[TensorType | None]) -> list[TensorType]:
    x = _t(ins[0], "X")
    ax = _norm_axis(node.attrs["axis"], x.rank)
    split = node.attrs["split"]
    if sum(split) != x.shape[ax] or len(split) != len(node.outputs) or min(split) <= 0:
        raise InvalidGraphError(f"split {split} does not partition axis {ax} of {x.shape}")
    outs = []
    for s in split:
        shp = list(x.shape)
        shp[ax] = s
        outs.append(TensorType(tuple(shp), x.dtype))
    return outs


register(OpSpec("Split", ("X",), {"axis": AttrSpec("int", 1), "split": AttrSpec("ints")}, _infer_split, outputs=-1))


def _infer_slice(node: Node, ins: Sequence[TensorType | None]) -> list[TensorType]:
    x = _t(ins[0], "X")
    ax = _norm_axis(node.attrs["axis"], x.rank)
    s, e = node.attrs["start"], node.attrs["end"]
    if not 0 <= s < e <= x.shape[ax]:
        raise InvalidGraphError(f"slice [{s}:{e}] outside axis {ax} of size {x.shape[ax]}")
    shp = list(x.shape)
    shp[ax] = e - s
    return [TensorType(tuple(shp), x.dtype)]


register(OpSpec("Slice", ("X",), {"axis": AttrSpec("int"), "start": AttrSpec("int"), "end": AttrSpec("int")},
                _infer_slice, doc="x[..., start:end, ...] on one axis, step 1, non-negative bounds."))


def _infer_flatten(node: Node, ins: Sequence[TensorType | None]) -> list[TensorType]:
    x = _t(ins[0], "X")
    ax = _norm_axis(node.attrs["axis"], x.rank) if x.rank else 0
    lead = int(np.prod(x.shape[:ax], dtype=np.int64))
    return [TensorType((lead, int(np.prod(x.shape[ax:], dtype=np.int64))), x.dtype)]


register(OpSpec("Flatten", ("X",), {"axis": AttrSpec("int", 1)}, _infer_flatten))


def _infer_reshape(node: Node, ins: Sequence[TensorType | None]) -> list[TensorType]:
    x = _t(ins[0], "X")
    shape = node.attrs["shape"]
    if any(d <= 0 for d in shape) or int(np.prod(shape, dtype=np.int64)) != x.size:
        raise InvalidGraphError(f"cannot reshape {x.shape} to {shape} (shape must be static and complete)")
    return [TensorType(shape, x.dtype)]


register(OpSpec("Reshape", ("X",), {"shape": AttrSpec("ints")}, _infer_reshape,
                doc="Static reshape; 'shape' is the complete output shape (batch included)."))


def _infer_transpose(node: Node, ins: Sequence[TensorType | None]) -> list[TensorType]:
    x = _t(ins[0], "X")
    perm = node.attrs["perm"]
    if sorted(perm) != list(range(x.rank)):
        raise InvalidGraphError(f"perm {perm} is not a permutation of rank {x.rank}")
    return [TensorType(tuple(x.shape[p] for p in perm), x.dtype)]


register(OpSpec("Transpose", ("X",), {"perm": AttrSpec("ints")}, _infer_transpose))


def _infer_lrn(node: Node, ins: Sequence[TensorType | None]) -> list[TensorType]:
    x = _t(ins[0], "X")
    if x.rank != 4:
        raise InvalidGraphError(f"{node.where()}: LRN takes an NCHW tensor, got {x}")
    if node.attrs["size"] < 1:
        raise InvalidGraphError(f"{node.where()}: LRN size must be >= 1")
    return [x]


register(OpSpec("LRN", ("X",), {
    "size": AttrSpec("int"),
    "alpha": AttrSpec("float", 1e-4),
    "beta": AttrSpec("float", 0.75),
    "bias": AttrSpec("float", 1.0),
}, _infer_lrn, doc="Local response normalisation across channels (ONNX LRN = Caffe LRN ACROSS_CHANNELS): "
   "y = x / (bias + alpha/size * sum_{window} x^2)^beta, the window over channels "
   "[c - (size-1)//2, c + size//2] clipped to the tensor."))


def lrn_window_matrix(channels: int, size: int) -> np.ndarray:
    """The LRN window as a (C, C) float32 0/1 matrix: row c selects the channels
    [c - (size-1)//2, c + size//2] (clipped to the tensor) that output channel c sums."""
    c = np.arange(channels)
    d = c[None, :] - c[:, None]
    return ((d >= -((size - 1) // 2)) & (d <= size // 2)).astype(np.float32)


RESIZE_MODES = ("nearest", "linear")
RESIZE_COORDS = ("half_pixel", "asymmetric", "align_corners", "pytorch_half_pixel")
RESIZE_NEAREST = ("floor", "ceil", "round_prefer_floor", "round_prefer_ceil")


def _infer_resize(node: Node, ins: Sequence[TensorType | None]) -> list[TensorType]:
    x = _t(ins[0], "X")
    if x.rank != 4:
        raise InvalidGraphError(f"{node.where()}: Resize takes an NCHW tensor, got {x}")
    a = node.attrs
    for key, allowed in (("mode", RESIZE_MODES), ("coordinate_transformation_mode", RESIZE_COORDS),
                         ("nearest_mode", RESIZE_NEAREST)):
        if a[key] not in allowed:
            raise InvalidGraphError(f"{node.where()}: Resize {key}={a[key]!r}; known: {allowed}")
    oh, ow = a["sizes"]
    if oh < 1 or ow < 1:
        raise InvalidGraphError(f"{node.where()}: Resize output size {a['sizes']} is empty")
    return [TensorType((x.shape[0], x.shape[1], oh, ow), x.dtype)]


register(OpSpec("Resize", ("X",), {
    "sizes": AttrSpec("ints", REQUIRED, 2),
    "mode": AttrSpec("str", "nearest"),
    "coordinate_transformation_mode": AttrSpec("str", "half_pixel"),
    "nearest_mode": AttrSpec("str", "round_prefer_floor"),
}, _infer_resize, doc="Spatial resize of an NCHW tensor to ``sizes=(H', W')`` with ONNX Resize semantics "
   "(scale = H'/H per axis; linear = bilinear, source coordinates clamped to [0, H-1]). "
   "PyTorch's nearest is asymmetric + floor; its bilinear(align_corners=False) is half_pixel."))


def _infer_shuffle(node: Node, ins: Sequence[TensorType | None]) -> list[TensorType]:
    x = _t(ins[0], "X")
    if x.rank != 4 or x.shape[1] % node.attrs["group"]:
        raise InvalidGraphError(f"channels {x.shape} not divisible by group {node.attrs['group']}")
    return [x]


register(OpSpec("ChannelShuffle", ("X",), {"group": AttrSpec("int")}, _infer_shuffle,
                doc="x.reshape(N, g, C/g, H, W).transpose(1, 2).reshape(N, C, H, W)."))


def _infer_reduce(node: Node, ins: Sequence[TensorType | None]) -> list[TensorType]:
    x = _t(ins[0], "X")
    axes = sorted(_norm_axis(a, x.rank) for a in node.attrs["axes"])
    if node.attrs["keepdims"]:
        shp = tuple(1 if i in axes else d for i, d in enumerate(x.shape))
    else:
        shp = tuple(d for i, d in enumerate(x.shape) if i not in axes)
    return [TensorType(shp, x.dtype)]


register(OpSpec("ReduceMean", ("X",), {"axes": AttrSpec("ints"), "keepdims": AttrSpec("bool", True)}, _infer_reduce))
register(OpSpec("ReduceMax", ("X",), {"axes": AttrSpec("ints"), "keepdims": AttrSpec("bool", True)}, _infer_reduce))


def attrs_of(op: str, **kw: Any) -> dict[str, Any]:
    """Alias of :func:`make_attrs` for readability at call sites."""
    return make_attrs(op, **kw)


def check_supported(node: Node, name: str, allowed: Sequence[Any]) -> None:
    if node.attrs[name] not in allowed:
        raise UnsupportedAttrError(f"{node.where()}: {name}={node.attrs[name]!r} not supported (allowed: {list(allowed)})")
