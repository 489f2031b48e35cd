"""Inception-ResNet-v2 (Szegedy et al. 2016) as the TF-slim model zoo defines it.

Mirrors ``research/slim/nets/inception_resnet_v2.py`` of tensorflow/models
(tf_slim does not ship it), with the defaults of the released checkpoint:
``output_stride=16`` (no atrous convs), ``align_feature_maps=False`` (the
stem and reductions use VALID padding), ``activation_fn=relu``.

* stem ``Conv2d_1a_3x3`` .. ``MaxPool_5a_3x3``, ``Mixed_5b``;
* ``slim.repeat(net, 10, block35, scale=0.17)``: scopes ``Repeat/block35_1..10``;
* ``Mixed_6a``; ``Repeat_1/block17_1..20`` with scale 0.10;
* ``Mixed_7a``; ``Repeat_2/block8_1..9`` with scale 0.20, then one more
  ``Block8`` with scale 1.0 and **no** activation;
* ``Conv2d_7b_1x1`` (1536), ``Logits/AvgPool_1a_8x8`` over the whole map,
  flatten, ``Logits/Logits`` fully connected.  ``AuxLogits`` are ignored.

Each residual block computes ``act(x + scale * up)`` where ``up`` is the
block's ``Conv2d_1x1`` (biases, no BatchNorm, no activation) of the
concatenated branches.  BatchNorm: no gamma, epsilon 0.001
(``inception_resnet_v2_arg_scope``).
"""
from __future__ import annotations

from typing import Callable

from xconv.errors import InputFileError

from . import INCEPTION_PRE, ArchSpec, register
from .layers import SlimNet

SCOPE = "InceptionResnetV2"


def _residual(net: SlimNet, x: str, mixed: str, s: str, scale: float, activation: bool) -> str:
    up = net.conv2d(mixed, f"{s}/Conv2d_1x1", 1, activation=None)
    if net.shape(up) != net.shape(x):
        raise InputFileError(f"tf-slim: {s}/Conv2d_1x1 gives {net.shape(up)[1]} channels, the block input "
                             f"has {net.shape(x)[1]}")
    y = net.add(x, net.scale(up, scale, f"{s}/mul"), f"{s}/add")
    return net.relu(y, f"{s}/Relu") if activation else y


def block35(net: SlimNet, x: str, s: str, scale: float, activation: bool = True) -> str:
    b0 = net.conv2d(x, f"{s}/Branch_0/Conv2d_1x1", 1)
    b1 = net.conv2d(x, f"{s}/Branch_1/Conv2d_0a_1x1", 1)
    b1 = net.conv2d(b1, f"{s}/Branch_1/Conv2d_0b_3x3", 3)
    b2 = net.conv2d(x, f"{s}/Branch_2/Conv2d_0a_1x1", 1)
    b2 = net.conv2d(b2, f"{s}/Branch_2/Conv2d_0b_3x3", 3)
    b2 = net.conv2d(b2, f"{s}/Branch_2/Conv2d_0c_3x3", 3)
    return _residual(net, x, net.concat([b0, b1, b2], f"{s}/concat"), s, scale, activation)


def block17(net: SlimNet, x: str, s: str, scale: float, activation: bool = True) -> str:
    b0 = net.conv2d(x, f"{s}/Branch_0/Conv2d_1x1", 1)
    b1 = net.conv2d(x, f"{s}/Branch_1/Conv2d_0a_1x1", 1)
    b1 = net.conv2d(b1, f"{s}/Branch_1/Conv2d_0b_1x7", (1, 7))
    b1 = net.conv2d(b1, f"{s}/Branch_1/Conv2d_0c_7x1", (7, 1))
    return _residual(net, x, net.concat([b0, b1], f"{s}/concat"), s, scale, activation)


def block8(net: SlimNet, x: str, s: str, scale: float, activation: bool = True) -> str:
    b0 = net.conv2d(x, f"{s}/Branch_0/Conv2d_1x1", 1)
    b1 = net.conv2d(x, f"{s}/Branch_1/Conv2d_0a_1x1", 1)
    b1 = net.conv2d(b1, f"{s}/Branch_1/Conv2d_0b_1x3", (1, 3))
    b1 = net.conv2d(b1, f"{s}/Branch_1/Conv2d_0c_3x1", (3, 1))
    return _residual(net, x, net.concat([b0, b1], f"{s}/concat"), s, scale, activation)


Block = Callable[[SlimNet, str, str, float, bool], str]


def _repeat(net: SlimNet, x: str, scope: str, block: Block, name: str, n: int, scale: float) -> str:
    """``slim.repeat(x, n, block, scale=...)``: scopes ``{scope}/{name}_1 .. {name}_n``."""
    for i in range(1, n + 1):
        x = block(net, x, f"{scope}/{name}_{i}", scale, True)
    return x


def inception_resnet_v2_base(net: SlimNet, scope: str = SCOPE) -> str:
    """Up to ``Conv2d_7b_1x1`` (N x 1536 x 8 x 8 at 299)."""
    net.require_scope(scope, "inception_resnet_v2")
    s = scope
    x = net.conv2d(net.input, f"{s}/Conv2d_1a_3x3", 3, 2, "VALID")
    x = net.conv2d(x, f"{s}/Conv2d_2a_3x3", 3, 1, "VALID")
    x = net.conv2d(x, f"{s}/Conv2d_2b_3x3", 3)
    x = net.max_pool2d(x, 3, 2, "VALID", scope=f"{s}/MaxPool_3a_3x3")
    x = net.conv2d(x, f"{s}/Conv2d_3b_1x1", 1, 1, "VALID")
    x = net.conv2d(x, f"{s}/Conv2d_4a_3x3", 3, 1, "VALID")
    x = net.max_pool2d(x, 3, 2, "VALID", scope=f"{s}/MaxPool_5a_3x3")
    # Mixed_5b
    m = f"{s}/Mixed_5b"
    b0 = net.conv2d(x, f"{m}/Branch_0/Conv2d_1x1", 1)
    b1 = net.conv2d(x, f"{m}/Branch_1/Conv2d_0a_1x1", 1)
    b1 = net.conv2d(b1, f"{m}/Branch_1/Conv2d_0b_5x5", 5)
    b2 = net.conv2d(x, f"{m}/Branch_2/Conv2d_0a_1x1", 1)
    b2 = net.conv2d(b2, f"{m}/Branch_2/Conv2d_0b_3x3", 3)
    b2 = net.conv2d(b2, f"{m}/Branch_2/Conv2d_0c_3x3", 3)
    b3 = net.avg_pool2d(x, 3, 1, "SAME", scope=f"{m}/Branch_3/AvgPool_0a_3x3")
    b3 = net.conv2d(b3, f"{m}/Branch_3/Conv2d_0b_1x1", 1)
    x = net.concat([b0, b1, b2, b3], f"{m}/concat")
    x = _repeat(net, x, f"{s}/Repeat", block35, "block35", 10, 0.17)
    # Mixed_6a (output_stride 16: stride 2, no atrous)
    m = f"{s}/Mixed_6a"
    b0 = net.conv2d(x, f"{m}/Branch_0/Conv2d_1a_3x3", 3, 2, "VALID")
    b1 = net.conv2d(x, f"{m}/Branch_1/Conv2d_0a_1x1", 1)
    b1 = net.conv2d(b1, f"{m}/Branch_1/Conv2d_0b_3x3", 3)
    b1 = net.conv2d(b1, f"{m}/Branch_1/Conv2d_1a_3x3", 3, 2, "VALID")
    b2 = net.max_pool2d(x, 3, 2, "VALID", scope=f"{m}/Branch_2/MaxPool_1a_3x3")
    x = net.concat([b0, b1, b2], f"{m}/concat")
    x = _repeat(net, x, f"{s}/Repeat_1", block17, "block17", 20, 0.10)
    # Mixed_7a
    m = f"{s}/Mixed_7a"
    b0 = net.conv2d(x, f"{m}/Branch_0/Conv2d_0a_1x1", 1)
    b0 = net.conv2d(b0, f"{m}/Branch_0/Conv2d_1a_3x3", 3, 2, "VALID")
    b1 = net.conv2d(x, f"{m}/Branch_1/Conv2d_0a_1x1", 1)
    b1 = net.conv2d(b1, f"{m}/Branch_1/Conv2d_1a_3x3", 3, 2, "VALID")
    b2 = net.conv2d(x, f"{m}/Branch_2/Conv2d_0a_1x1", 1)
    b2 = net.conv2d(b2, f"{m}/Branch_2/Conv2d_0b_3x3", 3)
    b2 = net.conv2d(b2, f"{m}/Branch_2/Conv2d_1a_3x3", 3, 2, "VALID")
    b3 = net.max_pool2d(x, 3, 2, "VALID", scope=f"{m}/Branch_3/MaxPool_1a_3x3")
    x = net.concat([b0, b1, b2, b3], f"{m}/concat")
    x = _repeat(net, x, f"{s}/Repeat_2", block8, "block8", 9, 0.20)
    x = block8(net, x, f"{s}/Block8", 1.0, activation=False)
    return net.conv2d(x, f"{s}/Conv2d_7b_1x1", 1)


def inception_resnet_v2(net: SlimNet, scope: str = SCOPE) -> str:
    x = inception_resnet_v2_base(net, scope)
    # Logits/AvgPool_1a_8x8: VALID, kernel = the whole map -> a global average
    x = net.global_avg_pool(x, f"{scope}/Logits/AvgPool_1a_8x8")
    x = net.flatten(x, f"{scope}/Logits/Flatten")
    return net.fully_connected(x, f"{scope}/Logits/Logits")


register(ArchSpec(
    name="inception_resnet_v2", scope=SCOPE, build=inception_resnet_v2, input_size=299, bn_eps=0.001,
    logits_var=f"{SCOPE}/Logits/Logits/weights", preprocessing=INCEPTION_PRE, resize=342))
