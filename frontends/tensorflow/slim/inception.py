"""Inception v1, v2 and v3 as tf_slim 1.1.0 (``nets/inception_v1.py``,
``inception_v2.py``, ``inception_v3.py``) define them.

Shared facts (their arg scopes): every conv has BatchNorm (epsilon 0.001,
``scale=False``: no gamma) and relu; the logits conv has biases and neither.
``depth_multiplier`` and ``min_depth`` only change channel counts, which are
read from the weights, so any multiplier loads.  Dropout is the identity at
inference and the ``AuxLogits`` head of v3 is not part of the inference output
(its variables are ignored).

* v1 (224): everything in the base is stride 1 'SAME' unless stated; the
  head is a 7x7 stride-1 'VALID' average pool (scoped ``MaxPool_0a_7x7``)
  and a 1x1 conv ``Conv2d_0c_1x1``; the 7x7 pool needs the 7x7 Mixed_5c map
  of a 193..224 input.  Mixed_5b's third branch names its 3x3 conv
  ``Conv2d_0a_3x3``.
* v2 (224): stride 1 'SAME' in the base (average pools exclude padding, TF's
  rule); the first layer is ``separable_conv2d(64, 7x7, depth_multiplier=8,
  stride 2)``: depthwise then pointwise, then biases (tf_slim's arg scope
  gives separable convs no normaliser) or BatchNorm, as the checkpoint has
  it; checkpoints made with ``use_separable_conv=False`` have a plain conv.
* v3 (299): the stem is 'VALID' (except Conv2d_2b_3x3), the mixed blocks
  'SAME' except the stride-2 reductions in Mixed_6a / Mixed_7a.
* v2/v3 head: an average pool with kernel ``min(map, 7)`` (v2) or
  ``min(map, 8)`` (v3) per axis (``_reduced_kernel_size_for_small_input``),
  stride 2 (slim's default) 'VALID', scoped ``AvgPool_1a_{kh}x{kw}``, then
  the 1x1 logits conv ``Conv2d_1c_1x1``.

Preprocessing: slim's ``inception_preprocessing`` (RGB scaled to [-1, 1]);
the zoo's checkpoints have 1001 classes (logit 0 is background).  At
evaluation it takes a central 87.5% crop and resizes that to the input size,
which a short-side resize + centre crop approximates as ``resize = size / 0.875``
(342 for 299, 256 for 224): the same 87.5% of a square image.
"""
from __future__ import annotations

from typing import Sequence, Union

from . import CENTRAL_CROP_RESIZE, INCEPTION_PRE, ArchSpec, register
from .layers import SlimNet

BN_EPS = 0.001  # inception_v{1,2,3}_arg_scope

Kernel = Union[int, tuple[int, int]]
# one layer of a branch: ("conv", scope, kernel, stride, padding) / ("max"|"avg", scope, kernel, stride,
# padding) / ("fork", (layer, ...)): the layers of a fork read the same input and are concatenated.
# padding None: the enclosing arg scope's padding.
Layer = tuple


def conv(scope: str, kernel: Kernel, stride: int = 1, padding: str | None = None) -> Layer:
    return ("conv", scope, kernel, stride, padding)


def maxp(scope: str, kernel: int, stride: int = 1, padding: str | None = None) -> Layer:
    return ("max", scope, kernel, stride, padding)


def avgp(scope: str, kernel: int, stride: int = 1, padding: str | None = None) -> Layer:
    return ("avg", scope, kernel, stride, padding)


def fork(*layers: Layer) -> Layer:
    return ("fork", layers)


def run_layer(net: SlimNet, x: str, scope: str, layer: Layer, padding: str) -> str:
    kind = layer[0]
    if kind == "fork":
        outs = [run_layer(net, x, scope, sub, padding) for sub in layer[1]]
        return net.concat(outs, f"{scope}/concat")
    _, name, k, s, pad = layer
    pad = pad or padding
    if kind == "conv":
        return net.conv2d(x, f"{scope}/{name}", k, s, pad)
    if kind == "max":
        return net.max_pool2d(x, k, s, pad, scope=f"{scope}/{name}")
    if kind == "avg":
        return net.avg_pool2d(x, k, s, pad, scope=f"{scope}/{name}")
    raise ValueError(f"layer kind {kind!r}")


def mixed(net: SlimNet, x: str, scope: str, branches: Sequence[Sequence[Layer]], padding: str = "SAME") -> str:
    """An Inception block: ``{scope}/Branch_{i}`` chains, concatenated along channels."""
    outs = []
    for i, branch in enumerate(branches):
        y = x
        for layer in branch:
            y = run_layer(net, y, f"{scope}/Branch_{i}", layer, padding)
        outs.append(y)
    return net.concat(outs, f"{scope}/concat")


def head(net: SlimNet, x: str, scope: str, logits: str, need: str) -> str:
    """The 1x1 logits conv (biases, no BatchNorm, no activation) and ``spatial_squeeze``."""
    x = net.conv2d(x, f"{scope}/Logits/{logits}", 1, 1, "SAME", activation=None)
    return net.spatial_squeeze(x, f"{scope}/Logits/SpatialSqueeze", need)


def reduced_kernel(net: SlimNet, x: str, k: int) -> tuple[int, int]:
    """``_reduced_kernel_size_for_small_input``: the kernel, capped by the map size."""
    _, _, h, w = net.shape(x)
    return (min(h, k), min(w, k))


# ------------------------------------------------------------------ Inception v1
def _v1_mixed(b1_3x3: str = "Conv2d_0b_3x3", b2_3x3: str = "Conv2d_0b_3x3") -> list[list[Layer]]:
    return [[conv("Conv2d_0a_1x1", 1)],
            [conv("Conv2d_0a_1x1", 1), conv(b1_3x3, 3)],
            [conv("Conv2d_0a_1x1", 1), conv(b2_3x3, 3)],
            [maxp("MaxPool_0a_3x3", 3), conv("Conv2d_0b_1x1", 1)]]


def build_inception_v1(net: SlimNet) -> str:
    s = "InceptionV1"
    net.require_scope(s, "inception_v1")
    x = net.conv2d(net.input, f"{s}/Conv2d_1a_7x7", 7, 2, "SAME")
    x = net.max_pool2d(x, 3, 2, "SAME", scope=f"{s}/MaxPool_2a_3x3")
    x = net.conv2d(x, f"{s}/Conv2d_2b_1x1", 1, 1, "SAME")
    x = net.conv2d(x, f"{s}/Conv2d_2c_3x3", 3, 1, "SAME")
    x = net.max_pool2d(x, 3, 2, "SAME", scope=f"{s}/MaxPool_3a_3x3")
    for m in ("Mixed_3b", "Mixed_3c"):
        x = mixed(net, x, f"{s}/{m}", _v1_mixed())
    x = net.max_pool2d(x, 3, 2, "SAME", scope=f"{s}/MaxPool_4a_3x3")
    for m in ("Mixed_4b", "Mixed_4c", "Mixed_4d", "Mixed_4e", "Mixed_4f"):
        x = mixed(net, x, f"{s}/{m}", _v1_mixed())
    x = net.max_pool2d(x, 2, 2, "SAME", scope=f"{s}/MaxPool_5a_2x2")
    x = mixed(net, x, f"{s}/Mixed_5b", _v1_mixed(b2_3x3="Conv2d_0a_3x3"))
    x = mixed(net, x, f"{s}/Mixed_5c", _v1_mixed())
    x = net.avg_pool2d(x, 7, 1, "VALID", scope=f"{s}/Logits/MaxPool_0a_7x7")
    return head(net, x, s, "Conv2d_0c_1x1", "the 7x7 VALID average pool needs a 7x7 Mixed_5c map: input 193..224")


# ------------------------------------------------------------------ Inception v2
def _v2_mixed(pool: str = "avg") -> list[list[Layer]]:
    p = avgp("AvgPool_0a_3x3", 3) if pool == "avg" else maxp("MaxPool_0a_3x3", 3)
    return [[conv("Conv2d_0a_1x1", 1)],
            [conv("Conv2d_0a_1x1", 1), conv("Conv2d_0b_3x3", 3)],
            [conv("Conv2d_0a_1x1", 1), conv("Conv2d_0b_3x3", 3), conv("Conv2d_0c_3x3", 3)],
            [p, conv("Conv2d_0b_1x1", 1)]]


def _v2_reduction() -> list[list[Layer]]:
    return [[conv("Conv2d_0a_1x1", 1), conv("Conv2d_1a_3x3", 3, 2)],
            [conv("Conv2d_0a_1x1", 1), conv("Conv2d_0b_3x3", 3), conv("Conv2d_1a_3x3", 3, 2)],
            [maxp("MaxPool_1a_3x3", 3, 2)]]


def build_inception_v2(net: SlimNet) -> str:
    s = "InceptionV2"
    net.require_scope(s, "inception_v2")
    first = f"{s}/Conv2d_1a_7x7"
    if net.has(f"{first}/depthwise_weights"):
        x = net.separable_conv2d(net.input, first, 2, "SAME")
    else:  # use_separable_conv=False
        x = net.conv2d(net.input, first, 7, 2, "SAME")
    x = net.max_pool2d(x, 3, 2, "SAME", scope=f"{s}/MaxPool_2a_3x3")
    x = net.conv2d(x, f"{s}/Conv2d_2b_1x1", 1, 1, "SAME")
    x = net.conv2d(x, f"{s}/Conv2d_2c_3x3", 3, 1, "SAME")
    x = net.max_pool2d(x, 3, 2, "SAME", scope=f"{s}/MaxPool_3a_3x3")
    x = mixed(net, x, f"{s}/Mixed_3b", _v2_mixed())
    x = mixed(net, x, f"{s}/Mixed_3c", _v2_mixed())
    x = mixed(net, x, f"{s}/Mixed_4a", _v2_reduction())
    for m in ("Mixed_4b", "Mixed_4c", "Mixed_4d", "Mixed_4e"):
        x = mixed(net, x, f"{s}/{m}", _v2_mixed())
    x = mixed(net, x, f"{s}/Mixed_5a", _v2_reduction())
    x = mixed(net, x, f"{s}/Mixed_5b", _v2_mixed())
    x = mixed(net, x, f"{s}/Mixed_5c", _v2_mixed("max"))
    k = reduced_kernel(net, x, 7)
    x = net.avg_pool2d(x, k, 2, "VALID", scope=f"{s}/Logits/AvgPool_1a_{k[0]}x{k[1]}")
    return head(net, x, s, "Conv2d_1c_1x1", "the head pools min(map, 7) with stride 2: input up to 256")


# ------------------------------------------------------------------ Inception v3
def _v3_mixed_5(b1: tuple[str, str] = ("Conv2d_0a_1x1", "Conv2d_0b_5x5")) -> list[list[Layer]]:
    return [[conv("Conv2d_0a_1x1", 1)],
            [conv(b1[0], 1), conv(b1[1], 5)],
            [conv("Conv2d_0a_1x1", 1), conv("Conv2d_0b_3x3", 3), conv("Conv2d_0c_3x3", 3)],
            [avgp("AvgPool_0a_3x3", 3), conv("Conv2d_0b_1x1", 1)]]


def _v3_mixed_6() -> list[list[Layer]]:
    return [[conv("Conv2d_0a_1x1", 1)],
            [conv("Conv2d_0a_1x1", 1), conv("Conv2d_0b_1x7", (1, 7)), conv("Conv2d_0c_7x1", (7, 1))],
            [conv("Conv2d_0a_1x1", 1), conv("Conv2d_0b_7x1", (7, 1)), conv("Conv2d_0c_1x7", (1, 7)),
             conv("Conv2d_0d_7x1", (7, 1)), conv("Conv2d_0e_1x7", (1, 7))],
            [avgp("AvgPool_0a_3x3", 3), conv("Conv2d_0b_1x1", 1)]]


def _v3_mixed_7(b1_3x1: str) -> list[list[Layer]]:
    return [[conv("Conv2d_0a_1x1", 1)],
            [conv("Conv2d_0a_1x1", 1), fork(conv("Conv2d_0b_1x3", (1, 3)), conv(b1_3x1, (3, 1)))],
            [conv("Conv2d_0a_1x1", 1), conv("Conv2d_0b_3x3", 3),
             fork(conv("Conv2d_0c_1x3", (1, 3)), conv("Conv2d_0d_3x1", (3, 1)))],
            [avgp("AvgPool_0a_3x3", 3), conv("Conv2d_0b_1x1", 1)]]


def build_inception_v3(net: SlimNet) -> str:
    s = "InceptionV3"
    net.require_scope(s, "inception_v3")
    x = net.conv2d(net.input, f"{s}/Conv2d_1a_3x3", 3, 2, "VALID")
    x = net.conv2d(x, f"{s}/Conv2d_2a_3x3", 3, 1, "VALID")
    x = net.conv2d(x, f"{s}/Conv2d_2b_3x3", 3, 1, "SAME")
    x = net.max_pool2d(x, 3, 2, "VALID", scope=f"{s}/MaxPool_3a_3x3")
    x = net.conv2d(x, f"{s}/Conv2d_3b_1x1", 1, 1, "VALID")
    x = net.conv2d(x, f"{s}/Conv2d_4a_3x3", 3, 1, "VALID")
    x = net.max_pool2d(x, 3, 2, "VALID", scope=f"{s}/MaxPool_5a_3x3")
    x = mixed(net, x, f"{s}/Mixed_5b", _v3_mixed_5())
    x = mixed(net, x, f"{s}/Mixed_5c", _v3_mixed_5(("Conv2d_0b_1x1", "Conv_1_0c_5x5")))
    x = mixed(net, x, f"{s}/Mixed_5d", _v3_mixed_5())
    x = mixed(net, x, f"{s}/Mixed_6a", [
        [conv("Conv2d_1a_1x1", 3, 2, "VALID")],
        [conv("Conv2d_0a_1x1", 1), conv("Conv2d_0b_3x3", 3), conv("Conv2d_1a_1x1", 3, 2, "VALID")],
        [maxp("MaxPool_1a_3x3", 3, 2, "VALID")]])
    for m in ("Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e"):
        x = mixed(net, x, f"{s}/{m}", _v3_mixed_6())
    x = mixed(net, x, f"{s}/Mixed_7a", [
        [conv("Conv2d_0a_1x1", 1), conv("Conv2d_1a_3x3", 3, 2, "VALID")],
        [conv("Conv2d_0a_1x1", 1), conv("Conv2d_0b_1x7", (1, 7)), conv("Conv2d_0c_7x1", (7, 1)),
         conv("Conv2d_1a_3x3", 3, 2, "VALID")],
        [maxp("MaxPool_1a_3x3", 3, 2, "VALID")]])
    x = mixed(net, x, f"{s}/Mixed_7b", _v3_mixed_7("Conv2d_0b_3x1"))
    x = mixed(net, x, f"{s}/Mixed_7c", _v3_mixed_7("Conv2d_0c_3x1"))
    k = reduced_kernel(net, x, 8)
    x = net.avg_pool2d(x, k, 2, "VALID", scope=f"{s}/Logits/AvgPool_1a_{k[0]}x{k[1]}")
    return head(net, x, s, "Conv2d_1c_1x1", "the head pools min(map, 8) with stride 2: input 75..362")


register(ArchSpec("inception_v1", "InceptionV1", build_inception_v1, input_size=224, bn_eps=BN_EPS,
                  logits_var="InceptionV1/Logits/Conv2d_0c_1x1/weights", preprocessing=INCEPTION_PRE,
                  resize=CENTRAL_CROP_RESIZE[224]))
register(ArchSpec("inception_v2", "InceptionV2", build_inception_v2, input_size=224, bn_eps=BN_EPS,
                  logits_var="InceptionV2/Logits/Conv2d_1c_1x1/weights", preprocessing=INCEPTION_PRE,
                  resize=CENTRAL_CROP_RESIZE[224]))
register(ArchSpec("inception_v3", "InceptionV3", build_inception_v3, input_size=299, bn_eps=BN_EPS,
                  logits_var="InceptionV3/Logits/Conv2d_1c_1x1/weights", preprocessing=INCEPTION_PRE,
                  resize=CENTRAL_CROP_RESIZE[299]))
