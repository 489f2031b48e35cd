"""Exact stock-Caffe forms of an IR ``Resize``: a fixed-weight ``Deconvolution``.

Along one axis an IR Resize is a linear map ``y = A x`` (``A`` is ``out x in``,
built by :func:`xconv.reference.resize_matrix`).  A grouped Deconvolution with stride
``s`` and a 1-D kernel ``w`` is also linear and *shift invariant*: input
``j`` adds ``w[t] * x[j]`` to output ``s*j + t``.  Integer upsampling is shift
invariant away from the borders, so the plan for one axis is:

1. derive the kernel: the impulse response of one interior input of a large
   virtual input resized with the same mode (the coordinate transforms are
   scale invariant, so it does not depend on the input size);
2. optionally replicate the border pixel on each side first (``edge = 1``):
   PyTorch/ONNX clamp source coordinates to the edge where a deconvolution
   would see zeros (bilinear ``half_pixel``); Caffe builds this with
   ``Slice`` + ``Concat``;
3. deconvolve, trimming with Caffe's symmetric ``pad`` and then a ``Slice``
   for whatever a symmetric pad cannot trim;
4. **prove** it: compose the whole chain (replicate, deconvolve, crop) as a
   matrix and compare it with ``A`` built from the reference; a plan is only
   returned when the two agree (to 1e-12: both are float64 evaluations of the
   same rational weights, which differ by rounding only).

Non-integer ratios and downsampling are not shift invariant with a
stride >= 1 and get no plan: the caller reports the node.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from xconv.reference import resize_matrix

log = logging.getLogger(__name__)

#: float64 agreement between the composed chain and the reference map; both are
#: evaluations of the same rational weights (k/s, 1 - k/s) so they differ by a few ulps
EXACT_ATOL = 1e-12
#: interior input size used to read off the kernel (the impulse response)
_VIRTUAL = 16


@dataclass(frozen=True)
class AxisPlan:
    """One axis of the Deconvolution form of a Resize."""

    stride: int
    kernel: np.ndarray        # float64 1-D weights, len = kernel size
    pad: int                  # Caffe's symmetric deconvolution pad on this axis
    edge: int                 # border pixels replicated on each side first (0 or 1)
    keep: tuple[int, int]     # [start, end) of the padded deconvolution output that is the result
    length: int               # the deconvolution's output length (after Caffe's pad)

    @property
    def crops(self) -> bool:
        return self.keep != (0, self.length)


def _strides(n: int, m: int) -> list[tuple[int, str]]:
    """Candidate (stride, size relation): ``m = s*n`` ("scale"), ``m = (n-1)*s + 1`` ("corners"),
    or one input copied ``m`` times ("ones")."""
    out: list[tuple[int, str]] = []
    if n == 1:  # every mode copies the one input (coordinates clamp to it): a kernel of m ones
        return [(m, "ones")]
    if m >= n and m % n == 0:
        out.append((m // n, "scale"))
    if n > 1 and m > n and (m - 1) % (n - 1) == 0:
        out.append(((m - 1) // (n - 1), "corners"))
    return out


def _kernel(attrs: Mapping[str, Any], s: int, rel: str) -> tuple[np.ndarray, int] | None:
    """(w, D): the impulse response of an interior input k0 of a virtual input, so that
    input k adds ``w[t] * x[k]`` to output ``o = s*k + t - D``."""
    if rel == "ones":
        return np.ones(s), 0
    n = _VIRTUAL
    m = s * n if rel == "scale" else (n - 1) * s + 1
    col = resize_matrix(attrs, n, m)[:, n // 2]
    nz = np.flatnonzero(np.abs(col) > EXACT_ATOL)
    if nz.size == 0:
        return None
    lo, hi = int(nz[0]), int(nz[-1])
    if lo == 0 or hi == m - 1:  # touches the virtual border: not an interior response
        return None
    return col[lo:hi + 1].copy(), s * (n // 2) - lo


def _chain(n: int, w: np.ndarray, s: int, edge: int, start: int, m: int) -> np.ndarray:
    """The composed map: replicate ``edge`` border pixels, deconvolve (full), keep [start, start+m)."""
    k = len(w)
    src = np.clip(np.arange(-edge, n + edge), 0, n - 1)          # replicate padding
    full = (n + 2 * edge - 1) * s + k
    mat = np.zeros((full, n))
    for j, i in enumerate(src):
        mat[s * j: s * j + k, i] += w
    return mat[start:start + m]


def plan_axis(attrs: Mapping[str, Any], n: int, m: int) -> AxisPlan | None:
    """The Deconvolution form of the Resize along one axis of size ``n -> m``, or None."""
    want = resize_matrix(attrs, n, m)
    for s, rel in _strides(n, m):
        kd = _kernel(attrs, s, rel)
        if kd is None:
            continue
        w, d = kd
        for edge in (0, 1):
            full = (n + 2 * edge - 1) * s + len(w)
            start = d + s * edge
            if start < 0 or start + m > full:
                continue
            if not np.allclose(_chain(n, w, s, edge, start, m), want, rtol=0, atol=EXACT_ATOL):
                continue
            pad = min(start, full - start - m)
            length = full - 2 * pad
            return AxisPlan(s, w, pad, edge, (start - pad, start - pad + m), length)
    return None


def plan(attrs: Mapping[str, Any], in_hw: tuple[int, int], out_hw: tuple[int, int]) -> tuple[AxisPlan, AxisPlan] | None:
    """Both axes' plans, or None when either axis has no Deconvolution form."""
    ph = plan_axis(attrs, in_hw[0], out_hw[0])
    pw = plan_axis(attrs, in_hw[1], out_hw[1]) if ph is not None else None
    if ph is None or pw is None:
        return None
    return ph, pw


def why_not(attrs: Mapping[str, Any], in_hw: tuple[int, int], out_hw: tuple[int, int]) -> str:
    """A sentence on what an exact Caffe form would need."""
    parts = []
    for axis, n, m in (("H", in_hw[0], out_hw[0]), ("W", in_hw[1], out_hw[1])):
        if plan_axis(attrs, n, m) is not None:
            continue
        if m < n:
            parts.append(f"{axis} shrinks {n} -> {m} (downsampling)")
        elif not _strides(n, m):
            g = math.gcd(m, n)
            reduced = f" = {m // g}/{n // g}" if g > 1 else ""
            parts.append(f"{axis} ratio {m}/{n}{reduced} is not an integer")
        elif attrs["coordinate_transformation_mode"] == "align_corners":
            parts.append(f"{axis} {n} -> {m} with align_corners steps (n-1)/(m-1) = {n - 1}/{m - 1} "
                         f"(exact as a Deconvolution when the output is ({n}-1)*k+1, e.g. {2 * n - 1} for k=2)")
        else:
            parts.append(f"{axis} {n} -> {m} is not a shift-invariant resampling")
    return "; ".join(parts) or "no Deconvolution form"
