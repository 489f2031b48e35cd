"""Fuse an explicit constant Pad into the Conv or pool that consumes it.

* Pad(value 0) -> Conv: pads add up (always exact: a conv pads with zeros);
* Pad(value 0) -> AveragePool(count_include_pad): exact when the fused pool
  has the same output shape (the explicit zeros are counted either way);
* Pad(value -inf) -> MaxPool: exact when the output shape is unchanged.
Only non-negative pads, only when the Pad has a single consumer.
"""
from __future__ import annotations

import math

from ..ir import Graph
from ..ops import pool_out
from . import PassContext, register_pass


@register_pass("fuse_pad")
def fuse_pad(graph: Graph, ctx: PassContext) -> Graph:
    g = graph.replace()
    prod = {o: n for n in g.nodes for o in n.outputs}
    cons = g.consumers()
    drop: set[str] = set()
    for n in g.nodes:
        if n.op not in ("Conv", "AveragePool", "MaxPool"):
            continue
        p = prod.get(n.inputs[0])
        if p is None or p.op != "Pad" or p.attrs["mode"] != "constant" or min(p.attrs["pads"]) < 0:
            continue
        if len(cons.get(p.outputs[0], [])) != 1 or p.outputs[0] in g.outputs:
            continue
        v = p.attrs["value"]
        new_pads = tuple(a + b for a, b in zip(n.attrs["pads"], p.attrs["pads"]))
        if n.op == "Conv":
            if v != 0.0:
                continue
        else:
            if n.op == "AveragePool" and not (v == 0.0 and n.attrs["count_include_pad"]):
                continue
            if n.op == "MaxPool" and not (v == -math.inf):
                continue
            kh, kw = n.attrs["kernel_shape"]
            if max(new_pads[0], new_pads[2]) >= kh or max(new_pads[1], new_pads[3]) >= kw:
                continue
            _, _, h, w = g.type_of(p.inputs[0]).shape
            sh, sw = n.attrs["strides"]
            t, l, b, r = new_pads
            old = g.types[n.outputs[0]].shape[2:]
            cm = n.attrs["ceil_mode"]
            if (pool_out(h, kh, sh, t, b, cm), pool_out(w, kw, sw, l, r, cm)) != tuple(old):
                continue
        n.attrs["pads"] = new_pads
        n.inputs[0] = p.inputs[0]
        drop.add(p.name)
    g.nodes = [n for n in g.nodes if n.name not in drop]
    return g.prune()
