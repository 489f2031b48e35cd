"""Tests of the Caffe backend (backends/caffe).

Every IR op in ``xconv.ops.OPS`` is written as small hand-built graphs, lowered
with ``lower(graph, "caffe", EmitOptions(dialect=d))`` for both write dialects
(``bvlc``: BVLC Caffe 1.0 only; ``ceil-mode``: plus ``pooling_param.ceil_mode`` and
the fork's ReLU6/Pad/Permute; the other profiles: tests/backends/test_caffe_dialects.py),
emitted, loaded in the real pycaffe built for this project and run; every
output blob must agree with ``xconv.reference.run`` (float64) on the original,
unlowered graph.  Constructs with no exact stock-Caffe form must fail with an
error naming the node.  Separate tests check the files against the BVLC 1.0
schema, the hand-encoded caffemodel against pycaffe's own reader, a net
reshaped to another batch size, and the error reports.

pycaffe runs in-process (a Caffe CHECK failure aborts the interpreter): the
backend must never write a net Caffe aborts on.  To find the case behind an
abort, run with ``-n 2`` (pytest-xdist names the test that crashed its worker).
"""
from __future__ import annotations

import functools
import math
import os
import re
from pathlib import Path
from typing import Any, Callable, Sequence

os.environ.setdefault("GLOG_minloglevel", "2")  # before pycaffe loads glog

import numpy as np
import pytest

from xconv import reference
from xconv.backend import as_bytes, EmitOptions, get_backend
from xconv.convert import lower
from xconv.errors import BackendError, UnsupportedAttrError, UnsupportedOpError, XconvError
from xconv.ir import Graph, TensorType
from xconv.ops import OPS

from xconv.backends.caffe import CaffeBackend
from xconv.backends.caffe.dialects import get_profile
from xconv.backends.caffe.emitter import BVLC_LAYER_TYPES, HANDLERS
from xconv.backends.caffe.schema import CaffeSchemaError, parse_caffemodel, parse_prototxt
from irgraphs import Spec, feeds as _feeds, node as _node, single as _single, try_import as _try_import, weights as _w  # noqa: E501,F401

DIALECTS = ("bvlc", "ceil-mode")


caffe = _try_import("caffe")  # imported once: pycaffe's start-up is the slow part
needs_caffe = pytest.mark.xfail(caffe is None, run=False,
                                reason="pycaffe is not importable: the Caffe runtime checks did not run")

# --------------------------------------------------------------------------- graph building
def _assert_close(got: np.ndarray, ref: np.ndarray, what: str) -> None:
    # pycaffe computes in float32 (Conv/InnerProduct/pooling sum up to ~100
    # terms); the reference runs in float64 on the same float32 inputs and
    # params.  The stock-layer compositions add a few roundings of their own:
    # x * (1/c) for x / c, x * float32(1/6) in hard-swish, the multiplicative
    # divisor corrections of rewritten average pooling, negations (exact).
    # Each is <= 1 ulp (6e-8 relative), so 1e-5 relative to the element plus
    # 1e-5 of the output's magnitude (cancellation in sums) covers them with a
    # wide margin, while any semantic slip (a wrong divisor, window, pad, tap
    # or channel order) is >= 1e-2.
    assert got.shape == ref.shape, f"{what}: shape {got.shape} != reference {ref.shape}"
    atol = 1e-5 * (float(np.max(np.abs(ref))) + 1.0) if ref.size else 0.0
    np.testing.assert_allclose(got.astype(np.float64), ref, rtol=1e-5, atol=atol, err_msg=what)


# --------------------------------------------------------------------------- lowering / running
def _lower_emit(graph: Graph, dialect: str, name: str = "net") -> tuple[Graph, dict[str, bytes]]:
    opts = EmitOptions(dialect=dialect)
    lowered = lower(graph, "caffe", opts)
    files = {k: as_bytes(v) for k, v in get_backend("caffe").emit(lowered, name, opts).items()}
    assert sorted(files) == [f"{name}.caffemodel", f"{name}.prototxt"]
    return lowered, files


def _load(files: dict[str, bytes], where: Path, name: str = "net") -> Any:
    assert caffe is not None
    where.mkdir(parents=True, exist_ok=True)
    for k, v in files.items():
        (where / k).write_bytes(v)
    return caffe.Net(str(where / f"{name}.prototxt"), caffe.TEST, weights=str(where / f"{name}.caffemodel"))


def _forward(net: Any, feeds: dict[str, np.ndarray], outputs: Sequence[str]) -> dict[str, np.ndarray]:
    for k, v in feeds.items():
        blob = net.blobs[k]
        assert tuple(blob.data.shape) == v.shape, f"input {k}: net has {blob.data.shape}, fed {v.shape}"
        blob.data[...] = v
    net.forward()
    return {o: net.blobs[o].data.copy() for o in outputs}


# --------------------------------------------------------------------------- cases
Builder = Callable[[], Graph]


class Case:
    def __init__(self, op: str, cid: str, build: Builder, positive: bool = False, scale: float = 1.0,
                 error: tuple[type[XconvError], str] | None = None, xfail: str | None = None) -> None:
        self.op, self.id, self.build, self.positive, self.scale = op, f"{op}-{cid}", build, positive, scale
        self.error = error    # (exception type, regex its message must match) when no exact form exists
        self.xfail = xfail    # reason, for a known open problem


CASES: list[Case] = []


def case(op: str, cid: str, build: Builder, **kw: Any) -> None:
    CASES.append(Case(op, cid, build, **kw))


def single(op: str, specs: Sequence[Spec], n_out: int = 1, **attrs: Any) -> Builder:
    return functools.partial(_single, op, list(specs), n_out, **attrs)


def chain(name: str, inputs: dict[str, tuple[int, ...]], nodes: Sequence[tuple[Any, ...]],
          outputs: Sequence[str], params: dict[str, np.ndarray] | None = None) -> Builder:
    """A graph from (op, inputs, outputs, name, attrs) tuples."""
    def build() -> Graph:
        ns = [_node(op, ins, outs, nm, **at) for op, ins, outs, nm, at in nodes]
        return Graph(name, ns, {k: TensorType(v) for k, v in inputs.items()}, list(outputs), dict(params or {}))
    return build


def no_form(node: str, *words: str) -> tuple[type[XconvError], str]:
    """Expect a BackendError naming ``node`` (and ``words``)."""
    return BackendError, "(?s)" + "".join(f"(?=.*{re.escape(w)})" for w in (f"'{node}'",) + words)


def unsupported(op: str) -> tuple[type[XconvError], str]:
    return UnsupportedOpError, rf"{op} x1: {op.lower()}"


# conv: odd sizes, asymmetric pads (incl. TF-SAME (0,0,1,1)), stride > kernel, groups, depthwise, dilation
case("Conv", "3x3-pad1-bias", single("Conv", [(1, 3, 7, 7), _w(4, 3, 3, 3), _w(4, seed=1)],
                                      kernel_shape=(3, 3), pads=(1, 1, 1, 1)))
case("Conv", "s2-odd-asym-nobias", single("Conv", [(1, 3, 9, 8), _w(5, 3, 3, 2)], kernel_shape=(3, 2),
                                           strides=(2, 2), pads=(0, 1, 2, 1)))
case("Conv", "tf-same-s2", single("Conv", [(2, 3, 8, 8), _w(4, 3, 3, 3), _w(4, seed=1)], kernel_shape=(3, 3),
                                   strides=(2, 2), pads=(0, 0, 1, 1)))
case("Conv", "asym-left-heavy", single("Conv", [(1, 2, 6, 7), _w(3, 2, 3, 3)], kernel_shape=(3, 3),
                                        pads=(2, 2, 0, 1)))
case("Conv", "groups2", single("Conv", [(1, 4, 6, 6), _w(6, 2, 3, 3), _w(6, seed=2)], kernel_shape=(3, 3),
                                group=2, pads=(1, 0, 1, 0)))
case("Conv", "depthwise", single("Conv", [(1, 4, 7, 5), _w(4, 1, 3, 3), _w(4, seed=3)], kernel_shape=(3, 3),
                                  group=4, strides=(2, 1), pads=(1, 1, 1, 1)))
case("Conv", "depthwise-tf-same", single("Conv", [(1, 4, 7, 6), _w(4, 1, 3, 3)], kernel_shape=(3, 3),
                                          group=4, strides=(2, 2), pads=(1, 0, 1, 1)))
case("Conv", "dilation", single("Conv", [(1, 2, 9, 10), _w(3, 2, 3, 3)], kernel_shape=(3, 3),
                                 dilations=(2, 3), pads=(2, 3, 2, 3)))
case("Conv", "dilation-asym-whole-taps", single("Conv", [(1, 2, 9, 9), _w(3, 2, 3, 3)], kernel_shape=(3, 3),
                                                 dilations=(2, 2), pads=(0, 4, 2, 0)))
case("Conv", "dilation-asym-half-tap", single("Conv", [(1, 2, 8, 9), _w(3, 2, 3, 3), _w(3, seed=5)],
                                               kernel_shape=(3, 3), dilations=(2, 2), pads=(1, 0, 2, 1)))
case("Conv", "stride-gt-kernel", single("Conv", [(2, 3, 8, 7), _w(2, 3, 2, 1), _w(2, seed=4)],
                                         kernel_shape=(2, 1), strides=(3, 3)))
case("Conv", "1x1-batch2", single("Conv", [(2, 8, 3, 3), _w(4, 8, 1, 1)], kernel_shape=(1, 1)))

case("Gemm", "bias", single("Gemm", [(3, 10), _w(7, 10), _w(7, seed=5)]))
case("Gemm", "nobias", single("Gemm", [(1, 16), _w(4, 16)]))

_BN = [_w(3, seed=1), _w(3, seed=2), _w(3, seed=3), _w(3, seed=4, positive=True)]
case("BatchNormalization", "standalone", single("BatchNormalization", [(2, 3, 4, 5)] + _BN, epsilon=1e-3))
case("BatchNormalization", "rank2", single("BatchNormalization", [(4, 3)] + _BN))
case("BatchNormalization", "after-add-unfoldable", chain(
    "bn_after_add", {"a": (2, 3, 4, 5), "b": (2, 3, 4, 5)},
    [("Add", ["a", "b"], ["s"], "add", {}),
     ("BatchNormalization", ["s", "g", "be", "m", "v"], ["y"], "bn", {"epsilon": 1e-5})],
    ["y"], dict(zip(["g", "be", "m", "v"], _BN))))
case("BatchNormalization", "folded-into-conv", chain(
    "bn_folded", {"x": (1, 2, 6, 5)},
    [("Conv", ["x", "w"], ["c"], "conv", {"kernel_shape": (3, 3), "pads": (1, 1, 1, 1)}),
     ("BatchNormalization", ["c", "g", "be", "m", "v"], ["y"], "bn", {"epsilon": 1e-3})],
    ["y"], {"w": _w(3, 2, 3, 3, seed=9), **dict(zip(["g", "be", "m", "v"], _BN))}))
case("BatchNormalization", "conv-output-branches", chain(  # conv output also a graph output: not folded
    "bn_branch", {"x": (1, 2, 5, 5)},
    [("Conv", ["x", "w", "b"], ["c"], "conv", {"kernel_shape": (1, 1)}),
     ("BatchNormalization", ["c", "g", "be", "m", "v"], ["y"], "bn", {})],
    ["y", "c"], {"w": _w(3, 2, 1, 1, seed=9), "b": _w(3, seed=8), **dict(zip(["g", "be", "m", "v"], _BN))}))

# pooling: (H, W, kernel, strides, pads) -- odd sizes, asymmetric pads, TF-SAME (0,0,1,1), stride > kernel
# (Caffe without padding keeps an extra empty trailing window there: the backend must trim it), ceil-mode
# windows dropped because they start inside the end padding
POOL_GEOMS: list[tuple[int, int, tuple[int, int], tuple[int, int], tuple[int, int, int, int]]] = [
    (7, 7, (3, 3), (2, 2), (1, 1, 1, 1)),
    (8, 8, (3, 3), (2, 2), (1, 1, 1, 1)),      # ceil keeps one more window than floor
    (8, 6, (2, 2), (2, 2), (0, 0, 1, 1)),      # TF-SAME-like; ceil: last window would start at H+pt -> dropped
    (8, 8, (3, 3), (2, 2), (0, 0, 1, 1)),      # TF-SAME k3 s2 on an even size
    (5, 5, (3, 3), (3, 3), (1, 1, 1, 1)),      # ceil: dropped window that would cover only padding
    (3, 4, (2, 2), (3, 3), (0, 0, 0, 0)),      # stride > kernel: Caffe keeps an empty trailing window
    (8, 9, (2, 1), (4, 3), (0, 0, 0, 0)),      # stride > kernel, both axes
    (9, 7, (3, 2), (2, 3), (1, 0, 2, 1)),      # asymmetric pads
    (6, 6, (2, 3), (4, 1), (0, 1, 1, 2)),
    (11, 5, (3, 3), (2, 2), (0, 0, 0, 0)),     # odd, ceil overhang without padding
    (9, 9, (3, 3), (2, 2), (1, 1, 0, 0)),      # ceil: last window overhangs H + pb (count_include_pad divisor)
    (10, 7, (3, 3), (1, 2), (0, 2, 2, 0)),     # pad on one side only, stride 1
    (3, 5, (2, 3), (3, 2), (0, 1, 0, 1)),      # padded W axis, stride > kernel on the unpadded H axis
    (1, 1, (1, 1), (1, 1), (0, 0, 0, 0)),
]


def _geom_id(g: tuple[Any, ...]) -> str:
    h, w, k, s, p = g
    return f"{h}x{w}-k{k[0]}{k[1]}-s{s[0]}{s[1]}-p{''.join(map(str, p))}"


for _g in POOL_GEOMS:
    _h, _wd, _k, _s, _p = _g
    for _ceil in (False, True):
        case("MaxPool", f"{_geom_id(_g)}-ceil{int(_ceil)}",
             single("MaxPool", [(1, 2, _h, _wd)], kernel_shape=_k, strides=_s, pads=_p, ceil_mode=_ceil))
        for _cip in (False, True):
            case("AveragePool", f"{_geom_id(_g)}-ceil{int(_ceil)}-cip{int(_cip)}",
                 single("AveragePool", [(1, 2, _h, _wd)], kernel_shape=_k, strides=_s, pads=_p,
                        ceil_mode=_ceil, count_include_pad=_cip))
# ceil mode only: a kernel larger than the input (one window; Caffe's C++ ceil of a negative span)
case("MaxPool", "kernel-gt-input-ceil", single("MaxPool", [(1, 2, 2, 3)], kernel_shape=(3, 3), strides=(3, 3),
                                               ceil_mode=True))
case("AveragePool", "kernel-gt-input-ceil", single("AveragePool", [(1, 2, 2, 3)], kernel_shape=(3, 3),
                                                   strides=(3, 3), ceil_mode=True, count_include_pad=True))

case("GlobalAveragePool", "odd", single("GlobalAveragePool", [(2, 3, 5, 7)]))
case("GlobalMaxPool", "odd", single("GlobalMaxPool", [(2, 3, 5, 7)]))
for _op in ("AdaptiveAvgPool", "AdaptiveMaxPool"):
    case(_op, "to1x1", single(_op, [(1, 3, 7, 5)], output_size=(1, 1)))
    case(_op, "even-2x3", single(_op, [(1, 3, 8, 9)], output_size=(2, 3)))
    case(_op, "identity-4x4", single(_op, [(1, 2, 4, 4)], output_size=(4, 4)))
    case(_op, "rows-only", single(_op, [(1, 2, 6, 5)], output_size=(3, 1)))
    case(_op, "10to3-overlapping", single(_op, [(2, 2, 10, 10)], output_size=(3, 3)))
    case(_op, "uneven-5to3", single(_op, [(1, 2, 5, 5)], output_size=(3, 3)),
         error=(UnsupportedAttrError, r"(?s)adaptive.*unequal size"))

# explicit Pad: zero value (asymmetric, negative = crop) is exact; anything else has no stock form
for _pads in ((1, 0, 2, 3), (-1, 2, 0, -2), (-1, -1, -2, 0), (2, 2, 2, 2), (0, 0, 0, 0)):
    case("Pad", f"zero-{'_'.join(map(str, _pads))}", single("Pad", [(1, 2, 5, 6)], pads=_pads))
case("Pad", "then-conv-fused", chain(
    "pad_conv", {"x": (1, 2, 6, 6)},
    [("Pad", ["x"], ["p"], "pad", {"pads": (0, 0, 1, 1)}),
     ("Conv", ["p", "w"], ["y"], "conv", {"kernel_shape": (3, 3), "strides": (2, 2)})],
    ["y"], {"w": _w(3, 2, 3, 3, seed=4)}))
case("Pad", "then-avgpool-fused", chain(
    "pad_avg", {"x": (1, 2, 7, 7)},
    [("Pad", ["x"], ["p"], "pad", {"pads": (1, 1, 1, 1)}),
     ("AveragePool", ["p"], ["y"], "pool", {"kernel_shape": (3, 3), "strides": (2, 2)})], ["y"]))
case("Pad", "neg-inf-then-maxpool", chain(
    "pad_max", {"x": (1, 2, 8, 8)},
    [("Pad", ["x"], ["p"], "pad", {"pads": (0, 0, 1, 1), "value": -math.inf}),
     ("MaxPool", ["p"], ["y"], "pool", {"kernel_shape": (3, 3), "strides": (2, 2)})], ["y"]))
case("Pad", "value-0.5", single("Pad", [(1, 2, 5, 6)], pads=(1, 0, 2, 3), value=0.5),
     error=no_form("pad", "constant", "0.5", "ONNX"))
case("Pad", "reflect", single("Pad", [(1, 2, 5, 6)], pads=(2, 1, 0, 1), mode="reflect"),
     error=no_form("pad", "reflect", "ONNX"))
case("Pad", "edge", single("Pad", [(1, 2, 5, 6)], pads=(1, 2, 3, 0), mode="edge"),
     error=no_form("pad", "edge", "ONNX"))

for _op in ("Relu", "Sigmoid", "Tanh", "HardSwish", "Silu", "Neg", "Identity", "Exp", "Abs", "Dropout"):
    case(_op, "basic", single(_op, [(2, 3, 4, 5)]), scale=4.0)
case("Sqrt", "positive", single("Sqrt", [(2, 3, 4, 5)]), positive=True, scale=3.0)
case("LeakyRelu", "a0.1", single("LeakyRelu", [(2, 3, 4, 5)], alpha=0.1))
case("Elu", "a0.7", single("Elu", [(2, 3, 4, 5)], alpha=0.7), scale=3.0)
case("Elu", "a1", single("Elu", [(2, 3, 4, 5)]), scale=3.0)
case("HardSigmoid", "default", single("HardSigmoid", [(2, 3, 4, 5)]), scale=4.0)
case("HardSigmoid", "custom", single("HardSigmoid", [(2, 3, 4, 5)], alpha=1 / 6, beta=0.5), scale=4.0)
case("HardSigmoid", "a1-b0", single("HardSigmoid", [(2, 3, 4, 5)], alpha=1.0, beta=0.0))
case("Clip", "relu6", single("Clip", [(2, 3, 4, 5)], min=0.0, max=6.0), scale=5.0)
case("Clip", "arbitrary", single("Clip", [(2, 3, 4, 5)], min=-1.5, max=2.25), scale=3.0)
case("Clip", "min-only", single("Clip", [(2, 3, 4, 5)], min=-0.5))
case("Clip", "max-only", single("Clip", [(2, 3, 4, 5)], max=0.25))
case("Clip", "zero-only", single("Clip", [(2, 3, 4, 5)], min=0.0))
case("Clip", "unbounded", single("Clip", [(2, 3, 4, 5)]))
case("PRelu", "per-channel", single("PRelu", [(2, 3, 4, 5), _w(3)]))
case("PRelu", "shared", single("PRelu", [(2, 3, 4, 5), _w(1)]))
case("PRelu", "rank2", single("PRelu", [(4, 3), _w(3)]))
case("PRelu", "slope-is-input", single("PRelu", [(2, 3, 4, 5), (3,)]), error=no_form("prelu", "constant"))
case("Softmax", "axis1", single("Softmax", [(2, 3, 4, 5)], axis=1), scale=3.0)
case("Softmax", "axis-1", single("Softmax", [(2, 3, 4, 5)], axis=-1), scale=3.0)
case("Softmax", "rank2", single("Softmax", [(3, 10)]), scale=3.0)

# binary ops: tensors of one shape, scalars on either side, per-channel constants, (1,1,H,W) constants,
# (N,C,1,1) tensors (squeeze-excitation)
_X = (2, 3, 4, 5)
for _op in ("Add", "Sub", "Mul", "Div", "Max", "Min"):
    _pos = _op == "Div"  # keep divisors away from zero
    case(_op, "same-shape", single(_op, [_X, _X]), positive=_pos)
    case(_op, "scalar-right", single(_op, [_X, np.array(1.75 if _pos else -0.375, np.float32)]), positive=_pos)
    case(_op, "scalar-left-1d", single(_op, [np.array([0.625], np.float32), _X]), positive=_pos)
for _op in ("Add", "Sub", "Mul"):
    case(_op, "per-channel-c11", single(_op, [_X, _w(3, 1, 1, seed=11)]))
    case(_op, "per-channel-1c11", single(_op, [_X, _w(1, 3, 1, 1, seed=12)]))
    case(_op, "const-11hw", single(_op, [_X, _w(1, 1, 4, 5, seed=13)]))
    case(_op, "const-hw", single(_op, [_X, _w(4, 5, seed=14)]))
    case(_op, "rank2-per-feature", single(_op, [(3, 7), _w(7, seed=15)]))
case("Add", "per-channel-left", single("Add", [_w(3, 1, 1, seed=11), _X]))
case("Mul", "per-channel-left", single("Mul", [_w(3, 1, 1, seed=11), _X]))
case("Sub", "per-channel-left", single("Sub", [_w(3, 1, 1, seed=11), _X]))
case("Add", "se-nc11", single("Add", [_X, (2, 3, 1, 1)]))
case("Add", "se-nc11-left", single("Add", [(2, 3, 1, 1), _X]))
case("Mul", "se-nc11", single("Mul", [_X, (2, 3, 1, 1)]))
case("Mul", "se-nc11-left", single("Mul", [(2, 3, 1, 1), _X]))
case("Sub", "se-nc11", single("Sub", [_X, (2, 3, 1, 1)]))
case("Sub", "se-nc11-left", single("Sub", [(2, 3, 1, 1), _X]))
case("Div", "per-channel-const", single("Div", [_X, _w(3, 1, 1, seed=16, positive=True)]))
case("Div", "se-nc11", single("Div", [_X, (2, 3, 1, 1)]), positive=True)
case("Div", "scalar-by-tensor", single("Div", [np.array(2.5, np.float32), _X]), positive=True)
case("Max", "per-channel-const", single("Max", [_X, _w(3, 1, 1, seed=17)]))
case("Min", "per-channel-const-left", single("Min", [_w(1, 3, 1, 1, seed=18), _X]))
case("Max", "const-11hw", single("Max", [_X, _w(1, 1, 4, 5, seed=19)]))
case("Max", "const-grows-x", single("Max", [(1, 3, 1, 5), _w(3, 4, 1, seed=19)]),
     error=no_form("max", "Scale/Bias"))
case("Min", "bcast-inputs", single("Min", [(2, 1, 4, 1), (1, 3, 1, 5)]), error=no_form("min", "broadcast"))
case("Mul", "bcast-inputs", single("Mul", [(2, 1, 4, 1), (1, 3, 1, 5)]), error=no_form("mul", "broadcast"))
case("Max", "zero-is-relu", single("Max", [_X, np.array(0.0, np.float32)]))

case("Concat", "axis1", single("Concat", [(1, 2, 3, 3), (1, 4, 3, 3), (1, 1, 3, 3)], axis=1))
case("Concat", "axis2", single("Concat", [(2, 3, 1, 4), (2, 3, 3, 4)], axis=2))
case("Concat", "axis3", single("Concat", [(2, 3, 4, 1), (2, 3, 4, 2)], axis=3))
case("Concat", "axis-1", single("Concat", [(2, 3, 4, 1), (2, 3, 4, 2)], axis=-1))
case("Concat", "rank2", single("Concat", [(2, 3), (2, 5)], axis=1))
case("Split", "unequal-axis1", single("Split", [(1, 6, 2, 3)], n_out=3, axis=1, split=(1, 3, 2)))
case("Split", "axis2", single("Split", [(2, 3, 5, 4)], n_out=2, axis=2, split=(4, 1)))
case("Split", "axis3", single("Split", [(2, 3, 4, 5)], n_out=2, axis=3, split=(2, 3)))
case("Split", "single", single("Split", [(2, 3)], n_out=1, axis=1, split=(3,)))
for _ax, _se in ((1, (1, 3)), (2, (0, 1)), (3, (2, 7)), (-2, (2, 4)), (3, (0, 7))):
    case("Slice", f"axis{_ax}-{_se[0]}_{_se[1]}", single("Slice", [(2, 5, 4, 7)], axis=_ax, start=_se[0], end=_se[1]))
for _ax in (1, 0, 2, -1):
    case("Flatten", f"axis{_ax}", single("Flatten", [(2, 3, 4, 5)], axis=_ax))
case("Flatten", "axis0-batch1", single("Flatten", [(1, 3, 4, 5)], axis=0))
for _shape in ((2, 60), (6, 20), (2, 3, 20, 1), (2, 12, 5), (120,)):
    case("Reshape", "x".join(map(str, _shape)), single("Reshape", [(2, 3, 4, 5)], shape=_shape))
case("Transpose", "shuffle-idiom", chain(
    "shuffle_idiom", {"x": (2, 6, 3, 2)},
    [("Reshape", ["x"], ["r"], "r1", {"shape": (2, 3, 2, 3, 2)}),
     ("Transpose", ["r"], ["t"], "tr", {"perm": (0, 2, 1, 3, 4)}),
     ("Reshape", ["t"], ["y"], "r2", {"shape": (2, 6, 3, 2)})], ["y"]))
case("Transpose", "nhwc", single("Transpose", [(1, 3, 4, 5)], perm=(0, 2, 3, 1)), error=unsupported("Transpose"))
case("ChannelShuffle", "g2", single("ChannelShuffle", [(1, 6, 3, 4)], group=2))
case("ChannelShuffle", "g3-batch2", single("ChannelShuffle", [(2, 6, 2, 2)], group=3))
for _op in ("ReduceMean", "ReduceMax"):
    case(_op, "hw-keep", single(_op, [(2, 3, 4, 5)], axes=(2, 3), keepdims=True))
    case(_op, "hw-drop-neg", single(_op, [(2, 3, 4, 5)], axes=(-1, -2), keepdims=False))
    case(_op, "c-drop", single(_op, [(2, 3, 4, 5)], axes=(1,), keepdims=False), error=unsupported(_op))

# LRN (an even size: Power/Convolution/Power/Eltwise) and Resize (a fixed-weight Deconvolution;
# per-layer proofs against PyTorch are in tests/ops/test_ops_e2e.py)
for _size in (5, 3, 4):
    case("LRN", f"size{_size}", single("LRN", [(2, 7, 3, 4)], size=_size, alpha=0.5, beta=0.75, bias=1.5), scale=2.0)
for _cid, _shape, _kw in (
        ("nearest-x2x3", (2, 3, 3, 4), dict(sizes=(6, 12), mode="nearest", coordinate_transformation_mode="asymmetric",
                                            nearest_mode="floor")),
        ("linear-half-pixel-x2", (1, 3, 4, 5), dict(sizes=(8, 10), mode="linear")),
        ("linear-half-pixel-x3-1px", (1, 2, 1, 3), dict(sizes=(3, 9), mode="linear")),
        ("linear-align-corners", (1, 2, 4, 5), dict(sizes=(7, 9), mode="linear",
                                                    coordinate_transformation_mode="align_corners"))):
    case("Resize", _cid, single("Resize", [_shape], **_kw))
case("Resize", "linear-x1.5", single("Resize", [(1, 2, 4, 6)], sizes=(6, 9), mode="linear"),
     error=no_form("resize", "ratio 6/4 = 3/2", "Deconvolution"))
case("Resize", "nearest-down", single("Resize", [(1, 2, 6, 4)], sizes=(3, 2)),
     error=no_form("resize", "downsampling"))

#: IR ops deliberately without a case here, with the reason.
XFAIL_OPS: dict[str, str] = {}


def test_every_ir_op_has_a_case() -> None:
    covered = {c.op for c in CASES}
    missing = sorted(set(OPS) - covered - set(XFAIL_OPS))
    assert not missing, f"IR ops without a Caffe backend test case (add one or an XFAIL_OPS entry): {missing}"
    assert not set(XFAIL_OPS) - set(OPS), "XFAIL_OPS names ops that no longer exist"
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids)), "duplicate case ids"


def _params(error: bool) -> list[Any]:
    out = []
    for c in CASES:
        if (c.error is not None) != error:
            continue
        marks = [pytest.mark.xfail(reason=c.xfail, strict=True)] if c.xfail else []
        out.append(pytest.param(c, id=c.id, marks=marks))
    return out


#: error cases that a dialect's native layer writes exactly: case id -> {dialect: layer type}
NATIVE_IN: dict[str, dict[str, str]] = {
    "Pad-value-0.5": {"ceil-mode": "Pad"}, "Pad-reflect": {"ceil-mode": "Pad"}, "Pad-edge": {"ceil-mode": "Pad"},
    "Transpose-nhwc": {"ceil-mode": "Permute"},
}


def test_every_handler_is_an_ir_op() -> None:
    assert set(HANDLERS) <= set(OPS), sorted(set(HANDLERS) - set(OPS))


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("c", _params(error=True))
def test_op_without_exact_form_is_refused(c: Case, dialect: str) -> None:
    """No file is produced; the error names the node.  Where the dialect has a native
    layer for the construct (NATIVE_IN) it converts instead; that layer is proven against
    PyTorch in pycaffe by tests/backends/test_caffe_dialects.py."""
    g = c.build()
    assert c.error is not None
    if dialect in NATIVE_IN.get(c.id, {}):
        _, files = _lower_emit(g, dialect)
        assert f'type: "{NATIVE_IN[c.id][dialect]}"' in files["net.prototxt"].decode()
        return
    exc, pattern = c.error
    with pytest.raises(exc, match=pattern) as ei:
        _lower_emit(g, dialect)
    assert any(n.name in str(ei.value) for n in g.nodes), str(ei.value)


@needs_caffe
@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("c", _params(error=False))
def test_op_matches_reference(c: Case, dialect: str, tmp_path: Path) -> None:
    g = c.build()
    feeds = _feeds(g, c.id, positive=c.positive, scale=c.scale)
    files = _emitted(c.id, dialect)
    got = _forward(_load(files, tmp_path), feeds, g.outputs)
    ref = reference.run(g, feeds)
    for o in g.outputs:
        _assert_close(got[o], ref[o], f"{c.id} output {o} (dialect {dialect})")


_BY_ID = {c.id: c for c in CASES}


@functools.lru_cache(maxsize=None)
def _emitted(cid: str, dialect: str) -> dict[str, bytes]:
    """The files of case ``cid`` (cached: the conformance tests read them again)."""
    return _lower_emit(_BY_ID[cid].build(), dialect)[1]


def _good_cases() -> list[Case]:
    return [c for c in CASES if c.error is None and c.xfail is None]


# --------------------------------------------------------------------------- schema conformance
#: The layer registry of BVLC Caffe 1.0 (tag 1.0, April 2017: src/caffe/layers/*.cpp REGISTER_LAYER_CLASS /
#: REGISTER_LAYER_CREATOR); later additions (Clip, Swish, ...) and fork layers (ReLU6, Pad, Permute, ...) are not.
BVLC_1_0_REGISTRY = frozenset({
    "AbsVal", "Accuracy", "ArgMax", "BNLL", "BatchNorm", "BatchReindex", "Bias", "Concat", "ContrastiveLoss",
    "Convolution", "Crop", "Data", "Deconvolution", "Dropout", "DummyData", "ELU", "Eltwise", "Embed",
    "EuclideanLoss", "Exp", "Filter", "Flatten", "HDF5Data", "HDF5Output", "HingeLoss", "Im2col", "ImageData",
    "InfogainLoss", "InnerProduct", "Input", "LRN", "LSTM", "Log", "MVN", "MemoryData", "MultinomialLogisticLoss",
    "PReLU", "Parameter", "Pooling", "Power", "Python", "RNN", "ReLU", "Reduction", "Reshape", "SPP", "Scale",
    "Sigmoid", "SigmoidCrossEntropyLoss", "Silence", "Slice", "Softmax", "SoftmaxWithLoss", "Split", "TanH",
    "Threshold", "Tile", "WindowData",
})


def test_bvlc_layer_types_are_bvlc_1_0_layers() -> None:
    assert BVLC_LAYER_TYPES <= BVLC_1_0_REGISTRY, sorted(BVLC_LAYER_TYPES - BVLC_1_0_REGISTRY)
    if caffe is not None:  # and the Caffe built here knows them all
        assert BVLC_LAYER_TYPES <= set(caffe.layer_type_list())


def test_bvlc_files_use_only_bvlc_1_0() -> None:
    """Every ``bvlc`` file parses under the BVLC 1.0 schema, text and binary, the
    binary strictly (no field 1.0 lacks, e.g. ceil_mode/round_mode 13), and every
    layer type is one of BVLC 1.0's."""
    for c in _good_cases():
        files = _emitted(c.id, "bvlc")
        text = files["net.prototxt"].decode()
        assert "ceil_mode" not in text and "round_mode" not in text, c.id
        net = parse_prototxt(text, "bvlc")
        model = parse_caffemodel(files["net.caffemodel"], "bvlc", strict=True)
        types = {lay.type for lay in net.layer}
        assert types <= BVLC_LAYER_TYPES, f"{c.id}: non-BVLC layers {sorted(types - BVLC_LAYER_TYPES)}"
        # the caffemodel holds the same layer definitions as the prototxt, plus the blobs
        assert len(model.layer) == len(net.layer), c.id
        for lt, lb in zip(net.layer, model.layer):
            lb = type(lb).FromString(lb.SerializeToString())
            del lb.blobs[:]
            assert lt == lb, f"{c.id}: layer {lt.name} differs between prototxt and caffemodel"
        tops = [t for lay in net.layer for t in lay.top]
        assert len(tops) == len(set(tops)), f"{c.id}: a blob is produced twice (in-place layers are not emitted)"


def test_ceil_mode_files_and_their_floor_pooling() -> None:
    """``ceil-mode`` files use BVLC 1.0 layers plus the fork's ReLU6/Pad/Permute (written
    with the fork's schema); floor pooling is written natively as ``ceil_mode: false``,
    which a BVLC 1.0 reader must refuse with an error that names the field and the
    dialect that has it."""
    native = 0
    fork = get_profile("ceil-mode")
    for c in _good_cases():
        files = _emitted(c.id, "ceil-mode")
        text = files["net.prototxt"].decode()
        net = parse_prototxt(text, fork.schema)
        parse_caffemodel(files["net.caffemodel"], fork.schema, strict=True)
        assert {lay.type for lay in net.layer} <= fork.layer_types, c.id
        floor = [lay for lay in net.layer if lay.type == "Pooling" and lay.pooling_param.HasField("ceil_mode")]
        assert all(not lay.pooling_param.ceil_mode for lay in floor), f"{c.id}: ceil_mode: true written explicitly"
        if not floor:
            assert "ceil_mode" not in text, c.id
            continue
        native += 1
        assert "ceil_mode: false" in text, c.id
        with pytest.raises(CaffeSchemaError) as ei:
            parse_prototxt(text, "bvlc")
        err = ei.value
        assert err.field == "ceil_mode" and "ceil-mode" in err.dialects_with_field, c.id
        assert "'ceil_mode'" in str(err) and "'bvlc'" in str(err) and "'ceil-mode'" in str(err), str(err)
        with pytest.raises(CaffeSchemaError, match="does not know"):
            parse_caffemodel(files["net.caffemodel"], "bvlc", strict=True)
    assert native >= 20, f"only {native} cases wrote floor pooling natively in dialect ceil-mode"


def test_floor_pooling_forms_per_dialect() -> None:
    """The same floor-mode pool: one native layer in ``ceil-mode``; in ``bvlc`` a
    ceil-mode Pooling whose surplus trailing row/col is sliced off and silenced."""
    cid = "MaxPool-8x8-k33-s22-p1111-ceil0"
    ceil_net = parse_prototxt(_emitted(cid, "ceil-mode")["net.prototxt"].decode(), "ceil-mode")
    assert [lay.type for lay in ceil_net.layer] == ["Input", "Pooling"]
    assert ceil_net.layer[1].top == ["y0"] and ceil_net.layer[1].pooling_param.ceil_mode is False
    bvlc_net = parse_prototxt(_emitted(cid, "bvlc")["net.prototxt"].decode(), "bvlc")
    types = [lay.type for lay in bvlc_net.layer]
    assert types[:2] == ["Input", "Pooling"] and "Slice" in types and types[-1] == "Silence"
    assert bvlc_net.layer[1].pooling_param.pad == 1


@needs_caffe
def test_stride_gt_kernel_empty_trailing_window_is_trimmed(tmp_path: Path) -> None:
    """k=2, s=3 on H=3, no padding: Caffe (pad 0, so no drop rule) makes a second
    window starting at row 3, past the input; the IR (and PyTorch) do not.  The
    backend slices it off: the raw Caffe pool has 2 rows, the output 1."""
    cid = "MaxPool-3x4-k22-s33-p0000-ceil1"
    g = _BY_ID[cid].build()
    assert reference.run(g, _feeds(g, cid))["y0"].shape == (1, 2, 1, 2)
    for dialect in DIALECTS:
        files = _emitted(cid, dialect)
        net = parse_prototxt(files["net.prototxt"].decode(), dialect)
        pool = next(lay for lay in net.layer if lay.type == "Pooling")
        raw = _load(files, tmp_path / dialect)
        _forward(raw, _feeds(g, cid), ["y0"])
        assert raw.blobs[pool.top[0]].data.shape == (1, 2, 2, 2)
        assert raw.blobs["y0"].data.shape == (1, 2, 1, 2)


def test_batchnorm_forms() -> None:
    """An unfoldable BN (after an Add) stays BatchNorm (mean, var, scale factor 1.0;
    eps carried) + Scale(bias_term); a BN after a single-consumer Conv is folded."""
    net = parse_prototxt(_emitted("BatchNormalization-after-add-unfoldable", "bvlc")["net.prototxt"].decode(),
                         "bvlc")
    assert [lay.type for lay in net.layer] == ["Input", "Input", "Eltwise", "BatchNorm", "Scale"]
    bn, sc = net.layer[3], net.layer[4]
    assert bn.batch_norm_param.use_global_stats and sc.scale_param.bias_term
    assert bn.batch_norm_param.eps == pytest.approx(1e-5)
    model = parse_caffemodel(_emitted("BatchNormalization-after-add-unfoldable", "bvlc")["net.caffemodel"], "bvlc")
    blobs = {lay.name: lay.blobs for lay in model.layer}
    assert list(blobs["bn"][2].data) == [1.0] and len(blobs["bn"]) == 3 and len(blobs[sc.name]) == 2
    folded = parse_prototxt(_emitted("BatchNormalization-folded-into-conv", "bvlc")["net.prototxt"].decode(), "bvlc")
    assert [lay.type for lay in folded.layer] == ["Input", "Convolution"]
    branch = parse_prototxt(_emitted("BatchNormalization-conv-output-branches", "bvlc")["net.prototxt"].decode(),
                            "bvlc")
    assert "BatchNorm" in [lay.type for lay in branch.layer]


# --------------------------------------------------------------------------- the hand-encoded caffemodel
def _blob_net() -> Graph:
    """A graph whose Caffe form has every kind of blob the backend writes."""
    nodes = [
        _node("Conv", ["x", "w1", "b1"], ["c1"], "conv1", kernel_shape=(3, 3), pads=(1, 1, 1, 1)),
        _node("Conv", ["c1", "w2"], ["c2"], "conv2_asym", kernel_shape=(3, 3), strides=(2, 2), pads=(0, 0, 1, 1)),
        _node("Add", ["c2", "c2"], ["a"], "double"),
        _node("BatchNormalization", ["a", "g", "be", "m", "v"], ["bn"], "bn"),
        _node("PRelu", ["bn", "slope_c"], ["pr1"], "prelu_c"),
        _node("PRelu", ["pr1", "slope_1"], ["pr2"], "prelu_shared"),
        _node("Mul", ["pr2", "cscale"], ["ms"], "mul_c"),
        _node("Add", ["ms", "cbias"], ["ab"], "add_c"),
        _node("AveragePool", ["ab"], ["ap"], "pool", kernel_shape=(2, 2), strides=(2, 2), pads=(0, 0, 1, 1),
              count_include_pad=False),
        _node("Flatten", ["ap"], ["f"], "flat"),
        _node("Gemm", ["f", "fw", "fb"], ["fc1"], "fc1"),
        _node("Gemm", ["fc1", "fw2"], ["y"], "fc2_nobias"),
    ]
    params = {"w1": _w(4, 3, 3, 3), "b1": _w(4, seed=1), "w2": _w(4, 4, 3, 3, seed=2),
              **dict(zip(["g", "be", "m", "v"], [_w(4, seed=3), _w(4, seed=4), _w(4, seed=5),
                                                   _w(4, seed=6, positive=True)])),
              "slope_c": _w(4, seed=7), "slope_1": np.array([0.25], np.float32), "cscale": _w(4, 1, 1, seed=8),
              "cbias": _w(4, 1, 1, seed=9), "fw": _w(6, 4 * 2 * 2, seed=10), "fb": _w(6, seed=11),
              "fw2": _w(3, 6, seed=12)}
    return Graph("blob_net", nodes, {"x": TensorType((2, 3, 7, 7))}, ["y"], params)


@needs_caffe
def test_caffemodel_blobs_match_pycaffe(tmp_path: Path) -> None:
    """The caffemodel is assembled from hand-encoded BlobProto bytes (``_Wire``):
    pycaffe's own protobuf reader and pycaffe's Net must read back, blob for blob,
    bit for bit, what the emitter meant to write; and the net runs correctly."""
    from caffe.proto import caffe_pb2

    g = _blob_net()
    opts = EmitOptions(dialect="bvlc")
    lowered = lower(g, "caffe", opts)
    _, em = CaffeBackend().build(lowered, opts)
    meant = {lay.msg.name: lay.blobs for lay in em.layers if lay.blobs}
    files = {k: as_bytes(v) for k, v in CaffeBackend().emit(lowered, "net", opts).items()}

    theirs = caffe_pb2.NetParameter.FromString(files["net.caffemodel"])
    ours = parse_caffemodel(files["net.caffemodel"], "bvlc", strict=True)
    net = _load(files, tmp_path)
    for reader, layers in (("caffe_pb2", theirs.layer), ("xconv schema", ours.layer)):
        got = {lay.name: lay.blobs for lay in layers if len(lay.blobs)}
        assert sorted(got) == sorted(meant), reader
        for name, blobs in got.items():
            assert len(blobs) == len(meant[name]), (reader, name)
            for i, (b, want) in enumerate(zip(blobs, meant[name])):
                assert tuple(b.shape.dim) == want.shape, (reader, name, i)
                assert not (b.num or b.channels or b.height or b.width), "legacy 4-D blob fields written"
                arr = np.asarray(b.data, np.float32).reshape(want.shape)
                assert arr.tobytes() == want.tobytes(), (reader, name, i)
    assert sorted(net.params) == sorted(meant)
    for name, blobs in meant.items():
        assert len(net.params[name]) == len(blobs), name
        for i, want in enumerate(blobs):
            got = net.params[name][i].data
            assert got.shape == want.shape and got.tobytes() == want.tobytes(), (name, i)
    # the blobs are the IR params where the mapping is direct
    assert meant["conv1"][0].tobytes() == g.params["w1"].tobytes()
    assert meant["fc1"][1].tobytes() == g.params["fb"].tobytes()
    assert meant["prelu_shared"][0].shape == ()              # Caffe's channel_shared slope is 0-d
    assert meant["bn"][2].tolist() == [1.0]                  # BatchNorm's moving-average scale factor
    assert meant["conv2_asym"][0].shape == (4, 4, 4, 4)      # (0,0,1,1) pads: kernel zero-extended at the top/left
    assert len(meant["fc2_nobias"]) == 1
    feeds = _feeds(g, "blob_net")
    _assert_close(_forward(net, feeds, ["y"])["y"], reference.run(g, feeds)["y"], "blob_net")


# --------------------------------------------------------------------------- batch size
def _batch_net(n: int) -> Graph:
    c, h, w = 4, 9, 8
    nodes = [
        _node("Conv", ["x", "w1", "b1"], ["c1"], "conv1", kernel_shape=(3, 3), strides=(2, 2), pads=(0, 0, 1, 1)),
        _node("Clip", ["c1"], ["r6"], "relu6", min=0.0, max=6.0),
        _node("MaxPool", ["r6"], ["p1"], "pool1", kernel_shape=(2, 2), strides=(1, 1)),          # floor mode
        _node("GlobalAveragePool", ["p1"], ["se_gap"], "se_gap"),
        _node("Conv", ["se_gap", "se_w1"], ["se_c1"], "se_fc1", kernel_shape=(1, 1)),
        _node("Relu", ["se_c1"], ["se_r"], "se_relu"),
        _node("Conv", ["se_r", "se_w2"], ["se_c2"], "se_fc2", kernel_shape=(1, 1)),
        _node("HardSigmoid", ["se_c2"], ["se_s"], "se_gate", alpha=1 / 6, beta=0.5),
        _node("Mul", ["p1", "se_s"], ["se"], "se_mul"),
        _node("Sub", ["se", "se_s"], ["se2"], "se_sub"),
        _node("AveragePool", ["se2"], ["p2"], "pool2", kernel_shape=(2, 2), strides=(2, 2), pads=(0, 0, 1, 1),
              count_include_pad=False),
        _node("ChannelShuffle", ["p2"], ["sh"], "shuffle", group=2),
        _node("Reshape", ["sh"], ["r1"], "to_nc_hw", shape=(n, c, 4)),
        _node("Softmax", ["r1"], ["sm"], "softmax_hw", axis=2),
        _node("Reshape", ["sm"], ["r2"], "to_flat", shape=(n, c * 4)),
        _node("Gemm", ["r2", "fw", "fb"], ["logits"], "fc"),
        _node("Softmax", ["logits"], ["prob"], "softmax"),
    ]
    params = {"w1": _w(c, 3, 3, 3), "b1": _w(c, seed=1), "se_w1": _w(2, c, 1, 1, seed=2),
              "se_w2": _w(c, 2, 1, 1, seed=3), "fw": _w(5, c * 4, seed=4), "fb": _w(5, seed=5)}
    return Graph("batch_net", nodes, {"x": TensorType((n, 3, h, w))}, ["prob", "sm"], params)


@needs_caffe
@pytest.mark.parametrize("dialect", DIALECTS)
def test_net_reshaped_to_another_batch(dialect: str, tmp_path: Path) -> None:
    """Reshape layers write 0 ("copy") for a kept batch dimension, and the SE
    multiply broadcasts per sample, so a net emitted for batch 2 runs batch 3."""
    g2, g3 = _batch_net(2), _batch_net(3)
    _, files = _lower_emit(g2, dialect)
    net = parse_prototxt(files["net.prototxt"].decode(), get_profile(dialect).schema)
    reshapes = [lay for lay in net.layer if lay.type == "Reshape"]
    assert reshapes and all(lay.reshape_param.shape.dim[0] == 0 for lay in reshapes)
    caffe_net = _load(files, tmp_path)
    f2 = _feeds(g2, "batch2")
    got = _forward(caffe_net, f2, g2.outputs)
    ref = reference.run(g2, f2)
    for o in g2.outputs:
        _assert_close(got[o], ref[o], f"batch 2 {o}")
    caffe_net.blobs["x"].reshape(3, 3, 9, 8)
    caffe_net.reshape()
    f3 = _feeds(g3, "batch3")
    got = _forward(caffe_net, f3, g3.outputs)
    ref = reference.run(g3, f3)
    for o in g3.outputs:
        _assert_close(got[o], ref[o], f"batch 3 {o}")
    # IR layer and tensor names survive into the Caffe net (divergence search lines them up)
    lowered = lower(g2, "caffe", EmitOptions(dialect=dialect))
    assert {t for n in lowered.nodes for t in n.outputs} <= set(caffe_net.blobs)
    assert {n.name for n in g2.nodes if n.op not in ("Clip", "HardSigmoid")} <= {lay.name for lay in net.layer}


# --------------------------------------------------------------------------- bad input
def test_every_ir_op_without_caffe_form_is_listed_at_once() -> None:
    nodes = [
        _node("Relu", ["x"], ["a"], "relu"),
        _node("Transpose", ["a"], ["b"], "to_nhwc", perm=(0, 2, 3, 1)),
        _node("ReduceMean", ["b"], ["c"], "mean_c", axes=(1,)),
        _node("ReduceMax", ["c"], ["d"], "max_c", axes=(1,)),
        _node("Transpose", ["d"], ["e"], "transpose_back", perm=(0, 1, 3, 2)),
    ]
    g = Graph("bad", nodes, {"x": TensorType((1, 2, 3, 4))}, ["e"])
    for dialect in DIALECTS:
        with pytest.raises(UnsupportedOpError) as ei:
            lower(g, "caffe", EmitOptions(dialect=dialect))
        want = {"ReduceMean": ["mean_c"], "ReduceMax": ["max_c"]}
        if not get_profile(dialect).has("transpose"):  # the fork writes Transpose as its Permute layer
            want["Transpose"] = ["to_nhwc", "transpose_back"]
        assert ei.value.ops == want
        msg = str(ei.value)
        names = [n for names in want.values() for n in names]
        assert f"{len(names)} node(s)" in msg and all(n in msg for n in names)
        assert f"({dialect})" in msg and "--to onnx" in msg


def test_ir_op_without_handler_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(HANDLERS, "Relu")
    g = _single("Relu", [(1, 2)])
    g.nodes.append(_node("Relu", ["y0"], ["z"], "relu2"))
    g.outputs = ["z"]
    with pytest.raises(UnsupportedOpError) as ei:
        CaffeBackend().check(g, EmitOptions(dialect="bvlc"))
    assert ei.value.ops == {"Relu": ["relu", "relu2"]}
    with pytest.raises(UnsupportedOpError):
        CaffeBackend().emit(g, "net", EmitOptions(dialect="bvlc"))


@pytest.mark.parametrize("dialect", DIALECTS)
def test_backend_error_names_nodes_dialect_and_way_out(dialect: str) -> None:
    """Constructs with no exact stock-layer form: one BackendError, raised by
    ``lower`` (the backend's check) before any file exists, naming every node,
    the dialect and what to do instead."""
    nodes = [
        _node("Min", ["x", "z"], ["a"], "min_bcast"),
        _node("Relu", ["a"], ["b"], "fine"),
        _node("Mul", ["b", "z"], ["c"], "mul_bcast"),
        _node("Max", ["c", "k"], ["d"], "max_grows"),
    ]
    g = Graph("bad", nodes, {"x": TensorType((2, 1, 4, 1)), "z": TensorType((1, 3, 1, 5))}, ["d"],
              {"k": _w(2, 3, 4, 5)})
    with pytest.raises(BackendError) as ei:
        lower(g, "caffe", EmitOptions(dialect=dialect))
    msg = str(ei.value)
    assert "3 node(s)" in msg and f"dialect '{dialect}'" in msg and "--to onnx" in msg
    for name in ("min_bcast", "mul_bcast", "max_grows"):
        assert f"'{name}'" in msg and "from test node" in msg
    assert "'fine'" not in msg


def test_pad_without_stock_form_names_node() -> None:
    g = chain("pad_reflect", {"x": (1, 2, 5, 5)},
              [("Relu", ["x"], ["r"], "relu", {}),
               ("Pad", ["r"], ["y"], "reflect_pad", {"pads": (1, 1, 1, 1), "mode": "reflect"})], ["y"])()
    for dialect in [d for d in DIALECTS if not get_profile(d).has("pad")]:  # the fork has a Pad layer
        with pytest.raises(BackendError, match=r"(?s)'reflect_pad'.*reflect.*no exact form.*ONNX"):
            lower(g, "caffe", EmitOptions(dialect=dialect))


def test_unknown_dialect() -> None:
    g = _single("Relu", [(1, 2)])
    with pytest.raises(BackendError, match=r"'master'.*bvlc.*ceil-mode"):
        lower(g, "caffe", EmitOptions(dialect="master"))
    with pytest.raises(BackendError, match="'master'"):
        CaffeBackend().emit(g, "net", EmitOptions(dialect="master"))
