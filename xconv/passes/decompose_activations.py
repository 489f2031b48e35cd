"""Rewrite activations a target lacks into exact compositions of simpler ops.

For Caffe (no Clip, ReLU6, HardSigmoid, HardSwish or Swish in BVLC 1.0):
* Clip(lo, hi) -> Relu (lo == 0) or Max(x, lo), then Min(., hi);
* HardSigmoid(a, b) -> Clip(x * a + b, 0, 1);
* HardSwish -> x * HardSigmoid(x; 1/6, 1/2);
* Silu -> x * Sigmoid(x).
Each is the same function; only float rounding order may differ (the
multiplications by 1/6 vs a division by 6: within one ulp per op).

A clip the target's dialect writes natively stays one Clip node (asked with
``ctx.native``: ``relu6`` for Clip(0, t) with a finite t, ``clip`` for finite
bounds), and so does a Silu where ``silu`` is native (Swish).
"""
from __future__ import annotations

import math

import numpy as np

from ..ir import Graph, Node
from . import PassContext, Rewriter, register_pass


#: The constructs a Clip can be written natively with (dialects.CONSTRUCTS keys).
CLIP_CONSTRUCTS: tuple[str, ...] = ("relu6", "clip")


def clip_constructs(lo: float, hi: float) -> tuple[str, ...]:
    """The native constructs (in order of preference; any one suffices) that write Clip(lo, hi)
    as one layer: ``relu6`` for Clip(0, t) with a finite t, ``clip`` for finite bounds; () for
    none (a plain Relu, or an infinite bound).  The pass and the Caffe emitter both ask this."""
    if not math.isfinite(lo) or not math.isfinite(hi):
        return ()
    return CLIP_CONSTRUCTS if lo == 0.0 else ("clip",)


def native_clip(ctx: PassContext, lo: float, hi: float) -> bool:
    """Whether Clip(lo, hi) is one native layer in the target's dialect."""
    return any(ctx.native(c) for c in clip_constructs(lo, hi))


def _clip(rw: Rewriter, x: str, lo: float, hi: float, n: Node, output: str | None,
          ctx: PassContext | None = None) -> str:
    if ctx is not None and native_clip(ctx, lo, hi):
        return rw.emit("Clip", [x], n.loc, n.name, output=output, min=lo, max=hi)
    cur = x
    steps = []
    if lo == 0.0:
        steps.append(("Relu", None))
    elif lo != -math.inf:
        steps.append(("Max", lo))
    if hi != math.inf:
        steps.append(("Min", hi))
    if not steps:
        return rw.emit("Identity", [x], n.loc, n.name, output=output)
    for i, (op, v) in enumerate(steps):
        last = i == len(steps) - 1
        out = output if last else None
        if op == "Relu":
            cur = rw.emit("Relu", [cur], n.loc, n.name + ("" if last else "_relu"), output=out)
        else:
            c = rw.const(f"{n.name}.{op.lower()}_bound", np.float32(v))
            cur = rw.emit(op, [cur, c], n.loc, n.name + ("" if last else f"_{op.lower()}"), output=out)
    return cur


def _hardsigmoid(rw: Rewriter, x: str, a: float, b: float, n: Node, output: str | None,
                 ctx: PassContext | None = None) -> str:
    cur = x
    if a != 1.0:
        cur = rw.emit("Mul", [cur, rw.const(n.name + ".alpha", np.float32(a))], n.loc, n.name + "_scale")
    if b != 0.0:
        cur = rw.emit("Add", [cur, rw.const(n.name + ".beta", np.float32(b))], n.loc, n.name + "_shift")
    return _clip(rw, cur, 0.0, 1.0, n, output, ctx)


@register_pass("decompose_activations")
def decompose_activations(graph: Graph, ctx: PassContext) -> Graph:
    rw = Rewriter(graph)
    for n in rw:
        x = n.inputs[0] if n.inputs else ""
        if n.op == "Clip" and native_clip(ctx, n.attrs["min"], n.attrs["max"]):
            rw.keep(n)
        elif n.op == "Clip":
            _clip(rw, x, n.attrs["min"], n.attrs["max"], n, n.outputs[0])
        elif n.op == "HardSigmoid":
            _hardsigmoid(rw, x, n.attrs["alpha"], n.attrs["beta"], n, n.outputs[0], ctx)
        elif n.op == "HardSwish":
            hs = _hardsigmoid(rw, x, 1.0 / 6.0, 0.5, n.clone(name=n.name + "_hsig"), None, ctx)
            rw.emit("Mul", [x, hs], n.loc, n.name, output=n.outputs[0])
        elif n.op == "Silu" and ctx.native("silu"):
            rw.keep(n)
        elif n.op == "Silu":
            s = rw.emit("Sigmoid", [x], n.loc, n.name + "_sigmoid")
            rw.emit("Mul", [x, s], n.loc, n.name, output=n.outputs[0])
        else:
            rw.keep(n)
    return rw.finish()
