"""Inception-v4 (Szegedy et al. 2016) as the TF-slim model zoo defines it.

Mirrors ``research/slim/nets/inception_v4.py`` of tensorflow/models scope by
scope (tf_slim does not ship it): stem ``Conv2d_1a_3x3`` .. ``Mixed_5a``,
4 x Inception-A (``Mixed_5b..e``), Reduction-A (``Mixed_6a``), 7 x
Inception-B (``Mixed_6b..h``), Reduction-B (``Mixed_7a``), 3 x Inception-C
(``Mixed_7b..d``), then ``Logits``: an average pool over the whole map (a
VALID pool whose kernel is the map's size), ``PreLogitsFlatten`` and the
``Logits/Logits`` fully connected layer (1001 classes in the released
checkpoint).  The ``AuxLogits`` head is training-only and ignored.

Inside the network every conv/pool defaults to stride 1 and SAME padding;
convs carry BatchNorm without gamma (``inception_utils.inception_arg_scope``:
``scale=False``, epsilon 0.001) and ReLU.  Whether a layer has gamma/biases is
read from the checkpoint by :class:`SlimNet`.
"""
from __future__ import annotations

from . import INCEPTION_PRE, ArchSpec, register
from .layers import SlimNet

SCOPE = "InceptionV4"


def _block_a(net: SlimNet, x: str, s: str) -> str:
    b0 = net.conv2d(x, f"{s}/Branch_0/Conv2d_0a_1x1", 1)
    b1 = net.conv2d(x, f"{s}/Branch_1/Conv2d_0a_1x1", 1)
    b1 = net.conv2d(b1, f"{s}/Branch_1/Conv2d_0b_3x3", 3)
    b2 = net.conv2d(x, f"{s}/Branch_2/Conv2d_0a_1x1", 1)
    b2 = net.conv2d(b2, f"{s}/Branch_2/Conv2d_0b_3x3", 3)
    b2 = net.conv2d(b2, f"{s}/Branch_2/Conv2d_0c_3x3", 3)
    b3 = net.avg_pool2d(x, 3, 1, "SAME", scope=f"{s}/Branch_3/AvgPool_0a_3x3")
    b3 = net.conv2d(b3, f"{s}/Branch_3/Conv2d_0b_1x1", 1)
    return net.concat([b0, b1, b2, b3], f"{s}/concat")


def _reduction_a(net: SlimNet, x: str, s: str) -> str:
    b0 = net.conv2d(x, f"{s}/Branch_0/Conv2d_1a_3x3", 3, 2, "VALID")
    b1 = net.conv2d(x, f"{s}/Branch_1/Conv2d_0a_1x1", 1)
    b1 = net.conv2d(b1, f"{s}/Branch_1/Conv2d_0b_3x3", 3)
    b1 = net.conv2d(b1, f"{s}/Branch_1/Conv2d_1a_3x3", 3, 2, "VALID")
    b2 = net.max_pool2d(x, 3, 2, "VALID", scope=f"{s}/Branch_2/MaxPool_1a_3x3")
    return net.concat([b0, b1, b2], f"{s}/concat")


def _block_b(net: SlimNet, x: str, s: str) -> str:
    b0 = net.conv2d(x, f"{s}/Branch_0/Conv2d_0a_1x1", 1)
    b1 = net.conv2d(x, f"{s}/Branch_1/Conv2d_0a_1x1", 1)
    b1 = net.conv2d(b1, f"{s}/Branch_1/Conv2d_0b_1x7", (1, 7))
    b1 = net.conv2d(b1, f"{s}/Branch_1/Conv2d_0c_7x1", (7, 1))
    b2 = net.conv2d(x, f"{s}/Branch_2/Conv2d_0a_1x1", 1)
    b2 = net.conv2d(b2, f"{s}/Branch_2/Conv2d_0b_7x1", (7, 1))
    b2 = net.conv2d(b2, f"{s}/Branch_2/Conv2d_0c_1x7", (1, 7))
    b2 = net.conv2d(b2, f"{s}/Branch_2/Conv2d_0d_7x1", (7, 1))
    b2 = net.conv2d(b2, f"{s}/Branch_2/Conv2d_0e_1x7", (1, 7))
    b3 = net.avg_pool2d(x, 3, 1, "SAME", scope=f"{s}/Branch_3/AvgPool_0a_3x3")
    b3 = net.conv2d(b3, f"{s}/Branch_3/Conv2d_0b_1x1", 1)
    return net.concat([b0, b1, b2, b3], f"{s}/concat")


def _reduction_b(net: SlimNet, x: str, s: str) -> str:
    b0 = net.conv2d(x, f"{s}/Branch_0/Conv2d_0a_1x1", 1)
    b0 = net.conv2d(b0, f"{s}/Branch_0/Conv2d_1a_3x3", 3, 2, "VALID")
    b1 = net.conv2d(x, f"{s}/Branch_1/Conv2d_0a_1x1", 1)
    b1 = net.conv2d(b1, f"{s}/Branch_1/Conv2d_0b_1x7", (1, 7))
    b1 = net.conv2d(b1, f"{s}/Branch_1/Conv2d_0c_7x1", (7, 1))
    b1 = net.conv2d(b1, f"{s}/Branch_1/Conv2d_1a_3x3", 3, 2, "VALID")
    b2 = net.max_pool2d(x, 3, 2, "VALID", scope=f"{s}/Branch_2/MaxPool_1a_3x3")
    return net.concat([b0, b1, b2], f"{s}/concat")


def _block_c(net: SlimNet, x: str, s: str) -> str:
    b0 = net.conv2d(x, f"{s}/Branch_0/Conv2d_0a_1x1", 1)
    b1 = net.conv2d(x, f"{s}/Branch_1/Conv2d_0a_1x1", 1)
    b1 = net.concat([net.conv2d(b1, f"{s}/Branch_1/Conv2d_0b_1x3", (1, 3)),
                     net.conv2d(b1, f"{s}/Branch_1/Conv2d_0c_3x1", (3, 1))], f"{s}/Branch_1/concat")
    b2 = net.conv2d(x, f"{s}/Branch_2/Conv2d_0a_1x1", 1)
    b2 = net.conv2d(b2, f"{s}/Branch_2/Conv2d_0b_3x1", (3, 1))
    b2 = net.conv2d(b2, f"{s}/Branch_2/Conv2d_0c_1x3", (1, 3))
    b2 = net.concat([net.conv2d(b2, f"{s}/Branch_2/Conv2d_0d_1x3", (1, 3)),
                     net.conv2d(b2, f"{s}/Branch_2/Conv2d_0e_3x1", (3, 1))], f"{s}/Branch_2/concat")
    b3 = net.avg_pool2d(x, 3, 1, "SAME", scope=f"{s}/Branch_3/AvgPool_0a_3x3")
    b3 = net.conv2d(b3, f"{s}/Branch_3/Conv2d_0b_1x1", 1)
    return net.concat([b0, b1, b2, b3], f"{s}/concat")


def inception_v4_base(net: SlimNet, scope: str = SCOPE) -> str:
    """``inception_v4_base`` up to ``Mixed_7d`` (N x 1536 x 8 x 8 at 299)."""
    net.require_scope(scope, "inception_v4")
    s = scope
    x = net.conv2d(net.input, f"{s}/Conv2d_1a_3x3", 3, 2, "VALID")
    x = net.conv2d(x, f"{s}/Conv2d_2a_3x3", 3, 1, "VALID")
    x = net.conv2d(x, f"{s}/Conv2d_2b_3x3", 3)
    # Mixed_3a
    b0 = net.max_pool2d(x, 3, 2, "VALID", scope=f"{s}/Mixed_3a/Branch_0/MaxPool_0a_3x3")
    b1 = net.conv2d(x, f"{s}/Mixed_3a/Branch_1/Conv2d_0a_3x3", 3, 2, "VALID")
    x = net.concat([b0, b1], f"{s}/Mixed_3a/concat")
    # Mixed_4a
    m = f"{s}/Mixed_4a"
    b0 = net.conv2d(x, f"{m}/Branch_0/Conv2d_0a_1x1", 1)
    b0 = net.conv2d(b0, f"{m}/Branch_0/Conv2d_1a_3x3", 3, 1, "VALID")
    b1 = net.conv2d(x, f"{m}/Branch_1/Conv2d_0a_1x1", 1)
    b1 = net.conv2d(b1, f"{m}/Branch_1/Conv2d_0b_1x7", (1, 7))
    b1 = net.conv2d(b1, f"{m}/Branch_1/Conv2d_0c_7x1", (7, 1))
    b1 = net.conv2d(b1, f"{m}/Branch_1/Conv2d_1a_3x3", 3, 1, "VALID")
    x = net.concat([b0, b1], f"{m}/concat")
    # Mixed_5a
    m = f"{s}/Mixed_5a"
    b0 = net.conv2d(x, f"{m}/Branch_0/Conv2d_1a_3x3", 3, 2, "VALID")
    b1 = net.max_pool2d(x, 3, 2, "VALID", scope=f"{m}/Branch_1/MaxPool_1a_3x3")
    x = net.concat([b0, b1], f"{m}/concat")
    for c in "bcde":
        x = _block_a(net, x, f"{s}/Mixed_5{c}")
    x = _reduction_a(net, x, f"{s}/Mixed_6a")
    for c in "bcdefgh":
        x = _block_b(net, x, f"{s}/Mixed_6{c}")
    x = _reduction_b(net, x, f"{s}/Mixed_7a")
    for c in "bcd":
        x = _block_c(net, x, f"{s}/Mixed_7{c}")
    return x


def inception_v4(net: SlimNet, scope: str = SCOPE) -> str:
    x = inception_v4_base(net, scope)
    # Logits/AvgPool_1a: a VALID average pool with the whole map as its kernel = a global average
    x = net.global_avg_pool(x, f"{scope}/Logits/AvgPool_1a")
    x = net.flatten(x, f"{scope}/Logits/PreLogitsFlatten")
    return net.fully_connected(x, f"{scope}/Logits/Logits")


register(ArchSpec(
    name="inception_v4", scope=SCOPE, build=inception_v4, input_size=299, bn_eps=0.001,
    logits_var=f"{SCOPE}/Logits/Logits/weights", preprocessing=INCEPTION_PRE, resize=342))
