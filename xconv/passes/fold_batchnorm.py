"""Fold inference BatchNormalization into the Conv or Gemm that feeds it.

Only when the producer's output has the BN as its single consumer and is not
a graph output (folding into a branch point would change the other branch).
Computed in float64 and cast back to the weight dtype.  BNs that cannot be
folded stay; the Caffe backend emits them as BatchNorm + Scale.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..ir import Graph
from . import PassContext, register_pass


_CHUNK = 1 << 18  # elements per float64 scratch block (2 MB: stays in cache, no page faults)


def scale_rows(w: np.ndarray, factor: np.ndarray) -> np.ndarray:
    """``w * factor[:, None, ...]`` computed in float64 and rounded once to w's dtype.

    Works block by block through one reused float64 scratch buffer, so a
    large model is folded without float64 copies of its weights.
    """
    out = np.empty_like(w)
    rows = w.shape[0]
    flat, oflat = w.reshape(rows, -1), out.reshape(rows, -1)
    per = max(1, _CHUNK // max(1, flat.shape[1]))
    scratch = np.empty(min(rows, per) * flat.shape[1], dtype=np.float64)
    f = factor.astype(np.float64).reshape(rows, 1)
    for i in range(0, rows, per):
        blk = flat[i:i + per]
        buf = scratch[:blk.size].reshape(blk.shape)
        np.multiply(blk, f[i:i + per], out=buf)
        oflat[i:i + per] = buf
    return out


@register_pass("fold_batchnorm")
def fold_batchnorm(graph: Graph, ctx: PassContext) -> Graph:
    g = graph.replace()
    prod = {o: n for n in g.nodes for o in n.outputs}
    cons = g.consumers()
    drop: set[str] = set()
    mapping: dict[str, str] = {}
    jobs: list[tuple[str, np.ndarray, np.ndarray]] = []  # (param name, weight, per-row factor)
    for bn in g.nodes:
        if bn.op != "BatchNormalization":
            continue
        x = bn.inputs[0]
        p = prod.get(x)
        if p is None or p.op not in ("Conv", "Gemm") or len(cons.get(x, [])) != 1 or x in g.outputs:
            continue
        if not all(i in g.params for i in bn.inputs[1:]) or not all(i in g.params for i in p.inputs[1:] if i):
            continue
        scale, bias, mean, var = (g.params[i].astype(np.float64) for i in bn.inputs[1:])
        inv = scale / np.sqrt(var + bn.attrs["epsilon"])
        w = g.params[p.inputs[1]]
        wdt = w.dtype
        b_old = g.params[p.inputs[2]].astype(np.float64) if len(p.inputs) > 2 and p.inputs[2] else 0.0
        b_new = ((b_old - mean) * inv + bias).astype(wdt)
        wname = g.unique_name(p.inputs[1] + "_bnfold")
        jobs.append((wname, w, inv))
        g.params[wname] = w  # replaced by the folded weight below
        bname = g.unique_name(p.name + ".bias_bnfold")
        g.params[bname] = b_new
        p.inputs = [p.inputs[0], wname, bname]
        mapping[bn.outputs[0]] = x
        drop.add(bn.name)
    # the weight scaling is memory-bound numpy work that releases the GIL: use every core
    workers = min(len(jobs), os.cpu_count() or 1)
    if workers > 1:
        with ThreadPoolExecutor(workers) as pool:
            folded = list(pool.map(lambda j: scale_rows(j[1], j[2]), jobs))
    else:
        folded = [scale_rows(w, f) for _, w, f in jobs]
    for (wname, _, _), w_new in zip(jobs, folded):
        g.params[wname] = w_new
    g.nodes = [n for n in g.nodes if n.name not in drop]
    # keep BN output names (they may be graph outputs or referenced by users)
    inv_map = {v: k for k, v in mapping.items()}
    for n in g.nodes:
        n.outputs = [inv_map.get(o, o) for o in n.outputs]
    return g.prune()



