"""Machinery shared by both capture paths (torch.fx and TorchScript).

* Values flowing between source ops: :class:`TensorRef` (an IR tensor),
  :class:`ConstTensor` (a tensor known at conversion time: parameter, buffer or
  folded constant), :class:`Unavailable` (an output the IR cannot represent,
  e.g. pooling indices) and plain Python values (ints, tuples, None ...).
* :class:`Call`: one source op call, the same shape for a module call, a
  ``torch``/``F`` function, a tensor method or an ``aten::`` op, so one handler
  serves all of them.
* :class:`Builder`: appends IR nodes, registers params and infers output types
  as it goes, so handlers can ask for input shapes.
* Handler registries keyed by module class (exact type: a subclass may
  override ``forward``), by function object and by tensor method name.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch

from xconv.errors import UnsupportedAttrError
from xconv.ir import Node, SourceLoc, TensorType
from xconv.ops import infer_node, make_attrs

log = logging.getLogger(__name__)

FRAMEWORK = "pytorch"


# --------------------------------------------------------------------------- values
@dataclass(frozen=True)
class TensorRef:
    """An IR tensor, by name."""

    name: str


@dataclass(eq=False)
class ConstTensor:
    """A tensor whose value is known at conversion time."""

    value: torch.Tensor
    qualname: str | None = None  # e.g. "layer1.0.conv1.weight" for parameters
    source: str | None = None  # the parameter a folded constant was computed from (w.t())

    @property
    def owner(self) -> str | None:
        """Qualified name of the module holding this tensor (or its source), if any."""
        q = self.qualname or self.source
        if q and "." in q:
            return q.rsplit(".", 1)[0]
        return None


@dataclass(frozen=True)
class Unavailable:
    """A source output the IR does not carry (e.g. max-pooling indices)."""

    what: str


_MISSING = object()


@dataclass
class Call:
    """One source op call, normalised for handlers."""

    op: str  # display name of the source op ("nn.Conv2d", "F.relu", "Tensor.view", "aten::add")
    name: str  # IR name for the node this call produces
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    loc: SourceLoc
    module: torch.nn.Module | None = None
    qualname: str | None = None  # module qualified name for module calls

    def arg(self, index: int, key: str, default: Any = _MISSING) -> Any:
        """Argument by keyword, else by position, else ``default``."""
        if key in self.kwargs:
            return self.kwargs[key]
        if index < len(self.args):
            return self.args[index]
        if default is _MISSING:
            raise UnsupportedAttrError(f"{self.where()}: missing argument '{key}'")
        return default

    def where(self) -> str:
        return f"{self.op} at {self.loc}"

    def unsupported(self, what: str, instead: str = "") -> UnsupportedAttrError:
        msg = f"{self.where()}: {what} is not supported"
        if instead:
            msg += f"; {instead}"
        return UnsupportedAttrError(msg)


Handler = Callable[["Builder", Call], Any]


@dataclass(frozen=True)
class Entry:
    fn: Handler
    inplace_arg: tuple[int, str] | None = None  # where an ``inplace`` flag sits
    always_inplace: bool = False


MODULES: dict[type, Entry] = {}
FUNCTIONS: dict[Any, Entry] = {}
METHODS: dict[str, Entry] = {}
# Functions of optional packages, by qualified name (registering them by object would import the package).
NAMED_FUNCTIONS: dict[str, Entry] = {}


def on_module(*classes: type) -> Callable[[Handler], Handler]:
    def deco(fn: Handler) -> Handler:
        for c in classes:
            if c in MODULES:
                raise ValueError(f"module handler for {c} registered twice")
            MODULES[c] = Entry(fn)
        return fn
    return deco


def on_function(*fns: Any, inplace_arg: tuple[int, str] | None = None,
                always_inplace: bool = False) -> Callable[[Handler], Handler]:
    def deco(fn: Handler) -> Handler:
        unique: list[Any] = []
        for f in fns:  # some aliases are one object (F.conv2d is torch.conv2d)
            if not any(f is u for u in unique):
                unique.append(f)
        for f in unique:
            if f in FUNCTIONS:
                raise ValueError(f"function handler for {f} registered twice")
            FUNCTIONS[f] = Entry(fn, inplace_arg, always_inplace)
        return fn
    return deco


def on_named_function(*qualnames: str) -> Callable[[Handler], Handler]:
    def deco(fn: Handler) -> Handler:
        for q in qualnames:
            if q in NAMED_FUNCTIONS:
                raise ValueError(f"function handler for {q} registered twice")
            NAMED_FUNCTIONS[q] = Entry(fn)
        return fn
    return deco


def lookup_function(fn: Any) -> Entry | None:
    """The handler entry of a function target: by object, else by qualified name."""
    try:
        entry = FUNCTIONS.get(fn)
    except TypeError:  # unhashable target
        entry = None
    if entry is None:
        mod, name = getattr(fn, "__module__", None), getattr(fn, "__name__", None)
        if mod and name:
            entry = NAMED_FUNCTIONS.get(f"{mod}.{name}")
    return entry


def on_method(*names: str) -> Callable[[Handler], Handler]:
    def deco(fn: Handler) -> Handler:
        for n in names:
            if n in METHODS:
                raise ValueError(f"method handler for {n} registered twice")
            # x.relu_() and friends mutate their receiver
            METHODS[n] = Entry(fn, always_inplace=n.endswith("_") and not n.endswith("__"))
        return fn
    return deco


def function_name(fn: Any) -> str:
    """A readable name for a function target: ``F.relu``, ``torch.cat``, ``operator.add``."""
    mod = getattr(fn, "__module__", None) or ""
    name = getattr(fn, "__name__", None) or repr(fn)
    if mod in ("_operator", "operator"):
        return f"operator.{name}"
    if mod == "torch.nn.functional":
        return f"F.{name}"
    if mod.startswith("torch._C") or mod in ("torch", "torch.functional"):
        return f"torch.{name}"
    return f"{mod}.{name}" if mod else name


def module_class_name(m: torch.nn.Module) -> str:
    cls = type(m)
    mod = cls.__module__
    if mod.startswith("torch.nn.modules"):
        return f"nn.{cls.__qualname__}"
    return f"{mod}.{cls.__qualname__}"


# --------------------------------------------------------------------------- builder
@dataclass
class Builder:
    """Accumulates the IR graph while a capture walks the source graph."""

    source_file: str | None = None
    nodes: list[Node] = field(default_factory=list)
    inputs: dict[str, TensorType] = field(default_factory=dict)
    params: dict[str, np.ndarray] = field(default_factory=dict)
    types: dict[str, TensorType] = field(default_factory=dict)
    _tensor_names: set[str] = field(default_factory=set)
    _node_names: set[str] = field(default_factory=set)
    _const_ids: dict[int, str] = field(default_factory=dict)
    _keepalive: list[Any] = field(default_factory=list)

    # ----------------------------------------------------------- names
    def _unique(self, base: str, taken: Iterable[set[str]]) -> str:
        sets = list(taken)
        base = base or "node"
        if not any(base in s for s in sets):
            return base
        i = 1
        while any(f"{base}_{i}" in s for s in sets):
            i += 1
        return f"{base}_{i}"

    def name_free(self, name: str) -> bool:
        return name not in self._node_names and name not in self._tensor_names

    # ---------------------------------------------------------- tensors
    def add_input(self, name: str, shape: Sequence[int]) -> TensorRef:
        name = self._unique(name, [self._tensor_names])
        self._tensor_names.add(name)
        self.inputs[name] = TensorType(tuple(int(d) for d in shape))
        return TensorRef(name)

    def type(self, ref: TensorRef) -> TensorType:
        if ref.name in self.types:
            return self.types[ref.name]
        if ref.name in self.inputs:
            return self.inputs[ref.name]
        a = self.params[ref.name]
        return TensorType(a.shape, str(a.dtype))

    def shape(self, ref: TensorRef) -> tuple[int, ...]:
        return self.type(ref).shape

    def param(self, value: ConstTensor | np.ndarray | torch.Tensor, name: str) -> TensorRef:
        """Register a constant as a float32 param (deduplicated per source tensor)."""
        src: Any = value.value if isinstance(value, ConstTensor) else value
        if isinstance(value, ConstTensor) and value.qualname:
            name = value.qualname
        key = id(src)
        if key in self._const_ids:
            return TensorRef(self._const_ids[key])
        if isinstance(src, torch.Tensor):
            arr = src.detach().cpu().to(torch.float32).numpy()
        else:
            arr = np.asarray(src, dtype=np.float32)
        arr = np.ascontiguousarray(arr, dtype=np.float32)
        if arr.ndim == 0:
            arr = arr.reshape(1)
        name = self._unique(name, [self._tensor_names])
        self._tensor_names.add(name)
        self.params[name] = arr
        self._const_ids[key] = name
        self._keepalive.append(src)  # keep id() stable for the dedup map
        return TensorRef(name)

    def scalar(self, value: float, name: str) -> TensorRef:
        """A float32 1-element constant param."""
        arr = np.asarray([value], dtype=np.float32)
        name = self._unique(name, [self._tensor_names])
        self._tensor_names.add(name)
        self.params[name] = arr
        return TensorRef(name)

    # ------------------------------------------------------------ nodes
    def emit(self, op: str, inputs: Sequence[TensorRef | None], call: Call, attrs: dict[str, Any] | None = None,
             *, suffix: str | None = None) -> TensorRef:
        """Append one single-output IR node named after the call; returns its output.

        ``suffix`` marks helper nodes a handler adds around its main node
        (``conv1/pad``)."""
        return self.emit_n(op, inputs, call, attrs, suffix=suffix, n_out=1)[0]

    def emit_n(self, op: str, inputs: Sequence[TensorRef | None], call: Call, attrs: dict[str, Any] | None = None,
               *, suffix: str | None = None, n_out: int = 1) -> tuple[TensorRef, ...]:
        """Append one IR node with ``n_out`` outputs (``name:0``, ``name:1``... when several)."""
        base = call.name if suffix is None else f"{call.name}/{suffix}"
        name = self._unique(base, [self._node_names, self._tensor_names])
        if n_out == 1:
            outs = [name]
        else:
            outs = [self._unique(f"{name}:{i}", [self._tensor_names]) for i in range(n_out)]
        node = Node(op, name, [i.name if i is not None else "" for i in inputs], outs,
                    make_attrs(op, **(attrs or {})), call.loc)
        in_types: list[TensorType | None] = [self.type(i) if i is not None else None for i in inputs]
        out_types = infer_node(node, in_types)
        self._node_names.add(name)
        self._tensor_names.update(outs)
        self.nodes.append(node)
        for o, t in zip(outs, out_types):
            self.types[o] = t
        return tuple(TensorRef(o) for o in outs)

    def finish_outputs(self, refs: Sequence[TensorRef], loc: SourceLoc) -> list[str]:
        """Graph output names; an output that is an input, a param or repeated gets an Identity."""
        seen: set[str] = set()
        names: list[str] = []
        for r in refs:
            n = r.name
            if n in self.inputs or n in self.params or n in seen:
                call = Call("output", f"{n}/out", (), {}, loc)
                n = self.emit("Identity", [r], call).name
            seen.add(n)
            names.append(n)
        return names


# --------------------------------------------------------------------------- helpers
def pair(v: Any, what: str, call: Call) -> tuple[int, int]:
    """An int or 1-/2-sequence of ints as (h, w)."""
    if isinstance(v, bool):
        raise call.unsupported(f"{what}={v!r}")
    if isinstance(v, (int, np.integer)):
        return int(v), int(v)
    if isinstance(v, (list, tuple, torch.Size)):
        vals = [int(x) for x in v]
        if len(vals) == 1:
            return vals[0], vals[0]
        if len(vals) == 2:
            return vals[0], vals[1]
    raise call.unsupported(f"{what}={v!r} (need an int or 2 values)")


def norm_axis(ax: int, rank: int, call: Call) -> int:
    if not -rank <= int(ax) < rank:
        raise call.unsupported(f"dim {ax} for a rank-{rank} tensor")
    return int(ax) % rank


def is_number(v: Any) -> bool:
    return isinstance(v, (bool, int, float, np.integer, np.floating))


def flatten_values(v: Any) -> list[Any]:
    """All leaves of nested tuples/lists/dicts."""
    if isinstance(v, dict):
        return [x for item in v.values() for x in flatten_values(item)]
    if isinstance(v, (list, tuple)):
        return [x for item in v for x in flatten_values(item)]
    return [v]


def tensor_in(b: Builder, call: Call, v: Any, what: str = "input") -> TensorRef:
    """An op input that must be a tensor: a TensorRef, or a constant made a param."""
    if isinstance(v, TensorRef):
        return v
    if isinstance(v, ConstTensor):
        return b.param(v, f"{call.name}/{what}")
    if isinstance(v, Unavailable):
        raise call.unsupported(f"using {v.what}")
    raise call.unsupported(f"{what} of type {type(v).__name__} (a tensor is needed)")


def resolve_shape(in_shape: tuple[int, ...], req: Sequence[int], call: Call) -> tuple[int, ...]:
    """Resolve one -1 in a requested view/reshape shape."""
    req = [int(d) for d in req]
    total = math.prod(in_shape)
    if req.count(-1) > 1:
        raise call.unsupported(f"shape {req} with several -1")
    if -1 in req:
        known = math.prod(d for d in req if d != -1)
        if known == 0 or total % known:
            raise call.unsupported(f"reshape of {in_shape} to {req}")
        req[req.index(-1)] = total // known
    if math.prod(req) != total:
        raise call.unsupported(f"reshape of {in_shape} to {req}")
    return tuple(req)


def check_rank(b: Builder, call: Call, x: TensorRef, rank: int, what: str = "input") -> tuple[int, ...]:
    shp = b.shape(x)
    if len(shp) != rank:
        raise call.unsupported(f"a rank-{len(shp)} {what} {shp} (the IR op needs rank {rank})")
    return shp
