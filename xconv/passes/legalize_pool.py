"""Rewrite MaxPool/AveragePool into Caffe-legal pooling, exactly.

Caffe pools with one symmetric pad per axis and (stock BVLC 1.0) always
rounds the output size up; its average divides by the window clipped to
``[-pad, H + pad)``.  Floor mode, asymmetric pads and ``count_include_pad =
False`` have no direct form, but an exact one exists:

1. choose per axis a symmetric pad ``p < k`` with ``p = pad_begin + o*s``
   for an integer ``o >= 0``: Caffe's window ``o + i`` then starts where the
   source's window ``i`` starts, so both cover the same input cells;
2. Slice away the ``o`` leading and any surplus trailing outputs (ceil mode
   adds at most one at the end);
3. for average pooling, multiply by a constant ``(1, 1, OH, OW)`` tensor
   ``caffe_divisor / source_divisor`` where the divisors differ at borders.

Caffe's size rule (``pooling_layer.cpp``) differs from the IR's in one
corner: it drops a last window that starts at or past ``H + pad`` only when
some pad is non-zero.  Without padding and with stride > kernel Caffe can
produce one extra (empty) trailing window; :func:`caffe_pool_out` models
that and the Caffe backend trims it, so a legal IR pool means the same in
both.  Dialects whose profile writes floor rounding (``ceil-mode``'s
``ceil_mode: false``, ``bvlc-master``'s ``round_mode: FLOOR``; asked with
``ctx.caffe_floor_pooling``) also offer floor-mode plans.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from ..errors import BackendError
from ..ir import Graph, Node
from ..ops import pool_out
from . import PassContext, Rewriter, dialect_hint, register_pass


def caffe_pool_out(size: int, k: int, s: int, p: int, ceil_mode: bool, any_pad: bool) -> int:
    span = size + 2 * p - k
    out = (-(-span // s) if ceil_mode else span // s) + 1
    if any_pad and (out - 1) * s >= size + p:
        out -= 1
    return out


@dataclass(frozen=True)
class AxisPlan:
    pad: int
    offset: int        # leading outputs to drop
    caffe_out: int
    factor: np.ndarray  # per kept output: caffe_divisor / source_divisor


def _source_divisors(size: int, k: int, s: int, pb: int, pe: int, out: int, include_pad: bool) -> np.ndarray:
    start = np.arange(out) * s - pb
    if include_pad:
        return (np.minimum(start + k, size + pe) - start).astype(np.float64)
    return (np.minimum(start + k, size) - np.maximum(start, 0)).astype(np.float64)


def _axis_candidates(size: int, k: int, s: int, pb: int, pe: int, out: int, include_pad: bool,
                     ceil_mode: bool) -> list[tuple[int, int, np.ndarray]]:
    want = _source_divisors(size, k, s, pb, pe, out, include_pad)
    cands = []
    for p in range(0, k):
        if (p - pb) % s or p < pb:
            continue
        o = (p - pb) // s
        start = (np.arange(out) + o) * s - p
        caffe_div = (np.minimum(start + k, size + p) - start).astype(np.float64)
        cands.append((p, o, caffe_div / want))
    return cands


def plan_pool(node: Node, in_shape: tuple[int, ...], ceil_options: tuple[bool, ...]):
    """Return (ceil_mode, plan_h, plan_w) or None when no exact plan exists."""
    _, _, h, w = in_shape
    (kh, kw), (sh, sw) = node.attrs["kernel_shape"], node.attrs["strides"]
    t, l, b, r = node.attrs["pads"]
    cm = node.attrs["ceil_mode"]
    oh, ow = pool_out(h, kh, sh, t, b, cm), pool_out(w, kw, sw, l, r, cm)
    include = node.op == "MaxPool" or node.attrs.get("count_include_pad", True)
    best = None
    for ceil_mode in ceil_options:
        ch = _axis_candidates(h, kh, sh, t, b, oh, include, ceil_mode)
        cw = _axis_candidates(w, kw, sw, l, r, ow, include, ceil_mode)
        for (ph, oh0, fh), (pw, ow0, fw) in itertools.product(ch, cw):
            coh = pool_out(h, kh, sh, ph, ph, ceil_mode)
            cow = pool_out(w, kw, sw, pw, pw, ceil_mode)
            if coh < oh0 + oh or cow < ow0 + ow:
                continue
            cost = (coh != oh) + (cow != ow) + (0 if node.op == "MaxPool" else
                                                2 * (not np.all(fh == 1) or not np.all(fw == 1)))
            cand = (cost, ceil_mode != cm, ceil_mode, AxisPlan(ph, oh0, coh, fh), AxisPlan(pw, ow0, cow, fw))
            if best is None or cand[:2] < best[:2]:
                best = cand
    if best is None:
        return None
    return best[2], best[3], best[4], (oh, ow)


def is_caffe_legal(node: Node, in_shape: tuple[int, ...], ceil_options: tuple[bool, ...]) -> bool:
    t, l, b, r = node.attrs["pads"]
    if t != b or l != r or node.attrs["ceil_mode"] not in ceil_options:
        return False
    if node.op == "AveragePool" and not node.attrs["count_include_pad"] and (t or l):
        return False
    return True


@register_pass("legalize_pool")
def legalize_pool(graph: Graph, ctx: PassContext) -> Graph:
    ceil_options = (True, False) if ctx.caffe_floor_pooling else (True,)
    rw = Rewriter(graph)
    for n in rw:
        if n.op not in ("MaxPool", "AveragePool"):
            rw.keep(n)
            continue
        shape = rw.g.type_of(n.inputs[0]).shape
        if is_caffe_legal(n, shape, ceil_options):
            if n.op == "AveragePool" and not n.attrs["count_include_pad"]:
                n.attrs["count_include_pad"] = True  # no padding: the two divisors agree
            rw.keep(n)
            continue
        plan = plan_pool(n, shape, ceil_options)
        if plan is None:
            others = () if ctx.caffe_floor_pooling or plan_pool(n, shape, (True, False)) is None \
                else ctx.dialects_with("floor_pooling")
            raise BackendError(
                f"{n.where()}: pooling k={n.attrs['kernel_shape']} s={n.attrs['strides']} pads={n.attrs['pads']} "
                f"ceil_mode={n.attrs['ceil_mode']} on {shape[2:]} has no exact form in Caffe pooling "
                f"(dialect '{ctx.dialect or 'bvlc'}'); "
                + (dialect_hint(others, "write floor rounding") + ", " if others else "")
                + "convert to ONNX, or change the model's padding")
        ceil_mode, ph, pw, (oh, ow) = plan
        attrs = {**n.attrs, "pads": (ph.pad, pw.pad, ph.pad, pw.pad), "ceil_mode": ceil_mode}
        if n.op == "AveragePool":
            attrs["count_include_pad"] = True
        need_h = (ph.offset, ph.offset + oh) != (0, ph.caffe_out)
        need_w = (pw.offset, pw.offset + ow) != (0, pw.caffe_out)
        factor = np.outer(ph.factor, pw.factor)
        need_mul = n.op == "AveragePool" and not np.all(factor == 1.0)
        steps = ([("h", 2, ph.offset, ph.offset + oh)] if need_h else []) + \
                ([("w", 3, pw.offset, pw.offset + ow)] if need_w else [])
        last_is_pool = not steps and not need_mul
        cur = rw.emit(n.op, [n.inputs[0]], n.loc, n.name, output=n.outputs[0] if last_is_pool else None, **attrs)
        for i, (tag, axis, s, e) in enumerate(steps):
            last = i == len(steps) - 1 and not need_mul
            cur = rw.emit("Slice", [cur], n.loc, f"{n.name}_crop{tag}", output=n.outputs[0] if last else None,
                          axis=axis, start=s, end=e)
        if need_mul:
            c = rw.const(n.name + ".divisor_fix", factor.reshape(1, 1, oh, ow).astype(np.float32))
            rw.emit("Mul", [cur, c], n.loc, n.name + "_divfix", output=n.outputs[0])
    return rw.finish()



