"""Caffe net (+ caffemodel blobs) -> IR.  Caffe is NCHW like the IR: no layout change.

Each layer type has a handler registered with :func:`layer`, which names the
layer's parameter message (``convolution_param`` ...) and the fields of it that
cannot change inference numbers (fillers, engines).  The handler reads the
message through :class:`Fields`; afterwards every field that is set to a
non-default value and was neither read nor declared irrelevant is an error
naming the layer and the field, so an unread option never changes the numbers
silently.  Unsupported layer types are all listed in one error before anything
is converted.

Blobs are single-assignment in the IR while Caffe computes in place
(``top == bottom``): each redefinition of a blob gets a fresh tensor name (the
layer's name when free), the first definition keeps the Caffe blob name, so
IR tensors line up with Caffe blobs for divergence search.  A ``BatchNorm``
whose only consumer is a per-channel ``Scale`` becomes one IR
``BatchNormalization`` (gamma and beta from the Scale).
"""
from __future__ import annotations

import functools
import logging
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from xconv.backends.caffe.schema import DIALECT_NAMES, get_schema
from xconv.builder import GraphBuilder
from xconv.errors import InputFileError, InvalidGraphError, UnsupportedAttrError, UnsupportedOpError
from xconv.ir import Graph, ModelMeta, TensorType

from .net import CaffeLayer, CaffeNet, data_layer_shape
from .weights import CaffeModel

log = logging.getLogger(__name__)
FRAMEWORK = "caffe"

#: LayerParameter fields any layer may carry that do not change inference numbers
#: (training rules and multipliers, weight sharing, blobs matched separately).
GENERIC_FIELDS = frozenset({"name", "type", "bottom", "top", "phase", "loss_weight", "param", "blobs",
                            "propagate_down", "include", "exclude"})


# --------------------------------------------------------------------------- reading params
def _is_default(fd: Any, value: Any) -> bool:
    if fd.is_repeated:
        return len(value) == 0
    if fd.message_type is not None:
        return value.ByteSize() == 0
    d = fd.default_value
    if isinstance(value, float) and isinstance(d, float):
        return value == d or (math.isnan(value) and math.isnan(d))
    return bool(value == d)


def _show(fd: Any, value: Any) -> str:
    if fd.is_repeated:
        return "[" + ", ".join(str(v) for v in list(value)[:6]) + (", ..." if len(value) > 6 else "") + "]"
    if fd.message_type is not None:
        return "{" + " ".join(str(value).split()) + "}"
    if fd.enum_type is not None:
        return fd.enum_type.values_by_number[value].name if value in fd.enum_type.values_by_number else str(value)
    return repr(value)


class Fields:
    """One parameter message, read field by field; remembers what was read."""

    def __init__(self, msg: Any, where: str, ignored: Iterable[str] = ()) -> None:
        self.msg = msg
        self.where = where
        self.read: set[str] = set(ignored)

    def __call__(self, name: str) -> Any:
        self.read.add(name)
        v = getattr(self.msg, name)
        fd = self.msg.DESCRIPTOR.fields_by_name[name]
        return list(v) if fd.is_repeated else v

    def has(self, name: str) -> bool:
        self.read.add(name)
        fd = self.msg.DESCRIPTOR.fields_by_name.get(name)
        if fd is None:  # the dialect has no such field: it cannot be set
            return False
        return len(getattr(self.msg, name)) > 0 if fd.is_repeated else self.msg.HasField(name)

    def get(self, name: str, default: Any = None) -> Any:
        """A field the dialect may lack (e.g. ``ceil_mode``): its value, or ``default``."""
        self.read.add(name)
        if name not in self.msg.DESCRIPTOR.fields_by_name:
            return default
        return self(name)

    def leftover(self) -> list[str]:
        return [f"{fd.name}: {_show(fd, v)}" for fd, v in self.msg.ListFields()
                if fd.name not in self.read and not _is_default(fd, v)]

    def check(self) -> None:
        """Every field set to a non-default value was read or declared irrelevant, or an error."""
        left = self.leftover()
        if left:
            raise UnsupportedAttrError(f"{self.where}: {', '.join(left)} not understood by the converter "
                                       "(it would change the numbers); remove it if it is a leftover, or "
                                       "convert without this layer")


# --------------------------------------------------------------------------- handlers
HandlerFn = Callable[["Ctx", CaffeLayer, "Fields | None"], Sequence[str]]


@dataclass(frozen=True)
class LayerHandler:
    fn: HandlerFn
    param: str | None
    ignore: tuple[str, ...]
    bottoms: tuple[int, int | None]
    tops: tuple[int, int | None]


HANDLERS: dict[str, LayerHandler] = {}
#: Layer types with a handler but an unsupported variant: type -> (message -> variant name or None).
VARIANTS: dict[str, Callable[[Any], str | None]] = {}


def layer(*types: str, param: str | None = None, ignore: Sequence[str] = (), bottoms: tuple[int, int | None] = (1, 1),
          tops: tuple[int, int | None] = (1, 1)) -> Callable[[HandlerFn], HandlerFn]:
    def deco(fn: HandlerFn) -> HandlerFn:
        for t in types:
            if t in HANDLERS:
                raise ValueError(f"caffe handler for {t} registered twice")
            HANDLERS[t] = LayerHandler(fn, param, tuple(ignore), bottoms, tops)
        return fn
    return deco


def variant(type_: str) -> Callable[[Callable[[Any], str | None]], Callable[[Any], str | None]]:
    def deco(fn: Callable[[Any], str | None]) -> Callable[[Any], str | None]:
        VARIANTS[type_] = fn
        return fn
    return deco


# --------------------------------------------------------------------------- the plan: SSA names
Version = tuple[str, int]


@dataclass
class Plan:
    bottoms: dict[int, list[Version]] = field(default_factory=dict)   # layer index -> versions read
    tops: dict[int, list[Version]] = field(default_factory=dict)      # layer index -> versions written
    names: dict[Version, str] = field(default_factory=dict)           # version -> IR tensor name
    consumers: dict[Version, list[int]] = field(default_factory=dict)
    producer: dict[Version, int] = field(default_factory=dict)        # -1: a net-level/data input
    latest: dict[str, int] = field(default_factory=dict)              # blob -> its last version
    fused: dict[int, int] = field(default_factory=dict)               # BatchNorm index -> Scale index


def _plan(net: CaffeNet, input_blobs: Sequence[str]) -> Plan:
    p = Plan()
    used = set(input_blobs) | {t for lay in net.layers for t in lay.tops}

    def fresh(base: str) -> str:
        name, i = base, 1
        while name in used:
            name = f"{base}_{i}"
            i += 1
        used.add(name)
        return name

    for b in input_blobs:
        p.latest[b] = 0
        p.names[(b, 0)] = b
        p.producer[(b, 0)] = -1
    for lay in net.layers:
        reads = []
        for b in lay.bottoms:
            if b not in p.latest:
                raise InputFileError(
                    f"{lay.where()} in {net.path}: its bottom '{b}' is produced by no layer of the deploy net"
                    + (" (only by a layer left out for deploy: " + ", ".join(f"'{n}' ({t})" for n, t, _ in net.dropped)
                       + ")" if net.dropped else ""))
            v = (b, p.latest[b])
            reads.append(v)
            p.consumers.setdefault(v, []).append(lay.index)
        p.bottoms[lay.index] = reads
        writes = []
        for t in lay.tops:
            ver = p.latest.get(t, -1) + 1
            p.latest[t] = ver
            v = (t, ver)
            p.names[v] = t if ver == 0 else fresh(lay.name if lay.name != t else f"{t}_{ver}")
            p.producer[v] = lay.index
            writes.append(v)
        p.tops[lay.index] = writes
    by_index = {lay.index: lay for lay in net.layers}
    for lay in net.layers:
        if lay.type != "BatchNorm" or len(lay.tops) != 1:
            continue
        cons = p.consumers.get(p.tops[lay.index][0], [])
        if len(cons) != 1:
            continue
        sc = by_index[cons[0]]
        sp = sc.msg.scale_param
        if sc.type == "Scale" and len(sc.bottoms) == 1 and len(sc.tops) == 1 and sp.axis == 1 and sp.num_axes == 1:
            p.fused[lay.index] = sc.index
    return p


def _needed(plan: Plan, outs: Sequence[Version]) -> set[int]:
    todo = [plan.producer[v] for v in outs]
    seen: set[int] = set()
    while todo:
        i = todo.pop()
        if i < 0 or i in seen:
            continue
        seen.add(i)
        todo.extend(plan.producer[v] for v in plan.bottoms[i])
    # a fused Scale goes with its BatchNorm
    for bn, sc in plan.fused.items():
        if sc in seen:
            seen.add(bn)
    return seen


# --------------------------------------------------------------------------- context
@functools.cache
def _default_param(param: str) -> Any:
    """The defaults of a parameter message the net's dialect lacks (a fork layer type named in a
    1.0 text, e.g. ``type: "ReLU6"`` without ``relu6_param``): taken from a dialect that has it."""
    for d in DIALECT_NAMES:
        S = get_schema(d)
        if S.has_field("LayerParameter", param):
            return getattr(S.LayerParameter(), param)
    raise KeyError(f"no Caffe dialect has LayerParameter.{param}")


class Ctx:
    def __init__(self, net: CaffeNet, model: CaffeModel, builder: GraphBuilder, plan: Plan,
                 rounding: dict[str, bool]) -> None:
        self.net = net
        self.model = model
        self.b = builder
        self.plan = plan
        self.rounding = rounding
        self.ir: dict[Version, str] = {}
        self.opened: list[Fields] = []
        self.by_index = {lay.index: lay for lay in net.layers}

    # ---------------------------------------------------------------- values
    def x(self, lay: CaffeLayer, i: int = 0) -> str:
        return self.ir[self.plan.bottoms[lay.index][i]]

    def shape(self, t: str) -> tuple[int, ...]:
        return self.b.shape(t)

    def top_name(self, lay: CaffeLayer, i: int = 0) -> str:
        return self.plan.names[self.plan.tops[lay.index][i]]

    def fused_scale(self, lay: CaffeLayer) -> CaffeLayer | None:
        j = self.plan.fused.get(lay.index)
        return None if j is None else self.by_index[j]

    def open(self, lay: CaffeLayer, param: str, ignore: Sequence[str] = ()) -> Fields:
        msg = getattr(lay.msg, param) if param in lay.msg.DESCRIPTOR.fields_by_name else _default_param(param)
        f = Fields(msg, f"{lay.where()}: {param}", ignore)
        self.opened.append(f)
        return f

    def const(self, lay: CaffeLayer, suffix: str, value: Any) -> str:
        return self.b.param(f"{lay.name}/{suffix}", np.asarray(value, np.float32))

    def _add(self, op: str, inputs: Sequence[str], lay: CaffeLayer, name: str, outputs: Sequence[str] | None,
             n_out: int, attrs: dict[str, Any]) -> Any:
        try:
            return self.b.add(op, list(inputs), name=name, source=lay.name, outputs=outputs, n_out=n_out, **attrs)
        except InvalidGraphError as e:
            raise InvalidGraphError(f"{lay.where()} in {self.net.path}: {e}") from e

    def add(self, op: str, inputs: Sequence[str], lay: CaffeLayer, suffix: str, **attrs: Any) -> str:
        """An intermediate node ``LAYER/suffix``."""
        return self._add(op, inputs, lay, f"{lay.name}/{suffix}", None, 1, attrs)

    def out(self, op: str, inputs: Sequence[str], lay: CaffeLayer, i: int = 0, *, of: CaffeLayer | None = None,
            **attrs: Any) -> str:
        """The node producing top ``i`` of ``lay`` (or of ``of``, a layer fused into it), named for it."""
        owner = of or lay
        name = self.top_name(owner, i)
        self._add(op, inputs, lay, lay.name, [name], 1, attrs)
        return name

    def out_all(self, op: str, inputs: Sequence[str], lay: CaffeLayer, **attrs: Any) -> list[str]:
        names = [self.top_name(lay, i) for i in range(len(lay.tops))]
        self._add(op, inputs, lay, lay.name, names, len(names), attrs)
        return names

    # ---------------------------------------------------------------- blobs
    def blobs(self, lay: CaffeLayer, want: Sequence[tuple[str, tuple[int, ...]]]) -> list[np.ndarray]:
        """The layer's caffemodel blobs, checked against the shapes the prototxt implies."""
        expect = ", ".join(f"{what} {shape}" for what, shape in want)
        ml = self.model.layers.get(lay.name)
        if ml is None or not ml.blobs:
            raise InputFileError(f"{lay.where()}: the caffemodel {self.model.path} has no blobs for it (expected "
                                 f"{expect}); is it the caffemodel of this prototxt, and complete?")
        if len(ml.blobs) != len(want):
            raise InputFileError(f"{lay.where()}: the caffemodel {self.model.path} has {len(ml.blobs)} blob(s) for "
                                 f"it, the prototxt implies {len(want)} ({expect})")
        out = []
        for k, (blob, (what, shape)) in enumerate(zip(ml.blobs, want)):
            if not blob.matches(shape):
                raise InputFileError(f"{lay.where()}: blob {k} ({what}) has shape {blob.dims} in the caffemodel "
                                     f"{self.model.path}, the prototxt implies {shape}")
            n = int(np.prod(shape, dtype=np.int64))
            if blob.data.size != n:
                raise InputFileError(f"{lay.where()}: blob {k} ({what}) of shape {shape} holds {blob.data.size} "
                                     f"values in the caffemodel {self.model.path}, not {n}")
            out.append(blob.data.reshape(shape))
        return out


# --------------------------------------------------------------------------- driver
def _unsupported(net: CaffeNet, needed: set[int]) -> None:
    items = []
    for lay in net.layers:
        if lay.index not in needed or lay.type == "Input":
            continue
        if lay.type not in HANDLERS:
            items.append((lay.type or "(no type)", lay.name))
        elif lay.type in VARIANTS:
            v = VARIANTS[lay.type](lay.msg)
            if v:
                items.append((f"{lay.type} ({v})", lay.name))
    if items:
        raise UnsupportedOpError(FRAMEWORK, items, hint=(
            "these Caffe layers have no IR form; convert the part of the net before them with --outputs BLOB, "
            "or change the model"))


def _check_layer_fields(lay: CaffeLayer, param: str | None) -> None:
    """LayerParameter fields outside the handler's parameter message: generic ones are fine, another
    layer type's parameters are never read by Caffe (a warning), anything else is an error."""
    ignored = set(GENERIC_FIELDS) | ({param} if param else set())
    for fd, value in lay.msg.ListFields():
        if fd.name not in ignored and fd.name.endswith("_param") and fd.message_type is not None:
            if value.ByteSize():
                log.warning("%s: sets %s, which Caffe does not read for a %s layer; ignored", lay.where(), fd.name,
                            lay.type)
            ignored.add(fd.name)
    Fields(lay.msg, lay.where(), ignored).check()


def _input_shape(name: str, shape: tuple[int, ...] | None, override: Sequence[int] | None, first: bool,
                 where: str) -> tuple[int, ...]:
    if first and override is not None:
        return tuple(int(d) for d in override)
    if shape is None:
        raise InputFileError(f"caffe: {where}: input '{name}' has no shape; pass --input-shape N,C,H,W")
    if not shape or min(shape) <= 0:
        raise InputFileError(f"caffe: {where}: input '{name}' has shape {shape}; pass --input-shape N,C,H,W")
    if shape[0] != 1:
        log.info("caffe: input '%s': batch %d of the prototxt -> 1 (pass --input-shape to choose)", name, shape[0])
    return (1,) + tuple(shape[1:])


def _net_inputs(net: CaffeNet) -> list[tuple[str, tuple[int, ...] | None]]:
    has_input_layer = any(lay.type == "Input" for lay in net.layers)
    if net.inputs or has_input_layer:
        return list(net.inputs)
    if net.data_inputs:
        out = []
        for top, lay in net.data_inputs:
            log.info("caffe: the net reads its input from %s; '%s' becomes the graph input", lay.where(), top)
            out.append((top, data_layer_shape(lay)))
        return out
    raise InputFileError(f"caffe: {net.path} declares no input (no Input layer, no 'input:' lines, no data layer)")


def _outputs(net: CaffeNet, plan: Plan, outputs: Sequence[str] | None) -> list[Version]:
    if outputs:
        by_name = {n: v for v, n in plan.names.items()}
        picked = []
        for o in outputs:
            if o in plan.latest:
                picked.append((o, plan.latest[o]))
            elif o in by_name:
                picked.append(by_name[o])
            else:
                raise InputFileError(f"caffe: {net.path} has no blob named '{o}' (--outputs); blobs: "
                                     + ", ".join(sorted(plan.latest)[:20]) + (" ..." if len(plan.latest) > 20 else ""))
        return picked
    # Caffe's net outputs: blobs whose last version nobody reads, in std::set (name) order
    outs = [(b, v) for b, v in sorted(plan.latest.items()) if not plan.consumers.get((b, v))]
    if not outs:
        raise InputFileError(f"caffe: {net.path} has no output blob (every blob is consumed)")
    return outs


def _arity(lay: CaffeLayer, what: str, n: int, bounds: tuple[int, int | None]) -> None:
    lo, hi = bounds
    if n < lo or (hi is not None and n > hi):
        takes = f"{lo}" + ("" if hi == lo else f" to {hi if hi is not None else 'any number'}")
        raise InputFileError(f"{lay.where()}: has {n} {what}; a {lay.type} layer has {takes}")


def _input_layer(ctx: Ctx, lay: CaffeLayer, override: Sequence[int] | None, first: bool) -> bool:
    """Define the graph inputs of an ``Input`` layer; returns whether the next input is still the first."""
    p = Fields(lay.msg.input_param, f"{lay.where()}: input_param")
    shapes = [tuple(int(d) for d in s.dim) for s in p("shape")]
    if len(shapes) not in (1, len(lay.tops)):
        raise InputFileError(f"{lay.where()}: {len(lay.tops)} tops but {len(shapes)} input_param shapes")
    for i, v in enumerate(ctx.plan.tops[lay.index]):
        n = ctx.plan.names[v]
        shape = shapes[min(i, len(shapes) - 1)] if shapes else None
        ctx.b.inputs[n] = TensorType(_input_shape(n, shape, override, first, ctx.net.path))
        ctx.ir[v] = n
        first = False
    _check_layer_fields(lay, "input_param")
    return first


def _convert_layer(ctx: Ctx, lay: CaffeLayer, h: LayerHandler) -> None:
    _arity(lay, "bottoms", len(lay.bottoms), h.bottoms)
    _arity(lay, "tops", len(lay.tops), h.tops)
    ctx.opened = []
    p = ctx.open(lay, h.param, h.ignore) if h.param else None
    results = list(h.fn(ctx, lay, p))
    if len(results) != len(lay.tops):
        raise InvalidGraphError(f"internal: the {lay.type} handler gave {len(results)} values for "
                                f"{len(lay.tops)} tops of {lay.where()}")
    for v, t in zip(ctx.plan.tops[lay.index], results):
        ctx.ir[v] = t
    for f in ctx.opened:
        f.check()
    _check_layer_fields(lay, h.param)
    sc = ctx.fused_scale(lay)
    if sc is not None:
        ctx.ir[ctx.plan.tops[sc.index][0]] = results[0]
        _check_layer_fields(sc, HANDLERS["Scale"].param)


def convert_net(net: CaffeNet, model: CaffeModel, rounding: dict[str, bool], *,
                input_shape: Sequence[int] | None = None, outputs: Sequence[str] | None = None,
                name: str | None = None, source_file: str | None = None) -> Graph:
    from . import layers  # noqa: F401,PLC0415 - registers the handlers

    declared = _net_inputs(net)
    plan = _plan(net, [n for n, _ in declared])
    outs = _outputs(net, plan, outputs)
    plan.fused = {bn: sc for bn, sc in plan.fused.items() if plan.tops[bn][0] not in outs}  # BN's own output wanted
    needed = _needed(plan, outs)
    _unsupported(net, needed)
    b = GraphBuilder(FRAMEWORK, source_file)
    for n in sorted(set(plan.names.values())):
        b.tensor_name(n)  # reserve every blob name: intermediates never take one
    ctx = Ctx(net, model, b, plan, rounding)
    first = True
    for n, s in declared:
        b.inputs[n] = TensorType(_input_shape(n, s, input_shape, first, net.path))
        ctx.ir[(n, 0)] = n
        first = False
    fused_scales = set(plan.fused.values())
    for lay in net.layers:
        if lay.index not in needed or lay.index in fused_scales:
            continue
        if lay.type == "Input":
            first = _input_layer(ctx, lay, input_shape, first)
        else:
            _convert_layer(ctx, lay, HANDLERS[lay.type])
    out_names = list(dict.fromkeys(ctx.ir[v] for v in outs))  # Split tops share one tensor: list it once
    meta = _meta(net, b, out_names, source_file)
    return b.graph(out_names, name or net.name or "caffe_model", meta)


def _meta(net: CaffeNet, b: GraphBuilder, out_names: Sequence[str], source_file: str | None) -> ModelMeta:
    meta = ModelMeta(source_framework=FRAMEWORK, source_file=source_file or "", color_order="BGR",
                     value_range=(0.0, 255.0), mean=(104.0, 117.0, 123.0), std=(1.0, 1.0, 1.0))
    meta.extra["preprocessing"] = ("Caffe ImageNet convention (BGR, 0-255, per-channel mean 104/117/123 "
                                   "subtracted); a deploy prototxt does not record it: check your model's")
    meta.extra["caffe_dialect"] = net.dialect
    meta.extra["caffe_format"] = net.format
    s = b.shape(out_names[0])
    if len(s) == 2:
        meta.num_classes = int(s[1])
        meta.background_offset = 1 if s[1] == 1001 else 0
    in_shape = next(iter(b.inputs.values())).shape if b.inputs else ()
    if len(in_shape) == 4:
        meta.crop = int(in_shape[2])
        meta.resize = 256 if in_shape[2] in (224, 227) else int(round(in_shape[2] / 0.875))
    return meta
