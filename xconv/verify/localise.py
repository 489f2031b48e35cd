"""Find the first node whose output diverges between the IR reference
(float64) and a target runtime, walking the graph in topological order."""
from __future__ import annotations

import logging
from typing import Any

import numpy as np

from .. import reference
from ..ir import Graph
from .runners import Converted, make_runner

log = logging.getLogger(__name__)


def first_divergence(graph: Graph, conv: Converted, x: np.ndarray, rtol: float = 1e-3) -> dict[str, Any] | None:
    """``graph`` must be the lowered graph the target was emitted from (same tensor names)."""
    names = [o for n in graph.nodes for o in n.outputs]
    ref = reference.run(graph, {next(iter(graph.inputs)): x.astype(np.float64)}, keep=True)
    runner = make_runner(conv, intermediates=names)
    got = runner.tensors(x.astype(np.float32), names)
    prod = {o: n for n in graph.nodes for o in n.outputs}
    for t in names:
        if t not in got or t not in ref:
            continue
        r, g = ref[t], got[t]
        if r.shape != g.shape:
            n = prod[t]
            return {"node": n.name, "op": n.op, "loc": str(n.loc), "tensor": t, "max_abs": float("inf"),
                    "tol": 0.0, "detail": f"shape {g.shape} vs IR {r.shape}"}
        tol = rtol * max(1.0, float(np.abs(r).max()))
        err = float(np.abs(r - g).max())
        if not np.isfinite(err) or err > tol:
            n = prod[t]
            return {"node": n.name, "op": n.op, "loc": str(n.loc), "tensor": t, "max_abs": err, "tol": tol}
    return None


def layer_errors(graph: Graph, conv: Converted, x: np.ndarray) -> list[dict[str, Any]]:
    """Every node's output error along the network: max|target - IR reference| relative to the reference's
    largest magnitude, for the tensors the target runtime exposes (Caffe blobs / ONNX values)."""
    names = [o for n in graph.nodes for o in n.outputs]
    ref = reference.run(graph, {next(iter(graph.inputs)): x.astype(np.float64)}, keep=True)
    runner = make_runner(conv, intermediates=names)
    got = runner.tensors(x.astype(np.float32), names)
    prod = {o: n for n in graph.nodes for o in n.outputs}
    out = []
    for i, t in enumerate(names):
        if t not in got or t not in ref or ref[t].shape != got[t].shape:
            continue
        scale = max(1e-12, float(np.abs(ref[t]).max()))
        n = prod[t]
        out.append({"index": i, "node": n.name, "op": n.op, "tensor": t,
                    "max_abs": float(np.abs(ref[t] - got[t]).max()),
                    "rel": float(np.abs(ref[t] - got[t]).max()) / scale})
    return out
