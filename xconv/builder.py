"""A small helper for frontends that build IR graphs node by node.

It names things uniquely, registers params, fills in canonical attrs via
:func:`xconv.ops.make_attrs`, infers each node's output types as it is
added (so a frontend can ask for shapes while building) and attaches a
:class:`~xconv.ir.SourceLoc` to every node.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .ir import Graph, ModelMeta, Node, SourceLoc, TensorType
from .ops import infer_node, make_attrs


class GraphBuilder:
    def __init__(self, framework: str, source_file: str | None = None) -> None:
        self.framework = framework
        self.source_file = source_file
        self.nodes: list[Node] = []
        self.inputs: dict[str, TensorType] = {}
        self.params: dict[str, np.ndarray] = {}
        self.types: dict[str, TensorType] = {}
        self._tensors: set[str] = set()
        self._node_names: set[str] = set()

    # ---------------------------------------------------------------- names
    @staticmethod
    def _fresh(base: str, taken: set[str]) -> str:
        base = base or "t"
        if base not in taken:
            return base
        i = 1
        while f"{base}_{i}" in taken:
            i += 1
        return f"{base}_{i}"

    def tensor_name(self, base: str) -> str:
        n = self._fresh(base, self._tensors)
        self._tensors.add(n)
        return n

    # --------------------------------------------------------------- values
    def input(self, name: str, shape: Sequence[int]) -> str:
        n = self.tensor_name(name)
        self.inputs[n] = TensorType(tuple(int(d) for d in shape))
        return n

    def param(self, name: str, value: Any, dtype: Any = np.float32) -> str:
        """Register a constant (float32 unless ``dtype`` says otherwise; no copy when it already is)."""
        arr = np.asarray(value)
        if dtype is not None and arr.dtype != dtype:
            arr = arr.astype(dtype)
        arr = np.ascontiguousarray(arr)
        n = self.tensor_name(name)
        self.params[n] = arr
        return n

    def type(self, t: str) -> TensorType:
        if t in self.types:
            return self.types[t]
        if t in self.inputs:
            return self.inputs[t]
        a = self.params[t]
        return TensorType(a.shape, str(a.dtype))

    def shape(self, t: str) -> tuple[int, ...]:
        return self.type(t).shape

    # ---------------------------------------------------------------- nodes
    def add(self, op: str, inputs: Sequence[str], *, name: str, source: str | None = None, n_out: int = 1,
            outputs: Sequence[str] | None = None, **attrs: Any) -> Any:
        """Append a node; returns its output name (or a list when ``n_out > 1``).

        ``name`` is the IR node name (made unique); ``source`` the source
        model's own name for it (SourceLoc), defaulting to ``name``.
        """
        node_name = self._fresh(name, self._node_names)
        self._node_names.add(node_name)
        outs = list(outputs) if outputs is not None else (
            [self.tensor_name(node_name)] if n_out == 1 else [self.tensor_name(f"{node_name}:{i}") for i in range(n_out)])
        if outputs is not None:
            self._tensors.update(outs)
        loc = SourceLoc(self.framework, source or name, len(self.nodes), self.source_file)
        node = Node(op, node_name, list(inputs), outs, make_attrs(op, **attrs), loc)
        in_types = [self.type(i) if i else None for i in node.inputs]
        for o, t in zip(outs, infer_node(node, in_types)):
            self.types[o] = t
        self.nodes.append(node)
        return outs[0] if n_out == 1 and outputs is None else outs

    def graph(self, outputs: Sequence[str], name: str, meta: ModelMeta | None = None) -> Graph:
        g = Graph(name, list(self.nodes), dict(self.inputs), list(outputs), dict(self.params), dict(self.types),
                  meta or ModelMeta())
        g.validate()
        return g.prune()
