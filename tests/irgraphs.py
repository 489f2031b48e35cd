"""Small hand-built IR graphs and seeded inputs shared by the backend tests."""
from __future__ import annotations

import importlib
import zlib
from typing import Any, Sequence, Union

import numpy as np

from xconv.ir import Graph, Node, SourceLoc, TensorType
from xconv.ops import make_attrs


def try_import(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except Exception:  # noqa: BLE001 - any import failure means "not available"
        return None


Spec = Union[tuple[int, ...], np.ndarray, str]  # graph input shape | param | "" (omitted optional)


def node(op: str, inputs: Sequence[str], outputs: Sequence[str], name: str, **attrs: Any) -> Node:
    return Node(op, name, list(inputs), list(outputs), make_attrs(op, **attrs), SourceLoc("test", name))


def single(op: str, specs: Sequence[Spec], n_out: int = 1, **attrs: Any) -> Graph:
    """A graph of one ``op`` node; shape specs become graph inputs, arrays params."""
    inputs: dict[str, TensorType] = {}
    params: dict[str, np.ndarray] = {}
    names: list[str] = []
    for i, s in enumerate(specs):
        if isinstance(s, str):
            names.append(s)
        elif isinstance(s, np.ndarray):
            params[f"p{i}"] = s
            names.append(f"p{i}")
        else:
            inputs[f"x{i}"] = TensorType(s)
            names.append(f"x{i}")
    outs = [f"y{j}" for j in range(n_out)]
    return Graph(f"test_{op}", [node(op, names, outs, op.lower(), **attrs)], inputs, outs, params)


def weights(*shape: int, seed: int = 0, positive: bool = False) -> np.ndarray:
    a = np.random.default_rng(seed + 1000).standard_normal(shape).astype(np.float32)
    return np.abs(a) + 0.5 if positive else a


def feeds(graph: Graph, key: str, positive: bool = False, scale: float = 1.0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(zlib.crc32(key.encode()))
    out = {}
    for k, t in graph.inputs.items():
        a = rng.standard_normal(t.shape) * scale
        out[k] = (np.abs(a) + 0.1 if positive else a).astype(np.float32)
    return out
