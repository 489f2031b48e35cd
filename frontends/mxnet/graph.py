"""MXNet symbol + params -> IR.  MXNet is NCHW like the IR: no layout change.

Each op has a handler registered with :func:`handles`; a handler reads the
node's string attributes through :class:`~.symbol.Attrs` and every attribute
it did not read (and that is not known to be inference-irrelevant) is an
error naming the node, so an unread option can never change the numbers
silently.  Unsupported ops are all listed in one error.
"""
from __future__ import annotations

import logging
import math
from typing import Any, Callable, Sequence

import numpy as np

from xconv.builder import GraphBuilder
from xconv.errors import InputFileError, InvalidGraphError, UnsupportedAttrError, UnsupportedOpError
from xconv.ir import Graph, ModelMeta
from xconv.ops import pool_out

from .symbol import MxNode, Symbol

log = logging.getLogger(__name__)
FRAMEWORK = "mxnet"

Handler = Callable[["Ctx", MxNode], Sequence[str]]
HANDLERS: dict[str, Handler] = {}


def handles(*ops: str) -> Callable[[Handler], Handler]:
    def deco(fn: Handler) -> Handler:
        for op in ops:
            if op in HANDLERS:
                raise ValueError(f"mxnet handler for {op} registered twice")
            HANDLERS[op] = fn
        return fn
    return deco


class Ctx:
    def __init__(self, sym: Symbol, params: Any, builder: GraphBuilder) -> None:
        self.sym = sym
        self.params = params
        self.b = builder
        self.values: dict[tuple[int, int], str] = {}

    # ------------------------------------------------------------------ values
    def x(self, node: MxNode, i: int = 0) -> str:
        ref = node.inputs[i]
        if ref not in self.values:
            src = self.sym.nodes[ref[0]]
            raise InputFileError(f"{node.where()}: its input {i} ('{src.name}') is neither computed nor a weight "
                                 "in the params file")
        return self.values[ref]

    def weight(self, node: MxNode, i: int, shape: tuple[int, ...] | None = None, what: str = "") -> np.ndarray:
        """The params array behind input ``i`` of ``node`` (must be a variable)."""
        if i >= len(node.inputs):
            raise InputFileError(f"{node.where()}: has no input {i} ({what or 'weight'})")
        src = self.sym.nodes[node.inputs[i][0]]
        if src.op != "null":
            raise UnsupportedAttrError(f"{node.where()}: its {what or f'input {i}'} is computed by '{src.name}', "
                                       "not a stored weight; only constant weights are supported")
        if src.name not in self.params:
            raise InputFileError(f"{node.where()}: weight '{src.name}' is not in the params file "
                                 f"{getattr(self.params, 'path', '')}")
        a = np.asarray(self.params[src.name])
        if shape is not None and tuple(a.shape) != tuple(shape):
            raise InputFileError(f"{node.where()}: weight '{src.name}' has shape {tuple(a.shape)} in the params "
                                 f"file, the symbol implies {tuple(shape)}")
        return a

    def named(self, node: MxNode, name: str, shape: tuple[int, ...]) -> str:
        """A weight found by name only (an auxiliary state a legacy symbol does not list)."""
        if name not in self.params:
            raise InputFileError(f"{node.where()}: weight '{name}' is not in the params file "
                                 f"{getattr(self.params, 'path', '')}")
        a = np.asarray(self.params[name])
        if tuple(a.shape) != tuple(shape):
            raise InputFileError(f"{node.where()}: weight '{name}' has shape {tuple(a.shape)} in the params "
                                 f"file, the symbol implies {tuple(shape)}")
        return self.b.param(name, a)

    def param(self, node: MxNode, i: int, value: np.ndarray) -> str:
        src = self.sym.nodes[node.inputs[i][0]]
        return self.b.param(src.name, value)

    def const(self, name: str, value: Any) -> str:
        return self.b.param(name, np.asarray(value, np.float32))

    def shape(self, t: str) -> tuple[int, ...]:
        return self.b.shape(t)

    def add(self, op: str, inputs: Sequence[str], node: MxNode, suffix: str = "", *, outputs: Sequence[str] | None
            = None, n_out: int = 1, **attrs: Any) -> Any:
        name = node.name + (f"/{suffix}" if suffix else "")
        try:
            return self.b.add(op, list(inputs), name=name, source=node.name, outputs=outputs, n_out=n_out, **attrs)
        except InvalidGraphError as e:
            raise InvalidGraphError(f"{node.where()}: {e}") from e


# --------------------------------------------------------------------------- conversion
def _input_nodes(sym: Symbol, params: Any) -> tuple[list[int], dict[int, MxNode]]:
    """Data inputs (variables without weights, fed at an op's first input) and missing
    weights (variables without weights at a weight position: node -> one consumer).
    Label variables of loss heads (SoftmaxOutput's second input) are neither."""
    label_pos = {"SoftmaxOutput": 1, "LinearRegressionOutput": 1, "LogisticRegressionOutput": 1,
                 "MAERegressionOutput": 1, "SVMOutput": 1}
    data: set[int] = set()
    missing: dict[int, MxNode] = {}
    for n in sym.nodes:
        for pos, (src, _) in enumerate(n.inputs):
            if sym.nodes[src].op != "null" or sym.nodes[src].name in params or label_pos.get(n.op) == pos:
                continue
            if pos == 0 or n.op in ("Concat", "concat", "elemwise_add", "_Plus", "_plus", "broadcast_add",
                                    "elemwise_mul", "broadcast_mul", "_mul", "_add", "add_n", "ElementWiseSum"):
                data.add(src)
            else:
                missing.setdefault(src, n)
    return sorted(data - set(missing)), missing


def convert_symbol(sym: Symbol, params: Any, *, input_shape: Sequence[int] | None = None,
                   outputs: Sequence[str] | None = None, name: str | None = None,
                   source_file: str | None = None) -> Graph:
    from . import ops  # noqa: F401,PLC0415 - registers the handlers

    missing = [(n.op, n.name) for n in sym.nodes if n.op != "null" and n.op not in HANDLERS]
    if missing:
        raise UnsupportedOpError(FRAMEWORK, missing)
    data, missing_w = _input_nodes(sym, params)
    if missing_w:
        items = [f"'{sym.nodes[i].name}' (used by {n.where()})" for i, n in list(missing_w.items())[:8]]
        raise InputFileError(f"mxnet: the symbol names weights the params file {getattr(params, 'path', '')} does "
                             f"not hold: {', '.join(items)}" + (f" (+{len(missing_w) - 8} more)" if len(missing_w) > 8
                                                                 else "") + "; is it the params file of this symbol?")
    if len(data) != 1:
        names = [sym.nodes[i].name for i in data]
        raise InputFileError(f"mxnet symbol {sym.path}: expected one data input (a variable with no weight in the "
                             f"params file), found {names or 'none'}" + (
                                 "; weights missing from the params file look like inputs too" if len(data) > 1
                                 else ""))
    b = GraphBuilder(FRAMEWORK, source_file)
    ctx = Ctx(sym, params, b)
    dnode = sym.nodes[data[0]]
    shape = tuple(int(d) for d in input_shape) if input_shape else None
    if shape is None and dnode.a.has("__shape__"):
        shape = tuple(max(1, d) for d in (dnode.a.ints("__shape__") or ()))
    if shape is None:
        shape = (1, 3, 224, 224)
        log.warning("mxnet: the symbol does not record its input shape; assuming %s (pass --input-shape)", shape)
    ctx.values[(dnode.index, 0)] = b.input(dnode.name, shape)
    needed = _needed(sym, outputs)
    for n in sym.nodes:
        if n.op == "null" or n.index not in needed:
            continue
        outs = HANDLERS[n.op](ctx, n)
        for i, o in enumerate(outs):
            ctx.values[(n.index, i)] = o
        left = n.a.leftover()
        if left:
            raise UnsupportedAttrError(f"{n.where()}: attributes {dict((k, n.attrs[k]) for k in left)} are not "
                                       "understood by the converter")
    heads = _heads(sym, outputs)
    out_names = [ctx.values[h] for h in heads]
    meta = ModelMeta(source_framework=FRAMEWORK, source_file=source_file or "", value_range=(0.0, 1.0),
                     mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    meta.extra["preprocessing"] = "gluon model zoo convention (RGB in [0, 1], ImageNet mean/std); check your model's"
    meta.extra["mxnet_symbol_layout"] = "legacy (pre-1.0)" if sym.legacy else "current"
    if sym.version is not None:
        meta.extra["mxnet_version"] = sym.version
    s = b.shape(out_names[0])
    if len(s) == 2:
        meta.num_classes = int(s[1])
    if len(shape) == 4:
        meta.crop = int(shape[2])
        meta.resize = int(round(shape[2] / 0.875))
    return b.graph(out_names, name or "mxnet_model", meta)


def _heads(sym: Symbol, outputs: Sequence[str] | None) -> list[tuple[int, int]]:
    if not outputs:
        return list(sym.heads)
    heads = []
    for o in outputs:
        base, _, idx = o.partition(":")
        if base.endswith("_output") and base not in {n.name for n in sym.nodes}:
            base = base[: -len("_output")]
        n = sym.node(base)
        heads.append((n.index, int(idx or 0)))
    return heads


def _needed(sym: Symbol, outputs: Sequence[str] | None) -> set[int]:
    todo = [h[0] for h in _heads(sym, outputs)]
    seen: set[int] = set()
    while todo:
        i = todo.pop()
        if i in seen:
            continue
        seen.add(i)
        todo.extend(src for src, _ in sym.nodes[i].inputs)
    return seen


# --------------------------------------------------------------------------- pooling sizes
def mx_pool_out(size: int, k: int, s: int, p: int, convention: str) -> int:
    """MXNet's pooled size along one axis."""
    if convention == "valid":
        return (size + 2 * p - k) // s + 1
    if convention == "full":
        return int(math.ceil((size + 2 * p - k) / s)) + 1
    if convention == "same":
        return int(math.ceil(size / s))
    raise ValueError(convention)


def ir_pool_out(size: int, k: int, s: int, p: int, ceil_mode: bool) -> int:
    return pool_out(size, k, s, p, p, ceil_mode)
