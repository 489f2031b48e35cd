"""ONNX ``Resize`` (opset 10, 11-18, 19+) and ``Upsample`` (opset 7, 9) -> IR ``Resize``.

The IR op resizes the two spatial axes of an NCHW tensor to ``sizes=(H', W')``
and maps output coordinates with the scale ``H'/H``.  ONNX maps them with the
*given* scale when ``scales`` (or a ``keep_aspect_ratio_policy``) is used, and
``floor(H * scale)`` need not equal ``H * scale``; such a node is converted
only when the two agree (relative difference <= 1e-6, i.e. float32 rounding of
the scale), else it is refused with the way out (give ``sizes``).

Supported: modes ``nearest`` and ``linear`` (bilinear); coordinate modes
``half_pixel``, ``half_pixel_symmetric`` (identical to ``half_pixel`` when the
output size is exactly ``scale * H``), ``asymmetric``, ``align_corners``,
``pytorch_half_pixel``; all four ``nearest_mode`` roundings; ``axes``;
``keep_aspect_ratio_policy``.  Refused: ``cubic``, ``tf_crop_and_resize``,
``antialias=1`` when it acts (any downscaling), a resize of N or C, nearest
downscaling in opset < 11 (onnxruntime then rounds up, the specification does
not say).  Attributes that only act in refused forms (``cubic_coeff_a``,
``exclude_outside``: cubic only; ``extrapolation_value`` and the ``roi``
input: tf_crop_and_resize only) are accepted and have no effect.

Opset 10 ``Resize`` and ``Upsample`` use asymmetric coordinates and, for
nearest, ``floor`` (onnxruntime truncates when upscaling).
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from xconv.errors import UnsupportedAttrError
from xconv.ops import RESIZE_COORDS, RESIZE_NEAREST

from .graph import Ctx, Value, _attrs, _opt_const, _rank, _where, handles

SCALE_RTOL = 1e-6  # float32 scales such as 1/3 differ from out/in by ~1e-8 relative
# ONNX coordinate_transformation_mode -> IR mode (half_pixel_symmetric = half_pixel at the exact scales accepted)
COORDS = {**{c: c for c in RESIZE_COORDS}, "half_pixel_symmetric": "half_pixel"}


def _full(n: Any, values: Sequence[float], axes: Sequence[int] | None, base: Sequence[float],
          what: str) -> list[float]:
    """Per-axis values for all 4 axes from values given for ``axes`` (or for all axes)."""
    if axes is None:
        if len(values) != 4:
            raise UnsupportedAttrError(f"{_where(n)}: {what} {list(values)} needs one value per axis of NCHW")
        return [float(v) for v in values]
    out = [float(b) for b in base]
    if len(values) != len(axes):
        raise UnsupportedAttrError(f"{_where(n)}: {len(values)} {what} for axes {list(axes)}")
    for v, ax in zip(values, axes):
        out[ax] = float(v)
    return out


def _plan(n: Any, shape: Sequence[int], scales: np.ndarray | None, sizes: np.ndarray | None,
          axes: Sequence[int] | None, policy: str) -> tuple[list[int], list[float]]:
    """(output shape, coordinate scale per axis) the ONNX specification gives."""
    if sizes is not None and sizes.size:
        target = _full(n, sizes, axes, shape, "sizes")
        ratio = [t / s for t, s in zip(target, shape)]
        if policy == "stretch":
            return [int(t) for t in target], ratio
        picked = list(range(4)) if axes is None else list(axes)
        if policy not in ("not_larger", "not_smaller"):
            raise UnsupportedAttrError(f"{_where(n)}: keep_aspect_ratio_policy {policy!r}")
        scale = (min if policy == "not_larger" else max)(ratio[a] for a in picked)
        out = [int(scale * s + 0.5) if a in picked else int(s) for a, s in enumerate(shape)]
        return out, [scale if a in picked else 1.0 for a in range(4)]
    if scales is None or not scales.size:
        raise UnsupportedAttrError(f"{_where(n)}: neither scales nor sizes is given")
    sc = _full(n, scales, axes, [1.0] * 4, "scales")
    if min(sc) <= 0:
        raise UnsupportedAttrError(f"{_where(n)}: scales {sc} must be positive")
    return [int(math.floor(s * f)) for s, f in zip(shape, sc)], sc


def _emit(ctx: Ctx, n: Any, x: str, out: list[int], coord_scale: list[float], mode: str, coord: str,
          nearest: str, antialias: bool) -> Sequence[Value]:
    shape = ctx.shape(x)
    if out[:2] != list(shape[:2]) or coord_scale[0] != 1 or coord_scale[1] != 1:
        raise UnsupportedAttrError(f"{_where(n)}: resizes the batch or channel axis ({list(shape)} -> {out}); "
                                   "only H and W")
    for ax in (2, 3):
        if out[ax] < 1:
            raise UnsupportedAttrError(f"{_where(n)}: output {out} is empty")
        exact = out[ax] / shape[ax]
        if abs(coord_scale[ax] - exact) > SCALE_RTOL * exact:
            raise UnsupportedAttrError(
                f"{_where(n)}: scale {coord_scale[ax]:g} on axis {ax} gives {out[ax]} from {shape[ax]} but maps "
                f"coordinates with {coord_scale[ax]:g}, not {out[ax]}/{shape[ax]}; the IR resizes to a size: "
                "re-export with 'sizes' (or scales that divide the input exactly)")
    if antialias and mode != "nearest" and any(out[a] < shape[a] for a in (2, 3)):
        raise UnsupportedAttrError(f"{_where(n)}: antialias=1 when downscaling (a wider filter) is not supported")
    if out[2:] == list(shape[2:]):  # scale 1 maps every output index onto itself (1 -> 1: index 0, any mode)
        return [ctx.add("Identity", [x], n)]
    return [ctx.add("Resize", [x], n, sizes=(out[2], out[3]), mode=mode, coordinate_transformation_mode=coord,
                    nearest_mode=nearest)]


def _mode(n: Any, a: dict[str, Any]) -> str:
    mode = str(a.get("mode", "nearest"))
    if mode == "bilinear":  # Upsample-7 spelling
        mode = "linear"
    if mode not in ("nearest", "linear"):
        raise UnsupportedAttrError(f"{_where(n)}: mode {mode!r}; supported: nearest, linear (cubic is not)")
    return mode


def _legacy(ctx: Ctx, n: Any, x: str, scales: np.ndarray, mode: str) -> Sequence[Value]:
    """Opset-10 Resize and Upsample: asymmetric coordinates, nearest = floor (upscaling only)."""
    out, sc = _plan(n, ctx.shape(x), np.asarray(scales, np.float64), None, None, "stretch")
    if mode == "nearest" and any(f < 1 for f in sc):
        raise UnsupportedAttrError(f"{_where(n)}: nearest downscaling in opset {ctx.opset} (onnxruntime rounds "
                                   "up, the specification is silent); re-export with opset >= 11")
    return _emit(ctx, n, x, out, sc, mode, "asymmetric", "floor", False)


@handles("Upsample")
def upsample(ctx: Ctx, n: Any) -> Sequence[Value]:
    a = _attrs(ctx, n, {"mode", "scales", "height_scale", "width_scale"})
    x = ctx.act(n)
    _rank(ctx, n, x, 4)
    if "height_scale" in a or "width_scale" in a:  # opset 1
        scales = np.array([1, 1, a.get("height_scale", 1.0), a.get("width_scale", 1.0)])
    elif "scales" in a:
        scales = np.asarray(a["scales"])
    else:
        scales = ctx.need_const(n, 1, "scales")
    return _legacy(ctx, n, x, scales, _mode(n, a))


@handles("Resize")
def resize(ctx: Ctx, n: Any) -> Sequence[Value]:
    a = _attrs(ctx, n, {"mode", "coordinate_transformation_mode", "nearest_mode", "cubic_coeff_a",
                        "exclude_outside", "extrapolation_value", "antialias", "axes", "keep_aspect_ratio_policy"})
    x = ctx.act(n)
    _rank(ctx, n, x, 4)
    mode = _mode(n, a)
    if ctx.opset < 11:
        return _legacy(ctx, n, x, ctx.need_const(n, 1, "scales"), mode)
    coord = str(a.get("coordinate_transformation_mode", "half_pixel"))
    if coord not in COORDS:
        raise UnsupportedAttrError(f"{_where(n)}: coordinate_transformation_mode {coord!r}; supported: "
                                   f"{sorted(COORDS)}")
    nearest = str(a.get("nearest_mode", "round_prefer_floor"))
    if nearest not in RESIZE_NEAREST:
        raise UnsupportedAttrError(f"{_where(n)}: nearest_mode {nearest!r}; supported: {list(RESIZE_NEAREST)}")
    axes = a.get("axes")
    if axes is not None:
        if any(not -4 <= int(v) < 4 for v in axes) or len({int(v) % 4 for v in axes}) != len(axes):
            raise UnsupportedAttrError(f"{_where(n)}: axes {list(axes)} are not distinct axes of a 4-D tensor")
        axes = [int(v) % 4 for v in axes]
    scales = _opt_const(ctx, n, 2, "scales")
    sizes = _opt_const(ctx, n, 3, "sizes")
    out, sc = _plan(n, ctx.shape(x), scales, sizes, axes, str(a.get("keep_aspect_ratio_policy", "stretch")))
    return _emit(ctx, n, x, out, sc, mode, COORDS[coord], nearest, bool(a.get("antialias", 0)))
