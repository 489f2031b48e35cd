"""Lower adaptive and global-by-reduction pooling to fixed-window pooling.

* output 1x1 -> GlobalAveragePool / GlobalMaxPool;
* output equal to the input -> identity;
* windows all of one size k at a regular stride s (the input divides evenly,
  or e.g. 10 -> 3 with k=4, s=3) -> AveragePool / MaxPool(k, s) exactly;
* otherwise an UnsupportedAttrError naming the node.
"""
from __future__ import annotations

from ..errors import UnsupportedAttrError
from ..ir import Graph
from ..reference import adaptive_bounds
from . import PassContext, Rewriter, register_pass


def regular_windows(size: int, out: int) -> tuple[int, int] | None:
    """(kernel, stride) if adaptive windows size->out are uniform, else None."""
    b = adaptive_bounds(size, out)
    ks = {e - s for s, e in b}
    if len(ks) != 1:
        return None
    k = ks.pop()
    if out == 1:
        return k, 1
    strides = {b[i + 1][0] - b[i][0] for i in range(out - 1)}
    if len(strides) != 1:
        return None
    return k, strides.pop()


@register_pass("lower_adaptive_pool")
def lower_adaptive_pool(graph: Graph, ctx: PassContext) -> Graph:
    rw = Rewriter(graph)
    for n in rw:
        if n.op not in ("AdaptiveAvgPool", "AdaptiveMaxPool"):
            rw.keep(n)
            continue
        x = n.inputs[0]
        _, _, h, w = rw.g.type_of(x).shape
        oh, ow = n.attrs["output_size"]
        avg = n.op == "AdaptiveAvgPool"
        if (oh, ow) == (1, 1):
            rw.emit("GlobalAveragePool" if avg else "GlobalMaxPool", [x], n.loc, n.name, output=n.outputs[0])
            continue
        if (oh, ow) == (h, w):
            rw.emit("Identity", [x], n.loc, n.name, output=n.outputs[0])
            continue
        rh, rwin = regular_windows(h, oh), regular_windows(w, ow)
        if rh is None or rwin is None:
            raise UnsupportedAttrError(
                f"{n.where()}: adaptive pooling {h}x{w} -> {oh}x{ow} has windows of unequal size; "
                "no single fixed pooling is exact. Choose an input size that makes the windows regular.")
        kw = dict(kernel_shape=(rh[0], rwin[0]), strides=(rh[1], rwin[1]))
        if avg:
            rw.emit("AveragePool", [x], n.loc, n.name, output=n.outputs[0], count_include_pad=False, **kw)
        else:
            rw.emit("MaxPool", [x], n.loc, n.name, output=n.outputs[0], **kw)
    return rw.finish()
