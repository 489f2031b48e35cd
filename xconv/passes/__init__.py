"""Graph passes: pure ``Graph -> Graph`` functions, one per module, named
verb_object.  A pass never mutates its input graph (it works on
``graph.replace()``) and never modifies a parameter array in place.

Passes register themselves in :data:`PASSES`; :mod:`xconv.pass_manager`
runs them by name, re-validating after each.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from ..ir import Graph, Node, SourceLoc
from ..ops import make_attrs


@dataclass
class PassContext:
    """What a pass may need to know about the target."""

    target: str = ""              # "caffe", "onnx", "" for target-neutral runs
    dialect: str = ""             # caffe dialect
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def caffe_floor_pooling(self) -> bool:
        """Can the target express floor-mode pooling natively?"""
        return self.target == "caffe" and self.native("floor_pooling")

    def native(self, construct: str, **attrs: Any) -> bool:
        """Does the target, in this dialect, write ``construct`` as one native layer?

        Asked of the backend (its optional ``native(opts, construct, **attrs)``), whose
        dialect profiles declare it: passes never compare dialect names.  With ``attrs``
        (the IR node's, e.g. ``perm=``) the layer must also keep the dialect's rules.
        """
        ask = self._backend_method("native")
        return bool(ask and ask(self._emit_options(), construct, **attrs))

    def dialects_with(self, construct: str) -> tuple[str, ...]:
        """The other dialects of the target that write ``construct`` natively."""
        ask = self._backend_method("dialects_with")
        return tuple(ask(self._emit_options(), construct)) if ask else ()

    def _backend_method(self, name: str) -> Any:
        if not self.target:
            return None
        from ..backend import get_backend  # noqa: PLC0415  (backends import the passes)
        return getattr(get_backend(self.target), name, None)

    def _emit_options(self) -> Any:
        from ..backend import EmitOptions  # noqa: PLC0415
        return EmitOptions(dialect=self.dialect)


def dialect_hint(others: Sequence[str], what: str = "") -> str:
    """``dialect(s) a, b <what> (--dialect a)``: the other dialects that write something
    (for error messages); '' when there are none."""
    if not others:
        return ""
    return f"dialect(s) {', '.join(others)}{' ' + what if what else ''} (--dialect {others[0]})"


PassFn = Callable[[Graph, PassContext], Graph]
PASSES: dict[str, PassFn] = {}


def register_pass(name: str) -> Callable[[PassFn], PassFn]:
    def deco(fn: PassFn) -> PassFn:
        if name in PASSES:
            raise ValueError(f"pass {name} registered twice")
        PASSES[name] = fn
        return fn
    return deco


class Rewriter:
    """Helper for building a rewritten node list with fresh, unique names.

    Iterate ``for n in rw:`` over the original nodes; each is either kept
    (``rw.keep(n)``) or replaced by nodes built with ``rw.emit``.  A
    replacement may reuse the replaced node's name; derived names never clash
    with original nodes.  Node and tensor names are separate namespaces.
    """

    def __init__(self, graph: Graph) -> None:
        self.g = graph.replace()
        self.tensors = set(self.g.params) | set(self.g.inputs) | {o for n in self.g.nodes for o in n.outputs}
        self.orig_nodes = {n.name for n in self.g.nodes}
        self.used_nodes: set[str] = set()
        self.current: Node | None = None
        self.nodes: list[Node] = []

    def __iter__(self):
        for n in list(self.g.nodes):
            self.current = n
            yield n
        self.current = None

    def name(self, base: str) -> str:
        """A fresh tensor/param name."""
        n = self.g.unique_name(base, self.tensors)
        self.tensors.add(n)
        return n

    def node_name(self, base: str) -> str:
        def free(c: str) -> bool:
            if c in self.used_nodes:
                return False
            return c not in self.orig_nodes or (self.current is not None and c == self.current.name)
        cand, i = base, 1
        while not free(cand):
            cand = f"{base}_{i}"
            i += 1
        self.used_nodes.add(cand)
        return cand

    def const(self, base: str, value: Any, dtype: Any = np.float32) -> str:
        n = self.name(base)
        self.g.params[n] = np.asarray(value, dtype=dtype)
        return n

    def emit(self, op: str, inputs: list[str], loc: SourceLoc, base: str, output: str | None = None,
             **attrs: Any) -> str:
        out = output if output is not None else self.name(base + "_out")
        self.nodes.append(Node(op, self.node_name(base), list(inputs), [out], make_attrs(op, **attrs), loc))
        return out

    def keep(self, node: Node) -> None:
        self.used_nodes.add(node.name)
        self.nodes.append(node)

    def finish(self) -> Graph:
        self.g.nodes = self.nodes
        return self.g.prune()


def rename_uses(graph: Graph, mapping: dict[str, str]) -> None:
    """Replace tensor names in node inputs and graph outputs (in place on ``graph``)."""
    if not mapping:
        return

    def resolve(t: str) -> str:
        seen = set()
        while t in mapping and t not in seen:
            seen.add(t)
            t = mapping[t]
        return t

    for n in graph.nodes:
        n.inputs = [resolve(i) if i else i for i in n.inputs]
    graph.outputs = [resolve(o) for o in graph.outputs]


def scalar_param(graph: Graph, name: str) -> float | None:
    """The value of a constant that holds a single number, else None."""
    a = graph.params.get(name)
    if a is None or a.size != 1:
        return None
    return float(a.reshape(()))


# import the pass modules so they register
from . import (  # noqa: E402,F401
    remove_identity, fold_batchnorm, lower_adaptive_pool, normalize_shapes, fuse_pad,
    legalize_pad, legalize_pool, decompose_activations, fold_slice,
)
