"""Graph capture of a TorchScript module (``torch.jit.load`` / ``script`` / ``trace``).

Walks ``module.inlined_graph``.  ``prim::`` plumbing (constants, GetAttr
chains to parameters, lists, tuples) and scalar ``aten::`` arithmetic are
evaluated in Python; ``prim::If``/``prim::Loop`` whose condition is known at
conversion time (module attributes such as ``training`` or
``use_res_connect``, shapes) run only the taken block; tensor ``aten::`` ops
are routed by :data:`ATEN` to the same handlers the fx path uses.

Before converting, a scan pass walks the same graph with symbolic tensors,
exploring both branches of a condition it cannot decide, and raises one
:class:`UnsupportedOpError` naming every unsupported op.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import operator
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F

from xconv.errors import UnsupportedAttrError, UnsupportedOpError, XconvError
from xconv.ir import SourceLoc

from . import handlers as _handlers  # noqa: F401  (registers the handlers)
from .core import (FRAMEWORK, FUNCTIONS, METHODS, Builder, Call, ConstTensor, Handler, TensorRef, Unavailable,
                   tensor_in)

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- aten -> handlers
def _via(target: Any, names: Sequence[str] | None = None, **fixed: Any) -> Handler:
    """Route an aten op to the handler registered for ``target`` (a function or a method name).

    Positional aten arguments are passed on as they are when their order
    matches the Python API, else renamed to keywords with ``names``.
    """
    entry = METHODS[target] if isinstance(target, str) else FUNCTIONS[target]

    def handler(b: Builder, call: Call) -> Any:
        if names is not None:
            kwargs = {k: v for k, v in zip(names, call.args)}
            call = dataclasses.replace(call, args=tuple(call.args[:1]), kwargs={**kwargs, **fixed})
        elif fixed:
            call = dataclasses.replace(call, kwargs={**call.kwargs, **fixed})
        return entry.fn(b, call)
    return handler


def _addmm(b: Builder, call: Call) -> Any:
    """addmm(bias, x, W.t(), beta, alpha): the traced form of nn.Linear."""
    bias, x, wt = call.args[0], call.args[1], call.args[2]
    beta = call.args[3] if len(call.args) > 3 else 1
    alpha = call.args[4] if len(call.args) > 4 else 1
    if beta != 1 or alpha != 1:
        raise call.unsupported(f"addmm with beta={beta}, alpha={alpha}")
    if not isinstance(wt, ConstTensor) or wt.value.dim() != 2:
        raise call.unsupported("addmm of two computed tensors")
    w = ConstTensor(wt.value.t(), wt.source if wt.qualname is None else None)
    return _handlers.emit_linear(b, call, tensor_in(b, call, x), w, bias)


def _max_pool_with_indices(b: Builder, call: Call) -> Any:
    out = FUNCTIONS[F.max_pool2d].fn(b, dataclasses.replace(call, args=tuple(call.args[:6])))
    return out, Unavailable("the indices output of max pooling")


def _upsample(mode: str, aten_op: str) -> Handler:
    """aten::upsample_*2d(input, output_size, [align_corners,] scale_factors | scales_h, scales_w):
    probed through the aten op itself (see handlers.emit_resize)."""
    def handler(b: Builder, call: Call) -> Any:
        x = tensor_in(b, call, call.args[0])
        rest = [a.value if isinstance(a, ConstTensor) else a for a in call.args[1:]]
        align_corners = rest[1] if mode == "bilinear" and len(rest) > 1 else None
        fn = getattr(torch.ops.aten, aten_op)

        def op(t: torch.Tensor, size: tuple[int, int] | None) -> torch.Tensor:
            args = list(rest)
            if size is not None:
                args[0] = list(size)
            return fn(t, *args)
        scales = rest[2:] if mode == "bilinear" else rest[1:]
        hint = _handlers.SCALE_STEP_HINT if any(v is not None for v in scales) else ""
        return _handlers.emit_resize(b, call, x, mode, align_corners, rest[0] if rest else None, op, hint)
    return handler


def _build_aten() -> dict[str, Handler]:
    table: dict[str, Handler] = {}

    def add(kinds: str, h: Handler, inplace_too: bool = False) -> None:
        for k in kinds.split():
            table[f"aten::{k}"] = h
            if inplace_too:
                table[f"aten::{k}_"] = h

    add("conv2d", _via(F.conv2d))
    add("_convolution", _via(F.conv2d, ("input", "weight", "bias", "stride", "padding", "dilation", "transposed",
                                        "output_padding", "groups")))
    add("batch_norm", _via(F.batch_norm, ("input", "weight", "bias", "running_mean", "running_var", "training",
                                          "momentum", "eps", "cudnn_enabled")))
    add("relu", _via(torch.relu), True)
    add("relu6", _via(F.relu6), True)
    add("hardtanh", _via(F.hardtanh), True)
    add("hardswish", _via(F.hardswish), True)
    add("hardsigmoid", _via(F.hardsigmoid), True)
    add("sigmoid", _via(torch.sigmoid), True)
    add("silu", _via(F.silu), True)
    add("tanh", _via(torch.tanh), True)
    add("leaky_relu", _via(F.leaky_relu), True)
    add("elu", _via(F.elu, ("input", "alpha", "scale", "input_scale")), True)
    add("clamp clip", _via(torch.clamp), True)
    add("prelu", _via(F.prelu))
    add("softmax", _via(torch.softmax, ("input", "dim", "dtype")))
    add("max_pool2d", _via(F.max_pool2d))
    add("max_pool2d_with_indices", _max_pool_with_indices)
    add("avg_pool2d", _via(F.avg_pool2d))
    add("adaptive_avg_pool2d", _via(F.adaptive_avg_pool2d))
    add("adaptive_max_pool2d", _via(F.adaptive_max_pool2d, ("input", "output_size"), _with_indices=True))
    add("linear", _via(F.linear))
    add("addmm", _addmm)
    add("flatten", _via(torch.flatten))
    add("view", _via("view"))
    add("reshape", _via(torch.reshape))
    add("squeeze", _via(torch.squeeze))
    add("unsqueeze", _via(torch.unsqueeze))
    add("transpose", _via(torch.transpose))
    add("permute", _via(torch.permute))
    add("t", _via(torch.t))
    add("contiguous detach clone", _via("contiguous"))
    add("dropout feature_dropout alpha_dropout feature_alpha_dropout",
        _via(F.dropout, ("input", "p", "training")), True)
    add("add", _via(torch.add, ("input", "other", "alpha")), True)
    add("sub", _via(torch.sub, ("input", "other", "alpha")), True)
    add("rsub", _via(torch.rsub, ("input", "other", "alpha")))
    add("mul", _via(torch.mul, ("input", "other")), True)
    add("div", _via(torch.div, ("input", "other", "rounding_mode")), True)
    add("cat concat", _via(torch.cat))
    add("chunk unsafe_chunk", _via(torch.chunk))
    add("split split_with_sizes unsafe_split", _via(torch.split))
    add("mean", _via(torch.mean))
    add("pad", _via(F.pad))
    add("constant_pad_nd", _via(F.pad, ("input", "pad", "value")))
    add("reflection_pad2d", _via(F.pad, ("input", "pad"), mode="reflect"))
    add("replication_pad2d", _via(F.pad, ("input", "pad"), mode="replicate"))
    add("upsample_nearest2d", _upsample("nearest", "upsample_nearest2d"))
    add("_upsample_nearest_exact2d", _upsample("nearest-exact", "_upsample_nearest_exact2d"))
    add("upsample_bilinear2d", _upsample("bilinear", "upsample_bilinear2d"))
    return table


ATEN: dict[str, Handler] = _build_aten()


# --------------------------------------------------------------------------- python-side evaluation
def _format(fmt: str, *args: Any) -> str:
    return fmt


PY: dict[str, Callable[..., Any]] = {
    "aten::__getitem__": lambda seq, i: seq[i],
    "prim::TupleIndex": lambda seq, i: seq[i],
    "aten::len": len,
    "aten::__not__": operator.not_,
    "aten::__is__": operator.is_,
    "aten::__isnot__": operator.is_not,
    "aten::__and__": operator.and_,
    "aten::__or__": operator.or_,
    "aten::eq": operator.eq, "aten::ne": operator.ne, "aten::lt": operator.lt,
    "aten::gt": operator.gt, "aten::le": operator.le, "aten::ge": operator.ge,
    "aten::add": operator.add, "aten::sub": operator.sub, "aten::mul": operator.mul,
    "aten::div": operator.truediv, "aten::floordiv": operator.floordiv, "aten::remainder": operator.mod,
    "aten::neg": operator.neg, "aten::pow": operator.pow, "aten::floor_divide": operator.floordiv,
    "aten::true_divide": operator.truediv, "aten::__contains__": lambda seq, item: item in seq,
    "aten::floor": math.floor, "aten::ceil": math.ceil, "aten::sqrt": math.sqrt,
    "aten::Int": int, "aten::Float": float, "aten::Bool": bool,
    "aten::ScalarImplicit": lambda v: v, "prim::NumToTensor": lambda v: v,
    "prim::unchecked_cast": lambda v: v,
    "prim::min": lambda *a: min(a[0]) if len(a) == 1 else min(a),
    "prim::max": lambda *a: max(a[0]) if len(a) == 1 else max(a),
    "aten::format": _format,
    "aten::warn": lambda *a: None,
    "aten::list": list,
    "aten::append": lambda seq, v: (seq.append(v), seq)[1],
    "aten::__range_length": lambda lo, hi, step: len(range(lo, hi, step)),
    "aten::__derive_index": lambda i, start, step: start + i * step,
    "prim::Uninitialized": lambda: None,
}

# torch ops that may be folded when all their tensor inputs are constants
_FOLDABLE = {"t", "transpose", "permute", "reshape", "view", "contiguous", "squeeze", "unsqueeze", "flatten",
             "mul", "add", "sub", "div", "neg", "detach", "clone", "to", "sqrt", "rsqrt", "reciprocal"}


class _Sym:
    """A value the scan pass does not compute (a tensor, or what depends on one)."""

    def __init__(self, label: str) -> None:
        self.label = label

    def __repr__(self) -> str:
        return f"<{self.label}>"


SYM_TENSOR = _Sym("tensor")
UNKNOWN = _Sym("unknown")

# plumbing evaluated in Python whatever the values are (lists of tensors included)
_STRUCTURAL = {"aten::__getitem__", "prim::TupleIndex", "aten::len", "aten::list", "aten::append",
               "aten::__is__", "aten::__isnot__", "prim::unchecked_cast", "aten::format", "aten::warn",
               "prim::Uninitialized"}


def _sym_for(v: torch._C.Value) -> _Sym:
    return SYM_TENSOR if "Tensor" in str(v.type()) else UNKNOWN


@dataclass
class _ModuleRef:
    obj: Any
    qualname: str


def _leaves(v: Any) -> list[Any]:
    if isinstance(v, (list, tuple)):
        return [x for item in v for x in _leaves(item)]
    return [v]


class _Walker:
    """Runs a TorchScript graph on conversion-time values (``b is None``: scan only)."""

    def __init__(self, b: Builder | None, source_file: str | None) -> None:
        self.b = b
        self.source_file = source_file
        self.env: dict[int, Any] = {}
        self.bad: list[tuple[str, str]] = []
        # scan only: unsupported ops met only inside branches whose condition the scan cannot
        # decide (it explores both); the conversion walk decides them and names any it reaches
        self.maybe_bad: list[tuple[str, str]] = []
        self.speculative = 0
        self.index = 0

    # ------------------------------------------------------------ values
    def get(self, v: torch._C.Value) -> Any:
        return self.env[v.unique()]

    def put(self, v: torch._C.Value, val: Any) -> None:
        self.env[v.unique()] = val

    @staticmethod
    def _constant(node: torch._C.Node) -> Any:
        out = node.output()
        if not node.hasAttribute("value"):
            return None
        val = out.toIValue()
        return ConstTensor(val, None) if isinstance(val, torch.Tensor) else val

    def _has_sym(self, vals: Sequence[Any]) -> bool:
        return any(isinstance(x, _Sym) for x in _leaves(list(vals)))

    def _loc(self, node: torch._C.Node) -> SourceLoc:
        outs = [o.debugName() for o in node.outputs()]
        label = f"%{outs[0]} = {node.kind()}" if outs else node.kind()
        return SourceLoc(FRAMEWORK, label, self.index, self.source_file)

    def _name(self, node: torch._C.Node, vals: Sequence[Any]) -> str:
        assert self.b is not None
        for v in _leaves(list(vals)):
            q = (v.qualname or v.source) if isinstance(v, ConstTensor) else None
            if q and q.endswith(".weight") and v.owner:
                if self.b.name_free(v.owner):
                    return v.owner
                break
        return str(node.kind()).split("::", 1)[1].strip("_") or "op"

    # ------------------------------------------------------------ walking
    def run_block(self, block: Any) -> list[Any]:
        for node in block.nodes():
            self.run_node(node)
        return [self.get(v) for v in block.outputs()]

    def run_node(self, node: torch._C.Node) -> None:
        self.index += 1
        kind = node.kind()
        outs = list(node.outputs())
        if kind == "prim::Constant":
            self.put(outs[0], self._constant(node))
            return
        ins = [self.get(v) for v in node.inputs()]
        if kind == "prim::GetAttr":
            self.put(outs[0], self._getattr(ins[0], node.s("name")))
        elif kind in ("prim::ListConstruct", "prim::TupleConstruct"):
            self.put(outs[0], list(ins) if kind == "prim::ListConstruct" else tuple(ins))
        elif kind in ("prim::ListUnpack", "prim::TupleUnpack"):
            seq = ins[0]
            vals = [seq] * len(outs) if isinstance(seq, _Sym) else list(seq)
            if len(vals) != len(outs):
                raise XconvError(f"pytorch: {self._loc(node)} unpacks {len(vals)} values into {len(outs)}")
            for o, v in zip(outs, vals):
                self.put(o, v)
        elif kind == "prim::If":
            self._if(node, ins[0], outs)
        elif kind == "prim::Loop":
            self._loop(node, ins, outs)
        elif kind == "prim::RaiseException":
            if self.b is not None:
                msg = next((x for x in ins if isinstance(x, str)), "")
                raise XconvError(f"pytorch: the model raises at {self._loc(node)}: {msg}")
        elif kind in ("aten::size", "aten::dim", "aten::numel", "prim::device", "prim::dtype"):
            self.put(outs[0], self._query(kind, ins))
        elif kind in _STRUCTURAL or (kind in PY and not any(
                isinstance(x, (TensorRef, ConstTensor)) or x is SYM_TENSOR for x in _leaves(ins))):
            self._python(kind, ins, outs)
        else:
            self._tensor_op(node, kind, ins, outs)

    def _python(self, kind: str, ins: list[Any], outs: list[torch._C.Value]) -> None:
        if kind not in _STRUCTURAL and self._has_sym(ins) or (ins and isinstance(ins[0], _Sym)):
            for o in outs:  # NumToTensor & co. wrap scalars: still scalars here
                self.put(o, _sym_for(o) if kind in _STRUCTURAL else UNKNOWN)
            return
        try:
            val = PY[kind](*ins)
        except (TypeError, ValueError, IndexError, KeyError, ZeroDivisionError):
            if self.b is not None or not self.speculative:
                raise
            val = UNKNOWN  # a branch the conversion may never take (len(None) where size is None)
        if outs:
            self.put(outs[0], val)

    def _getattr(self, parent: Any, name: str) -> Any:
        if isinstance(parent, _Sym):
            return UNKNOWN
        if not isinstance(parent, _ModuleRef):
            raise XconvError(f"pytorch: GetAttr '{name}' on a {type(parent).__name__}")
        val = getattr(parent.obj, name)
        q = f"{parent.qualname}.{name}" if parent.qualname else name
        if isinstance(val, torch.Tensor):
            return ConstTensor(val, q)
        if isinstance(val, torch.nn.Module):
            return _ModuleRef(val, q)
        return val

    def _query(self, kind: str, ins: list[Any]) -> Any:
        x = ins[0]
        if isinstance(x, _Sym):
            return UNKNOWN
        if isinstance(x, TensorRef):
            assert self.b is not None
            shape = self.b.shape(x)
        elif isinstance(x, ConstTensor):
            shape = tuple(x.value.shape)
        else:
            raise XconvError(f"pytorch: {kind} of a {type(x).__name__}")
        if kind == "aten::size":
            return list(shape) if len(ins) == 1 else shape[int(ins[1])]
        if kind == "aten::dim":
            return len(shape)
        if kind == "aten::numel":
            return math.prod(shape)
        return torch.device("cpu") if kind == "prim::device" else torch.float32

    def _if(self, node: torch._C.Node, cond: Any, outs: list[torch._C.Value]) -> None:
        blocks = list(node.blocks())
        if isinstance(cond, _Sym):
            if self.b is not None:
                raise XconvError(f"pytorch: condition at {self._loc(node)} is not known at conversion time")
            self.speculative += 1
            try:
                for blk in blocks:  # scan both branches
                    self.run_block(blk)
            finally:
                self.speculative -= 1
            for o in outs:
                self.put(o, _sym_for(o))
            return
        if isinstance(cond, (TensorRef, ConstTensor)):
            raise XconvError(f"pytorch: data-dependent control flow at {self._loc(node)} is not supported")
        vals = self.run_block(blocks[0] if cond else blocks[1])
        for o, v in zip(outs, vals):
            self.put(o, v)

    def _loop(self, node: torch._C.Node, ins: list[Any], outs: list[torch._C.Value]) -> None:
        body = list(node.blocks())[0]
        trip, cond, carried = ins[0], ins[1], list(ins[2:])
        bins = list(body.inputs())
        if isinstance(trip, _Sym) or isinstance(cond, _Sym):
            if self.b is not None:
                raise XconvError(f"pytorch: loop at {self._loc(node)} has no constant trip count")
            self.put(bins[0], UNKNOWN)
            for v, c in zip(bins[1:], carried):
                self.put(v, c)
            self.run_block(body)
            for o in outs:
                self.put(o, _sym_for(o))
            return
        i = 0
        while cond and i < int(trip):
            self.put(bins[0], i)
            for v, c in zip(bins[1:], carried):
                self.put(v, c)
            res = self.run_block(body)
            cond, carried = res[0], list(res[1:])
            i += 1
            if isinstance(cond, _Sym):
                break
        for o, c in zip(outs, carried):
            self.put(o, c)

    def _tensor_op(self, node: torch._C.Node, kind: str, ins: list[Any], outs: list[torch._C.Value]) -> None:
        has_ref = any(isinstance(x, TensorRef) or x is SYM_TENSOR for x in _leaves(ins))
        if not has_ref and not self._has_sym(ins):
            self._fold(node, kind, ins, outs)
            return
        handler = ATEN.get(kind)
        if self.b is None:  # scan
            if handler is None:
                (self.maybe_bad if self.speculative else self.bad).append((kind, self._loc(node).node_name))
            for o in outs:
                self.put(o, _sym_for(o))
            return
        if handler is None:
            raise UnsupportedOpError(FRAMEWORK, [(kind, self._loc(node).node_name)])
        call = Call(kind, self._name(node, ins), tuple(ins), {}, self._loc(node))
        result = handler(self.b, call)
        if len(outs) == 1:
            self.put(outs[0], result)
        else:
            if not isinstance(result, tuple) or len(result) != len(outs):
                raise XconvError(f"pytorch: {call.where()} gave {result!r} for {len(outs)} outputs")
            for o, r in zip(outs, result):
                self.put(o, r)
        if kind.endswith("_") and not kind.endswith("__") and node.inputsSize():
            self.put(next(iter(node.inputs())), result)  # in-place: later readers see the new value

    def _fold(self, node: torch._C.Node, kind: str, ins: list[Any], outs: list[torch._C.Value]) -> None:
        """An aten op on constants only (e.g. ``aten::t(weight)``): computed now."""
        op = kind.split("::", 1)[1]
        if not kind.startswith("aten::") or op not in _FOLDABLE:
            if self.b is None:
                (self.maybe_bad if self.speculative else self.bad).append(
                    (kind + " (on constants)", self._loc(node).node_name))
                for o in outs:
                    self.put(o, UNKNOWN)
                return
            raise UnsupportedOpError(FRAMEWORK, [(kind + " (on constants)", self._loc(node).node_name)])
        args = [x.value if isinstance(x, ConstTensor) else x for x in ins]
        val = getattr(torch.ops.aten, op)(*args)
        if isinstance(val, torch.Tensor):
            src = next((x for x in ins if isinstance(x, ConstTensor) and (x.qualname or x.source)), None)
            val = ConstTensor(val, None, (src.qualname or src.source) if src is not None else None)
        self.put(outs[0], val)


def capture(module: torch.jit.ScriptModule, input_shape: tuple[int, ...], b: Builder) -> list[TensorRef]:
    """Convert a TorchScript module into ``b``; returns the output refs."""
    graph = module.inlined_graph
    inputs = list(graph.inputs())
    tensor_inputs = inputs[1:]
    if len(tensor_inputs) != 1:
        raise XconvError(f"pytorch: the TorchScript module takes {len(tensor_inputs)} inputs; "
                         "xconv converts single-input models")

    scan = _Walker(None, b.source_file)
    scan.put(inputs[0], _ModuleRef(module, ""))
    scan.put(tensor_inputs[0], SYM_TENSOR)
    scan.run_block(graph)
    if scan.bad:
        raise UnsupportedOpError(FRAMEWORK, scan.bad, hint=(
            "Every unsupported TorchScript op is listed above; supported: xconv.frontends.pytorch.supported_ops()."))
    if scan.maybe_bad:
        log.info("pytorch: unsupported ops in branches decided during conversion (an error if reached): %s",
                 sorted({k for k, _ in scan.maybe_bad}))

    walker = _Walker(b, b.source_file)
    walker.put(inputs[0], _ModuleRef(module, ""))
    name = tensor_inputs[0].debugName().split(".")[0] or "input"
    walker.put(tensor_inputs[0], b.add_input(name, input_shape))
    with torch.no_grad():
        outs = walker.run_block(graph)
    refs: list[TensorRef] = []
    for v in _leaves(outs):
        if v is None:  # e.g. absent auxiliary outputs of a scripted GoogLeNet
            continue
        if not isinstance(v, TensorRef):
            raise UnsupportedAttrError(f"pytorch: a model output is {v!r}, not a computed tensor")
        refs.append(v)
    return refs
