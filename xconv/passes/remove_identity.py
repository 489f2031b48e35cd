"""Drop Identity and Dropout nodes (both are the identity at inference).

Graph outputs keep their names: when a removed node produced an output, the
node producing its (resolved) input is renamed to produce the output instead.
"""
from __future__ import annotations

from ..ir import Graph
from . import PassContext, register_pass, rename_uses


@register_pass("remove_identity")
def remove_identity(graph: Graph, ctx: PassContext) -> Graph:
    g = graph.replace()
    mapping: dict[str, str] = {}
    for n in g.nodes:
        if n.op in ("Identity", "Dropout"):
            mapping[n.outputs[0]] = n.inputs[0]

    def resolve(t: str) -> str:
        while t in mapping:
            t = mapping[t]
        return t

    produced = {o for n in g.nodes if n.op not in ("Identity", "Dropout") for o in n.outputs}
    takeover: dict[str, str] = {}  # resolved source -> output name that replaces it
    keep_ids: set[str] = set()
    for o in g.outputs:
        if o not in mapping:
            continue
        src = resolve(o)
        if src in produced and src not in g.outputs and src not in takeover:
            takeover[src] = o
        else:  # aliases an input, a param, another output: keep one explicit Identity
            keep_ids.add(o)
    nodes = []
    for n in g.nodes:
        if n.op in ("Identity", "Dropout") and n.outputs[0] not in keep_ids:
            continue
        if n.op in ("Identity", "Dropout"):
            n.inputs = [resolve(n.inputs[0])]
            n.op, n.attrs = "Identity", {}
        nodes.append(n)
    g.nodes = nodes
    rename_uses(g, {k: v for k, v in mapping.items() if k not in keep_ids})
    for n in g.nodes:
        n.outputs = [takeover.get(o, o) for o in n.outputs]
        n.inputs = [takeover.get(i, i) if i else i for i in n.inputs]
    g.outputs = [takeover.get(o, o) for o in g.outputs]
    return g
