"""TensorFlow GraphDef -> IR: the conversion context and the op handler registry.

The graph given here is frozen and inference-only (see :mod:`.graph` for
loading and freezing).  Layout changes once, at the boundary: the input
placeholder ``[N, H, W, C]`` becomes an IR input ``(N, C, H, W)`` and every
4-D activation from then on is held NCHW in the IR.  Each TF tensor maps to a
:data:`Value`: a numpy array (a constant, folded with numpy) or an
:class:`Act` (an IR tensor).  An ``Act`` of rank 4 is NCHW; other ranks are
"plain" (TF's own layout).  One more state exists: a 4-D activation
flattened in TF's NHWC order is held as the NCHW flatten plus the 4-D source
(``Act.flat_src``); a constant-weight MatMul consumes it by permuting its
weight rows (exact, no Transpose), anything else materialises the NHWC order
with ``Transpose(0, 2, 3, 1)`` + ``Flatten``.

Handlers are registered explicitly with :func:`handles`; numpy folders for
constant sub-graphs with :func:`folds`.  A handler reads attrs through
:class:`Attrs`, which raises :class:`UnsupportedAttrError` for any attr it
did not read or explicitly ignore.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence, Union

import numpy as np

from xconv.builder import GraphBuilder
from xconv.errors import UnsupportedAttrError, UnsupportedOpError, XconvError

from .common import depthwise_to_oihw, hwio_to_oihw, nhwc_flatten_rows_to_nchw, tf_pads

log = logging.getLogger(__name__)

FRAMEWORK = "tensorflow"
TensorRef = tuple[str, int]


@dataclass(frozen=True)
class Act:
    """An activation: IR tensor ``ir``; rank 4 means NCHW.

    ``flat_src``: set when ``ir`` is the NCHW flatten of the 4-D IR tensor
    ``flat_src`` while TF flattened in NHWC order (see the module doc).
    """

    ir: str
    flat_src: str | None = None


Value = Union[np.ndarray, Act]


# --------------------------------------------------------------------------- attrs
_ALWAYS_IGNORED = {"T"}  # element dtype: the IR computes in float32 throughout


class Attrs:
    """Typed reads of a NodeDef's attrs; every attr must be read or ignored."""

    def __init__(self, node_def: Any) -> None:
        self._a = node_def.attr
        self._name = node_def.name
        self._op = node_def.op
        self._used: set[str] = set()

    def has(self, name: str) -> bool:
        return name in self._a

    def _get(self, name: str, default: Any) -> Any:
        self._used.add(name)
        if name not in self._a:
            if default is _REQ:
                raise UnsupportedAttrError(f"tensorflow node '{self._name}' ({self._op}): attr '{name}' is missing")
            return None
        return self._a[name]

    def s(self, name: str, default: Any = None) -> str:
        v = self._get(name, _REQ if default is None else default)
        return default if v is None else v.s.decode()

    def i(self, name: str, default: Any = None) -> int:
        v = self._get(name, _REQ if default is None else default)
        return default if v is None else int(v.i)

    def f(self, name: str, default: Any = None) -> float:
        v = self._get(name, _REQ if default is None else default)
        return default if v is None else float(v.f)

    def b(self, name: str, default: Any = None) -> bool:
        v = self._get(name, _REQ if default is None else default)
        return default if v is None else bool(v.b)

    def ints(self, name: str, default: Any = None) -> list[int]:
        v = self._get(name, _REQ if default is None else default)
        return list(default) if v is None else [int(x) for x in v.list.i]

    def type(self, name: str, default: Any = None) -> int:
        v = self._get(name, _REQ if default is None else default)
        return default if v is None else int(v.type)

    def raw(self, name: str) -> Any:
        return self._get(name, None)

    def ignore(self, *names: str) -> None:
        self._used.update(names)

    def data_format(self) -> None:
        fmt = self.s("data_format", "NHWC")
        if fmt not in ("NHWC", "NC", "N..C"):
            raise UnsupportedAttrError(
                f"tensorflow node '{self._name}' ({self._op}): data_format {fmt} is not supported (TF's CPU "
                "kernels and this converter expect NHWC graphs; re-export the model with data_format NHWC)")

    def leftover(self) -> list[str]:
        return sorted(k for k in self._a if k not in self._used and not k.startswith("_")
                      and k not in _ALWAYS_IGNORED)

    def finish(self) -> None:
        left = self.leftover()
        if left:
            vals = {k: str(self._a[k]).strip().replace("\n", " ") for k in left}
            raise UnsupportedAttrError(f"tensorflow node '{self._name}' ({self._op}): attrs {vals} are not "
                                       "understood by the converter")


_REQ = object()


# --------------------------------------------------------------------------- nodes
def parse_ref(s: str) -> TensorRef:
    """'name', 'name:1' -> (name, index).  Control inputs ('^name') are not tensors."""
    name, _, idx = s.partition(":")
    return (name, int(idx) if idx else 0)


@dataclass
class TfNode:
    name: str
    op: str
    inputs: list[TensorRef]
    node_def: Any
    attrs: Attrs = field(init=False)

    def __post_init__(self) -> None:
        self.attrs = Attrs(self.node_def)

    @classmethod
    def of(cls, nd: Any) -> "TfNode":
        return cls(nd.name, nd.op, [parse_ref(i) for i in nd.input if not i.startswith("^")], nd)

    def where(self) -> str:
        return f"tensorflow node '{self.name}' ({self.op})"


Handler = Callable[["Ctx", TfNode], Union[Value, Sequence[Value]]]
Folder = Callable[["Ctx", TfNode, list[Value]], Union[np.ndarray, Sequence[np.ndarray]]]
HANDLERS: dict[str, Handler] = {}
FOLDERS: dict[str, Folder] = {}
#: ops that are supported only when they compute constants
CONST_ONLY_HINT = "only constant (shape) computations are supported for this op"


def handles(*ops: str) -> Callable[[Handler], Handler]:
    def deco(fn: Handler) -> Handler:
        for op in ops:
            if op in HANDLERS:
                raise ValueError(f"tensorflow handler for {op} registered twice")
            HANDLERS[op] = fn
        return fn
    return deco


def folds(*ops: str) -> Callable[[Folder], Folder]:
    def deco(fn: Folder) -> Folder:
        for op in ops:
            if op in FOLDERS:
                raise ValueError(f"tensorflow folder for {op} registered twice")
            FOLDERS[op] = fn
        return fn
    return deco


def supported_ops() -> dict[str, list[str]]:
    return {"converted": sorted(HANDLERS), "constant-folded": sorted(set(FOLDERS) - set(HANDLERS))}


# --------------------------------------------------------------------------- context
PASS_THROUGH = ("Identity", "StopGradient", "Snapshot", "PreventGradient", "CheckNumerics", "EnsureShape")


class Ctx:
    """State of one conversion: TF nodes, their values, the IR builder."""

    def __init__(self, nodes: dict[str, TfNode], order: list[str], outputs: list[TensorRef],
                 builder: GraphBuilder) -> None:
        self.nodes = nodes
        self.order = order
        self.outputs = set(outputs)
        self.b = builder
        self.values: dict[TensorRef, Value] = {}
        self.absorbed: dict[str, TensorRef] = {}
        self.consumers: dict[TensorRef, list[str]] = {}
        for name in order:
            for i in nodes[name].inputs:
                self.consumers.setdefault(i, []).append(name)
        self.is_const: dict[str, bool] = {}
        self._materialised: dict[str, Act] = {}

    # ----------------------------------------------------------- values
    def get(self, t: TensorRef) -> Value:
        if t not in self.values:
            c = self.try_const(t)
            if c is None:
                raise XconvError(f"tensorflow: tensor {t[0]}:{t[1]} is used before it is defined")
            return c
        return self.values[t]

    def try_const(self, t: TensorRef) -> np.ndarray | None:
        """The constant value of ``t`` when it only depends on constants (and static shapes), else None."""
        v = self.values.get(t)
        if v is not None:
            return v if isinstance(v, np.ndarray) else None
        node = self.nodes.get(t[0])
        if node is None or not self.is_const.get(node.name, False):
            return None
        if node.op == "Shape":
            src = self.values.get(node.inputs[0])
            if src is None and self.try_const(node.inputs[0]) is None:
                return None
        else:
            for i in node.inputs:
                if self.try_const(i) is None:
                    return None
        self.fold(node)
        v = self.values.get(t)
        return v if isinstance(v, np.ndarray) else None

    def fold(self, node: TfNode) -> None:
        args: list[Value] = []
        for i in node.inputs:
            v = self.values.get(i)
            args.append(v if v is not None else self.get(i))
        try:
            out = FOLDERS[node.op](self, node, args)
        except XconvError:
            raise
        except Exception as e:  # noqa: BLE001 - numpy errors become located errors
            raise XconvError(f"{node.where()}: folding the constant failed: {e}") from e
        outs = [out] if isinstance(out, np.ndarray) else list(out)
        for k, o in enumerate(outs):
            self.values[(node.name, k)] = np.asarray(o)

    def const(self, node: TfNode, k: int, what: str) -> np.ndarray:
        c = self.try_const(node.inputs[k])
        if c is None:
            raise UnsupportedAttrError(f"{node.where()}: the {what} (input {k}, '{node.inputs[k][0]}') must be a "
                                       "constant; a computed one is not supported")
        return c

    def const_name(self, t: TensorRef) -> str:
        """Name of the Const node behind ``t`` (through Identity-like nodes): the IR param name."""
        name = t[0]
        seen = 0
        while name in self.nodes and self.nodes[name].op in PASS_THROUGH + ("PlaceholderWithDefault",) \
                and self.nodes[name].inputs and seen < 64:
            name = self.nodes[name].inputs[0][0]
            seen += 1
        return name

    def act(self, t: TensorRef, user: TfNode, *, keep_flat: bool = False) -> Act:
        v = self.get(t)
        if isinstance(v, np.ndarray):
            raise UnsupportedAttrError(f"{user.where()}: input '{t[0]}' is a constant where an activation is "
                                       "expected (the op on constants only is not supported)")
        if v.flat_src is not None and not keep_flat:
            return self.materialise(v)
        return v

    def materialise(self, v: Act) -> Act:
        """TF's NHWC-order flatten of a 4-D activation: Transpose(0, 2, 3, 1) + Flatten."""
        assert v.flat_src is not None
        if v.ir not in self._materialised:
            tr = self.b.add("Transpose", [v.flat_src], name=f"{v.ir}/to_nhwc", source=v.ir, perm=(0, 2, 3, 1))
            fl = self.b.add("Flatten", [tr], name=f"{v.ir}/nhwc_flatten", source=v.ir, axis=1)
            self._materialised[v.ir] = Act(fl)
        return self._materialised[v.ir]

    def shape(self, v: Act | str) -> tuple[int, ...]:
        return self.b.shape(v.ir if isinstance(v, Act) else v)

    def tf_shape(self, v: Value) -> tuple[int, ...]:
        if isinstance(v, np.ndarray):
            return tuple(v.shape)
        s = self.shape(v)
        return (s[0], s[2], s[3], s[1]) if len(s) == 4 else s

    def rank(self, v: Act) -> int:
        return len(self.shape(v))

    def param(self, t: TensorRef | str, value: np.ndarray) -> str:
        name = t if isinstance(t, str) else self.const_name(t)
        return self.b.param(name, np.asarray(value, dtype=np.float32))

    def add(self, op: str, inputs: Sequence[str], node: TfNode, name: str | None = None, **attrs: Any) -> str:
        out: str = self.b.add(op, list(inputs), name=name or node.name, source=node.name, **attrs)
        return out

    def single_consumer(self, t: TensorRef) -> TfNode | None:
        """The only consumer of ``t`` (None when ``t`` is a graph output or has 0 or 2+ consumers)."""
        if t in self.outputs:
            return None
        cons = self.consumers.get(t, [])
        if len(cons) != 1 or self.nodes[cons[0]].inputs.count(t) != 1:
            return None
        return self.nodes[cons[0]]

    def channel_const(self, node: TfNode, t: TensorRef, channels: int, rank: int) -> np.ndarray | None:
        """The constant ``t`` when it is a per-channel vector broadcasting over a rank-``rank`` tensor."""
        c = self.try_const(t)
        if c is None or c.dtype.kind != "f" or c.size != channels:
            return None
        ok = {(channels,), (1,) * (rank - 1) + (channels,)}
        return c.reshape(channels) if c.shape in ok else None

    def absorb_add(self, node: TfNode, channels: int, rank: int,
                   t: TensorRef | None = None) -> tuple[np.ndarray, TensorRef] | None:
        """A following BiasAdd/Add of a per-channel constant that can fold into ``node``'s bias
        (``t``: the tensor it must follow, ``node``'s output by default)."""
        t = t or (node.name, 0)
        nxt = self.single_consumer(t)
        if nxt is None or nxt.op not in ("BiasAdd", "BiasAddV1", "Add", "AddV2"):
            return None
        if nxt.op.startswith("BiasAdd"):
            if nxt.inputs[0] != t or nxt.attrs.s("data_format", "NHWC") != "NHWC":
                return None
            other = nxt.inputs[1]
        else:
            other = nxt.inputs[1] if nxt.inputs[0] == t else nxt.inputs[0]
        c = self.channel_const(nxt, other, channels, rank)
        if c is None:
            return None
        self.absorbed[nxt.name] = t
        return c, other

    def to_ir_const(self, c: np.ndarray, act_rank: int) -> np.ndarray:
        """A constant operand broadcasting against an activation, in the IR layout."""
        c = np.asarray(c, dtype=np.float32)
        if act_rank == 4 and c.ndim >= 1:
            if c.ndim > 4:
                raise XconvError(f"a rank-{c.ndim} constant cannot broadcast into a 4-D activation")
            c4 = c.reshape((1,) * (4 - c.ndim) + c.shape)
            return np.ascontiguousarray(c4.transpose(0, 3, 1, 2))
        return c


# --------------------------------------------------------------------------- scan
def const_nodes(nodes: dict[str, TfNode], order: list[str], inputs: Iterable[str]) -> dict[str, bool]:
    """Which nodes compute constants (from Consts and static shapes only)."""
    inputs = set(inputs)
    is_const: dict[str, bool] = {}
    for name in order:
        n = nodes[name]
        if name in inputs:
            is_const[name] = False
        elif n.op == "Const":
            is_const[name] = True
        elif n.op in ("Shape", "Size", "Rank"):
            is_const[name] = n.op in FOLDERS
        elif n.op in FOLDERS:
            is_const[name] = all(is_const.get(i[0], False) for i in n.inputs)
        else:
            is_const[name] = False
    return is_const


def scan_unsupported(nodes: dict[str, TfNode], order: list[str], is_const: dict[str, bool],
                     inputs: Iterable[str]) -> None:
    """Raise one UnsupportedOpError listing every unsupported node reachable from the outputs."""
    inputs = set(inputs)
    bad: list[tuple[str, str]] = []
    for name in order:
        n = nodes[name]
        if name in inputs or is_const.get(name) or n.op in HANDLERS:
            continue
        if n.op in FOLDERS:
            bad.append((f"{n.op} (on activations; {CONST_ONLY_HINT})", name))
        elif n.op == "Placeholder":
            bad.append(("Placeholder (not a graph input; name it in --inputs)", name))
        else:
            bad.append((n.op, name))
    if bad:
        raise UnsupportedOpError(FRAMEWORK, bad, hint=(
            "supported TensorFlow ops: " + ", ".join(sorted(HANDLERS)) +
            "; remove or replace the listed ops before exporting (or cut the graph with --inputs/--outputs)"))


# --------------------------------------------------------------------------- convert driver
def convert_nodes(ctx: Ctx, input_refs: dict[str, str]) -> None:
    """Convert every node in ``ctx.order``; ``input_refs`` maps TF input node -> IR input name."""
    for tf_name, ir_name in input_refs.items():
        ctx.values[(tf_name, 0)] = Act(ir_name)
    for name in ctx.order:
        if (name, 0) in ctx.values and name in input_refs:
            continue
        node = ctx.nodes[name]
        if name in ctx.absorbed:
            ctx.values[(name, 0)] = ctx.values[ctx.absorbed[name]]
            continue
        if ctx.is_const.get(name):
            if (name, 0) not in ctx.values:
                ctx.fold(node)
            continue
        out = HANDLERS[node.op](ctx, node)
        node.attrs.finish()
        outs: list[Value] = [out] if isinstance(out, (Act, np.ndarray)) else list(out)
        for k, v in enumerate(outs):
            ctx.values[(name, k)] = v


# =========================================================================== handlers
def _act4(ctx: Ctx, node: TfNode, k: int = 0) -> Act:
    x = ctx.act(node.inputs[k], node)
    if ctx.rank(x) != 4:
        raise UnsupportedAttrError(f"{node.where()}: needs a 4-D NHWC input, got shape {ctx.tf_shape(x)}")
    return x


def _nhwc_pair(node: TfNode, vals: list[int], what: str) -> tuple[int, int]:
    if len(vals) != 4 or vals[0] != 1 or vals[3] != 1:
        raise UnsupportedAttrError(f"{node.where()}: {what}={vals} is not supported (only [1, h, w, 1])")
    return vals[1], vals[2]


def _spatial_pads(node: TfNode, hw: tuple[int, int], k: tuple[int, int], s: tuple[int, int],
                  d: tuple[int, int] = (1, 1)) -> tuple[int, int, int, int]:
    a = node.attrs
    padding = a.s("padding")
    explicit = a.ints("explicit_paddings", [])
    if padding == "EXPLICIT":
        if len(explicit) != 8 or any(explicit[i] for i in (0, 1, 6, 7)):
            raise UnsupportedAttrError(f"{node.where()}: explicit_paddings={explicit} pad batch/channels")
        return (explicit[2], explicit[4], explicit[3], explicit[5])
    if padding not in ("SAME", "VALID"):
        raise UnsupportedAttrError(f"{node.where()}: padding={padding!r} (supported: SAME, VALID, EXPLICIT)")
    return tf_pads(padding, hw, k, s, d)


Atrous = tuple[tuple[int, int, int, int], tuple[int, int], TensorRef]


def _conv(ctx: Ctx, node: TfNode, depthwise: bool, x: Act | None = None, atrous: Atrous | None = None) -> Act:
    """Conv2D / DepthwiseConv2dNative; ``atrous`` = (pads, dilations, tensor the result stands for)
    when the conv is the inner op of a SpaceToBatchND/BatchToSpaceND dilated convolution."""
    a = node.attrs
    x = x or _act4(ctx, node)
    w = ctx.const(node, 1, "filter")
    a.data_format()
    a.ignore("use_cudnn_on_gpu")
    s = _nhwc_pair(node, a.ints("strides"), "strides")
    d = _nhwc_pair(node, a.ints("dilations", [1, 1, 1, 1]), "dilations")
    _, c, h, wd = ctx.shape(x)
    if w.ndim != 4:
        raise UnsupportedAttrError(f"{node.where()}: filter of shape {w.shape} is not 4-D")
    kh, kw, cin = w.shape[:3]
    out_ref = (node.name, 0)
    if atrous is None:
        pads = _spatial_pads(node, (h, wd), (kh, kw), s, d)
    else:
        padding = a.s("padding")
        a.ignore("explicit_paddings")
        if padding != "VALID" or s != (1, 1) or d != (1, 1):
            raise UnsupportedAttrError(f"{node.where()}: inside SpaceToBatchND/BatchToSpaceND only a VALID, "
                                       f"stride-1, undilated conv is supported (padding {padding}, strides {s})")
        pads, d, out_ref = atrous
    if depthwise:
        if cin != c:
            raise UnsupportedAttrError(f"{node.where()}: depthwise filter {w.shape} does not fit {c} channels")
        weight, group = depthwise_to_oihw(w), c
    else:
        if c % cin:
            raise UnsupportedAttrError(f"{node.where()}: filter {w.shape} does not fit {c} input channels")
        weight, group = hwio_to_oihw(w), c // cin
    o = weight.shape[0]
    ins = [x.ir, ctx.param(node.inputs[1], weight)]
    bias = ctx.absorb_add(node, o, 4, out_ref)
    if bias is not None:
        ins.append(ctx.param(bias[1], bias[0]))
    return Act(ctx.add("Conv", ins, node, kernel_shape=(kh, kw), strides=s, pads=pads, dilations=d, group=group))


@handles("Conv2D")
def _conv2d(ctx: Ctx, node: TfNode) -> Act:
    return _conv(ctx, node, depthwise=False)


@handles("DepthwiseConv2dNative")
def _depthwise(ctx: Ctx, node: TfNode) -> Act:
    return _conv(ctx, node, depthwise=True)


@handles("SpaceToBatchND")
def _space_to_batch(ctx: Ctx, node: TfNode) -> Act:
    """The dilated-convolution idiom of tf.nn.convolution / depthwise_conv2d / atrous_conv2d:
    SpaceToBatchND(pads) -> VALID conv -> BatchToSpaceND(crops) == one conv with dilation = block
    and pads = pads - crops (stride 1: cropping output rows is removing pad rows)."""
    node.attrs.ignore("Tblock_shape", "Tpaddings")
    x = _act4(ctx, node)
    block = np.asarray(ctx.const(node, 1, "block_shape")).reshape(-1)
    pads = np.asarray(ctx.const(node, 2, "paddings"))
    conv = ctx.single_consumer((node.name, 0))
    b2s = None
    if conv is not None and conv.op in ("Conv2D", "DepthwiseConv2dNative") and conv.inputs[0] == (node.name, 0):
        b2s = ctx.single_consumer((conv.name, 0))
    if b2s is None or b2s.op != "BatchToSpaceND" or block.shape != (2,) or pads.shape != (2, 2):
        raise UnsupportedAttrError(f"{node.where()}: only the dilated-convolution pattern SpaceToBatchND -> "
                                   "Conv2D/DepthwiseConv2dNative -> BatchToSpaceND is supported")
    crops = np.asarray(ctx.const(b2s, 2, "crops"))
    b2s_block = np.asarray(ctx.const(b2s, 1, "block_shape")).reshape(-1)
    ir_pads = tuple(int(v) for v in (pads[0, 0] - crops[0, 0], pads[1, 0] - crops[1, 0],
                                     pads[0, 1] - crops[0, 1], pads[1, 1] - crops[1, 1]))
    if crops.shape != (2, 2) or b2s_block.tolist() != block.tolist() or min(ir_pads) < 0:
        raise UnsupportedAttrError(f"{b2s.where()}: crops {crops.tolist()} / block {b2s_block.tolist()} do not "
                                   f"undo {node.name}'s paddings {pads.tolist()} / block {block.tolist()}")
    b2s.attrs.ignore("Tblock_shape", "Tcrops")
    b2s.attrs.finish()
    out = _conv(ctx, conv, conv.op == "DepthwiseConv2dNative", x,
                (ir_pads, (int(block[0]), int(block[1])), (b2s.name, 0)))
    conv.attrs.finish()
    ctx.absorbed[conv.name] = (node.name, 0)
    ctx.absorbed[b2s.name] = (node.name, 0)
    return out


@handles("BatchToSpaceND")
def _batch_to_space(ctx: Ctx, node: TfNode) -> Act:
    raise UnsupportedAttrError(f"{node.where()}: only the dilated-convolution pattern SpaceToBatchND -> "
                               "Conv2D/DepthwiseConv2dNative -> BatchToSpaceND is supported")


@handles("MatMul")
def _matmul(ctx: Ctx, node: TfNode) -> Act:
    a = node.attrs
    if a.b("transpose_a", False):
        raise UnsupportedAttrError(f"{node.where()}: transpose_a=True is not supported")
    tb = a.b("transpose_b", False)
    a.ignore("grad_a", "grad_b")
    x = ctx.act(node.inputs[0], node, keep_flat=True)
    if ctx.rank(x) != 2:
        raise UnsupportedAttrError(f"{node.where()}: needs a 2-D input, got {ctx.tf_shape(x)}")
    w = ctx.const(node, 1, "weight")
    w = w.T if tb else w  # [in, out]
    if x.flat_src is not None:
        _, c, h, wd = ctx.shape(x.flat_src)
        weight = nhwc_flatten_rows_to_nchw(w, h, wd, c)  # rows permuted to NCHW flatten order: exact
    else:
        weight = np.ascontiguousarray(w.T)
    ins = [x.ir, ctx.param(node.inputs[1], weight)]
    bias = ctx.absorb_add(node, weight.shape[0], 2)
    if bias is not None:
        ins.append(ctx.param(bias[1], bias[0]))
    return Act(ctx.add("Gemm", ins, node))


@handles("FusedBatchNorm", "FusedBatchNormV2", "FusedBatchNormV3")
def _fused_bn(ctx: Ctx, node: TfNode) -> list[Value]:
    a = node.attrs
    if a.b("is_training", True):
        raise UnsupportedAttrError(f"{node.where()}: is_training=True (batch statistics) is not an inference "
                                   "graph; export with is_training=False")
    a.data_format()
    eps = a.f("epsilon", 1e-4)
    a.ignore("U", "exponential_avg_factor")
    x = _act4(ctx, node)
    c = ctx.shape(x)[1]
    params = []
    for k, what in ((1, "scale"), (2, "offset"), (3, "mean"), (4, "variance")):
        v = ctx.const(node, k, what)
        if v.size != c:
            raise UnsupportedAttrError(f"{node.where()}: {what} has {v.size} values for {c} channels")
        params.append(ctx.param(node.inputs[k], v.reshape(c)))
    return [Act(ctx.add("BatchNormalization", [x.ir] + params, node, epsilon=eps))]


_UNARY = {"Relu": "Relu", "Sigmoid": "Sigmoid", "Tanh": "Tanh", "Abs": "Abs", "Exp": "Exp", "Neg": "Neg",
          "Sqrt": "Sqrt"}


@handles(*_UNARY)
def _unary(ctx: Ctx, node: TfNode) -> Act:
    x = ctx.act(node.inputs[0], node)
    return Act(ctx.add(_UNARY[node.op], [x.ir], node))


@handles("Relu6")
def _relu6(ctx: Ctx, node: TfNode) -> Act:
    x = ctx.act(node.inputs[0], node)
    return Act(ctx.add("Clip", [x.ir], node, min=0.0, max=6.0))


@handles("Elu")
def _elu(ctx: Ctx, node: TfNode) -> Act:
    x = ctx.act(node.inputs[0], node)
    return Act(ctx.add("Elu", [x.ir], node, alpha=1.0))


@handles("LeakyRelu")
def _leaky(ctx: Ctx, node: TfNode) -> Act:
    alpha = node.attrs.f("alpha", 0.2)
    x = ctx.act(node.inputs[0], node)
    return Act(ctx.add("LeakyRelu", [x.ir], node, alpha=alpha))


@handles("Softmax")
def _softmax(ctx: Ctx, node: TfNode) -> Act:
    x = ctx.act(node.inputs[0], node)
    r = ctx.rank(x)
    return Act(ctx.add("Softmax", [x.ir], node, axis=1 if r == 4 else r - 1))


@handles("MaxPool", "AvgPool")
def _pool(ctx: Ctx, node: TfNode) -> Act:
    a = node.attrs
    a.data_format()
    x = _act4(ctx, node)
    k = _nhwc_pair(node, a.ints("ksize"), "ksize")
    s = _nhwc_pair(node, a.ints("strides"), "strides")
    _, _, h, w = ctx.shape(x)
    pads = _spatial_pads(node, (h, w), k, s)
    if node.op == "MaxPool":
        # padding never wins a max: TF's SAME pooling is the IR's padded MaxPool
        return Act(ctx.add("MaxPool", [x.ir], node, kernel_shape=k, strides=s, pads=pads, ceil_mode=False))
    # TF's AvgPool divides by the number of real cells in the window (padding excluded)
    return Act(ctx.add("AveragePool", [x.ir], node, kernel_shape=k, strides=s, pads=pads, ceil_mode=False,
                       count_include_pad=not any(pads)))


_BINARY = {"Add": "Add", "AddV2": "Add", "BiasAdd": "Add", "BiasAddV1": "Add", "Sub": "Sub", "Mul": "Mul",
           "RealDiv": "Div", "Maximum": "Max", "Minimum": "Min"}


@handles(*_BINARY)
def _binary(ctx: Ctx, node: TfNode) -> Act:
    if node.op.startswith("BiasAdd"):
        node.attrs.data_format()
    op = _BINARY[node.op]
    va, vb = ctx.get(node.inputs[0]), ctx.get(node.inputs[1])
    if isinstance(va, Act) and isinstance(vb, Act):
        xa, xb = ctx.act(node.inputs[0], node), ctx.act(node.inputs[1], node)
        ra, rb = ctx.rank(xa), ctx.rank(xb)
        if ra != rb and 4 in (ra, rb):
            raise UnsupportedAttrError(f"{node.where()}: broadcasting a rank-{min(ra, rb)} activation against a "
                                       "4-D one is not supported")
        return Act(ctx.add(op, [xa.ir, xb.ir], node))
    k_act = 0 if isinstance(va, Act) else 1
    x = ctx.act(node.inputs[k_act], node)
    c = vb if k_act == 0 else va
    assert isinstance(c, np.ndarray)
    r = ctx.rank(x)
    if op == "Mul":
        bn = _mul_add_as_bn(ctx, node, x, c, node.inputs[1 - k_act])
        if bn is not None:
            return bn
    cp = ctx.param(node.inputs[1 - k_act], ctx.to_ir_const(c, r))
    ins = [x.ir, cp] if k_act == 0 else [cp, x.ir]
    return Act(ctx.add(op, ins, node))


def _mul_add_as_bn(ctx: Ctx, node: TfNode, x: Act, c: np.ndarray, c_ref: TensorRef) -> Act | None:
    """x * scale + shift with per-channel constants (unfused batch norm) -> one BatchNormalization."""
    shp = ctx.shape(x)
    if len(shp) != 4:
        return None
    ch = shp[1]
    scale = ctx.channel_const(node, c_ref, ch, 4)
    if scale is None:
        return None
    t = (node.name, 0)
    nxt = ctx.single_consumer(t)
    if nxt is None or nxt.op not in ("Add", "AddV2", "BiasAdd"):
        return None
    if nxt.op == "BiasAdd" and (nxt.inputs[0] != t or nxt.attrs.s("data_format", "NHWC") != "NHWC"):
        return None
    other = nxt.inputs[1] if nxt.inputs[0] == t else nxt.inputs[0]
    shift = ctx.channel_const(nxt, other, ch, 4)
    if shift is None:
        return None
    ctx.absorbed[nxt.name] = t
    ins = [x.ir, ctx.param(c_ref, scale), ctx.param(other, shift),
           ctx.param(f"{node.name}/zero_mean", np.zeros(ch, np.float32)),
           ctx.param(f"{node.name}/unit_var", np.ones(ch, np.float32))]
    # (x - 0) / sqrt(1 + 0) * scale + shift == x * scale + shift, exactly
    return Act(ctx.add("BatchNormalization", ins, node, name=nxt.name, epsilon=0.0))


@handles("AddN")
def _addn(ctx: Ctx, node: TfNode) -> Act:
    node.attrs.ignore("N")
    acts = [i for i in node.inputs if isinstance(ctx.get(i), Act)]
    consts = [ctx.get(i) for i in node.inputs if not isinstance(ctx.get(i), Act)]
    cur = ctx.act(acts[0], node)
    r = ctx.rank(cur)
    rest = [ctx.act(i, node).ir for i in acts[1:]]
    if consts:
        total = np.sum(np.stack([np.asarray(c, np.float32) for c in consts]), axis=0)  # type: ignore[arg-type]
        rest.append(ctx.param(f"{node.name}/const_sum", ctx.to_ir_const(total, r)))
    out = cur.ir
    for j, other in enumerate(rest):
        out = ctx.add("Add", [out, other], node, name=node.name if j == len(rest) - 1 else f"{node.name}/{j}")
    return Act(out)


_NHWC_TO_NCHW_AXIS = {0: 0, 1: 2, 2: 3, 3: 1}


def _ir_axis(axis: int, rank: int) -> int:
    axis %= rank
    return _NHWC_TO_NCHW_AXIS[axis] if rank == 4 else axis


@handles("ConcatV2", "Concat")
def _concat(ctx: Ctx, node: TfNode) -> Act:
    node.attrs.ignore("N", "Tidx")
    if node.op == "ConcatV2":
        parts, axis_ref = node.inputs[:-1], node.inputs[-1]
    else:
        parts, axis_ref = node.inputs[1:], node.inputs[0]
    axis_v = ctx.try_const(axis_ref)
    if axis_v is None:
        raise UnsupportedAttrError(f"{node.where()}: the axis must be a constant")
    first = next(ctx.act(i, node) for i in parts if isinstance(ctx.get(i), Act))
    r = ctx.rank(first)
    ins = []
    for i in parts:
        v = ctx.get(i)
        ins.append(ctx.act(i, node).ir if isinstance(v, Act) else ctx.param(i, ctx.to_ir_const(v, r)))
    return Act(ctx.add("Concat", ins, node, axis=_ir_axis(int(axis_v), r)))


def _reduce(ctx: Ctx, node: TfNode, kind: str) -> Act:
    node.attrs.ignore("Tidx")
    keep = node.attrs.b("keep_dims", False)
    x = ctx.act(node.inputs[0], node)
    axes_v = ctx.const(node, 1, "reduction axes")
    r = ctx.rank(x)
    axes = sorted({int(a) % r for a in np.asarray(axes_v).reshape(-1)})
    if r == 4 and axes == [1, 2]:
        op = "GlobalAveragePool" if kind == "mean" else "GlobalMaxPool"
        if keep:
            return Act(ctx.add(op, [x.ir], node))
        pooled = ctx.add(op, [x.ir], node, name=f"{node.name}/global_pool")
        return Act(ctx.add("Flatten", [pooled], node, axis=1))
    ir_axes = tuple(sorted(_ir_axis(a, r) for a in axes))
    if r == 4 and not keep and 3 not in axes:
        raise UnsupportedAttrError(f"{node.where()}: reducing NHWC axes {axes} without keep_dims leaves a "
                                   "layout the converter does not track")
    op = "ReduceMean" if kind == "mean" else "ReduceMax"
    return Act(ctx.add(op, [x.ir], node, axes=ir_axes, keepdims=keep))


@handles("Mean")
def _mean(ctx: Ctx, node: TfNode) -> Act:
    return _reduce(ctx, node, "mean")


@handles("Max")
def _max(ctx: Ctx, node: TfNode) -> Act:
    return _reduce(ctx, node, "max")


def _same_order(tf_shape: Sequence[int]) -> bool:
    """NCHW and NHWC hold the same element order (H*W == 1 or C == 1), or the tensor is not 4-D."""
    return len(tf_shape) != 4 or tf_shape[1] * tf_shape[2] == 1 or tf_shape[3] == 1


def reshape_act(ctx: Ctx, node: TfNode, x: Act, out: tuple[int, ...]) -> Act:
    """Reshape the activation ``x`` to the TF shape ``out`` with TF's (NHWC) element order."""
    if x.flat_src is not None and ctx.tf_shape(x) == out:
        return x
    if x.flat_src is not None:
        x = ctx.materialise(x)
    src = ctx.tf_shape(x)
    if int(np.prod(src)) != int(np.prod(out)):
        raise XconvError(f"{node.where()}: cannot reshape {src} to {out}")
    if src == out:
        return x
    ir_out = (out[0], out[3], out[1], out[2]) if len(out) == 4 else tuple(out)
    flat = len(out) == 2 and len(src) >= 2 and out[0] == src[0]
    if _same_order(src) and _same_order(out):
        if flat:
            return Act(ctx.add("Flatten", [x.ir], node, axis=1))
        return Act(ctx.add("Reshape", [x.ir], node, shape=ir_out))
    if len(src) == 4 and flat:
        # NHWC-order flatten: held as the NCHW flatten, fixed up exactly by the consumer (see module doc)
        return Act(ctx.add("Flatten", [x.ir], node, axis=1), flat_src=x.ir)
    cur = x.ir
    if not _same_order(src):
        cur = ctx.add("Transpose", [cur], node, name=f"{node.name}/to_nhwc", perm=(0, 2, 3, 1))
    if _same_order(out):
        return Act(ctx.add("Reshape", [cur], node, shape=ir_out))
    cur = ctx.add("Reshape", [cur], node, name=f"{node.name}/nhwc", shape=out)
    return Act(ctx.add("Transpose", [cur], node, perm=(0, 3, 1, 2)))


def _resolve_shape(node: TfNode, shape: np.ndarray, total: int) -> tuple[int, ...]:
    dims = [int(d) for d in np.asarray(shape).reshape(-1)]
    if dims.count(-1) > 1:
        raise UnsupportedAttrError(f"{node.where()}: shape {dims} has more than one -1")
    if -1 in dims:
        known = int(np.prod([d for d in dims if d != -1]))
        dims[dims.index(-1)] = total // known if known else 0
    return tuple(dims)


@handles("Reshape")
def _reshape(ctx: Ctx, node: TfNode) -> Act:
    node.attrs.ignore("Tshape")
    x = ctx.act(node.inputs[0], node, keep_flat=True)
    total = int(np.prod(ctx.tf_shape(x)))
    return reshape_act(ctx, node, x, _resolve_shape(node, ctx.const(node, 1, "shape"), total))


@handles("Squeeze")
def _squeeze(ctx: Ctx, node: TfNode) -> Act:
    dims = node.attrs.ints("squeeze_dims", [])
    x = ctx.act(node.inputs[0], node, keep_flat=True)
    src = ctx.tf_shape(x)
    r = len(src)
    drop = {d % r for d in dims} if dims else {i for i, d in enumerate(src) if d == 1}
    for d in drop:
        if src[d] != 1:
            raise UnsupportedAttrError(f"{node.where()}: cannot squeeze axis {d} of {src}")
    return reshape_act(ctx, node, x, tuple(d for i, d in enumerate(src) if i not in drop))


@handles("ExpandDims")
def _expand_dims(ctx: Ctx, node: TfNode) -> Act:
    node.attrs.ignore("Tdim")
    x = ctx.act(node.inputs[0], node, keep_flat=True)
    src = list(ctx.tf_shape(x))
    ax = int(ctx.const(node, 1, "axis").reshape(()))
    ax = ax % (len(src) + 1)
    return reshape_act(ctx, node, x, tuple(src[:ax] + [1] + src[ax:]))


def _pad_amounts(ctx: Ctx, node: TfNode, x: Act) -> tuple[int, int, int, int]:
    p = np.asarray(ctx.const(node, 1, "paddings")).astype(np.int64)
    if p.shape != (4, 2) or ctx.rank(x) != 4:
        raise UnsupportedAttrError(f"{node.where()}: only spatial padding of a 4-D NHWC tensor is supported "
                                   f"(paddings {p.tolist()})")
    if p[0].any() or p[3].any():
        raise UnsupportedAttrError(f"{node.where()}: paddings {p.tolist()} pad the batch or channel axis")
    return (int(p[1, 0]), int(p[2, 0]), int(p[1, 1]), int(p[2, 1]))


@handles("Pad", "PadV2")
def _pad(ctx: Ctx, node: TfNode) -> Act:
    node.attrs.ignore("Tpaddings")
    x = _act4(ctx, node)
    pads = _pad_amounts(ctx, node, x)
    value = 0.0
    if node.op == "PadV2":
        value = float(ctx.const(node, 2, "constant_values").reshape(()))
    return Act(ctx.add("Pad", [x.ir], node, pads=pads, mode="constant", value=value))


@handles("MirrorPad")
def _mirror_pad(ctx: Ctx, node: TfNode) -> Act:
    node.attrs.ignore("Tpaddings")
    mode = node.attrs.s("mode")
    if mode != "REFLECT":
        raise UnsupportedAttrError(f"{node.where()}: MirrorPad mode {mode} is not supported (only REFLECT; "
                                   "SYMMETRIC repeats the edge pixel, which no IR Pad mode does)")
    x = _act4(ctx, node)
    return Act(ctx.add("Pad", [x.ir], node, pads=_pad_amounts(ctx, node, x), mode="reflect"))


@handles(*PASS_THROUGH)
def _identity(ctx: Ctx, node: TfNode) -> Value:
    node.attrs.ignore("message", "shape")
    return ctx.get(node.inputs[0])


@handles("IdentityN")
def _identity_n(ctx: Ctx, node: TfNode) -> list[Value]:
    return [ctx.get(i) for i in node.inputs]


@handles("PlaceholderWithDefault")
def _placeholder_default(ctx: Ctx, node: TfNode) -> Value:
    node.attrs.ignore("dtype", "shape")
    return ctx.get(node.inputs[0])


@handles("NoOp")
def _noop(ctx: Ctx, node: TfNode) -> list[Value]:
    return []


@handles("Cast")
def _cast(ctx: Ctx, node: TfNode) -> Value:
    from tensorflow import as_dtype

    dst = node.attrs.type("DstT")
    node.attrs.ignore("SrcT", "Truncate")
    if as_dtype(dst).as_numpy_dtype != np.float32:
        raise UnsupportedAttrError(f"{node.where()}: casting an activation to {as_dtype(dst).name}")
    return ctx.get(node.inputs[0])


# =========================================================================== constant folding
def _np(v: Value) -> np.ndarray:
    assert isinstance(v, np.ndarray)
    return v


@folds("Const")
def _f_const(ctx: Ctx, node: TfNode, args: list[Value]) -> np.ndarray:
    from tensorflow import make_ndarray

    return np.asarray(make_ndarray(node.node_def.attr["value"].tensor))


def _out_dtype(node: TfNode) -> Any:
    from tensorflow import as_dtype

    t = node.node_def.attr["out_type"].type if "out_type" in node.node_def.attr else 3  # DT_INT32
    return as_dtype(t).as_numpy_dtype


@folds("Shape")
def _f_shape(ctx: Ctx, node: TfNode, args: list[Value]) -> np.ndarray:
    return np.array(ctx.tf_shape(args[0]), dtype=_out_dtype(node))


@folds("Size")
def _f_size(ctx: Ctx, node: TfNode, args: list[Value]) -> np.ndarray:
    return np.array(int(np.prod(ctx.tf_shape(args[0]))), dtype=_out_dtype(node))


@folds("Rank")
def _f_rank(ctx: Ctx, node: TfNode, args: list[Value]) -> np.ndarray:
    return np.array(len(ctx.tf_shape(args[0])), dtype=np.int32)


@folds(*PASS_THROUGH, "PlaceholderWithDefault")
def _f_identity(ctx: Ctx, node: TfNode, args: list[Value]) -> np.ndarray:
    return _np(args[0])


@folds("IdentityN")
def _f_identity_n(ctx: Ctx, node: TfNode, args: list[Value]) -> list[np.ndarray]:
    return [_np(a) for a in args]


@folds("StridedSlice")
def _f_strided_slice(ctx: Ctx, node: TfNode, args: list[Value]) -> np.ndarray:
    x, begin, end, strides = (_np(a) for a in args)
    nd = node.node_def.attr
    m = {k: int(nd[k].i) if k in nd else 0
         for k in ("begin_mask", "end_mask", "ellipsis_mask", "new_axis_mask", "shrink_axis_mask")}
    index: list[Any] = []
    for i in range(len(begin)):
        bit = 1 << i
        if m["ellipsis_mask"] & bit:
            index.append(Ellipsis)
        elif m["new_axis_mask"] & bit:
            index.append(None)
        elif m["shrink_axis_mask"] & bit:
            index.append(int(begin[i]))
        else:
            b = None if m["begin_mask"] & bit else int(begin[i])
            e = None if m["end_mask"] & bit else int(end[i])
            index.append(slice(b, e, int(strides[i])))
    return np.asarray(x[tuple(index)])


@folds("Slice")
def _f_slice(ctx: Ctx, node: TfNode, args: list[Value]) -> np.ndarray:
    x, begin, size = (_np(a) for a in args)
    idx = tuple(slice(int(b), None if int(s) == -1 else int(b) + int(s)) for b, s in zip(begin, size))
    return np.asarray(x[idx])


@folds("Pack")
def _f_pack(ctx: Ctx, node: TfNode, args: list[Value]) -> np.ndarray:
    ax = int(node.node_def.attr["axis"].i) if "axis" in node.node_def.attr else 0
    return np.stack([_np(a) for a in args], axis=ax)


@folds("ConcatV2")
def _f_concat(ctx: Ctx, node: TfNode, args: list[Value]) -> np.ndarray:
    return np.concatenate([_np(a) for a in args[:-1]], axis=int(_np(args[-1])))


@folds("Cast")
def _f_cast(ctx: Ctx, node: TfNode, args: list[Value]) -> np.ndarray:
    from tensorflow import as_dtype

    return _np(args[0]).astype(as_dtype(node.node_def.attr["DstT"].type).as_numpy_dtype)


@folds("Reshape")
def _f_reshape(ctx: Ctx, node: TfNode, args: list[Value]) -> np.ndarray:
    x = _np(args[0])
    return x.reshape([int(d) for d in _np(args[1]).reshape(-1)])


@folds("Squeeze")
def _f_squeeze(ctx: Ctx, node: TfNode, args: list[Value]) -> np.ndarray:
    dims = list(node.node_def.attr["squeeze_dims"].list.i) if "squeeze_dims" in node.node_def.attr else []
    x = _np(args[0])
    return np.squeeze(x, axis=tuple(dims)) if dims else np.squeeze(x)


@folds("ExpandDims")
def _f_expand(ctx: Ctx, node: TfNode, args: list[Value]) -> np.ndarray:
    return np.expand_dims(_np(args[0]), int(_np(args[1]).reshape(())))


@folds("Transpose")
def _f_transpose(ctx: Ctx, node: TfNode, args: list[Value]) -> np.ndarray:
    return np.transpose(_np(args[0]), [int(p) for p in _np(args[1])])


@folds("Fill")
def _f_fill(ctx: Ctx, node: TfNode, args: list[Value]) -> np.ndarray:
    v = _np(args[1])
    return np.full([int(d) for d in _np(args[0])], v, dtype=v.dtype)


@folds("Range")
def _f_range(ctx: Ctx, node: TfNode, args: list[Value]) -> np.ndarray:
    s, e, d = (_np(a) for a in args)
    return np.arange(s, e, d, dtype=s.dtype)


def _reduce_fold(fn: Callable[..., np.ndarray]) -> Folder:
    def f(ctx: Ctx, node: TfNode, args: list[Value]) -> np.ndarray:
        keep = bool(node.node_def.attr["keep_dims"].b) if "keep_dims" in node.node_def.attr else False
        x = _np(args[0])
        axes = tuple(int(a) for a in _np(args[1]).reshape(-1))
        return np.asarray(fn(x, axis=axes, keepdims=keep)).astype(x.dtype)
    return f


folds("Prod")(_reduce_fold(np.prod))
folds("Sum")(_reduce_fold(np.sum))
folds("Mean")(_reduce_fold(np.mean))
folds("Max")(_reduce_fold(np.max))
folds("Min")(_reduce_fold(np.min))

_NP_BINARY: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "Add": np.add, "AddV2": np.add, "BiasAdd": np.add, "Sub": np.subtract, "Mul": np.multiply,
    "RealDiv": np.divide, "FloorDiv": np.floor_divide, "Maximum": np.maximum, "Minimum": np.minimum,
}
_NP_UNARY: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "Rsqrt": lambda x: 1 / np.sqrt(x), "Sqrt": np.sqrt, "Neg": np.negative, "Reciprocal": lambda x: 1 / x,
    "Square": np.square, "Relu": lambda x: np.maximum(x, 0), "Relu6": lambda x: np.clip(x, 0, 6),
    "Sigmoid": lambda x: 1 / (1 + np.exp(-x)), "Tanh": np.tanh, "Exp": np.exp,
}


@folds(*_NP_BINARY)
def _f_binary(ctx: Ctx, node: TfNode, args: list[Value]) -> np.ndarray:
    a, b = _np(args[0]), _np(args[1])
    out = _NP_BINARY[node.op](a, b)
    return np.asarray(out).astype(np.result_type(a, b))


@folds(*_NP_UNARY)
def _f_unary(ctx: Ctx, node: TfNode, args: list[Value]) -> np.ndarray:
    x = _np(args[0])
    return np.asarray(_NP_UNARY[node.op](x)).astype(x.dtype)


@folds("AddN")
def _f_addn(ctx: Ctx, node: TfNode, args: list[Value]) -> np.ndarray:
    return np.sum(np.stack([_np(a) for a in args]), axis=0)
