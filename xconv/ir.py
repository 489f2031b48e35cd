"""The typed intermediate representation.

* Activations are NCHW, conv weights OIHW; layout conversion happens once in a
  frontend, the IR never carries a layout flag.
* Tensors are referenced by name.  Weights and constants live only in
  ``Graph.params`` (numpy arrays) and are referenced as node inputs like ONNX
  initializers; they are never stored in attrs.
* Node attrs are canonical and complete once a frontend is done (see
  :mod:`xconv.ops` for each op's spec and defaults).
* Every node carries a :class:`SourceLoc` so errors can point back at the
  source model.

Graphs are treated as values: passes build new graphs (``Graph.replace``)
instead of mutating their input.  Arrays in ``params`` are shared between
graph versions and must never be modified in place.
"""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

import numpy as np

from .errors import InvalidGraphError


@dataclass(frozen=True)
class TensorType:
    shape: tuple[int, ...]
    dtype: str = "float32"

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(int(d) for d in self.shape))

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    def __str__(self) -> str:
        return f"{self.dtype}[{','.join(map(str, self.shape))}]"


@dataclass(frozen=True)
class SourceLoc:
    """Where a node came from in the source model."""

    framework: str
    node_name: str
    index: int = -1
    file: str | None = None

    def __str__(self) -> str:
        where = f"{self.framework} node '{self.node_name}'"
        if self.index >= 0:
            where += f" (#{self.index})"
        if self.file:
            where += f" in {self.file}"
        return where


@dataclass
class Node:
    op: str
    name: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict[str, Any] = field(default_factory=dict)
    loc: SourceLoc = field(default_factory=lambda: SourceLoc("xconv", "?"))

    def clone(self, **changes: Any) -> "Node":
        base = Node(self.op, self.name, list(self.inputs), list(self.outputs),
                    copy.deepcopy(self.attrs), self.loc)
        return dataclasses.replace(base, **changes)

    def where(self) -> str:
        return f"node '{self.name}' ({self.op}, from {self.loc})"


@dataclass
class ModelMeta:
    """What a user needs to feed the model correctly, carried to every output.

    ``mean``/``std`` apply to pixel values already scaled to ``value_range``
    in ``color_order``: ``x = (pixel - mean) / std``.
    ``background_offset`` is 1 for TF-slim's 1001-class heads (logit 0 is
    background, logit k+1 is ImageNet class k) and 0 otherwise.
    """

    color_order: str = "RGB"
    value_range: tuple[float, float] = (0.0, 255.0)
    mean: tuple[float, ...] = (0.0, 0.0, 0.0)
    std: tuple[float, ...] = (1.0, 1.0, 1.0)
    resize: int | None = None  # short side before cropping
    crop: int | None = None
    interpolation: str = "bilinear"
    num_classes: int | None = None
    background_offset: int = 0
    source_framework: str = ""
    source_file: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["value_range"] = list(self.value_range)
        d["mean"] = list(self.mean)
        d["std"] = list(self.std)
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "ModelMeta":
        known = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in known}
        for k in ("value_range", "mean", "std"):
            if k in kw and kw[k] is not None:
                kw[k] = tuple(float(v) for v in kw[k])
        return cls(**kw)


@dataclass
class Graph:
    name: str
    nodes: list[Node]
    inputs: dict[str, TensorType]
    outputs: list[str]
    params: dict[str, np.ndarray] = field(default_factory=dict)
    types: dict[str, TensorType] = field(default_factory=dict)
    meta: ModelMeta = field(default_factory=ModelMeta)

    # ------------------------------------------------------------------ views
    def producers(self) -> dict[str, Node]:
        return {o: n for n in self.nodes for o in n.outputs}

    def consumers(self) -> dict[str, list[Node]]:
        out: dict[str, list[Node]] = {}
        for n in self.nodes:
            for i in n.inputs:
                if i:
                    out.setdefault(i, []).append(n)
        return out

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def is_param(self, tensor: str) -> bool:
        return tensor in self.params

    def type_of(self, tensor: str) -> TensorType:
        if tensor in self.params:
            a = self.params[tensor]
            return TensorType(a.shape, str(a.dtype))
        if tensor in self.inputs:
            return self.inputs[tensor]
        return self.types[tensor]

    def op_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for n in self.nodes:
            counts[n.op] = counts.get(n.op, 0) + 1
        return counts

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes)

    # ------------------------------------------------------------- building
    def replace(self, **changes: Any) -> "Graph":
        """A new graph sharing arrays with this one (copy-on-write by convention)."""
        g = Graph(
            name=self.name,
            nodes=[n.clone() for n in self.nodes],
            inputs=dict(self.inputs),
            outputs=list(self.outputs),
            params=dict(self.params),
            types=dict(self.types),
            meta=copy.deepcopy(self.meta),
        )
        for k, v in changes.items():
            setattr(g, k, v)
        return g

    def unique_name(self, base: str, taken: set[str] | None = None) -> str:
        used = taken if taken is not None else self._all_names()
        if base not in used:
            return base
        i = 1
        while f"{base}_{i}" in used:
            i += 1
        return f"{base}_{i}"

    def _all_names(self) -> set[str]:
        names = set(self.params) | set(self.inputs)
        for n in self.nodes:
            names.add(n.name)
            names.update(n.outputs)
        return names

    def prune(self) -> "Graph":
        """Drop nodes and params that do not contribute to the outputs."""
        live: set[str] = set(self.outputs)
        keep: list[Node] = []
        for n in reversed(self.nodes):
            if any(o in live for o in n.outputs):
                keep.append(n)
                live.update(i for i in n.inputs if i)
        keep.reverse()
        g = self.replace(nodes=keep)
        g.params = {k: v for k, v in self.params.items() if k in live}
        kept_outputs = {o for n in keep for o in n.outputs}
        g.types = {k: v for k, v in self.types.items() if k in kept_outputs}
        return g

    # ----------------------------------------------------------- validation
    def infer_types(self) -> None:
        """(Re)compute ``types`` for every node output from the op specs."""
        from .ops import infer_node

        types: dict[str, TensorType] = {}
        for n in self.nodes:
            in_types: list[TensorType | None] = []
            for i in n.inputs:
                if not i:
                    in_types.append(None)
                elif i in self.params:
                    a = self.params[i]
                    in_types.append(TensorType(a.shape, str(a.dtype)))
                elif i in self.inputs:
                    in_types.append(self.inputs[i])
                elif i in types:
                    in_types.append(types[i])
                else:
                    raise InvalidGraphError(f"{n.where()}: input '{i}' is not defined before use")
            outs = infer_node(n, in_types, self)
            for o, t in zip(n.outputs, outs):
                types[o] = t
        self.types = types

    def validate(self) -> None:
        """Check every invariant; raise InvalidGraphError naming the node."""
        from .ops import check_attrs

        seen_nodes: set[str] = set()
        defined: set[str] = set(self.inputs) | set(self.params)
        clash = set(self.inputs) & set(self.params)
        if clash:
            raise InvalidGraphError(f"graph '{self.name}': names are both inputs and params: {sorted(clash)}")
        for n in self.nodes:
            if n.name in seen_nodes:
                raise InvalidGraphError(f"duplicate node name '{n.name}'")
            seen_nodes.add(n.name)
            if not isinstance(n.loc, SourceLoc):
                raise InvalidGraphError(f"{n.name}: node has no SourceLoc")
            for i in n.inputs:
                if i and i not in defined:
                    raise InvalidGraphError(f"{n.where()}: input '{i}' is not defined before use "
                                            "(graph not in topological order, or a dangling edge)")
            for o in n.outputs:
                if o in defined:
                    raise InvalidGraphError(f"{n.where()}: output '{o}' is defined twice")
                defined.add(o)
            check_attrs(n)
        for o in self.outputs:
            if o not in defined:
                raise InvalidGraphError(f"graph output '{o}' is not produced by any node")
        for k, a in self.params.items():
            if not isinstance(a, np.ndarray):
                raise InvalidGraphError(f"param '{k}' is {type(a).__name__}, not a numpy array")
        self.infer_types()

    def summary(self) -> str:
        counts = ", ".join(f"{k} {v}" for k, v in sorted(self.op_counts().items()))
        nparams = sum(int(a.size) for a in self.params.values())
        return f"{self.name}: {len(self.nodes)} nodes ({counts}); {nparams:,} parameters"


def toposort(nodes: Iterable[Node], available: Iterable[str]) -> list[Node]:
    """Order nodes so every input is produced before use (stable)."""
    pending = list(nodes)
    ready = set(available)
    out: list[Node] = []
    while pending:
        progressed = False
        rest: list[Node] = []
        for n in pending:
            if all((not i) or i in ready for i in n.inputs):
                out.append(n)
                ready.update(n.outputs)
                progressed = True
            else:
                rest.append(n)
        if not progressed:
            missing = sorted({i for n in rest for i in n.inputs if i and i not in ready})
            raise InvalidGraphError(f"cycle or undefined tensors: {missing[:10]}")
        pending = rest
    return out
