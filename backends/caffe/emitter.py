"""IR -> Caffe layers, one explicit handler per IR op.

Every handler emits the layer(s) and their blobs together, through the
project's own protobuf schema (:mod:`.schema`) for the chosen dialect profile
(:mod:`.dialects`).  Only the profile's layer types are emitted (another is an
internal error); a construct the profile writes natively (``Profile.native``:
ReLU6/Clip, Swish, Pad, Permute) gets its one layer, and floor pooling is
written the profile's way (``ceil_mode: false``, ``round_mode: FLOOR``, or the
stock rewrite below).  Every layer a node produces is checked against the
profile's parameter rules at once; a node without an exact form is reported
with the profiles that would accept it, found by emitting that node under
each of them (:meth:`Emitter.accepting`).  Without a native layer, constructs
are written as exact compositions of stock BVLC 1.0 layers:

* ``Min(x, c)`` = ``-max(-x, -c)``: Power(scale=-1) (negation is exact),
  a constant blob made by Power(scale=0, shift=-c) from the same tensor
  (Caffe's Power layer fills ``shift`` exactly when ``scale*power == 0``),
  Eltwise MAX, Power(scale=-1).  ReLU6 is ReLU + that.
* ``Max(x, c)``: constant by Power(scale=0, shift=c), Eltwise MAX; a
  per-channel ``c`` is added to a Power(scale=0) blob of zeros by Bias.
* a channel shuffle: Slice into single channels + Concat in shuffled order.
* a broadcast multiply/add by an (N, C, 1, 1) tensor (squeeze-excitation):
  Flatten to (N, C) + Scale/Bias(axis=0) with two bottoms; ``a - b`` is
  ``a + (-b)`` (Power(scale=-1), exact).
* ``x / c``: Power/Scale by ``float32(1/c)``; ``a / b`` for a tensor ``b``:
  Power(power=-1) then the product (two roundings, <= ~1.5 ulp).
* a channel-shared PReLU: its slope blob is 0-d, as Caffe's layer creates it.
* a pooling whose Caffe output would be one window longer than the IR's
  (no padding, stride > kernel): Pooling + Slice, the surplus Silenced.
* under a profile that prefers it (``npu``): a Flatten(axis=1) whose only
  consumers are InnerProducts is left out (InnerProduct flattens its 4-D
  bottom itself, in the same order).  (A Reshape to (N, C*H*W) is already a
  Flatten: normalize_shapes writes it so.)

Layer names are IR node names; blob (top) names are IR tensor names, so a
Caffe net's blobs line up with the IR reference for divergence search.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from xconv.errors import BackendError, UnsupportedOpError, XconvError
from xconv.ir import Graph, Node

from xconv.ops import lrn_window_matrix, pool_out
from xconv.passes import dialect_hint
from xconv.passes.decompose_activations import CLIP_CONSTRUCTS, clip_constructs
from xconv.passes.legalize_pool import caffe_pool_out

from .dialects import PROFILES, Profile, get_profile
from .schema import CaffeSchema, get_schema
from . import resize_plan

log = logging.getLogger(__name__)

#: The layer types of the ``bvlc`` profile (BVLC Caffe 1.0's deploy layers).
BVLC_LAYER_TYPES = get_profile("bvlc").layer_types

#: IR ops whose handler writes only a native layer: such an op is supported under a
#: profile only when the profile has one of these constructs (dialects.CONSTRUCTS).
NEEDS: dict[str, tuple[str, ...]] = {"Transpose": ("transpose",), "Silu": ("silu",), "Clip": CLIP_CONSTRUCTS}


def supports(profile: Profile, op: str) -> bool:
    """Whether ``op`` has a handler that can write it under ``profile``."""
    if op not in HANDLERS:
        return False
    need = NEEDS.get(op)
    return need is None or any(profile.has(c) for c in need)


def unsupported_hint(profile: Profile, ops: set[str]) -> str:
    """What to do about IR ops without a form under ``profile``: other profiles, or ONNX."""
    lines = [f"these IR ops have no Caffe ({profile.name}) form"]
    for op in sorted(ops):
        others = [p.name for p in PROFILES.values() if p.name != profile.name and supports(p, op)]
        if others:
            lines.append(f"  {op}: written natively by {dialect_hint(others)}")
    lines.append("or convert to ONNX (--to onnx)")
    return "\n".join(lines)

EltSUM, EltPROD, EltMAX = 1, 0, 2  # EltwiseParameter.EltwiseOp values (PROD=0, SUM=1, MAX=2)


@dataclass
class Layer:
    msg: Any                      # LayerParameter (without blobs)
    blobs: list[np.ndarray] = field(default_factory=list)


class Emitter:
    def __init__(self, graph: Graph, schema: CaffeSchema, profile: Profile | str) -> None:
        self.g = graph
        self.S = schema
        self.profile = get_profile(profile)
        self.layers: list[Layer] = []
        self.aliases: dict[str, str] = {}  # IR tensors not written as blobs -> the blob that stands for them
        self.layer_names: set[str] = set()
        self.blob_names: set[str] = set(graph.types) | set(graph.inputs)
        self.silenced: list[str] = []
        self.derived_shapes: dict[str, tuple[int, ...]] = {}  # blobs the emitter made up, not IR tensors
        self._consumers: dict[str, list[Node]] | None = None  # IR tensor -> consuming nodes (built on first use)

    @property
    def dialect(self) -> str:
        return self.profile.name

    # -------------------------------------------------------------- helpers
    def fresh_blob(self, base: str) -> str:
        name, i = base, 1
        while name in self.blob_names:
            name = f"{base}_{i}"
            i += 1
        self.blob_names.add(name)
        return name

    def layer(self, type_: str, name: str, bottoms: list[str], tops: list[str],
              blobs: list[np.ndarray] | None = None) -> Any:
        if type_ not in self.profile.layer_types:
            raise XconvError(f"internal error: layer '{name}' of type {type_} is not in dialect '{self.dialect}' "
                             "(a handler ignored the profile); please report it")
        bottoms = [self.blob(b) for b in bottoms]
        lname, i = name, 1
        while lname in self.layer_names:
            lname = f"{name}_{i}"
            i += 1
        self.layer_names.add(lname)
        msg = self.S.LayerParameter(name=lname, type=type_, bottom=bottoms, top=tops)
        # np.asarray, not np.ascontiguousarray: the latter turns a 0-d blob (PReLU channel_shared) into [1]
        self.layers.append(Layer(msg, [np.asarray(b, dtype=np.float32, order="C") for b in (blobs or [])]))
        return msg

    def blob(self, t: str) -> str:
        """The Caffe blob holding IR tensor ``t``."""
        return self.aliases.get(t, t)

    def consumers(self, t: str) -> list[Node]:
        if self._consumers is None:
            self._consumers = self.g.consumers()
        return self._consumers.get(t, [])

    def violations(self, msg: Any) -> list[str]:
        """Why a LayerParameter breaks the profile's parameter rules (empty: it keeps them)."""
        return [why for _, why in self.profile.rule_violations(msg)]

    def shape(self, t: str) -> tuple[int, ...]:
        if t in self.derived_shapes:
            return self.derived_shapes[t]
        return self.g.type_of(t).shape

    def param(self, t: str) -> np.ndarray | None:
        return self.g.params.get(t)

    def silence(self, tops: list[str]) -> None:
        self.silenced.extend(tops)

    def power(self, x: str, out: str, name: str, scale: float = 1.0, shift: float = 0.0, power: float = 1.0) -> str:
        m = self.layer("Power", name, [x], [out])
        self.derived_shapes.setdefault(out, self.shape(x))
        p = m.power_param
        if power != 1.0:
            p.power = power
        if scale != 1.0:
            p.scale = scale
        if shift != 0.0:
            p.shift = shift
        return out

    def eltwise(self, op: int, bottoms: list[str], out: str, name: str, coeff: list[float] | None = None) -> str:
        m = self.layer("Eltwise", name, bottoms, [out])
        self.derived_shapes.setdefault(out, self.shape(bottoms[0]))
        if op != EltSUM:
            m.eltwise_param.operation = op
        if coeff:
            m.eltwise_param.coeff.extend(coeff)
        return out

    def const_like(self, x: str, value: float, name: str) -> str:
        """A blob of x's shape filled with ``value`` exactly (Power with scale 0)."""
        return self.power(x, self.fresh_blob(f"{name}/const"), f"{name}/const", scale=0.0, shift=value)

    def neg(self, x: str, name: str, out: str | None = None) -> str:
        return self.power(x, out or self.fresh_blob(f"{name}/neg"), f"{name}/neg" if out is None else name,
                          scale=-1.0)

    def slice_out(self, x: str, axis: int, start: int, end: int, out: str, name: str) -> None:
        size = self.shape(x)[axis] if x in self.g.types or x in self.g.inputs else None
        assert size is not None
        self.slice_raw(x, axis, size, start, end, out, name)

    def slice_raw(self, x: str, axis: int, size: int, start: int, end: int, out: str, name: str) -> None:
        points, tops, drop = [], [], []
        if start > 0:
            points.append(start)
            d = self.fresh_blob(f"{name}/discard_head")
            tops.append(d)
            drop.append(d)
        tops.append(out)
        if end < size:
            points.append(end)
            d = self.fresh_blob(f"{name}/discard_tail")
            tops.append(d)
            drop.append(d)
        if not points:
            self.layer("Split", name, [x], [out])
            return
        m = self.layer("Slice", name, [x], tops)
        m.slice_param.axis = axis
        m.slice_param.slice_point.extend(points)
        self.silence(drop)

    # ----------------------------------------------------------------- main
    def run(self) -> None:
        for name, t in self.g.inputs.items():
            m = self.layer("Input", name, [], [name])
            m.input_param.shape.add().dim.extend(t.shape)
        missing = [(n.op, n.name) for n in self.g.nodes if not supports(self.profile, n.op)]
        if missing:
            raise UnsupportedOpError("caffe", missing, hint=unsupported_hint(self.profile, {op for op, _ in missing}))
        problems: list[str] = []
        accepted: set[str] = set()
        for n in self.g.nodes:
            err = self.emit_node(n)
            if err is not None:  # keep going: report every node at once
                others = self.accepting(n)
                accepted |= set(others)
                problems.append(err + (f" [exact in dialect(s): {', '.join(others)}]" if others else ""))
        if problems:
            way = [f"--dialect {d}" for d in PROFILES if d in accepted]
            raise BackendError(
                f"caffe (dialect '{self.dialect}', {self.profile.title}): {len(problems)} node(s) have no exact "
                "form under this dialect:\n" + "\n".join(f"  {p}" for p in problems)
                + "\n" + (f"convert with {' or '.join(way)}, " if way else "")
                + "convert to ONNX instead (--to onnx), or change these nodes in the source model")
        if self.silenced:
            self.layer("Silence", "xconv_silence", list(self.silenced), [])

    def emit_node(self, n: Node) -> str | None:
        """Write node ``n``'s layers; None, or why it has no exact form under the profile
        (its handler refused, or a layer it wrote breaks one of the profile's rules)."""
        start = len(self.layers)
        try:
            HANDLERS[n.op](self, n)
            bad = [f"layer '{lay.msg.name}' ({lay.msg.type}): {why}"
                   for lay in self.layers[start:] for why in self.violations(lay.msg)]
            if bad:
                raise BackendError(f"{n.where()}: " + "; ".join(bad))
        except BackendError as err:
            return str(err)
        return None

    def accepting(self, n: Node) -> tuple[str, ...]:
        """The other profiles under which node ``n`` alone has an exact form (tried, not assumed)."""
        out = []
        for p in PROFILES.values():
            if p.name == self.profile.name or not supports(p, n.op):
                continue
            trial = Emitter(self.g, get_schema(p.schema), p)
            trial.aliases = dict(self.aliases)
            try:
                ok = trial.emit_node(n) is None
            except XconvError:
                ok = False
            if ok:
                out.append(p.name)
        return tuple(out)


Handler = Callable[[Emitter, Node], None]
HANDLERS: dict[str, Handler] = {}


def handler(*ops: str) -> Callable[[Handler], Handler]:
    def deco(fn: Handler) -> Handler:
        for op in ops:
            HANDLERS[op] = fn
        return fn
    return deco


def _hw(msg: Any, stem: str, values: tuple[int, int], default: int, square_field: str | None = None) -> None:
    """Write a per-axis pair as ``<stem>`` (square) or ``<stem>_h``/``<stem>_w``."""
    h, w = values
    if h == w:
        if h == default:
            return
        f = square_field or stem
        fd = msg.DESCRIPTOR.fields_by_name[f]
        if fd.is_repeated:
            getattr(msg, f).append(h)
        else:
            setattr(msg, f, h)
    else:
        setattr(msg, f"{stem}_h", h)
        setattr(msg, f"{stem}_w", w)


# --------------------------------------------------------------------------- layers
@handler("Conv")
def _conv(e: Emitter, n: Node) -> None:
    a = n.attrs
    t, l, b, r = a["pads"]
    if t != b or l != r:
        raise BackendError(f"{n.where()}: asymmetric pads {a['pads']} reached the Caffe backend "
                           "(the legalize_pad pass rewrites them)")
    w = e.param(n.inputs[1])
    if w is None:
        raise BackendError(f"{n.where()}: Caffe needs constant convolution weights")
    bias = e.param(n.inputs[2]) if len(n.inputs) > 2 and n.inputs[2] else None
    blobs = [w] + ([bias] if bias is not None else [])
    m = e.layer("Convolution", n.name, [n.inputs[0]], [n.outputs[0]], blobs)
    p = m.convolution_param
    p.num_output = w.shape[0]
    if bias is None:
        p.bias_term = False
    _hw(p, "kernel", a["kernel_shape"], -1, "kernel_size")
    _hw(p, "stride", a["strides"], 1, "stride")
    _hw(p, "pad", (t, l), 0, "pad")
    if a["dilations"] != (1, 1):
        p.dilation.extend(a["dilations"] if a["dilations"][0] != a["dilations"][1] else a["dilations"][:1])
    if a["group"] != 1:
        p.group = a["group"]


@handler("Gemm")
def _gemm(e: Emitter, n: Node) -> None:
    w = e.param(n.inputs[1])
    if w is None:
        raise BackendError(f"{n.where()}: Caffe needs constant InnerProduct weights")
    bias = e.param(n.inputs[2]) if len(n.inputs) > 2 and n.inputs[2] else None
    m = e.layer("InnerProduct", n.name, [n.inputs[0]], [n.outputs[0]], [w] + ([bias] if bias is not None else []))
    m.inner_product_param.num_output = w.shape[0]
    if bias is None:
        m.inner_product_param.bias_term = False


@handler("BatchNormalization")
def _bn(e: Emitter, n: Node) -> None:
    s, b, mean, var = (e.param(i) for i in n.inputs[1:])
    if any(v is None for v in (s, b, mean, var)):
        raise BackendError(f"{n.where()}: Caffe needs constant BatchNorm statistics")
    mid = e.fresh_blob(f"{n.outputs[0]}/bn")
    # third blob: the moving-average scale factor Caffe divides mean and var by
    m = e.layer("BatchNorm", n.name, [n.inputs[0]], [mid], [mean, var, np.ones(1, np.float32)])
    m.batch_norm_param.use_global_stats = True
    m.batch_norm_param.eps = n.attrs["epsilon"]
    sc = e.layer("Scale", f"{n.name}/scale", [mid], [n.outputs[0]], [s, b])
    sc.scale_param.bias_term = True


def _pool_common(e: Emitter, n: Node, method: int) -> None:
    a = n.attrs
    t, l, b, r = a["pads"]
    if t != b or l != r:
        raise BackendError(f"{n.where()}: asymmetric pooling pads reached the Caffe backend "
                           "(the legalize_pool pass rewrites them)")
    ceil = a["ceil_mode"]
    if not ceil and not e.profile.floor_pooling_native:
        raise BackendError(f"{n.where()}: floor-mode pooling has no field in dialect '{e.dialect}' "
                           "(the legalize_pool pass rewrites it with stock layers)")
    if n.op == "AveragePool" and not a["count_include_pad"] and (t or l):
        raise BackendError(f"{n.where()}: Caffe average pooling counts padding; "
                           "legalize_pool rewrites count_include_pad=False")
    x = n.inputs[0]
    _, _, h, w = e.shape(x)
    (kh, kw), (sh, sw) = a["kernel_shape"], a["strides"]
    any_pad = bool(t or l)
    ch, cw = caffe_pool_out(h, kh, sh, t, ceil, any_pad), caffe_pool_out(w, kw, sw, l, ceil, any_pad)
    oh, ow = pool_out(h, kh, sh, t, b, ceil), pool_out(w, kw, sw, l, r, ceil)
    out = n.outputs[0]
    pooled = out if (ch, cw) == (oh, ow) else e.fresh_blob(f"{out}/caffe_pool")
    m = e.layer("Pooling", n.name, [x], [pooled])
    p = m.pooling_param
    p.pool = method
    _hw(p, "kernel", (kh, kw), -1, "kernel_size")
    _hw(p, "stride", (sh, sw), 1, "stride")
    _hw(p, "pad", (t, l), 0, "pad")
    if not ceil:
        if e.profile.floor_pooling == "round_mode":
            p.round_mode = _enum(p, "round_mode", "FLOOR")  # BVLC master
        else:
            p.ceil_mode = False                              # the forks
    if (ch, cw) != (oh, ow):
        # Caffe keeps a trailing window that starts past the input when nothing is padded
        cur = pooled
        if ch != oh:
            nxt = out if cw == ow else e.fresh_blob(f"{out}/trim_h")
            e.slice_raw(cur, 2, ch, 0, oh, nxt, f"{n.name}/trim_h")
            cur = nxt
        if cw != ow:
            e.slice_raw(cur, 3, cw, 0, ow, out, f"{n.name}/trim_w")


@handler("MaxPool")
def _maxpool(e: Emitter, n: Node) -> None:
    _pool_common(e, n, 0)


@handler("AveragePool")
def _avgpool(e: Emitter, n: Node) -> None:
    _pool_common(e, n, 1)


@handler("GlobalAveragePool", "GlobalMaxPool")
def _gpool(e: Emitter, n: Node) -> None:
    m = e.layer("Pooling", n.name, [n.inputs[0]], [n.outputs[0]])
    m.pooling_param.pool = 1 if n.op == "GlobalAveragePool" else 0
    m.pooling_param.global_pooling = True


# --------------------------------------------------------------------------- activations
#: IR ops that are exactly one parameterless Caffe layer ("Split" copies: Identity)
ONE_TO_ONE = {"Relu": "ReLU", "Sigmoid": "Sigmoid", "Tanh": "TanH", "Exp": "Exp", "Abs": "AbsVal", "Identity": "Split"}


@handler(*ONE_TO_ONE)
def _one_to_one(e: Emitter, n: Node) -> None:
    e.layer(ONE_TO_ONE[n.op], n.name, [n.inputs[0]], [n.outputs[0]])


@handler("LeakyRelu")
def _leaky(e: Emitter, n: Node) -> None:
    m = e.layer("ReLU", n.name, [n.inputs[0]], [n.outputs[0]])
    m.relu_param.negative_slope = n.attrs["alpha"]


@handler("Elu")
def _elu(e: Emitter, n: Node) -> None:
    m = e.layer("ELU", n.name, [n.inputs[0]], [n.outputs[0]])
    if n.attrs["alpha"] != 1.0:
        m.elu_param.alpha = n.attrs["alpha"]


@handler("PRelu")
def _prelu(e: Emitter, n: Node) -> None:
    slope = e.param(n.inputs[1])
    if slope is None:
        raise BackendError(f"{n.where()}: Caffe needs a constant PReLU slope")
    shared = slope.size == 1 and e.shape(n.inputs[0])[1] != 1
    # a channel-shared PReLU's blob is 0-d in Caffe (shape []); a [1] blob aborts the weight copy
    m = e.layer("PReLU", n.name, [n.inputs[0]], [n.outputs[0]], [slope.reshape(() if shared else (-1,))])
    if shared:
        m.prelu_param.channel_shared = True


@handler("Softmax")
def _softmax(e: Emitter, n: Node) -> None:
    m = e.layer("Softmax", n.name, [n.inputs[0]], [n.outputs[0]])
    ax = n.attrs["axis"] % e.g.type_of(n.inputs[0]).rank
    if ax != 1:
        m.softmax_param.axis = ax


@handler("Sqrt")
def _sqrt(e: Emitter, n: Node) -> None:
    e.power(n.inputs[0], n.outputs[0], n.name, power=0.5)


@handler("Neg")
def _neg(e: Emitter, n: Node) -> None:
    e.power(n.inputs[0], n.outputs[0], n.name, scale=-1.0)


def _enum(msg: Any, field_name: str, value: str) -> int:
    """The number of enum value ``value`` of ``msg``'s field (from the dialect's schema)."""
    return msg.DESCRIPTOR.fields_by_name[field_name].enum_type.values_by_name[value].number


@handler("Clip")
def _clip(e: Emitter, n: Node) -> None:
    """A native clip (decompose_activations keeps a Clip only where the profile has one):
    ReLU6 (the fork: min(max(x, 0) + 0 * min(x, 0), t)) or Clip (BVLC master: max(lo, min(x, hi)))."""
    lo, hi = n.attrs["min"], n.attrs["max"]
    x, out = n.inputs[0], n.outputs[0]
    for construct in clip_constructs(lo, hi):
        lt = e.profile.native_layer(construct)
        if lt == "ReLU6" and lo == 0.0:
            m = e.layer("ReLU6", n.name, [x], [out])
            if hi != 6.0:
                m.relu6_param.threshold = hi
            return
        if lt == "Clip":
            m = e.layer("Clip", n.name, [x], [out])
            m.clip_param.min = lo
            m.clip_param.max = hi
            return
    raise BackendError(f"{n.where()}: Clip({lo}, {hi}) has no native layer in dialect '{e.dialect}' "
                       "(the decompose_activations pass writes it with stock layers)")


@handler("Silu")
def _silu(e: Emitter, n: Node) -> None:
    """x * sigmoid(x): BVLC master's Swish (beta 1)."""
    lt = e.profile.native_layer("silu")
    if lt is None:
        raise BackendError(f"{n.where()}: SiLU has no native layer in dialect '{e.dialect}' "
                           "(the decompose_activations pass writes it as x * Sigmoid(x))")
    e.layer(lt, n.name, [n.inputs[0]], [n.outputs[0]])


# --------------------------------------------------------------------------- binary
def _scalar(e: Emitter, t: str) -> float | None:
    a = e.param(t)
    return None if a is None or a.size != 1 else float(a.reshape(()))


def _const_axes(e: Emitter, x: str, c: np.ndarray, n: Node) -> tuple[int, np.ndarray]:
    """For a constant broadcast against x: (axis, blob) with blob matching x's dims from axis."""
    xs = e.shape(x)
    cs = (1,) * (len(xs) - c.ndim) + tuple(c.shape)
    if len(cs) > len(xs):
        raise BackendError(f"{n.where()}: constant of shape {c.shape} has more axes than {xs}")
    nz = [i for i, d in enumerate(cs) if d != 1]
    if not nz:
        return -1, c.reshape(())
    a0, a1 = nz[0], nz[-1]
    if any(cs[i] != xs[i] for i in range(a0, a1 + 1)) or a0 == 0:
        raise BackendError(f"{n.where()}: constant of shape {c.shape} broadcast against {xs} "
                           "has no Scale/Bias form in Caffe")
    return a0, c.reshape(cs[a0:a1 + 1])


def _flatten_nc11(e: Emitter, t: str, name: str) -> str:
    out = e.fresh_blob(f"{t}/flat")
    e.layer("Flatten", f"{name}/flatten", [t], [out])
    s = e.shape(t)
    e.derived_shapes[out] = s[:2]
    return out


def _broadcast_pair(e: Emitter, a: str, b: str) -> tuple[str, str] | None:
    """(big, small) when small is (N, C, 1, 1) against big (N, C, H, W)."""
    sa, sb = e.shape(a), e.shape(b)
    for big, small, sbig, ssmall in ((a, b, sa, sb), (b, a, sb, sa)):
        if len(sbig) == 4 and ssmall == sbig[:2] + (1, 1) and sbig != ssmall:
            return big, small
    return None


def _with_const(e: Emitter, layer_type: str, x: str, c: np.ndarray, out: str, name: str, n: Node) -> None:
    """Scale or Bias of x by a non-scalar constant broadcast against it."""
    axis, blob = _const_axes(e, x, c, n)
    m = e.layer(layer_type, name, [x], [out], [blob])
    p = m.scale_param if layer_type == "Scale" else m.bias_param
    p.axis = axis
    p.num_axes = blob.ndim


def _tensor_pair(e: Emitter, n: Node, layer_type: str, a: str, b: str, out: str) -> None:
    """Eltwise (same shapes) or two-bottom Scale/Bias ((N, C, 1, 1) against (N, C, H, W))."""
    if e.shape(a) == e.shape(b):
        e.eltwise(EltPROD if layer_type == "Scale" else EltSUM, [a, b], out, n.name)
        return
    pair = _broadcast_pair(e, a, b)
    if pair is None:
        raise BackendError(f"{n.where()}: broadcast {n.op} of {e.shape(n.inputs[0])} and {e.shape(n.inputs[1])} "
                           "has no Caffe form (Caffe broadcasts only an (N, C, 1, 1) tensor)")
    big, small = pair
    m = e.layer(layer_type, n.name, [big, _flatten_nc11(e, small, n.name)], [out])
    (m.scale_param if layer_type == "Scale" else m.bias_param).axis = 0


@handler("Add", "Sub")
def _add(e: Emitter, n: Node) -> None:
    a, b = n.inputs
    out = n.outputs[0]
    sub = n.op == "Sub"
    pa, pb = e.param(a), e.param(b)
    if pa is not None and pb is not None:
        raise BackendError(f"{n.where()}: both operands constant (should have been folded)")
    if pa is None and pb is None:
        if sub and e.shape(a) == e.shape(b):
            e.eltwise(EltSUM, [a, b], out, n.name, coeff=[1.0, -1.0])
            return
        if sub:  # a - b = a + (-b); negation is exact
            if _broadcast_pair(e, a, b) is None:
                _tensor_pair(e, n, "Bias", a, b, out)  # raises the error
            b = e.neg(b, n.name)
        _tensor_pair(e, n, "Bias", a, b, out)
        return
    if pa is not None:  # c + x  or  c - x
        x, c, xsign, csign = b, pa, (-1.0 if sub else 1.0), 1.0
    else:               # x + c  or  x - c
        x, c, xsign, csign = a, pb, 1.0, (-1.0 if sub else 1.0)
    if c.size == 1:
        # one rounding: shift + scale * x with scale +-1 (negation is exact)
        e.power(x, out, n.name, scale=xsign, shift=csign * float(c.reshape(())))
        return
    if xsign != 1.0:
        x = e.neg(x, n.name)
    _with_const(e, "Bias", x, csign * c, out, n.name, n)


@handler("Mul")
def _mul(e: Emitter, n: Node) -> None:
    a, b = n.inputs
    out = n.outputs[0]
    pa, pb = e.param(a), e.param(b)
    if pa is not None and pb is not None:
        raise BackendError(f"{n.where()}: both operands constant (should have been folded)")
    if pa is None and pb is None:
        _tensor_pair(e, n, "Scale", a, b, out)
        return
    x, c = (b, pa) if pa is not None else (a, pb)
    assert c is not None
    if c.size == 1:
        e.power(x, out, n.name, scale=float(c.reshape(())))
        return
    _with_const(e, "Scale", x, c, out, n.name, n)


@handler("Div")
def _div(e: Emitter, n: Node) -> None:
    a, b = n.inputs
    out = n.outputs[0]
    pa, pb = e.param(a), e.param(b)
    if pa is not None and pb is not None:
        raise BackendError(f"{n.where()}: both operands constant (should have been folded)")
    if pb is not None:
        # x * (1/c): 1/c rounded once to float32, then one product: <= ~1.5 ulp from x / c
        recip = (1.0 / pb.astype(np.float64)).astype(np.float32)
        if recip.size == 1:
            e.power(a, out, n.name, scale=float(recip.reshape(())))
        else:
            _with_const(e, "Scale", a, recip, out, n.name, n)
        return
    # divisor is a tensor: multiply by its reciprocal (Power with power -1)
    if pa is None and e.shape(a) != e.shape(b) and _broadcast_pair(e, a, b) is None:
        _tensor_pair(e, n, "Scale", a, b, out)  # raises the error before any layer is written
    inv = e.power(b, e.fresh_blob(f"{n.name}/recip"), f"{n.name}/recip", power=-1.0)
    if pa is None:
        _tensor_pair(e, n, "Scale", a, inv, out)
    elif pa.size == 1:
        e.power(inv, out, n.name, scale=float(pa.reshape(())))
    else:
        _with_const(e, "Scale", inv, pa, out, n.name, n)


def _const_blob(e: Emitter, x: str, c: np.ndarray, name: str, n: Node) -> str:
    """A blob of x's shape holding the constant c broadcast, built exactly from stock layers:
    Power(scale=0) fills a value exactly (Caffe's special case when scale * power == 0); a
    non-scalar c is added to zeros by Bias (0 + c is exact)."""
    if c.size == 1:
        return e.const_like(x, float(c.reshape(())), name)
    zeros = e.const_like(x, 0.0, name)
    out = e.fresh_blob(f"{name}/const_b")
    e.derived_shapes[out] = e.shape(x)
    _with_const(e, "Bias", zeros, c, out, f"{name}/const_b", n)
    return out


@handler("Max", "Min")
def _maxmin(e: Emitter, n: Node) -> None:
    a, b = n.inputs
    out = n.outputs[0]
    pa, pb = e.param(a), e.param(b)
    if pa is not None and pb is not None:
        raise BackendError(f"{n.where()}: both operands constant (should have been folded)")
    if pa is None and pb is None:
        if e.shape(a) != e.shape(b):
            raise BackendError(f"{n.where()}: broadcast {n.op} of {e.shape(a)} and {e.shape(b)} has no Caffe form "
                               "(Eltwise MAX needs equal shapes)")
        if n.op == "Max":
            e.eltwise(EltMAX, [a, b], out, n.name)
        else:  # min(a, b) = -max(-a, -b)
            m = e.eltwise(EltMAX, [e.neg(a, f"{n.name}/a"), e.neg(b, f"{n.name}/b")],
                          e.fresh_blob(f"{n.name}/max"), f"{n.name}/max")
            e.neg(m, n.name, out=out)
        return
    x, c = (b, pa) if pa is not None else (a, pb)
    assert c is not None
    if c.size != 1:
        _const_axes(e, x, c, n)  # raises when c does not broadcast into x's shape
    if n.op == "Max":
        if c.size == 1 and float(c.reshape(())) == 0.0:
            e.layer("ReLU", n.name, [x], [out])
            return
        e.eltwise(EltMAX, [x, _const_blob(e, x, c, n.name, n)], out, n.name)
        return
    # min(x, c) = -max(-x, -c)
    nx = e.neg(x, n.name)
    m = e.eltwise(EltMAX, [nx, _const_blob(e, nx, -c, n.name, n)], e.fresh_blob(f"{n.name}/max"), f"{n.name}/max")
    e.neg(m, n.name, out=out)


# --------------------------------------------------------------------------- structure
@handler("Concat")
def _concat(e: Emitter, n: Node) -> None:
    m = e.layer("Concat", n.name, list(n.inputs), [n.outputs[0]])
    ax = n.attrs["axis"] % e.g.type_of(n.inputs[0]).rank
    if ax != 1:
        m.concat_param.axis = ax


@handler("Split")
def _split(e: Emitter, n: Node) -> None:
    m = e.layer("Slice", n.name, [n.inputs[0]], list(n.outputs))
    ax = n.attrs["axis"] % e.g.type_of(n.inputs[0]).rank
    m.slice_param.axis = ax
    m.slice_param.slice_point.extend(np.cumsum(n.attrs["split"])[:-1].tolist())


@handler("Slice")
def _slice(e: Emitter, n: Node) -> None:
    ax = n.attrs["axis"] % e.g.type_of(n.inputs[0]).rank
    e.slice_out(n.inputs[0], ax, n.attrs["start"], n.attrs["end"], n.outputs[0], n.name)


def _feeds_only_inner_products(e: Emitter, t: str) -> bool:
    users = e.consumers(t)
    return t not in e.g.outputs and bool(users) and all(u.op == "Gemm" and u.inputs[0] == t and t not in u.inputs[1:]
                                                        for u in users)


@handler("Flatten")
def _flatten(e: Emitter, n: Node) -> None:
    ax = n.attrs["axis"] % max(1, e.g.type_of(n.inputs[0]).rank)
    if ax == 1 and e.profile.flatten_into_inner_product and _feeds_only_inner_products(e, n.outputs[0]):
        # InnerProduct (axis 1) flattens a 4-D bottom itself, in the same C, H, W order
        e.aliases[n.outputs[0]] = e.blob(n.inputs[0])
        return
    m = e.layer("Flatten", n.name, [n.inputs[0]], [n.outputs[0]])
    if ax != 1:
        m.flatten_param.axis = ax


@handler("Reshape")
def _reshape(e: Emitter, n: Node) -> None:
    shape = list(n.attrs["shape"])
    xs = e.shape(n.inputs[0])
    if shape and xs and shape[0] == xs[0]:
        shape[0] = 0  # "copy the batch dimension": the net still reshapes to other batch sizes
    m = e.layer("Reshape", n.name, [n.inputs[0]], [n.outputs[0]])
    m.reshape_param.shape.dim.extend(shape)


@handler("Transpose")
def _transpose(e: Emitter, n: Node) -> None:
    """The fork's (SSD's) Permute: top[i...] = bottom[i permuted by order], any rank.
    (normalize_shapes already wrote a Transpose that moves only size-1 axes as a Reshape
    wherever the dialect's Permute would not take it.)"""
    lt = e.profile.native_layer("transpose")
    if lt is None:
        raise BackendError(f"{n.where()}: Transpose has no layer in dialect '{e.dialect}'")
    m = e.layer(lt, n.name, [n.inputs[0]], [n.outputs[0]])
    _permute_order(m, n.attrs["perm"])


def _permute_order(msg: Any, perm: Any) -> None:
    msg.permute_param.order.extend(int(p) for p in perm)


#: how the native layer of a construct carries an IR node's attrs (for :func:`native_keeps_rules`)
_NATIVE_PARAMS: dict[str, Callable[[Any, dict[str, Any]], None]] = {
    "transpose": lambda msg, attrs: _permute_order(msg, attrs["perm"]),
}


def native_keeps_rules(profile: Profile, construct: str, attrs: dict[str, Any]) -> bool:
    """Whether ``construct``'s native layer under ``profile``, written for an IR node with
    ``attrs``, keeps the profile's parameter rules (e.g. npu's Permute orders)."""
    lt = profile.native_layer(construct)
    fill = _NATIVE_PARAMS.get(construct)
    if lt is None or fill is None:
        return lt is not None
    probe = get_schema(profile.schema).LayerParameter(name="probe", type=lt)
    fill(probe, attrs)
    return not profile.rule_violations(probe)


_PAD_TYPES = {"constant": "CONSTANT", "edge": "REPLICATE", "reflect": "REFLECT"}


@handler("Pad")
def _pad(e: Emitter, n: Node) -> None:
    """The fork's Pad layer (pad_u/d/l/r of an NCHW blob; CONSTANT pad_value, REPLICATE, REFLECT).
    legalize_pad crops negative pads first: the layer handles only all-negative pads, and a
    mix would write outside its top blob.  REFLECT mirrors without the edge and reads only
    inside the map, so each pad must be smaller than the map's side."""
    lt = e.profile.native_layer("pad")
    if lt is None:
        raise BackendError(f"{n.where()}: Pad has no layer in dialect '{e.dialect}' "
                           "(the legalize_pad pass writes zero padding with stock layers)")
    t, l, b, r = n.attrs["pads"]
    mode = n.attrs["mode"]
    _, _, h, w = e.shape(n.inputs[0])
    if min(t, l, b, r) < 0:
        raise BackendError(f"{n.where()}: negative pads {n.attrs['pads']} reached the Caffe backend "
                           "(the legalize_pad pass crops them with Slice first)")
    if mode not in _PAD_TYPES:
        raise BackendError(f"{n.where()}: padding mode '{mode}' has no form in the Pad layer")
    if mode == "reflect" and (max(t, b) >= h or max(l, r) >= w):
        raise BackendError(f"{n.where()}: reflect padding {n.attrs['pads']} of a {h}x{w} map: pads must be "
                           "smaller than the map (a single reflection)")
    m = e.layer(lt, n.name, [n.inputs[0]], [n.outputs[0]])
    p = m.pad_param
    if mode != "constant":
        p.pad_type = _enum(p, "pad_type", _PAD_TYPES[mode])
    for f, v in (("pad_u", t), ("pad_d", b), ("pad_l", l), ("pad_r", r)):
        if v:
            setattr(p, f, v)
    if mode == "constant" and n.attrs["value"] != 0.0:
        p.pad_value = n.attrs["value"]


@handler("ChannelShuffle")
def _shuffle(e: Emitter, n: Node) -> None:
    x = n.inputs[0]
    c = e.shape(x)[1]
    g = n.attrs["group"]
    singles = [e.fresh_blob(f"{n.name}/c{i}") for i in range(c)]
    m = e.layer("Slice", f"{n.name}/split", [x], singles)
    m.slice_param.axis = 1
    m.slice_param.slice_point.extend(range(1, c))
    cg = c // g
    order = [singles[j * cg + k] for k in range(cg) for j in range(g)]
    e.layer("Concat", n.name, order, [n.outputs[0]])


# --------------------------------------------------------------------------- LRN / Resize
# (LRN -> Caffe LRN; Resize -> a fixed-weight Deconvolution, proven per node by resize_plan)
@handler("LRN")
def _lrn(e: Emitter, n: Node) -> None:
    """Caffe's ACROSS_CHANNELS LRN is the IR's for an odd size (lrn_layer.cpp: scale = k +
    alpha/size * sum of squares over [c - (size-1)/2, c + (size-1)/2], y = x * scale^-beta).
    The layer refuses even sizes (CHECK_EQ(size % 2, 1)), whose IR window [c - size/2 + 1,
    c + size/2] is not centred: those are the same formula in stock layers -- Power(2),
    the window sum as a 1x1 Convolution with a 0/1 band matrix (products by 1 and 0 are
    exact), Power(shift=k, scale=alpha/size, power=-beta), Eltwise PROD with x."""
    a = n.attrs
    x, out = n.inputs[0], n.outputs[0]
    if a["size"] % 2:
        m = e.layer("LRN", n.name, [x], [out])
        p = m.lrn_param
        p.local_size = a["size"]
        p.alpha = a["alpha"]
        p.beta = a["beta"]
        p.k = a["bias"]
        return
    c = e.shape(x)[1]
    sq = e.power(x, e.fresh_blob(f"{n.name}/square"), f"{n.name}/square", power=2.0)
    acc = e.fresh_blob(f"{n.name}/window_sum")
    band = lrn_window_matrix(c, a["size"]).reshape(c, c, 1, 1)
    m = e.layer("Convolution", f"{n.name}/window_sum", [sq], [acc], [band])
    m.convolution_param.num_output = c
    m.convolution_param.bias_term = False
    m.convolution_param.kernel_size.append(1)
    e.derived_shapes[acc] = e.shape(x)
    inv = e.power(acc, e.fresh_blob(f"{n.name}/inv_scale"), f"{n.name}/inv_scale",
                  scale=a["alpha"] / a["size"], shift=a["bias"], power=-a["beta"])
    e.eltwise(EltPROD, [x, inv], out, n.name)


def _replicate_border(e: Emitter, x: str, axis: int, name: str) -> str:
    """x with its first and last row (axis 2) or column (axis 3) repeated once: Slice + Concat."""
    shape = e.shape(x)
    size = shape[axis]
    if size == 1:
        first = last = x
    else:
        first, last = e.fresh_blob(f"{name}/first"), e.fresh_blob(f"{name}/last")
        tops = [first, last]
        points = [1]
        if size > 2:
            mid = e.fresh_blob(f"{name}/mid")
            tops = [first, mid, last]
            points = [1, size - 1]
            e.silence([mid])
        m = e.layer("Slice", f"{name}/border", [x], tops)
        m.slice_param.axis = axis
        m.slice_param.slice_point.extend(points)
    out = e.fresh_blob(f"{name}/edge")
    m = e.layer("Concat", f"{name}/edge", [first, x, last], [out])
    m.concat_param.axis = axis
    grown = list(shape)
    grown[axis] += 2
    e.derived_shapes[out] = tuple(grown)
    return out


@handler("Resize")
def _resize(e: Emitter, n: Node) -> None:
    """Integer upsampling as a grouped Deconvolution with fixed weights (one per channel):
    nearest copies (weights 1), bilinear uses the interpolation weights, with the border
    pixel replicated first where the source clamps to the edge (half_pixel) and the
    surplus sliced off.  resize_plan derives the layer parameters and proves, for this
    node's sizes, that the composed map equals the IR's."""
    x = n.inputs[0]
    nb, c, h, w = e.shape(x)
    oh, ow = n.attrs["sizes"]
    plans = resize_plan.plan(n.attrs, (h, w), (oh, ow))
    if plans is None:
        a = n.attrs
        kind = a["mode"] + (f"/{a['nearest_mode']}" if a["mode"] == "nearest" else "")
        raise BackendError(
            f"{n.where()}: Resize {kind} ({a['coordinate_transformation_mode']}) from {h}x{w} to {oh}x{ow} "
            f"has no exact stock-Caffe form: {resize_plan.why_not(a, (h, w), (oh, ow))}. Caffe writes integer "
            "upsampling (output = k * input; with align_corners, (input - 1) * k + 1) as a Deconvolution: "
            "resize by such a factor in the source model")
    ph, pw = plans
    src = x
    if ph.edge:
        src = _replicate_border(e, src, 2, f"{n.name}/pad_h")
    if pw.edge:
        src = _replicate_border(e, src, 3, f"{n.name}/pad_w")
    up = n.outputs[0] if not (ph.crops or pw.crops) else e.fresh_blob(f"{n.name}/deconv")
    kernel = np.outer(ph.kernel, pw.kernel).astype(np.float32)  # one rounding per weight
    blob = np.broadcast_to(kernel, (c, 1) + kernel.shape)
    m = e.layer("Deconvolution", n.name, [src], [up], [blob])
    p = m.convolution_param
    p.num_output = c
    p.group = c
    p.bias_term = False
    _hw(p, "kernel", (len(ph.kernel), len(pw.kernel)), -1, "kernel_size")
    _hw(p, "stride", (ph.stride, pw.stride), 1, "stride")
    _hw(p, "pad", (ph.pad, pw.pad), 0, "pad")
    e.derived_shapes[up] = (nb, c, ph.length, pw.length)
    if ph.crops:
        nxt = n.outputs[0] if not pw.crops else e.fresh_blob(f"{n.name}/crop_h")
        e.slice_raw(up, 2, ph.length, ph.keep[0], ph.keep[1], nxt, f"{n.name}/crop_h")
        e.derived_shapes[nxt] = (nb, c, oh, pw.length)
        up = nxt
    if pw.crops:
        e.slice_raw(up, 3, pw.length, pw.keep[0], pw.keep[1], n.outputs[0], f"{n.name}/crop_w")
