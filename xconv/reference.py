"""A numpy implementation of every IR op: the ground truth for passes and the
tool that localises divergence.

Computation runs in float64 by default (``dtype`` argument) so that it sits
closer to the exact result than any float32 runtime it is compared with.
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from .errors import InvalidGraphError
from .ir import Graph, Node, SourceLoc
from .ops import lrn_window_matrix, make_attrs, pool_out

log = logging.getLogger(__name__)

Impl = Callable[[Node, list[np.ndarray]], list[np.ndarray]]
IMPLS: dict[str, Impl] = {}


def impl(*names: str) -> Callable[[Impl], Impl]:
    def deco(fn: Impl) -> Impl:
        for n in names:
            if n in IMPLS:
                raise ValueError(f"reference impl for {n} registered twice")
            IMPLS[n] = fn
        return fn
    return deco


# --------------------------------------------------------------------------- conv
def _taps(xp: np.ndarray, kh: int, kw: int, sh: int, sw: int, dh: int, dw: int, oh: int, ow: int):
    for i in range(kh):
        for j in range(kw):
            yield i, j, xp[:, :, i * dh: i * dh + sh * (oh - 1) + 1: sh, j * dw: j * dw + sw * (ow - 1) + 1: sw]


@impl("Conv")
def _conv(node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    x, w = xs[0], xs[1]
    b = xs[2] if len(xs) > 2 and xs[2] is not None else None
    a = node.attrs
    (kh, kw), (sh, sw), (dh, dw), g = a["kernel_shape"], a["strides"], a["dilations"], a["group"]
    t, l, bo, r = a["pads"]
    xp = np.pad(x, ((0, 0), (0, 0), (t, bo), (l, r)))
    n, c, hp, wp = xp.shape
    oh = (hp - dh * (kh - 1) - 1) // sh + 1
    ow = (wp - dw * (kw - 1) - 1) // sw + 1
    o = w.shape[0]
    cg, og = c // g, o // g
    cols = np.empty((n, c, kh, kw, oh, ow), dtype=x.dtype)
    for i, j, tap in _taps(xp, kh, kw, sh, sw, dh, dw, oh, ow):
        cols[:, :, i, j] = tap
    out = np.empty((n, o, oh, ow), dtype=x.dtype)
    for gi in range(g):
        cg_cols = cols[:, gi * cg:(gi + 1) * cg].reshape(n, cg * kh * kw, oh * ow)
        wg = w[gi * og:(gi + 1) * og].reshape(og, cg * kh * kw)
        out[:, gi * og:(gi + 1) * og] = np.matmul(wg, cg_cols).reshape(n, og, oh, ow)
    if b is not None:
        out += b.reshape(1, -1, 1, 1)
    return [out]


@impl("Gemm")
def _gemm(node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    y = xs[0] @ xs[1].T
    if len(xs) > 2 and xs[2] is not None:
        y = y + xs[2]
    return [y]


@impl("BatchNormalization")
def _bn(node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    x, s, b, m, v = xs
    shp = (1, -1) + (1,) * (x.ndim - 2)
    inv = s / np.sqrt(v + node.attrs["epsilon"])
    return [(x - m.reshape(shp)) * inv.reshape(shp) + b.reshape(shp)]


# --------------------------------------------------------------------------- pooling
def _pool_axis(size: int, k: int, s: int, pb: int, pe: int, ceil_mode: bool) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
    """Per output index: window start (unclipped), divisor with pad, divisor without."""
    out = pool_out(size, k, s, pb, pe, ceil_mode)
    start = np.arange(out) * s - pb
    end_pad = np.minimum(start + k, size + pe)
    div_pad = end_pad - start
    div_real = np.minimum(start + k, size) - np.maximum(start, 0)
    return out, start, div_pad, div_real


def _pool(node: Node, x: np.ndarray, kind: str) -> np.ndarray:
    a = node.attrs
    (kh, kw), (sh, sw) = a["kernel_shape"], a["strides"]
    t, l, b, r = a["pads"]
    n, c, h, w = x.shape
    oh, hs, hdp, hdr = _pool_axis(h, kh, sh, t, b, a["ceil_mode"])
    ow, ws, wdp, wdr = _pool_axis(w, kw, sw, l, r, a["ceil_mode"])
    # pad generously so every window lies inside; fill decides what padding means
    need_b = max(0, (oh - 1) * sh + kh - t - h)
    need_r = max(0, (ow - 1) * sw + kw - l - w)
    fill = -np.inf if kind == "max" else 0.0
    xp = np.pad(x, ((0, 0), (0, 0), (t, need_b), (l, need_r)), constant_values=fill)
    acc = None
    for _, _, tap in _taps(xp, kh, kw, sh, sw, 1, 1, oh, ow):
        if acc is None:
            acc = tap.copy()
        elif kind == "max":
            np.maximum(acc, tap, out=acc)
        else:
            acc += tap
    assert acc is not None
    if kind == "max":
        return acc
    if a["count_include_pad"]:
        div = np.outer(hdp, wdp)
    else:
        div = np.outer(hdr, wdr)
    return acc / div.astype(x.dtype)


@impl("MaxPool")
def _maxpool(node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    return [_pool(node, xs[0], "max")]


@impl("AveragePool")
def _avgpool(node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    return [_pool(node, xs[0], "avg")]


@impl("GlobalAveragePool")
def _gap(node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    return [xs[0].mean(axis=(2, 3), keepdims=True)]


@impl("GlobalMaxPool")
def _gmp(node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    return [xs[0].max(axis=(2, 3), keepdims=True)]


def adaptive_bounds(size: int, out: int) -> list[tuple[int, int]]:
    return [((i * size) // out, -(-((i + 1) * size) // out)) for i in range(out)]


def _adaptive(x: np.ndarray, osz: tuple[int, int], fn: Callable[..., np.ndarray]) -> np.ndarray:
    n, c, h, w = x.shape
    out = np.empty((n, c) + tuple(osz), dtype=x.dtype)
    for i, (h0, h1) in enumerate(adaptive_bounds(h, osz[0])):
        for j, (w0, w1) in enumerate(adaptive_bounds(w, osz[1])):
            out[:, :, i, j] = fn(x[:, :, h0:h1, w0:w1], axis=(2, 3))
    return out


@impl("AdaptiveAvgPool")
def _aap(node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    return [_adaptive(xs[0], node.attrs["output_size"], np.mean)]


@impl("AdaptiveMaxPool")
def _amp(node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    return [_adaptive(xs[0], node.attrs["output_size"], np.max)]


@impl("Pad")
def _pad(node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    x = xs[0]
    t, l, b, r = node.attrs["pads"]
    # negative pads crop first
    h, w = x.shape[2:]
    x = x[:, :, max(0, -t): h - max(0, -b), max(0, -l): w - max(0, -r)]
    width = ((0, 0), (0, 0), (max(t, 0), max(b, 0)), (max(l, 0), max(r, 0)))
    mode = node.attrs["mode"]
    if mode == "constant":
        return [np.pad(x, width, constant_values=node.attrs["value"])]
    if mode in ("reflect", "edge"):
        return [np.pad(x, width, mode=mode)]
    raise InvalidGraphError(f"{node.where()}: pad mode {mode!r}")


# --------------------------------------------------------------------------- elementwise
def _sig(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


_UNARY: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "Relu": lambda x: np.maximum(x, 0),
    "Sigmoid": _sig,
    "Tanh": np.tanh,
    "HardSwish": lambda x: x * np.clip(x + 3, 0, 6) / 6,
    "Silu": lambda x: x * _sig(x),
    "Neg": np.negative,
    "Identity": lambda x: x,
    "Dropout": lambda x: x,
    "Exp": np.exp,
    "Abs": np.abs,
    "Sqrt": np.sqrt,
}


@impl(*_UNARY)
def _unary(node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    return [_UNARY[node.op](xs[0])]


@impl("LeakyRelu")
def _leaky(node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    x = xs[0]
    return [np.where(x >= 0, x, x * node.attrs["alpha"])]


@impl("Elu")
def _elu(node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    x = xs[0]
    return [np.where(x > 0, x, node.attrs["alpha"] * np.expm1(np.minimum(x, 0)))]


@impl("PRelu")
def _prelu(node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    x, s = xs
    s = s.reshape((1, -1) + (1,) * (x.ndim - 2)) if s.size > 1 else s.reshape(())
    return [np.where(x >= 0, x, x * s)]


@impl("Clip")
def _clip(node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    return [np.minimum(np.maximum(xs[0], node.attrs["min"]), node.attrs["max"])]


@impl("HardSigmoid")
def _hsig(node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    return [np.clip(xs[0] * node.attrs["alpha"] + node.attrs["beta"], 0, 1)]


@impl("Softmax")
def _softmax(node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    x = xs[0]
    ax = node.attrs["axis"]
    e = np.exp(x - x.max(axis=ax, keepdims=True))
    return [e / e.sum(axis=ax, keepdims=True)]


_BINARY: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide,
    "Max": np.maximum, "Min": np.minimum,
}


@impl(*_BINARY)
def _binary(node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    return [_BINARY[node.op](xs[0], xs[1])]


# --------------------------------------------------------------------------- structure
@impl("Concat")
def _concat(node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    return [np.concatenate(xs, axis=node.attrs["axis"])]


@impl("Split")
def _split(node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    idx = np.cumsum(node.attrs["split"])[:-1]
    return list(np.split(xs[0], idx, axis=node.attrs["axis"]))


@impl("Slice")
def _slice(node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    sl = [slice(None)] * xs[0].ndim
    sl[node.attrs["axis"]] = slice(node.attrs["start"], node.attrs["end"])
    return [xs[0][tuple(sl)]]


@impl("Flatten")
def _flatten(node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    x = xs[0]
    ax = node.attrs["axis"] % x.ndim
    return [x.reshape(int(np.prod(x.shape[:ax])), -1)]


@impl("Reshape")
def _reshape(node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    return [xs[0].reshape(node.attrs["shape"])]


@impl("Transpose")
def _transpose(node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    return [xs[0].transpose(node.attrs["perm"])]


@impl("ChannelShuffle")
def _shuffle(node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    x = xs[0]
    n, c, h, w = x.shape
    g = node.attrs["group"]
    return [x.reshape(n, g, c // g, h, w).transpose(0, 2, 1, 3, 4).reshape(n, c, h, w)]


@impl("ReduceMean")
def _rmean(node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    return [xs[0].mean(axis=tuple(node.attrs["axes"]), keepdims=node.attrs["keepdims"])]


@impl("ReduceMax")
def _rmax(node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    return [xs[0].max(axis=tuple(node.attrs["axes"]), keepdims=node.attrs["keepdims"])]


@impl("LRN")
def _lrn(node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    x = xs[0]
    a = node.attrs
    size, c = a["size"], x.shape[1]
    window = lrn_window_matrix(c, size).astype(bool)
    sq = x * x
    acc = np.zeros_like(x)
    for ch in range(c):
        acc[:, ch] = sq[:, window[ch]].sum(axis=1)
    return [x / (a["bias"] + a["alpha"] / size * acc) ** a["beta"]]


def resize_source(out_size: int, in_size: int, coord: str) -> np.ndarray:
    """ONNX Resize: the source coordinate of every output index along one axis."""
    i = np.arange(out_size, dtype=np.float64)
    scale = out_size / in_size
    if coord == "asymmetric":
        return i / scale
    if coord == "align_corners":
        return i * (in_size - 1) / (out_size - 1) if out_size > 1 else np.zeros_like(i)
    if coord == "pytorch_half_pixel" and out_size == 1:
        return np.zeros_like(i)
    return (i + 0.5) / scale - 0.5


def _nearest_index(src: np.ndarray, mode: str, in_size: int) -> np.ndarray:
    if mode == "floor":
        idx = np.floor(src)
    elif mode == "ceil":
        idx = np.ceil(src)
    elif mode == "round_prefer_ceil":
        idx = np.floor(src + 0.5)
    else:  # round_prefer_floor
        idx = np.ceil(src - 0.5)
    return np.clip(idx, 0, in_size - 1).astype(np.int64)


@impl("Resize")
def _resize(node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    x = xs[0]
    a = node.attrs
    out = x
    for axis, osz in ((2, a["sizes"][0]), (3, a["sizes"][1])):
        isz = out.shape[axis]
        src = resize_source(osz, isz, a["coordinate_transformation_mode"])
        if a["mode"] == "nearest":
            out = np.take(out, _nearest_index(src, a["nearest_mode"], isz), axis=axis)
            continue
        src = np.clip(src, 0, isz - 1)
        i0 = np.floor(src).astype(np.int64)
        i1 = np.minimum(i0 + 1, isz - 1)
        w = (src - i0).reshape([-1 if d == axis else 1 for d in range(out.ndim)])
        out = np.take(out, i0, axis=axis) * (1 - w) + np.take(out, i1, axis=axis) * w
    return [out]


def resize_matrix(attrs: Mapping[str, Any], n_in: int, n_out: int) -> np.ndarray:
    """The IR Resize along one axis (``n_in -> n_out``) as an ``n_out x n_in`` float64 matrix:
    ``attrs`` are the node's Resize attrs (``sizes`` is ignored).  Read off this reference by
    resizing the identity: channel j of the input is the unit impulse at row j."""
    node = Node("Resize", "probe", ["x"], ["y"], make_attrs("Resize", **{**attrs, "sizes": (n_out, 1)}),
                SourceLoc("xconv", "probe"))
    eye = np.eye(n_in, dtype=np.float64).reshape(1, n_in, n_in, 1)
    out = _resize(node, [eye])[0]  # (1, n_in, n_out, 1)
    return np.ascontiguousarray(out[0, :, :, 0].T)


# --------------------------------------------------------------------------- driver
def run(graph: Graph, feeds: Mapping[str, np.ndarray], *, dtype: Any = np.float64,
        keep: Iterable[str] | bool = (), ) -> dict[str, np.ndarray]:
    """Run ``graph`` on ``feeds``; return its outputs (and any tensors in ``keep``,
    or every tensor when ``keep is True``)."""
    env: dict[str, np.ndarray] = {}
    for k, t in graph.inputs.items():
        if k not in feeds:
            raise InvalidGraphError(f"no value fed for graph input '{k}'")
        v = np.asarray(feeds[k])
        if tuple(v.shape) != t.shape:
            raise InvalidGraphError(f"input '{k}' fed shape {v.shape}, graph wants {t.shape}")
        env[k] = v.astype(dtype)
    for k, v in graph.params.items():
        env[k] = v.astype(dtype) if v.dtype.kind == "f" else v
    consumers = graph.consumers()
    remaining = {k: len(v) for k, v in consumers.items()}
    keep_all = keep is True
    keep_set = set() if keep_all or keep is False else set(keep)  # type: ignore[arg-type]
    keep_set |= set(graph.outputs)
    for node in graph.nodes:
        fn = IMPLS.get(node.op)
        if fn is None:
            raise InvalidGraphError(f"{node.where()}: no reference implementation")
        args = [env[i] if i else None for i in node.inputs]
        outs = fn(node, args)  # type: ignore[arg-type]
        for name, val in zip(node.outputs, outs):
            env[name] = np.asarray(val, dtype=dtype) if np.asarray(val).dtype.kind == "f" else val
        if not keep_all:
            for i in node.inputs:
                if i and i in remaining:
                    remaining[i] -= 1
                    if remaining[i] == 0 and i not in keep_set and i not in graph.params:
                        env.pop(i, None)
    if keep_all:
        return {k: v for k, v in env.items() if k not in graph.params}
    return {k: env[k] for k in keep_set if k in env}


def missing_impls() -> list[str]:
    from .ops import OPS
    return sorted(set(OPS) - set(IMPLS))



