"""MobileNet v1 and v2 as the TF-slim model zoo defines them.

tf_slim does not ship these; they mirror tensorflow/models
``research/slim/nets/mobilenet_v1.py`` and ``research/slim/nets/mobilenet/``
(``mobilenet_v2.py``, ``mobilenet.py``, ``conv_blocks.py``) with the
defaults of the released classification checkpoints:

* ``use_explicit_padding=False``: every conv and depthwise conv is SAME
  (TF's asymmetric padding, the extra pixel at the end), no ``tf.pad``;
* every conv and depthwise conv has BatchNorm with gamma (``scale=True``),
  epsilon 0.001 (slim's default, which neither arg scope overrides) and
  ReLU6, except v2's ``project`` convs (no activation) and the logits;
* channel counts are read from the weights, so every depth multiplier
  (0.25 .. 1.4, v2's ``finegrain_classification_mode``, ``divisible_by``
  rounding) loads without being told; strides and the block order are the
  architecture's (``_CONV_DEFS`` of v1, ``V2_DEF`` of v2);
* the logits are a 1x1 conv ``Logits/Conv2d_1c_1x1`` (with biases) on the
  pooled features, squeezed to N x classes (1001 in the released models).
"""
from __future__ import annotations

from xconv.errors import InputFileError

from . import INCEPTION_PRE, ArchSpec, register
from .layers import SlimNet

V1_SCOPE = "MobilenetV1"
V2_SCOPE = "MobilenetV2"

#: MobileNet v1 ``_CONV_DEFS``: the stride of Conv2d_0 and of each depthwise separable layer 1..13
V1_STRIDES = (2, 1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1)

#: MobileNet v2 ``V2_DEF``: the depthwise stride of expanded_conv, expanded_conv_1 .. expanded_conv_16
V2_STRIDES = (1, 2, 1, 2, 1, 1, 2, 1, 1, 1, 1, 1, 1, 2, 1, 1, 1)


def _logits(net: SlimNet, x: str, scope: str, need: str = "") -> str:
    y = net.conv2d(x, f"{scope}/Logits/Conv2d_1c_1x1", 1, activation=None)
    return net.spatial_squeeze(y, f"{scope}/Logits/SpatialSqueeze", need)


def mobilenet_v1(net: SlimNet, scope: str = V1_SCOPE) -> str:
    net.require_scope(scope, "mobilenet_v1")
    x = net.conv2d(net.input, f"{scope}/Conv2d_0", 3, V1_STRIDES[0], activation="relu6")
    for i, stride in enumerate(V1_STRIDES[1:], start=1):
        x = net.depthwise_conv2d(x, f"{scope}/Conv2d_{i}_depthwise", stride, activation="relu6")
        x = net.conv2d(x, f"{scope}/Conv2d_{i}_pointwise", 1, activation="relu6")
    extra = f"{scope}/Conv2d_{len(V1_STRIDES)}_depthwise/depthwise_weights"
    if net.has(extra):
        raise InputFileError(f"tf-slim: the checkpoint has {extra}: not the standard MobileNet v1 "
                             f"({len(V1_STRIDES) - 1} separable layers)")
    # Logits/AvgPool_1a: slim.avg_pool2d(kernel=min(map, 7x7), stride 2, VALID); the whole map up to 7x7
    _, _, h, w = net.shape(x)
    k = (min(h, 7), min(w, 7))
    if k == (h, w):
        x = net.global_avg_pool(x, f"{scope}/Logits/AvgPool_1a")
    else:
        x = net.avg_pool2d(x, k, 2, "VALID", scope=f"{scope}/Logits/AvgPool_1a")
    return _logits(net, x, scope, "MobileNet v1's fixed 7x7/2 pool gives 1x1 up to 256x256 inputs")


def _expanded_conv(net: SlimNet, x: str, s: str, stride: int) -> str:
    """``conv_blocks.expanded_conv``: [expand 1x1] -> depthwise -> project 1x1 (linear) [+ input].

    ``expand`` exists only when the expansion is wider than the input (not in the first block)."""
    y = x
    if net.has(f"{s}/expand/weights"):
        y = net.conv2d(y, f"{s}/expand", 1, activation="relu6")
    y = net.depthwise_conv2d(y, f"{s}/depthwise", stride, activation="relu6")
    y = net.conv2d(y, f"{s}/project", 1, activation=None)
    if stride == 1 and net.shape(y)[1] == net.shape(x)[1]:
        y = net.add(y, x, f"{s}/add")
    return y


def mobilenet_v2(net: SlimNet, scope: str = V2_SCOPE) -> str:
    net.require_scope(scope, "mobilenet_v2")
    x = net.conv2d(net.input, f"{scope}/Conv", 3, 2, activation="relu6")
    for i, stride in enumerate(V2_STRIDES):
        x = _expanded_conv(net, x, f"{scope}/expanded_conv" + (f"_{i}" if i else ""), stride)
    extra = f"{scope}/expanded_conv_{len(V2_STRIDES)}/project/weights"
    if net.has(extra):
        raise InputFileError(f"tf-slim: the checkpoint has {extra}: not the standard MobileNet v2 "
                             f"({len(V2_STRIDES)} expanded_conv blocks)")
    x = net.conv2d(x, f"{scope}/Conv_1", 1, activation="relu6")
    # mobilenet.global_pool: avg_pool with the whole map as its kernel
    x = net.global_avg_pool(x, f"{scope}/Logits/AvgPool")
    return _logits(net, x, scope)


register(ArchSpec(
    name="mobilenet_v1", scope=V1_SCOPE, build=mobilenet_v1, input_size=224, bn_eps=0.001,
    logits_var=f"{V1_SCOPE}/Logits/Conv2d_1c_1x1/weights", preprocessing=INCEPTION_PRE, resize=256))
register(ArchSpec(
    name="mobilenet_v2", scope=V2_SCOPE, build=mobilenet_v2, input_size=224, bn_eps=0.001,
    logits_var=f"{V2_SCOPE}/Logits/Conv2d_1c_1x1/weights", preprocessing=INCEPTION_PRE, resize=256))
