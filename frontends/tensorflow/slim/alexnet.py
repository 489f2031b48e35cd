"""AlexNet v2 and OverFeat as tf_slim 1.1.0 (``nets/alexnet.py``, ``nets/overfeat.py``) define them.

Both use convs with biases and relu, 'SAME' unless stated, max pools 'VALID'
(their arg scopes), no BatchNorm, and a convolutional classifier (dropout is
the identity at inference; ``spatial_squeeze`` gives [N, classes]).

* alexnet_v2 (224): conv1 11x11/4 'VALID' (64), pool1 3x3/2, conv2 5x5 (192),
  pool2 3x3/2, conv3 3x3 (384), conv4 3x3 (384), conv5 3x3 (256), pool5 3x3/2,
  fc6 5x5 'VALID' (4096), fc7 1x1 (4096), fc8 1x1 (classes, no activation).
* overfeat (231): conv1 11x11/4 'VALID' (64), pool1 2x2/2, conv2 5x5 'VALID'
  (256), pool2 2x2/2, conv3 3x3 (512), conv4 3x3 (1024), conv5 3x3 (1024),
  pool5 2x2/2, fc6 6x6 'VALID' (3072), fc7 1x1 (4096), fc8 1x1.

The slim zoo released no checkpoints of these two and its preprocessing
factory names none for them: VGG preprocessing (the other plain convnets')
is the default here.
"""
from __future__ import annotations

from . import VGG_PRE, ArchSpec, register
from .layers import SlimNet


def build_alexnet_v2(net: SlimNet) -> str:
    s = "alexnet_v2"
    net.require_scope(s, s)
    x = net.conv2d(net.input, f"{s}/conv1", 11, 4, "VALID")
    x = net.max_pool2d(x, 3, 2, "VALID", scope=f"{s}/pool1")
    x = net.conv2d(x, f"{s}/conv2", 5, 1, "SAME")
    x = net.max_pool2d(x, 3, 2, "VALID", scope=f"{s}/pool2")
    x = net.conv2d(x, f"{s}/conv3", 3, 1, "SAME")
    x = net.conv2d(x, f"{s}/conv4", 3, 1, "SAME")
    x = net.conv2d(x, f"{s}/conv5", 3, 1, "SAME")
    x = net.max_pool2d(x, 3, 2, "VALID", scope=f"{s}/pool5")
    x = net.conv2d(x, f"{s}/fc6", 5, 1, "VALID")
    x = net.conv2d(x, f"{s}/fc7", 1, 1, "SAME")
    x = net.conv2d(x, f"{s}/fc8", 1, 1, "SAME", activation=None)
    return net.spatial_squeeze(x, f"{s}/fc8/squeezed", "fc6 is a 5x5 VALID conv over pool5: input 195..226")


def build_overfeat(net: SlimNet) -> str:
    s = "overfeat"
    net.require_scope(s, s)
    x = net.conv2d(net.input, f"{s}/conv1", 11, 4, "VALID")
    x = net.max_pool2d(x, 2, 2, "VALID", scope=f"{s}/pool1")
    x = net.conv2d(x, f"{s}/conv2", 5, 1, "VALID")
    x = net.max_pool2d(x, 2, 2, "VALID", scope=f"{s}/pool2")
    x = net.conv2d(x, f"{s}/conv3", 3, 1, "SAME")
    x = net.conv2d(x, f"{s}/conv4", 3, 1, "SAME")
    x = net.conv2d(x, f"{s}/conv5", 3, 1, "SAME")
    x = net.max_pool2d(x, 2, 2, "VALID", scope=f"{s}/pool5")
    x = net.conv2d(x, f"{s}/fc6", 6, 1, "VALID")
    x = net.conv2d(x, f"{s}/fc7", 1, 1, "SAME")
    x = net.conv2d(x, f"{s}/fc8", 1, 1, "SAME", activation=None)
    return net.spatial_squeeze(x, f"{s}/fc8/squeezed", "fc6 is a 6x6 VALID conv over pool5: input 231..262")


register(ArchSpec("alexnet_v2", "alexnet_v2", build_alexnet_v2, input_size=224, bn_eps=1e-3,
                  logits_var="alexnet_v2/fc8/weights", preprocessing=VGG_PRE, resize=256))
register(ArchSpec("overfeat", "overfeat", build_overfeat, input_size=231, bn_eps=1e-3,
                  logits_var="overfeat/fc8/weights", preprocessing=VGG_PRE, resize=256))
