"""VGG-A, VGG-16 and VGG-19 as tf_slim 1.1.0 (``nets/vgg.py``) defines them.

* Five stages of 3x3 convs ('SAME', stride 1, biases, relu; ``vgg_arg_scope``),
  scoped ``conv{i}/conv{i}_{j}`` (``slim.repeat``), each followed by a 2x2/2
  max pool ``pool{i}`` ('VALID', slim's default).  Convs per stage: vgg_a
  1,1,2,2,2; vgg_16 2,2,3,3,3; vgg_19 2,2,4,4,4.
* The classifier is convolutional: ``fc6`` a 7x7 'VALID' conv (4096),
  ``fc7`` 1x1 (4096), ``fc8`` 1x1 (classes, no activation); dropout is the
  identity at inference; ``spatial_squeeze`` gives [N, classes].  fc6 needs
  the 7x7 pool5 map of a 224x224 input (224..255).
* No BatchNorm.

Preprocessing: slim's ``vgg_preprocessing`` (short side 256, centre crop 224,
RGB minus the ImageNet mean, no scaling); the zoo's checkpoints have 1000
classes.
"""
from __future__ import annotations

from functools import partial

from . import VGG_PRE, ArchSpec, register
from .layers import SlimNet

#: convs per stage
STAGES: dict[str, tuple[int, ...]] = {
    "vgg_a": (1, 1, 2, 2, 2),
    "vgg_16": (2, 2, 3, 3, 3),
    "vgg_19": (2, 2, 4, 4, 4),
}


def build_vgg(net: SlimNet, name: str) -> str:
    net.require_scope(name, name)
    x = net.input
    for i, n in enumerate(STAGES[name], 1):
        for j in range(1, n + 1):
            x = net.conv2d(x, f"{name}/conv{i}/conv{i}_{j}", 3, 1, "SAME")
        x = net.max_pool2d(x, 2, 2, "VALID", scope=f"{name}/pool{i}")
    x = net.conv2d(x, f"{name}/fc6", 7, 1, "VALID")
    x = net.conv2d(x, f"{name}/fc7", 1, 1, "SAME")
    x = net.conv2d(x, f"{name}/fc8", 1, 1, "SAME", activation=None)
    return net.spatial_squeeze(x, f"{name}/fc8/squeezed", "fc6 is a 7x7 VALID conv over pool5: input 224..255")


for _n in STAGES:
    register(ArchSpec(_n, _n, partial(build_vgg, name=_n), input_size=224, bn_eps=1e-3,
                      logits_var=f"{_n}/fc8/weights", preprocessing=VGG_PRE, resize=256))
