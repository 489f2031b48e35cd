"""Graph capture of an ``nn.Module`` with ``torch.fx.symbolic_trace``.

1. Trace.  Modules from ``torch.nn`` stay leaves (``call_module`` nodes carry
   the module object and its qualified name); user modules are traced through.
   A user module fx cannot trace (data-dependent control flow, ...) becomes a
   leaf and therefore an unsupported op naming its class, so one error lists
   it together with every other problem.
2. Observe.  One run of :class:`torch.fx.passes.shape_prop.ShapeProp` on a
   seeded random input of ``input_shape`` records every node's shape, the
   values of non-tensor nodes (``x.size()``, ``size[0] // 2``) and the values
   of nodes that do not depend on the input (parameters, ``w.t()``).
3. Scan every node; raise one :class:`UnsupportedOpError` listing them all.
4. Convert in graph order with the registered handlers; constants fold from
   the observed values; each IR tensor's inferred shape is checked against the
   shape torch produced.
"""
from __future__ import annotations

import builtins
import logging
import operator
import re
from dataclasses import dataclass
from typing import Any

import torch
import torch.fx as fx
from torch.fx.node import map_arg
from torch.fx.passes.shape_prop import ShapeProp

from xconv.errors import InvalidGraphError, UnsupportedAttrError, UnsupportedOpError, XconvError
from xconv.ir import SourceLoc

from . import handlers as _handlers  # noqa: F401  (registers the handlers)
from .core import (FRAMEWORK, METHODS, MODULES, Builder, Call, ConstTensor, Entry, TensorRef, Unavailable,
                   flatten_values, function_name, lookup_function, module_class_name)

log = logging.getLogger(__name__)

# Ops that only read a tensor's metadata: their value is fixed by the input shape.
_SHAPE_METHODS = {"size", "dim", "numel", "nelement", "ndimension"}
_SHAPE_ATTRS = {"shape", "ndim", "dtype", "device", "is_cuda", "requires_grad"}
# Constant-looking calls that must not be frozen into the graph.
_RANDOM_MARKERS = ("rand", "normal", "bernoulli", "multinomial", "dropout", "poisson", "uniform")

HINT = ("Every unsupported op is listed above; supported ones: xconv.frontends.pytorch.supported_ops(). "
        "Rewrite those parts with supported ops, or convert a TorchScript file of the model.")


@dataclass(frozen=True)
class TensorMeta:
    shape: tuple[int, ...]
    dtype: torch.dtype


# --------------------------------------------------------------------------- tracing
class _Tracer(fx.Tracer):
    def __init__(self, forced_leaves: set[str]) -> None:
        super().__init__()
        self.forced_leaves = forced_leaves

    def is_leaf_module(self, m: torch.nn.Module, module_qualified_name: str) -> bool:
        if module_qualified_name in self.forced_leaves:
            return True
        return super().is_leaf_module(m, module_qualified_name)


class _Root(torch.nn.Module):
    """Holds a root module that is itself a leaf (a bare ``nn.Conv2d``), so it
    converts through its module handler like everywhere else."""

    def __init__(self, name: str, module: torch.nn.Module) -> None:
        super().__init__()
        self.add_module(name, module)
        self._child = name

    def forward(self, x: Any) -> Any:
        return getattr(self, self._child)(x)


def trace(module: torch.nn.Module) -> tuple[fx.GraphModule, dict[str, str]]:
    """Symbolically trace ``module``; user modules that fail become leaves.

    Returns the GraphModule and {qualname: reason} for those forced leaves.
    """
    if fx.Tracer().is_leaf_module(module, ""):
        module = _Root(type(module).__name__.lower(), module)
    forced: dict[str, str] = {}
    while True:
        tracer = _Tracer(set(forced))
        try:
            graph = tracer.trace(module)
        except Exception as e:  # noqa: BLE001 - any tracing failure is located below
            inner = [q for q, _ in tracer.module_stack.values() if q]
            if not inner or inner[-1] in forced:
                raise XconvError(
                    f"pytorch: torch.fx cannot trace {type(module).__name__}.forward: {type(e).__name__}: {e}. "
                    "Make forward free of data-dependent Python control flow, or save the model as "
                    "TorchScript (torch.jit.script/trace + save) and convert that file.") from e
            forced[inner[-1]] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            log.info("fx cannot trace through %s (%s); keeping it as a leaf", inner[-1], forced[inner[-1]])
            continue
        return fx.GraphModule(tracer.root, graph, type(module).__name__), forced


# --------------------------------------------------------------------------- observing
def _has_tensor(v: Any) -> bool:
    return any(isinstance(x, torch.Tensor) for x in flatten_values(v))


def _summarise(v: Any) -> Any:
    if isinstance(v, torch.Tensor):
        return TensorMeta(tuple(v.shape), v.dtype)
    if isinstance(v, torch.Size):
        return tuple(int(d) for d in v)
    if isinstance(v, tuple):
        return tuple(_summarise(x) for x in v)
    if isinstance(v, list):
        return [_summarise(x) for x in v]
    if isinstance(v, dict):
        return {k: _summarise(x) for k, x in v.items()}
    return v


class _Observer(ShapeProp):
    """ShapeProp that also records what conversion needs to fold constants.

    It runs the model for real on one seeded input: the shapes it records are
    PyTorch's own, an independent check of the IR's shape inference.  (Fake
    tensors would skip the arithmetic, but importing their machinery costs
    more than a batch-1 forward pass of a 15-GMAC model.)
    """

    def __init__(self, gm: fx.GraphModule) -> None:
        super().__init__(gm)
        self.dynamic: set[fx.Node] = set()  # tensor values that depend on the input
        self.observed: dict[fx.Node, Any] = {}
        self.const: set[fx.Node] = set()  # input-independent values, kept whole

    def run_node(self, n: fx.Node) -> Any:
        result = super().run_node(n)
        if n.op == "placeholder":
            self.dynamic.add(n)
            self.observed[n] = _summarise(result)
        elif n.op == "output":
            pass
        elif any(a in self.dynamic for a in n.all_input_nodes):
            if _has_tensor(result):
                self.dynamic.add(n)
            self.observed[n] = _summarise(result)
        else:
            self.const.add(n)
            self.observed[n] = result.detach() if isinstance(result, torch.Tensor) and n.op != "get_attr" else result
        return result


# --------------------------------------------------------------------------- classification
def _is_shape_query(n: fx.Node) -> bool:
    if n.op == "call_method":
        return n.target in _SHAPE_METHODS
    if n.op == "call_function":
        if n.target is builtins.getattr:
            return len(n.args) > 1 and n.args[1] in _SHAPE_ATTRS
        return n.target is builtins.len
    return False


def _op_name(gm: fx.GraphModule, n: fx.Node) -> str:
    if n.op == "call_module":
        return module_class_name(gm.get_submodule(str(n.target)))
    if n.op == "call_method":
        return f"Tensor.{n.target}"
    if n.op == "call_function":
        return function_name(n.target)
    return n.op


def _entry(gm: fx.GraphModule, n: fx.Node) -> Entry | None:
    if n.op == "call_module":
        return MODULES.get(type(gm.get_submodule(str(n.target))))
    if n.op == "call_method":
        return METHODS.get(str(n.target))
    if n.op == "call_function":
        return lookup_function(n.target)
    return None


def scan(gm: fx.GraphModule, obs: _Observer, forced: dict[str, str]) -> list[tuple[str, str]]:
    """(op, node name) for every node the conversion cannot handle."""
    bad: list[tuple[str, str]] = []
    for n in gm.graph.nodes:
        if n.op in ("placeholder", "output", "get_attr"):
            continue
        name = str(n.target) if n.op == "call_module" else n.name
        if n in obs.const:
            if any(m in _op_name(gm, n).lower() for m in _RANDOM_MARKERS):
                bad.append((_op_name(gm, n) + " (random constant)", name))
            continue
        if n not in obs.dynamic:  # value fixed by the input shape
            if _is_shape_query(n) or not any(
                    a in obs.dynamic for a in n.all_input_nodes):
                continue
            bad.append((_op_name(gm, n) + " (non-tensor result)", name))
            continue
        if _entry(gm, n) is None:
            bad.append((_op_name(gm, n), name))
    return bad


# --------------------------------------------------------------------------- conversion
def _shape_of(v: Any) -> Any:
    if isinstance(v, TensorMeta):
        return v.shape
    if isinstance(v, (tuple, list)):
        return tuple(_shape_of(x) for x in v)
    return None


def _wrap_const(n: fx.Node, v: Any) -> Any:
    if isinstance(v, torch.Tensor):
        return ConstTensor(v, str(n.target) if n.op == "get_attr" else None)
    if isinstance(v, torch.Size):
        return tuple(int(d) for d in v)
    return v


def _preferred_name(b: Builder, n: fx.Node, args: Any, kwargs: Any) -> str:
    """Module calls: the qualified name (``layer1.0.relu``; a repeated call gets ``_1``).
    Functional calls on a parameter: its module (``_conv_stem`` for F.conv2d on
    ``_conv_stem.weight``).  Other calls: the op scoped by the calling module
    (``layer1.0.add``)."""
    if n.op == "call_module":
        return str(n.target)
    for v in flatten_values((args, kwargs)):
        if isinstance(v, ConstTensor) and v.qualname and v.qualname.endswith(".weight") and v.owner:
            if b.name_free(v.owner):
                return v.owner
            break
    base = re.sub(r"_\d+$", "", n.name) or n.name
    stack = n.meta.get("nn_module_stack") or {}
    scope = next(reversed(stack.values()))[0] if stack else ""
    return f"{scope}.{base}" if scope else base


def _inplace(entry: Entry, call: Call) -> bool:
    if entry.always_inplace:
        return True
    if call.module is not None:
        return bool(getattr(call.module, "inplace", False))
    if entry.inplace_arg is not None:
        return bool(call.arg(entry.inplace_arg[0], entry.inplace_arg[1], False))
    return False


def _check_shape(call: Call, b: Builder, result: Any, expected: Any) -> None:
    got: Any
    if isinstance(result, TensorRef):
        got = b.shape(result)
    elif isinstance(result, ConstTensor):
        got = tuple(result.value.shape)
    elif isinstance(result, (tuple, list)):
        if not isinstance(expected, tuple) or len(expected) != len(result):
            raise InvalidGraphError(f"{call.where()}: converted to {len(result)} values, torch gives {expected}")
        for r, e in zip(result, expected):
            if not isinstance(r, Unavailable):
                _check_shape(call, b, r, e)
        return
    else:
        return
    if expected is not None and tuple(got) != tuple(expected):
        raise InvalidGraphError(f"{call.where()}: the IR gives shape {got}, torch gives {expected}")


def _observe(gm: fx.GraphModule, sample: torch.Tensor, module: torch.nn.Module,
             input_shape: tuple[int, ...]) -> _Observer:
    obs = _Observer(gm)
    with torch.inference_mode():
        try:
            obs.propagate(sample)
        except Exception as e:  # noqa: BLE001
            raise XconvError(f"pytorch: running {type(module).__name__} on an input of shape {tuple(input_shape)} "
                             f"failed: {type(e).__name__}: {e}. Pass the input_shape the model expects.") from e
    return obs


def capture(module: torch.nn.Module, input_shape: tuple[int, ...], b: Builder, *, seed: int = 0) -> list[TensorRef]:
    """Trace ``module`` and convert it into ``b``; returns the output refs."""
    gm, forced = trace(module)
    first = next((p for p in module.parameters() if p.is_floating_point()), None)
    gen = torch.Generator().manual_seed(seed)
    sample = torch.randn(tuple(input_shape), generator=gen)
    if first is not None:
        sample = sample.to(device=first.device, dtype=first.dtype)
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    required = [n for n in placeholders if not n.args]
    if len(required) != 1:
        raise XconvError(f"pytorch: {type(module).__name__}.forward takes {len(required)} required inputs "
                         f"({[n.name for n in required]}); xconv converts single-input models")
    obs = _observe(gm, sample, module, input_shape)

    bad = scan(gm, obs, forced)
    if bad:
        hint = HINT
        if forced:
            hint = "fx could not trace through: " + "; ".join(f"{q} ({r})" for q, r in forced.items()) + "\n" + hint
        raise UnsupportedOpError(FRAMEWORK, bad, hint=hint)

    env: dict[fx.Node, Any] = {}
    outputs: list[TensorRef] = []
    with torch.no_grad():
        for idx, n in enumerate(gm.graph.nodes):
            loc = SourceLoc(FRAMEWORK, str(n.target) if n.op == "call_module" else n.name, idx, b.source_file)
            if n.op == "placeholder":
                env[n] = b.add_input(n.name, input_shape) if not n.args else n.args[0]
                continue
            if n.op == "output":
                for v in flatten_values(map_arg(n.args[0], lambda a: env[a])):
                    if v is None:  # absent optional outputs
                        continue
                    if not isinstance(v, TensorRef):
                        raise UnsupportedAttrError(f"pytorch: model output {v!r} at {loc} is not a computed tensor")
                    outputs.append(v)
                continue
            if n in obs.const:
                env[n] = _wrap_const(n, obs.observed[n])
                continue
            if n not in obs.dynamic:
                env[n] = obs.observed[n]
                continue
            args = map_arg(n.args, lambda a: env[a])
            kwargs = map_arg(n.kwargs, lambda a: env[a])
            entry = _entry(gm, n)
            assert entry is not None  # scan() guarantees it
            module_obj = gm.get_submodule(str(n.target)) if n.op == "call_module" else None
            call = Call(_op_name(gm, n), _preferred_name(b, n, args, kwargs), tuple(args), dict(kwargs), loc,
                        module=module_obj, qualname=str(n.target) if module_obj is not None else None)
            result = entry.fn(b, call)
            _check_shape(call, b, result, _shape_of(obs.observed.get(n)))
            env[n] = result
            if _inplace(entry, call) and n.args and isinstance(n.args[0], fx.Node):
                # later readers of the mutated tensor see the new value
                env[n.args[0]] = result
    return outputs


def summarize_module(gm: fx.GraphModule) -> dict[str, int]:
    """Op-name counts of a traced module (debugging aid)."""
    counts: dict[str, int] = {}
    for n in gm.graph.nodes:
        if n.op.startswith("call_"):
            k = _op_name(gm, n)
            counts[k] = counts.get(k, 0) + 1
    return counts


_ = operator  # operator targets are resolved through core.FUNCTIONS
