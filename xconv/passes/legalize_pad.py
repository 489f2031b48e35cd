"""Make padding symmetric, for targets (Caffe) that only pad symmetrically.

* Conv with pads t != b (or l != r): pad both sides by the larger amount and
  zero-extend the kernel on the smaller side by (larger - smaller) / dilation
  taps, so every real tap meets the same input cell as before.  The extra taps
  multiply by exact zeros: the result is exact (finite inputs).
* A remaining Pad (constant 0): a depthwise 1x1 Conv with weight 1.0
  (x * 1.0 + 0 is exact) padding symmetrically by the larger side, then a
  Slice per axis that drops the surplus rows/cols; negative pads are Slices.
* Where the dialect has a native Pad layer (``ctx.native("pad")``: the fork's
  Pad, constant of any value, edge, reflect) a Pad stays a Pad: negative pads
  are cropped by Slices first (the layer takes only non-negative pads, or all
  negative), then one Pad with the rest.
"""
from __future__ import annotations

import numpy as np

from ..errors import BackendError
from ..ir import Graph
from . import PassContext, Rewriter, dialect_hint, register_pass


@register_pass("legalize_pad")
def legalize_pad(graph: Graph, ctx: PassContext) -> Graph:
    rw = Rewriter(graph)
    for n in rw:
        if n.op == "Conv":
            t, l, b, r = n.attrs["pads"]
            if t == b and l == r:
                rw.keep(n)
                continue
            dh, dw = n.attrs["dilations"]
            if (b - t) % dh or (r - l) % dw:
                # cannot zero-extend by a fraction of a dilated tap: pad explicitly first
                x = (_native_pad(rw, n.inputs[0], (t, l, b, r), n, "constant", 0.0) if ctx.native("pad")
                     else _explicit_pad(rw, n.inputs[0], (t, l, b, r), n))
                rw.emit("Conv", [x] + n.inputs[1:], n.loc, n.name, output=n.outputs[0],
                        **{**n.attrs, "pads": (0, 0, 0, 0)})
                continue
            w = rw.g.params[n.inputs[1]]
            pt, pb = ((b - t) // dh, 0) if b > t else (0, (t - b) // dh)
            pl, pr = ((r - l) // dw, 0) if r > l else (0, (l - r) // dw)
            w2 = np.pad(w, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
            wname = rw.name(n.inputs[1] + "_padext")
            rw.g.params[wname] = w2
            ph, pw = max(t, b), max(l, r)
            rw.emit("Conv", [n.inputs[0], wname] + n.inputs[2:], n.loc, n.name, output=n.outputs[0],
                    **{**n.attrs, "pads": (ph, pw, ph, pw), "kernel_shape": w2.shape[2:]})
            continue
        if n.op == "Pad":
            if ctx.native("pad"):
                _native_pad(rw, n.inputs[0], n.attrs["pads"], n, n.attrs["mode"], n.attrs["value"],
                            output=n.outputs[0])
                continue
            if n.attrs["mode"] != "constant" or n.attrs["value"] != 0.0:
                others = ctx.dialects_with("pad")
                raise BackendError(f"{n.where()}: {n.attrs['mode']} padding with value {n.attrs['value']} "
                                   f"has no exact form in Caffe dialect '{ctx.dialect or 'bvlc'}' (stock layers "
                                   "pad with zeros only); "
                                   + (dialect_hint(others, "have a Pad layer") + ", or " if others else "")
                                   + "convert to ONNX instead (--to onnx)")
            _explicit_pad(rw, n.inputs[0], n.attrs["pads"], n, output=n.outputs[0])
            continue
        rw.keep(n)
    return rw.finish()


def _native_pad(rw: Rewriter, x: str, pads: tuple[int, ...], n, mode: str, value: float,
                output: str | None = None) -> str:
    """Slices for the negative pads (crop first, as the IR's Pad does), then one Pad node
    with the non-negative rest (or an Identity when nothing is left to pad)."""
    t, l, b, r = pads
    _, _, h, w = rw.g.type_of(x).shape
    spans = ((2, max(-t, 0), h - max(-b, 0), h), (3, max(-l, 0), w - max(-r, 0), w))
    crops = [(axis, s, e) for axis, s, e, size in spans if (s, e) != (0, size)]
    rest = (max(t, 0), max(l, 0), max(b, 0), max(r, 0))
    cur = x
    for i, (axis, s, e) in enumerate(crops):
        last = i == len(crops) - 1 and not any(rest)
        cur = rw.emit("Slice", [cur], n.loc, n.name + ("" if last and output is not None else "_crop"),
                      output=output if last else None, axis=axis, start=s, end=e)
    if any(rest):
        return rw.emit("Pad", [cur], n.loc, n.name, output=output, pads=rest, mode=mode, value=value)
    if not crops:
        return rw.emit("Identity", [cur], n.loc, n.name, output=output)
    return cur


def _explicit_pad(rw: Rewriter, x: str, pads: tuple[int, ...], n, output: str | None = None) -> str:
    t, l, b, r = pads
    _, c, h, w = rw.g.type_of(x).shape
    cur = x
    ph, pw = max(t, b, 0), max(l, r, 0)
    if ph or pw:
        one = rw.const(n.name + ".pad_identity_w", np.ones((c, 1, 1, 1), np.float32))
        cur = rw.emit("Conv", [cur, one], n.loc, n.name + "_padconv", kernel_shape=(1, 1),
                      pads=(ph, pw, ph, pw), group=c)
    # rows/cols kept after padding symmetrically by (ph, pw)
    h0, h1 = ph - t, ph + h + b
    w0, w1 = pw - l, pw + w + r
    hp, wp = h + 2 * ph, w + 2 * pw
    steps = []
    if (h0, h1) != (0, hp):
        steps.append((2, h0, h1))
    if (w0, w1) != (0, wp):
        steps.append((3, w0, w1))
    if not steps:
        if output is not None:
            rw.emit("Identity", [cur], n.loc, n.name, output=output)
            return output
        return cur
    for i, (axis, s, e) in enumerate(steps):
        last = i == len(steps) - 1
        cur = rw.emit("Slice", [cur], n.loc, n.name + ("_crop" if output is None or not last else ""),
                      output=output if last else None, axis=axis, start=s, end=e)
    return cur
