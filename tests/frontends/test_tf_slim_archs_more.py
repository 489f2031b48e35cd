"""TF-slim architectures that tf_slim does not ship: Inception-v4,
Inception-ResNet-v2, MobileNet v1 and v2.

The nets are defined here in tf_slim (compact definitions following the
published slim model zoo, tensorflow/models ``research/slim/nets``, with its
variable scopes), given random weights and non-trivial BatchNorm statistics,
saved as a checkpoint and as a frozen GraphDef, and converted two
independent ways:

1. checkpoint -> IR through the architecture builders
   (:mod:`xconv.frontends.tensorflow.slim`), which never see the TF graph;
2. frozen graph -> IR through the generic graph path
   (:func:`xconv.frontends.tensorflow.graph.load_graph`), which never sees
   the architecture builders.

Each IR is compared with TensorFlow's logits for one real photo, run three
ways: xconv's float64 numpy reference, BVLC Caffe (real pycaffe) and
onnxruntime.

Tolerance: atol = 1e-4 * (1 + max|TF logits|).  TF runs in float32 (the
reference in float64 on the same float32 weights); the logits are rescaled to
a spread of ~3 so max|logits| is ~10, and float32 accumulation through
~100-200 layers gives differences of ~1e-6..1e-5 of that scale (measured
maxima, 5e-6..3.3e-5, are logged at INFO by ``_close``), while a semantic slip
moves logits by 1e-2 or more: mutants of the builders measured here gave
0.035 for BN epsilon 1e-5 instead of 1e-3 (MobileNet v1), 1.2 for a global
pool instead of slim's fixed 7x7/2 window at 256 px, 1e3 for ReLU instead of
ReLU6 (MobileNet v2).

pycaffe runs in a child process: building a caffe.Net segfaults in a process
that imported TensorFlow first.
"""
from __future__ import annotations

import importlib.util
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from xconv import reference  # noqa: E402
from xconv.backend import EmitOptions  # noqa: E402
from xconv.convert import convert  # noqa: E402
from xconv.errors import InputFileError, XconvError  # noqa: E402
from xconv.frontends.tensorflow import slim as slim_archs  # noqa: E402
from xconv.frontends.tensorflow.tfimport import import_tf, import_tf_slim  # noqa: E402
from xconv.ir import Graph  # noqa: E402
from xconv.verify.runners import locate, make_runner  # noqa: E402

log = logging.getLogger(__name__)

tf = import_tf()
slim = import_tf_slim()
v1 = tf.compat.v1

from xconv.frontends.tensorflow.graph import load_graph  # noqa: E402

CLASSES = 1001
DATA = Path(importlib.util.find_spec("foolbox").submodule_search_locations[0]) / "data"
PHOTO = DATA / "imagenet_00_243.jpg"
OTHER_PHOTO = DATA / "imagenet_01_559.jpg"  # only to show that the random nets are not input-blind


def _close(label: str, got: np.ndarray, ref: np.ndarray) -> None:
    got = np.asarray(got, np.float64).reshape(ref.shape)
    atol = 1e-4 * (1.0 + float(np.abs(ref).max()))
    err = float(np.abs(got - ref).max())
    log.info("max |dlogit| %-45s %.3g (atol %.3g, max|logit| %.3g)", label, err, atol, float(np.abs(ref).max()))
    np.testing.assert_allclose(got, ref, rtol=0, atol=atol, err_msg=label)


# ----------------------------------------------------------------------------- slim definitions
# Compact tf_slim definitions following tensorflow/models research/slim/nets (same scopes, kernel
# sizes, strides, paddings and arg-scope defaults); dropout is the identity at inference and omitted.

def _inception_arg_scope() -> Any:
    """``inception_utils.inception_arg_scope`` at inference: BN without gamma, eps 0.001, ReLU."""
    return slim.arg_scope([slim.conv2d], activation_fn=tf.nn.relu, normalizer_fn=slim.batch_norm,
                          normalizer_params=dict(epsilon=0.001, scale=False, is_training=False))


def _cat(xs: list[Any]) -> Any:
    return tf.concat(axis=3, values=xs)


def _branches(*fns: Callable[[], Any]) -> Any:
    outs = []
    for i, fn in enumerate(fns):
        with v1.variable_scope(f"Branch_{i}"):
            outs.append(fn())
    return _cat(outs)


def tf_inception_v4(x: Any) -> Any:
    c = slim.conv2d

    def block_a(net: Any) -> Any:
        return _branches(
            lambda: c(net, 96, 1, scope="Conv2d_0a_1x1"),
            lambda: c(c(net, 64, 1, scope="Conv2d_0a_1x1"), 96, 3, scope="Conv2d_0b_3x3"),
            lambda: c(c(c(net, 64, 1, scope="Conv2d_0a_1x1"), 96, 3, scope="Conv2d_0b_3x3"), 96, 3,
                      scope="Conv2d_0c_3x3"),
            lambda: c(slim.avg_pool2d(net, 3, scope="AvgPool_0a_3x3"), 96, 1, scope="Conv2d_0b_1x1"))

    def reduction_a(net: Any) -> Any:
        return _branches(
            lambda: c(net, 384, 3, stride=2, padding="VALID", scope="Conv2d_1a_3x3"),
            lambda: c(c(c(net, 192, 1, scope="Conv2d_0a_1x1"), 224, 3, scope="Conv2d_0b_3x3"), 256, 3, stride=2,
                      padding="VALID", scope="Conv2d_1a_3x3"),
            lambda: slim.max_pool2d(net, 3, stride=2, padding="VALID", scope="MaxPool_1a_3x3"))

    def block_b(net: Any) -> Any:
        def b2() -> Any:
            y = c(net, 192, 1, scope="Conv2d_0a_1x1")
            y = c(y, 192, [7, 1], scope="Conv2d_0b_7x1")
            y = c(y, 224, [1, 7], scope="Conv2d_0c_1x7")
            y = c(y, 224, [7, 1], scope="Conv2d_0d_7x1")
            return c(y, 256, [1, 7], scope="Conv2d_0e_1x7")
        return _branches(
            lambda: c(net, 384, 1, scope="Conv2d_0a_1x1"),
            lambda: c(c(c(net, 192, 1, scope="Conv2d_0a_1x1"), 224, [1, 7], scope="Conv2d_0b_1x7"), 256, [7, 1],
                      scope="Conv2d_0c_7x1"),
            b2,
            lambda: c(slim.avg_pool2d(net, 3, scope="AvgPool_0a_3x3"), 128, 1, scope="Conv2d_0b_1x1"))

    def reduction_b(net: Any) -> Any:
        def b1() -> Any:
            y = c(net, 256, 1, scope="Conv2d_0a_1x1")
            y = c(y, 256, [1, 7], scope="Conv2d_0b_1x7")
            y = c(y, 320, [7, 1], scope="Conv2d_0c_7x1")
            return c(y, 320, 3, stride=2, padding="VALID", scope="Conv2d_1a_3x3")
        return _branches(
            lambda: c(c(net, 192, 1, scope="Conv2d_0a_1x1"), 192, 3, stride=2, padding="VALID",
                      scope="Conv2d_1a_3x3"),
            b1,
            lambda: slim.max_pool2d(net, 3, stride=2, padding="VALID", scope="MaxPool_1a_3x3"))

    def block_c(net: Any) -> Any:
        def b1() -> Any:
            y = c(net, 384, 1, scope="Conv2d_0a_1x1")
            return _cat([c(y, 256, [1, 3], scope="Conv2d_0b_1x3"), c(y, 256, [3, 1], scope="Conv2d_0c_3x1")])

        def b2() -> Any:
            y = c(net, 384, 1, scope="Conv2d_0a_1x1")
            y = c(y, 448, [3, 1], scope="Conv2d_0b_3x1")
            y = c(y, 512, [1, 3], scope="Conv2d_0c_1x3")
            return _cat([c(y, 256, [1, 3], scope="Conv2d_0d_1x3"), c(y, 256, [3, 1], scope="Conv2d_0e_3x1")])
        return _branches(
            lambda: c(net, 256, 1, scope="Conv2d_0a_1x1"), b1, b2,
            lambda: c(slim.avg_pool2d(net, 3, scope="AvgPool_0a_3x3"), 256, 1, scope="Conv2d_0b_1x1"))

    def mixed(name: str, fn: Callable[[Any], Any], net: Any) -> Any:
        with v1.variable_scope(name):
            return fn(net)

    with v1.variable_scope("InceptionV4"), _inception_arg_scope(), \
            slim.arg_scope([slim.conv2d, slim.max_pool2d, slim.avg_pool2d], stride=1, padding="SAME"):
        net = c(x, 32, 3, stride=2, padding="VALID", scope="Conv2d_1a_3x3")
        net = c(net, 32, 3, padding="VALID", scope="Conv2d_2a_3x3")
        net = c(net, 64, 3, scope="Conv2d_2b_3x3")
        net = mixed("Mixed_3a", lambda n: _branches(
            lambda: slim.max_pool2d(n, 3, stride=2, padding="VALID", scope="MaxPool_0a_3x3"),
            lambda: c(n, 96, 3, stride=2, padding="VALID", scope="Conv2d_0a_3x3")), net)

        def mixed_4a(n: Any) -> Any:
            def b1() -> Any:
                y = c(n, 64, 1, scope="Conv2d_0a_1x1")
                y = c(y, 64, [1, 7], scope="Conv2d_0b_1x7")
                y = c(y, 64, [7, 1], scope="Conv2d_0c_7x1")
                return c(y, 96, 3, padding="VALID", scope="Conv2d_1a_3x3")
            return _branches(lambda: c(c(n, 64, 1, scope="Conv2d_0a_1x1"), 96, 3, padding="VALID",
                                       scope="Conv2d_1a_3x3"), b1)
        net = mixed("Mixed_4a", mixed_4a, net)
        net = mixed("Mixed_5a", lambda n: _branches(
            lambda: c(n, 192, 3, stride=2, padding="VALID", scope="Conv2d_1a_3x3"),
            lambda: slim.max_pool2d(n, 3, stride=2, padding="VALID", scope="MaxPool_1a_3x3")), net)
        for ch in "bcde":
            net = mixed(f"Mixed_5{ch}", block_a, net)
        net = mixed("Mixed_6a", reduction_a, net)
        for ch in "bcdefgh":
            net = mixed(f"Mixed_6{ch}", block_b, net)
            if ch == "h":
                aux_in = net
        net = mixed("Mixed_7a", reduction_b, net)
        for ch in "bcd":
            net = mixed(f"Mixed_7{ch}", block_c, net)
        with v1.variable_scope("AuxLogits"):  # training-only head: in the checkpoint, not in the logits
            aux = slim.avg_pool2d(aux_in, 5, stride=3, padding="VALID", scope="AvgPool_1a_5x5")
            aux = c(aux, 128, 1, scope="Conv2d_1b_1x1")
            aux = c(aux, 768, aux.get_shape()[1:3], padding="VALID", scope="Conv2d_2a")
            slim.fully_connected(slim.flatten(aux), CLASSES, activation_fn=None, scope="Aux_logits")
        with v1.variable_scope("Logits"):
            net = slim.avg_pool2d(net, net.get_shape()[1:3], padding="VALID", scope="AvgPool_1a")
            net = slim.flatten(net, scope="PreLogitsFlatten")
            return slim.fully_connected(net, CLASSES, activation_fn=None, scope="Logits")


def tf_inception_resnet_v2(x: Any) -> Any:
    c = slim.conv2d

    def residual(net: Any, mixed: Any, scale: float, activation_fn: Any) -> Any:
        up = c(mixed, net.get_shape()[3], 1, normalizer_fn=None, activation_fn=None, scope="Conv2d_1x1")
        net = net + scale * up
        return activation_fn(net) if activation_fn else net

    def block35(net: Any, scale: float = 1.0, activation_fn: Any = tf.nn.relu, scope: str | None = None) -> Any:
        with v1.variable_scope(scope, "Block35"):
            mixed = _branches(
                lambda: c(net, 32, 1, scope="Conv2d_1x1"),
                lambda: c(c(net, 32, 1, scope="Conv2d_0a_1x1"), 32, 3, scope="Conv2d_0b_3x3"),
                lambda: c(c(c(net, 32, 1, scope="Conv2d_0a_1x1"), 48, 3, scope="Conv2d_0b_3x3"), 64, 3,
                          scope="Conv2d_0c_3x3"))
            return residual(net, mixed, scale, activation_fn)

    def block17(net: Any, scale: float = 1.0, activation_fn: Any = tf.nn.relu, scope: str | None = None) -> Any:
        with v1.variable_scope(scope, "Block17"):
            mixed = _branches(
                lambda: c(net, 192, 1, scope="Conv2d_1x1"),
                lambda: c(c(c(net, 128, 1, scope="Conv2d_0a_1x1"), 160, [1, 7], scope="Conv2d_0b_1x7"), 192,
                          [7, 1], scope="Conv2d_0c_7x1"))
            return residual(net, mixed, scale, activation_fn)

    def block8(net: Any, scale: float = 1.0, activation_fn: Any = tf.nn.relu, scope: str | None = None) -> Any:
        with v1.variable_scope(scope, "Block8"):
            mixed = _branches(
                lambda: c(net, 192, 1, scope="Conv2d_1x1"),
                lambda: c(c(c(net, 192, 1, scope="Conv2d_0a_1x1"), 224, [1, 3], scope="Conv2d_0b_1x3"), 256,
                          [3, 1], scope="Conv2d_0c_3x1"))
            return residual(net, mixed, scale, activation_fn)

    with v1.variable_scope("InceptionResnetV2"), _inception_arg_scope(), \
            slim.arg_scope([slim.conv2d, slim.max_pool2d, slim.avg_pool2d], stride=1, padding="SAME"):
        net = c(x, 32, 3, stride=2, padding="VALID", scope="Conv2d_1a_3x3")
        net = c(net, 32, 3, padding="VALID", scope="Conv2d_2a_3x3")
        net = c(net, 64, 3, scope="Conv2d_2b_3x3")
        net = slim.max_pool2d(net, 3, stride=2, padding="VALID", scope="MaxPool_3a_3x3")
        net = c(net, 80, 1, padding="VALID", scope="Conv2d_3b_1x1")
        net = c(net, 192, 3, padding="VALID", scope="Conv2d_4a_3x3")
        net = slim.max_pool2d(net, 3, stride=2, padding="VALID", scope="MaxPool_5a_3x3")
        with v1.variable_scope("Mixed_5b"):
            n0 = net
            net = _branches(
                lambda: c(n0, 96, 1, scope="Conv2d_1x1"),
                lambda: c(c(n0, 48, 1, scope="Conv2d_0a_1x1"), 64, 5, scope="Conv2d_0b_5x5"),
                lambda: c(c(c(n0, 64, 1, scope="Conv2d_0a_1x1"), 96, 3, scope="Conv2d_0b_3x3"), 96, 3,
                          scope="Conv2d_0c_3x3"),
                lambda: c(slim.avg_pool2d(n0, 3, stride=1, padding="SAME", scope="AvgPool_0a_3x3"), 64, 1,
                          scope="Conv2d_0b_1x1"))
        net = slim.repeat(net, 10, block35, scale=0.17, activation_fn=tf.nn.relu)
        with v1.variable_scope("Mixed_6a"):
            n0 = net
            net = _branches(
                lambda: c(n0, 384, 3, stride=2, padding="VALID", scope="Conv2d_1a_3x3"),
                lambda: c(c(c(n0, 256, 1, scope="Conv2d_0a_1x1"), 256, 3, scope="Conv2d_0b_3x3"), 384, 3,
                          stride=2, padding="VALID", scope="Conv2d_1a_3x3"),
                lambda: slim.max_pool2d(n0, 3, stride=2, padding="VALID", scope="MaxPool_1a_3x3"))
        net = slim.repeat(net, 20, block17, scale=0.10, activation_fn=tf.nn.relu)
        aux_in = net
        with v1.variable_scope("Mixed_7a"):
            n0 = net
            net = _branches(
                lambda: c(c(n0, 256, 1, scope="Conv2d_0a_1x1"), 384, 3, stride=2, padding="VALID",
                          scope="Conv2d_1a_3x3"),
                lambda: c(c(n0, 256, 1, scope="Conv2d_0a_1x1"), 288, 3, stride=2, padding="VALID",
                          scope="Conv2d_1a_3x3"),
                lambda: c(c(c(n0, 256, 1, scope="Conv2d_0a_1x1"), 288, 3, scope="Conv2d_0b_3x3"), 320, 3,
                          stride=2, padding="VALID", scope="Conv2d_1a_3x3"),
                lambda: slim.max_pool2d(n0, 3, stride=2, padding="VALID", scope="MaxPool_1a_3x3"))
        net = slim.repeat(net, 9, block8, scale=0.20, activation_fn=tf.nn.relu)
        net = block8(net, activation_fn=None)
        net = c(net, 1536, 1, scope="Conv2d_7b_1x1")
        with v1.variable_scope("AuxLogits"):
            aux = slim.avg_pool2d(aux_in, 5, stride=3, padding="VALID", scope="Conv2d_1a_3x3")
            aux = c(aux, 128, 1, scope="Conv2d_1b_1x1")
            aux = c(aux, 768, aux.get_shape()[1:3], padding="VALID", scope="Conv2d_2a_5x5")
            slim.fully_connected(slim.flatten(aux), CLASSES, activation_fn=None, scope="Logits")
        with v1.variable_scope("Logits"):
            net = slim.avg_pool2d(net, net.get_shape()[1:3], padding="VALID", scope="AvgPool_1a_8x8")
            net = slim.flatten(net)
            return slim.fully_connected(net, CLASSES, activation_fn=None, scope="Logits")


def _mobilenet_arg_scope() -> Any:
    """BN with gamma (center/scale), eps 0.001, ReLU6, SAME padding (``use_explicit_padding=False``)."""
    return slim.arg_scope([slim.conv2d, slim.separable_conv2d], activation_fn=tf.nn.relu6,
                          normalizer_fn=slim.batch_norm, padding="SAME",
                          normalizer_params=dict(center=True, scale=True, epsilon=0.001, is_training=False))


def _logits_1x1(net: Any) -> Any:
    logits = slim.conv2d(net, CLASSES, [1, 1], activation_fn=None, normalizer_fn=None, scope="Conv2d_1c_1x1")
    return tf.squeeze(logits, [1, 2], name="SpatialSqueeze")


def tf_mobilenet_v1(x: Any, depth_multiplier: float = 1.0) -> Any:
    defs = [(2, 32), (1, 64), (2, 128), (1, 128), (2, 256), (1, 256), (2, 512)] + [(1, 512)] * 5 + \
           [(2, 1024), (1, 1024)]

    def depth(d: int) -> int:
        return max(int(d * depth_multiplier), 8)

    with v1.variable_scope("MobilenetV1"), _mobilenet_arg_scope():
        net = x
        for i, (stride, d) in enumerate(defs):
            if i == 0:
                net = slim.conv2d(net, depth(d), [3, 3], stride=stride, scope="Conv2d_0")
                continue
            net = slim.separable_conv2d(net, None, [3, 3], depth_multiplier=1, stride=stride,
                                        scope=f"Conv2d_{i}_depthwise")
            net = slim.conv2d(net, depth(d), [1, 1], stride=1, scope=f"Conv2d_{i}_pointwise")
        with v1.variable_scope("Logits"):
            shape = net.get_shape().as_list()
            k = [min(shape[1], 7), min(shape[2], 7)]
            net = slim.avg_pool2d(net, k, padding="VALID", scope="AvgPool_1a")
            return _logits_1x1(net)


def _make_divisible(v: float, divisor: int = 8, min_value: int | None = None) -> int:
    min_value = min_value or divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


def tf_mobilenet_v2(x: Any, depth_multiplier: float = 1.0, finegrain: bool = False) -> Any:
    # (stride, outputs, expansion factor) of V2_DEF's expanded_conv blocks
    blocks = [(1, 16, 1), (2, 24, 6), (1, 24, 6), (2, 32, 6), (1, 32, 6), (1, 32, 6), (2, 64, 6), (1, 64, 6),
              (1, 64, 6), (1, 64, 6), (1, 96, 6), (1, 96, 6), (1, 96, 6), (2, 160, 6), (1, 160, 6), (1, 160, 6),
              (1, 320, 6)]

    def depth(d: float) -> int:
        return _make_divisible(d * depth_multiplier, 8, 8)

    with v1.variable_scope("MobilenetV2"), _mobilenet_arg_scope():
        net = slim.conv2d(x, depth(32), [3, 3], stride=2, scope="Conv")
        for i, (stride, out, t) in enumerate(blocks):
            with v1.variable_scope("expanded_conv" + (f"_{i}" if i else "")):
                inp = net
                prev = inp.get_shape().as_list()[3]
                inner = _make_divisible(prev * t, 1 if i == 0 else 8)
                if inner > prev:
                    net = slim.conv2d(net, inner, [1, 1], scope="expand")
                net = slim.separable_conv2d(net, None, [3, 3], depth_multiplier=1, stride=stride, scope="depthwise")
                net = slim.conv2d(net, depth(out), [1, 1], activation_fn=tf.identity, scope="project")
                if stride == 1 and net.get_shape().as_list()[3] == prev:
                    net = net + inp
                net = tf.identity(net, name="output")
        last = 1280 / depth_multiplier if finegrain and depth_multiplier < 1 else 1280
        net = slim.conv2d(net, depth(last), [1, 1], stride=1, scope="Conv_1")
        with v1.variable_scope("Logits"):
            shape = net.get_shape().as_list()
            net = tf.nn.avg_pool(net, ksize=[1, shape[1], shape[2], 1], strides=[1, 1, 1, 1], padding="VALID")
            return _logits_1x1(net)


# ----------------------------------------------------------------------------- the models
@dataclass
class Case:
    arch: str
    define: Callable[[Any], Any]
    sizes: tuple[int, ...]
    seed: int
    logits_scope: str


@dataclass
class Built:
    """One source model: its checkpoint, and per input size the frozen graph, TF's logits and the photo."""

    case: Case
    prefix: str
    names: list[str]
    pb: dict[int, str] = field(default_factory=dict)
    io: dict[int, tuple[str, str]] = field(default_factory=dict)  # size -> (input, output) tensor names
    x: dict[int, np.ndarray] = field(default_factory=dict)     # NHWC photo in [-1, 1]
    logits: dict[int, np.ndarray] = field(default_factory=dict)
    other: dict[int, np.ndarray] = field(default_factory=dict)  # TF's logits for another photo


CASES = {
    "inception_v4": Case("inception_v4", tf_inception_v4, (299,), 1, "InceptionV4/Logits/Logits"),
    "inception_resnet_v2": Case("inception_resnet_v2", tf_inception_resnet_v2, (299,), 2,
                                "InceptionResnetV2/Logits/Logits"),
    "mobilenet_v1": Case("mobilenet_v1", tf_mobilenet_v1, (224, 128), 3, "MobilenetV1/Logits/Conv2d_1c_1x1"),
    # at 256 the 8x8 map meets slim's fixed 7x7 / stride 2 VALID pool: one window, not the whole map
    "mobilenet_v1_050": Case("mobilenet_v1", lambda x: tf_mobilenet_v1(x, 0.5), (160, 256), 4,
                             "MobilenetV1/Logits/Conv2d_1c_1x1"),
    "mobilenet_v2": Case("mobilenet_v2", tf_mobilenet_v2, (224, 128), 5, "MobilenetV2/Logits/Conv2d_1c_1x1"),
    "mobilenet_v2_035": Case("mobilenet_v2", lambda x: tf_mobilenet_v2(x, 0.35, finegrain=True), (96,), 6,
                             "MobilenetV2/Logits/Conv2d_1c_1x1"),
}
SLOW = {"inception_v4", "inception_resnet_v2"}


def photo(size: int, path: Path = PHOTO) -> np.ndarray:
    from PIL import Image
    img = Image.open(path).convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
    return (np.asarray(img, np.float32) / 127.5 - 1.0)[None]


def _randomise(sess: Any, variables: list[Any], rng: np.random.Generator) -> None:
    """He-normal weights (the signal neither explodes nor vanishes over ~100 layers) and non-trivial
    BN statistics, fed to the variables' initialisers in one run."""
    feed = {}
    for v in variables:
        shape = tuple(v.get_shape().as_list())
        leaf = v.op.name.rsplit("/", 1)[-1]
        if leaf == "weights":
            val = rng.standard_normal(shape) * np.sqrt(2.0 / int(np.prod(shape[:-1])))
        elif leaf == "depthwise_weights":
            val = rng.standard_normal(shape) * np.sqrt(2.0 / (shape[0] * shape[1]))
        elif leaf in ("biases", "beta"):
            val = rng.standard_normal(shape) * 0.2
        elif leaf == "gamma":
            val = rng.uniform(0.5, 1.5, shape)
        elif leaf == "moving_mean":
            val = rng.standard_normal(shape) * 0.1
        elif leaf == "moving_variance":
            val = rng.uniform(0.5, 2.0, shape)
        else:
            raise AssertionError(f"unexpected variable {v.op.name}")
        feed[v.initial_value] = val.astype(np.float32)
    sess.run([v.initializer for v in variables], feed)


def _spread_logits(sess: Any, logits: Any, feed: dict[Any, np.ndarray], scope: str,
                   rng: np.random.Generator) -> None:
    """Rescale the last layer so the logits spread with std ~3 around ~0 (a random head otherwise
    sends every photo to one class and compares a few large numbers)."""
    var = {v.op.name: v for v in v1.global_variables()}
    w_var, b_var = var[f"{scope}/weights"], var[f"{scope}/biases"]
    w, b = sess.run([w_var, b_var])
    l = sess.run(logits, feed)[0]
    k = 3.0 / max(float(np.std(l - b)), 1e-12)
    b_new = rng.standard_normal(b.shape) * 0.5 - float(np.mean(l - b)) * k
    sess.run([w_var.initializer, b_var.initializer],
             {w_var.initial_value: (w * k).astype(np.float32), b_var.initial_value: b_new.astype(np.float32)})


def _tf_model(case: Case, size: int, tmp: Path, prefix: str | None, rng: np.random.Generator,
              built: Built) -> str:
    """Build ``case`` at ``size``; initialise (and save) or restore the checkpoint; freeze; run."""
    g = tf.Graph()
    with g.as_default():
        x = v1.placeholder(tf.float32, [1, size, size, 3], name="input")
        logits = case.define(x)
        variables = v1.global_variables()
        saver = v1.train.Saver(variables)
        with v1.Session(graph=g) as sess:
            feed = {x: built.x[size]}
            if prefix is None:
                _randomise(sess, variables, rng)
                _spread_logits(sess, logits, feed, case.logits_scope, rng)
                prefix = str(tmp / "model.ckpt")
                saver.save(sess, prefix, write_meta_graph=False)
            else:
                saver.restore(sess, prefix)
            built.logits[size] = sess.run(logits, feed).astype(np.float64)
            built.other[size] = sess.run(logits, {x: photo(size, OTHER_PHOTO)}).astype(np.float64)
            frozen = v1.graph_util.convert_variables_to_constants(sess, g.as_graph_def(), [logits.op.name])
        pb = tmp / f"frozen_{size}.pb"
        pb.write_bytes(frozen.SerializeToString())
        built.pb[size] = str(pb)
        built.io[size] = (x.op.name, logits.op.name)
    return prefix


_BUILT: dict[str, Built] = {}


def source(key: str, tmp_factory: pytest.TempPathFactory) -> Built:
    if key in _BUILT:
        return _BUILT[key]
    case = CASES[key]
    tmp = tmp_factory.mktemp(key)
    rng = np.random.default_rng(case.seed)
    built = Built(case, "", [])
    prefix = None
    for size in case.sizes:
        built.x[size] = photo(size)
        prefix = _tf_model(case, size, tmp, prefix, rng, built)
    assert prefix is not None
    built.prefix = prefix
    built.names = sorted(tf.train.load_checkpoint(prefix).get_variable_to_shape_map())
    _BUILT[key] = built
    return built


def read_checkpoint(prefix: str) -> Mapping[str, np.ndarray]:
    """xconv's own reader (a Mapping; it never imports TensorFlow)."""
    from xconv.frontends.tensorflow.checkpoint import Checkpoint
    return Checkpoint.open(prefix)


# ----------------------------------------------------------------------------- conversions
_IR: dict[tuple[str, str, int], Graph] = {}


def ir_graph(key: str, route: str, size: int, tmp_factory: pytest.TempPathFactory) -> Graph:
    k = (key, route, size)
    if k not in _IR:
        b = source(key, tmp_factory)
        if route == "checkpoint":
            spec = slim_archs.get(b.case.arch)
            _IR[k] = slim_archs.build(spec, read_checkpoint(b.prefix), (1, 3, size, size), source_file=b.prefix)
        else:
            inp, out = b.io[size]
            _IR[k] = load_graph(b.pb[size], inputs=[inp], outputs=[out], input_shape=(1, 3, size, size))
    return _IR[k]


def run_backend(g: Graph, backend: str, x_nchw: np.ndarray, tmp: Path) -> np.ndarray:
    x_nchw = np.ascontiguousarray(x_nchw, np.float32)
    if backend == "reference":
        return reference.run(g, {next(iter(g.inputs)): x_nchw})[g.outputs[0]]
    target, opts = ("caffe", EmitOptions(dialect="bvlc")) if backend == "caffe" else ("onnx", EmitOptions())
    res = convert(g, target, tmp, "m", opts)
    model = next(p for p in res.files if p.suffix in (".prototxt", ".onnx"))
    if backend == "caffe":
        return make_runner(locate(model))(x_nchw)  # isolated from TF by the runner
    return make_runner(locate(model))(x_nchw)


def _marks(key: str) -> list[Any]:
    """slow for the full-size Inceptions; one xdist group per model (``--dist loadgroup`` then builds
    each source model once instead of once per worker)."""
    return ([pytest.mark.slow] if key in SLOW else []) + [pytest.mark.xdist_group(key)]


def _params() -> list[Any]:
    return [pytest.param(key, size, id=f"{key}-{size}", marks=_marks(key))
            for key, case in CASES.items() for size in case.sizes]


BACKENDS = ("reference", "caffe", "onnx")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("key,size", _params())
def test_checkpoint_route(key: str, size: int, backend: str, tmp_path: Path,
                          tmp_path_factory: pytest.TempPathFactory) -> None:
    b = source(key, tmp_path_factory)
    g = ir_graph(key, "checkpoint", size, tmp_path_factory)
    assert g.meta.num_classes == CLASSES and g.meta.background_offset == 1
    got = run_backend(g, backend, b.x[size].transpose(0, 3, 1, 2), tmp_path)
    _close(f"{key}-{size} checkpoint {backend}", got, b.logits[size])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("key,size", _params())
def test_graph_route(key: str, size: int, backend: str, tmp_path: Path,
                     tmp_path_factory: pytest.TempPathFactory) -> None:
    b = source(key, tmp_path_factory)
    g = ir_graph(key, "graph", size, tmp_path_factory)
    got = run_backend(g, backend, b.x[size].transpose(0, 3, 1, 2), tmp_path)
    _close(f"{key}-{size} graph {backend}", got, b.logits[size])


@pytest.mark.parametrize("key", [pytest.param(k, marks=_marks(k)) for k in CASES])
def test_detect(key: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    """The architecture is recognised from the checkpoint's variable names alone (AuxLogits included)."""
    b = source(key, tmp_path_factory)
    weights = read_checkpoint(b.prefix)
    assert sorted(weights) == b.names
    spec = slim_archs.detect(list(weights))
    assert spec.name == b.case.arch
    assert all(n.startswith(spec.scope + "/") for n in b.names)
    assert weights[spec.logits_var].shape[-1] == CLASSES


@pytest.mark.parametrize("key", [pytest.param(k, marks=_marks(k)) for k in CASES])
def test_photo_drives_the_logits(key: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    """The random nets must not be input-blind, or matching logits would prove little about the layers
    before the pooling: another photo must move the logits by far more than the tolerance.  (Random BN
    statistics leave large input-independent channel offsets and random features pool to similar
    means, so the photo-dependent part is only ~1-20% of the logits' spread: 26x atol for Inception-v4,
    80-600x for the others; measured ratios are logged.)"""
    b = source(key, tmp_path_factory)
    assert 2.5 < float(np.std(b.logits[b.case.sizes[0]])) < 3.5  # rescaled at the first size
    for size in b.case.sizes:
        moved = float(np.std(b.other[size] - b.logits[size]))
        atol = 1e-4 * (1.0 + float(np.abs(b.logits[size]).max()))
        log.info("%s-%d: another photo moves the logits by std %.3g = %.0f x atol (logit std %.3g)", key, size,
                 moved, moved / atol, float(np.std(b.logits[size])))
        assert moved > 10 * atol


def test_unfit_input_or_arch_is_refused(tmp_path_factory: pytest.TempPathFactory) -> None:
    """MobileNet v1's fixed 7x7/2 pool leaves a 2x2 map at 320 px (slim's squeeze fails there too), and
    a checkpoint built as another architecture names what it has."""
    weights = read_checkpoint(source("mobilenet_v1_050", tmp_path_factory).prefix)
    with pytest.raises(XconvError, match="2x2 map"):
        slim_archs.build(slim_archs.get("mobilenet_v1"), weights, (1, 3, 320, 320))
    with pytest.raises(InputFileError, match="MobilenetV1"):
        slim_archs.build(slim_archs.get("mobilenet_v2"), weights)
