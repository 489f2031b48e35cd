"""ResNet v1 and v2 (50/101/152/200) as tf_slim 1.1.0 defines them.

Facts from ``tf_slim/nets/resnet_utils.py``, ``resnet_v1.py`` and
``resnet_v2.py`` (``output_stride=None``, ``global_pool=True``):

* ``conv2d_same``: stride 1 is a 'SAME' conv; stride > 1 pads explicitly
  (``pad_beg = (k - 1) // 2``, the rest at the end) and convolves 'VALID'.
* Root: ``conv1`` 7x7/2 (conv2d_same, 64), ``pool1`` 3x3/2 max pool 'SAME'
  (``resnet_arg_scope`` sets the pool padding).  In v2 ``conv1`` has no
  BatchNorm and no activation (it has biases).
* Blocks: four, each ``block{i}/unit_{j}/bottleneck_v{1,2}``; depth 4*base,
  bottleneck depth = base (64, 128, 256, 512); the block's stride (2, 2, 2, 1)
  sits in its **last** unit, inside the 3x3 ``conv2`` (conv2d_same) and the
  projection ``shortcut`` (a 1x1 conv with that stride).  When the unit's
  input already has the output depth the shortcut is ``subsample``: the input
  itself, or a 1x1 max pool with the stride.
* v1 unit: conv1 1x1 -> conv2 3x3 -> conv3 1x1 (no activation), BN after each
  conv, ``relu(shortcut + residual)``.
* v2 unit: ``preact`` = relu(BN(x)); the projection shortcut reads ``preact``
  (conv with biases, no BN) while the subsample shortcut reads ``x``; conv1
  and conv2 have BN+relu, conv3 has biases and no BN; output = shortcut +
  residual (no activation).  ``postnorm`` (BN + relu) follows the last block.
* Head: ``pool5`` = mean over H, W (keep dims), ``logits`` = 1x1 conv with
  biases and no activation.  tf_slim 1.1.0 returns the [N, 1, 1, classes]
  logits unsqueezed; the IR's output is the squeezed [N, classes].
* BatchNorm: ``resnet_arg_scope`` epsilon 1e-5, ``scale=True`` (gamma).

Preprocessing: the slim zoo's resnet_v1 checkpoints use VGG preprocessing
(short side 256, centre crop 224, RGB minus the ImageNet mean); its resnet_v2
checkpoints (1001 classes) use Inception preprocessing at 299 (slim
README: "ResNet V2 models use Inception pre-processing and input image size
of 299").  Inception preprocessing takes a central 87.5% crop and then
resizes it; ``resize = 342`` (short side, then a 299 centre crop) takes the same
87.5% of a square image.
"""
from __future__ import annotations

from functools import partial

from xconv.errors import InputFileError

from . import CENTRAL_CROP_RESIZE, INCEPTION_PRE, VGG_PRE, ArchSpec, register
from .layers import SlimNet

#: units per block for each depth
UNITS: dict[int, tuple[int, int, int, int]] = {
    50: (3, 4, 6, 3),
    101: (3, 4, 23, 3),
    152: (3, 8, 36, 3),
    200: (3, 24, 36, 3),
}
BASE_DEPTHS = (64, 128, 256, 512)
BLOCK_STRIDES = (2, 2, 2, 1)
BN_EPS = 1e-5  # resnet_utils.resnet_arg_scope(batch_norm_epsilon=1e-5)


def conv2d_same(net: SlimNet, x: str, scope: str, kernel: int, stride: int,
                activation: str | None = "relu") -> str:
    """``resnet_utils.conv2d_same``: 'SAME' at stride 1, explicit zero pad + 'VALID' above."""
    if stride == 1:
        return net.conv2d(x, scope, kernel, 1, "SAME", activation=activation)
    beg = (kernel - 1) // 2
    end = kernel - 1 - beg
    x = net.pad(x, (beg, beg, end, end), f"{scope}/Pad")
    return net.conv2d(x, scope, kernel, stride, "VALID", activation=activation)


def subsample(net: SlimNet, x: str, stride: int, scope: str) -> str:
    """``resnet_utils.subsample``: the input, or a 1x1 max pool with the stride ('SAME': never pads)."""
    if stride == 1:
        return x
    return net.max_pool2d(x, 1, stride, "SAME", scope=scope)


def bottleneck_v1(net: SlimNet, x: str, scope: str, depth: int, depth_bottleneck: int, stride: int) -> str:
    if net.shape(x)[1] == depth:
        shortcut = subsample(net, x, stride, f"{scope}/shortcut")
    else:
        shortcut = net.conv2d(x, f"{scope}/shortcut", 1, stride, activation=None)
    r = net.conv2d(x, f"{scope}/conv1", 1, 1)
    r = conv2d_same(net, r, f"{scope}/conv2", 3, stride)
    r = net.conv2d(r, f"{scope}/conv3", 1, 1, activation=None)
    return net.relu(net.add(shortcut, r, f"{scope}/add"), f"{scope}/Relu")


def bottleneck_v2(net: SlimNet, x: str, scope: str, depth: int, depth_bottleneck: int, stride: int) -> str:
    preact = net.batch_norm(x, f"{scope}/preact", activation="relu")
    if net.shape(x)[1] == depth:
        shortcut = subsample(net, x, stride, f"{scope}/shortcut")
    else:
        shortcut = net.conv2d(preact, f"{scope}/shortcut", 1, stride, activation=None)
    r = net.conv2d(preact, f"{scope}/conv1", 1, 1)
    r = conv2d_same(net, r, f"{scope}/conv2", 3, stride)
    r = net.conv2d(r, f"{scope}/conv3", 1, 1, activation=None)
    return net.add(shortcut, r, f"{scope}/add")


def _check_units(net: SlimNet, scope: str, version: int, depth: int) -> None:
    """A checkpoint of another depth under the same scope: name its depth instead of failing later."""
    units = UNITS[depth]
    found = []
    for b in range(1, len(units) + 1):
        k = 0
        while net.has_scope(f"{scope}/block{b}/unit_{k + 1}"):
            k += 1
        found.append(k)
    if tuple(found) != units:
        other = [d for d, u in UNITS.items() if u == tuple(found)]
        what = f"a resnet_v{version}_{other[0]}" if other else f"a ResNet with {found} units per block"
        raise InputFileError(f"tf-slim: the checkpoint's '{scope}' has {found} units per block, which is {what}, "
                             f"not resnet_v{version}_{depth} {list(units)}: pass the matching --arch")


def build_resnet(net: SlimNet, version: int, depth: int) -> str:
    scope = f"resnet_v{version}_{depth}"
    net.require_scope(scope, scope)
    _check_units(net, scope, version, depth)
    unit = bottleneck_v1 if version == 1 else bottleneck_v2
    if version == 1:
        x = conv2d_same(net, net.input, f"{scope}/conv1", 7, 2)
    else:
        x = conv2d_same(net, net.input, f"{scope}/conv1", 7, 2, activation=None)
    x = net.max_pool2d(x, 3, 2, "SAME", scope=f"{scope}/pool1")
    for b, (n, base, stride) in enumerate(zip(UNITS[depth], BASE_DEPTHS, BLOCK_STRIDES), 1):
        for u in range(1, n + 1):
            s = stride if u == n else 1
            x = unit(net, x, f"{scope}/block{b}/unit_{u}/bottleneck_v{version}", base * 4, base, s)
    if version == 2:
        x = net.batch_norm(x, f"{scope}/postnorm", activation="relu")
    x = net.global_avg_pool(x, f"{scope}/pool5")
    x = net.conv2d(x, f"{scope}/logits", 1, 1, activation=None)
    return net.spatial_squeeze(x, f"{scope}/logits/squeeze")


for _d in UNITS:
    register(ArchSpec(f"resnet_v1_{_d}", f"resnet_v1_{_d}", partial(build_resnet, version=1, depth=_d),
                      input_size=224, bn_eps=BN_EPS, logits_var=f"resnet_v1_{_d}/logits/weights",
                      preprocessing=VGG_PRE, resize=256))
    register(ArchSpec(f"resnet_v2_{_d}", f"resnet_v2_{_d}", partial(build_resnet, version=2, depth=_d),
                      input_size=299, bn_eps=BN_EPS, logits_var=f"resnet_v2_{_d}/logits/weights",
                      preprocessing=INCEPTION_PRE, resize=CENTRAL_CROP_RESIZE[299]))
