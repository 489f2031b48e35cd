"""Facts shared by the TensorFlow frontends (checkpoint builders and graph path).

TensorFlow is NHWC with HWIO conv kernels; the IR is NCHW with OIHW
weights.  Layout changes once, here, at the frontend boundary.
"""
from __future__ import annotations

import numpy as np


def same_pads(size: int, k: int, s: int, d: int = 1) -> tuple[int, int]:
    """TF 'SAME' padding along one axis: (begin, end); the extra pixel goes at the end.

    out = ceil(size / s); total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
    """
    out = -(-size // s)
    total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
    return total // 2, total - total // 2


def tf_pads(padding: str, hw: tuple[int, int], k: tuple[int, int], s: tuple[int, int],
            d: tuple[int, int] = (1, 1)) -> tuple[int, int, int, int]:
    """IR pads (top, left, bottom, right) for TF 'SAME' / 'VALID'."""
    p = padding.upper()
    if p == "VALID":
        return (0, 0, 0, 0)
    if p != "SAME":
        raise ValueError(f"padding {padding!r}")
    t, b = same_pads(hw[0], k[0], s[0], d[0])
    l, r = same_pads(hw[1], k[1], s[1], d[1])
    return (t, l, b, r)


def hwio_to_oihw(w: np.ndarray) -> np.ndarray:
    """Conv2D kernel [kh, kw, in, out] -> [out, in, kh, kw]."""
    return np.ascontiguousarray(w.transpose(3, 2, 0, 1))


def depthwise_to_oihw(w: np.ndarray) -> np.ndarray:
    """DepthwiseConv2dNative kernel [kh, kw, C, M] -> [C*M, 1, kh, kw] (group = C).

    TF orders the outputs channel-major: output c*M + m comes from input c.
    """
    kh, kw, c, m = w.shape
    return np.ascontiguousarray(w.transpose(2, 3, 0, 1).reshape(c * m, 1, kh, kw))


def nhwc_flatten_rows_to_nchw(w: np.ndarray, h: int, wd: int, c: int) -> np.ndarray:
    """Dense weight [H*W*C, out] fed by an NHWC flatten -> IR Gemm weight [out, C*H*W] for an NCHW flatten."""
    out = w.shape[1]
    return np.ascontiguousarray(w.reshape(h, wd, c, out).transpose(3, 2, 0, 1).reshape(out, c * h * wd))
