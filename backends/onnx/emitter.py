"""Per-node emission state shared by the ONNX op handlers.

:class:`ModelContext` holds what is global to one ``to_model`` call (the IR
graph, the target opset, every tensor/node name already taken).
:class:`Emitter` collects the ONNX nodes and extra initializers that one IR
node lowers to; a handler builds it up and returns :meth:`Emitter.done`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
from onnx import NodeProto, TensorProto, helper, numpy_helper

from xconv.ir import Graph, Node, TensorType


@dataclass
class Lowering:
    """What one IR node becomes: ONNX nodes plus any initializers they need."""

    nodes: list[NodeProto]
    initializers: list[TensorProto] = field(default_factory=list)


class ModelContext:
    """State of one IR graph -> ONNX model translation."""

    def __init__(self, graph: Graph, opset: int) -> None:
        self.graph = graph
        self.opset = opset
        # ONNX keeps tensor and node names in separate namespaces.
        self._tensors: set[str] = set(graph.params) | set(graph.inputs)
        self._nodes: set[str] = set()
        for n in graph.nodes:
            self._nodes.add(n.name)
            self._tensors.update(o for o in n.outputs if o)
            self._tensors.update(i for i in n.inputs if i)

    @staticmethod
    def _fresh(base: str, taken: set[str]) -> str:
        name = base
        i = 1
        while name in taken:
            name = f"{base}_{i}"
            i += 1
        taken.add(name)
        return name

    def fresh(self, base: str) -> str:
        """A tensor name not used anywhere in the graph or model so far."""
        return self._fresh(base, self._tensors)

    def fresh_node(self, base: str) -> str:
        """A node name distinct from every IR node name and helper node so far."""
        return self._fresh(base, self._nodes)

    def type_of(self, tensor: str) -> TensorType:
        return self.graph.type_of(tensor)

    def is_param(self, tensor: str) -> bool:
        return tensor in self.graph.params


class Emitter:
    """Builds the ONNX nodes for one IR node.

    The node that produces the IR node's outputs keeps the IR node's name, so
    errors from onnx/onnxruntime point straight back at the IR (and through
    its SourceLoc at the source model); helper nodes are named
    ``<ir name>/<role>``.
    """

    def __init__(self, ctx: ModelContext, node: Node) -> None:
        self.ctx = ctx
        self.node = node
        self.nodes: list[NodeProto] = []
        self.initializers: list[TensorProto] = []

    @property
    def opset(self) -> int:
        return self.ctx.opset

    def tmp(self, role: str) -> str:
        """A fresh intermediate tensor name."""
        return self.ctx.fresh(f"{self.node.name}/{role}")

    def const(self, role: str, value: np.ndarray) -> str:
        """Add ``value`` as an initializer (dtype kept) and return its name."""
        name = self.ctx.fresh(f"{self.node.name}/{role}")
        self.initializers.append(numpy_helper.from_array(np.require(value, requirements="C"), name))
        return name

    def ints(self, role: str, values: Sequence[int]) -> str:
        """A 1-D int64 initializer (shapes, pads, axes, starts...)."""
        return self.const(role, np.asarray(list(values), dtype=np.int64))

    def scalar(self, role: str, value: float, like: str) -> str:
        """A 0-d initializer with the element type of tensor ``like``."""
        dtype = np.dtype(self.ctx.type_of(like).dtype)
        return self.const(role, np.asarray(value, dtype=dtype))

    def add(self, op_type: str, inputs: Sequence[str], outputs: Sequence[str] | None = None,
            role: str | None = None, **attrs: Any) -> list[str]:
        """Append an ONNX node.

        ``outputs=None`` allocates one fresh tensor named after ``role``.
        ``role=None`` names the node after the IR node (use it for the node
        producing the IR outputs); otherwise ``<ir name>/<role>``.
        """
        if outputs is None:
            outputs = [self.tmp(role or op_type.lower())]
        name = self.node.name if role is None else self.ctx.fresh_node(f"{self.node.name}/{role}")
        attrs = {k: v for k, v in attrs.items() if v is not None}
        self.nodes.append(helper.make_node(op_type, list(inputs), list(outputs), name=name, **attrs))
        return list(outputs)

    def done(self) -> Lowering:
        return Lowering(self.nodes, self.initializers)
