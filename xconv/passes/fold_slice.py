"""Fold a channel Slice into the Conv or Gemm that produces the channels.

``Slice(axis=1, start, end)`` of a Conv/Gemm output (directly, or through a
Flatten of an N x C x 1 x 1 map) keeps only output channels start..end-1:
the same as a Conv/Gemm whose weight and bias rows are cut to them.  Exact,
and it leaves no Slice (nor Caffe's Silence of the dropped part) behind.
Typical use: dropping the background logit of a 1001-class TF-slim head.
"""
from __future__ import annotations

from ..ir import Graph
from . import PassContext, register_pass


@register_pass("fold_slice")
def fold_slice(graph: Graph, ctx: PassContext) -> Graph:
    g = graph.replace()
    prod = {o: n for n in g.nodes for o in n.outputs}
    cons = g.consumers()

    def single_use(t: str) -> bool:
        return len(cons.get(t, [])) == 1 and t not in g.outputs

    drop: set[str] = set()
    for sl in g.nodes:
        if sl.op != "Slice" or sl.attrs["axis"] % g.type_of(sl.inputs[0]).rank != 1:
            continue
        src = sl.inputs[0]
        chain = []
        p = prod.get(src)
        if p is not None and p.op == "Flatten" and p.attrs["axis"] == 1 and single_use(src):
            shp = g.type_of(p.inputs[0]).shape
            if len(shp) == 4 and shp[2:] == (1, 1):
                chain.append(p)
                src = p.inputs[0]
                p = prod.get(src)
        if p is None or p.op not in ("Conv", "Gemm") or not single_use(src):
            continue
        if p.op == "Conv" and p.attrs["group"] != 1:
            continue
        if not all(i in g.params for i in p.inputs[1:] if i):
            continue
        s, e = sl.attrs["start"], sl.attrs["end"]
        w = g.params[p.inputs[1]][s:e]
        wname = g.unique_name(p.inputs[1] + "_sliced")
        g.params[wname] = w.copy()
        new_inputs = [p.inputs[0], wname]
        if len(p.inputs) > 2 and p.inputs[2]:
            bname = g.unique_name(p.inputs[2] + "_sliced")
            g.params[bname] = g.params[p.inputs[2]][s:e].copy()
            new_inputs.append(bname)
        p.inputs = new_inputs
        # the Slice's output is now produced by the end of the chain
        last = chain[-1] if chain else p
        last.outputs = [sl.outputs[0]]
        if chain:
            chain[0].inputs = [p.outputs[0]]
        drop.add(sl.name)
    g.nodes = [n for n in g.nodes if n.name not in drop]
    return g.prune()
