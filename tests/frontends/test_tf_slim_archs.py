"""TF-slim architecture builders against tf_slim's own networks.

For each architecture, tf_slim 1.1.0's definition (code this project did not
write) is built in a ``tf.compat.v1`` graph with ``is_training=False`` and
random weights made non-trivial:

* BatchNorm statistics are calibrated, then perturbed: the same net in
  training mode (built in a graph of its own from the same initial weights)
  gives each BatchNorm's batch mean and variance on four calibration photos;
  the moving statistics are set to ``mean + 0.2 * std * N(0, 1)`` and
  ``var * U(0.5, 2)``, with random beta (and gamma where the arch has one).
  Activations then stay O(1) through 200 layers while every BatchNorm shifts
  and rescales its channels, so a wrong mean, variance, epsilon or a missing
  gamma moves the logits.
* Biases are ``N(0, 0.5) * std`` of their layer's pre-bias output.
* The logits layer is rescaled so that the logits on the test photo have a
  standard deviation of 3 over the classes (max |logit| ~9..12).

TensorFlow's logits on a real photo are then compared with the IR built by
:func:`xconv.frontends.tensorflow.slim.build` from the checkpoint (saved by
TF, read by xconv's own reader), run on (a) :mod:`xconv.reference`
(float64), (b) real pycaffe (stock ``bvlc`` dialect) and (c) onnxruntime.

Tolerance: ``atol = 1e-4 * (1 + max|logits|)`` (~1e-3).  TF computes in
float32 (oneDNN), the reference in float64 on the same float32 weights, Caffe
and onnxruntime in float32 with BatchNorm folded into the convs.  Measured
max |diff| (logged at INFO per test): 1.5e-5..6.8e-5 for every arch and
backend, up to 1.1e-4 for resnet_v2_152/200 (their pre-activation residual
streams grow over 50..66 units; 2.3e-4 for resnet_v2_152 at 64 px), i.e. 4..70x
under the tolerance.
Mutations of the builders measured on the same models: BatchNorm epsilon x100
moves logits by 0.28 (resnet_v1_50) / 8.5 (inception_v3), epsilon /100 by
3e-3 / 0.89, a strided 'SAME' conv for ``conv2d_same`` by 3.5, average pools
counting padding by 6.1: all at least 3x over it.
"""
from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import pytest

from xconv import reference
from xconv.backend import EmitOptions
from xconv.convert import convert
from xconv.errors import InputFileError, XconvError
from xconv.frontends.tensorflow import slim
from xconv.verify.runners import locate, make_runner

try:  # xconv's checkpoint reader (written in parallel): the Mapping the CLI would use
    from xconv.frontends.tensorflow.checkpoint import Checkpoint
except ImportError:  # pragma: no cover
    Checkpoint = None  # type: ignore[assignment,misc]

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
log = logging.getLogger(__name__)

TEST_PHOTO = "imagenet_00_243.jpg"
CALIBRATION = ("imagenet_01_559.jpg", "imagenet_02_438.jpg", "imagenet_03_990.jpg", "imagenet_04_949.jpg")
LOGIT_STD = 3.0


def import_tf_slim() -> tuple[Any, Any]:
    """tensorflow and tf_slim 1.1.0 (which needs ``tf_keras.legacy_tf_layers`` aliased on TF 2.21)."""
    try:
        from xconv.frontends.tensorflow.tfimport import import_tf_slim as imp  # noqa: PLC0415
        tf_slim = imp()
    except ImportError:
        legacy = importlib.import_module("tf_keras.src.legacy_tf_layers")
        sys.modules.setdefault("tf_keras.legacy_tf_layers", legacy)
        import tf_slim  # noqa: PLC0415
    import tensorflow as tf  # noqa: PLC0415
    return tf, tf_slim


@dataclass(frozen=True)
class Net:
    module: str       # tf_slim.nets.<module>
    fn: str           # its network function
    arg_scope: str    # its arg_scope function
    classes: int      # the slim zoo's head: 1001 for the inception family and resnet_v2
    bn: bool          # has BatchNorm (calibrate statistics in a training-mode copy)


NETS: dict[str, Net] = {
    **{f"resnet_v1_{d}": Net("resnet_v1", f"resnet_v1_{d}", "resnet_arg_scope", 1000, True)
       for d in (50, 101, 152, 200)},
    **{f"resnet_v2_{d}": Net("resnet_v2", f"resnet_v2_{d}", "resnet_arg_scope", 1001, True)
       for d in (50, 101, 152, 200)},
    **{n: Net("vgg", n, "vgg_arg_scope", 1000, False) for n in ("vgg_a", "vgg_16", "vgg_19")},
    "alexnet_v2": Net("alexnet", "alexnet_v2", "alexnet_v2_arg_scope", 1000, False),
    "overfeat": Net("overfeat", "overfeat", "overfeat_arg_scope", 1000, False),
    **{f"inception_v{v}": Net(f"inception_v{v}", f"inception_v{v}", f"inception_v{v}_arg_scope", 1001, True)
       for v in (1, 2, 3)},
}


def photo_dir() -> Path:
    spec = importlib.util.find_spec("foolbox")
    assert spec is not None and spec.submodule_search_locations, "foolbox==3.3.4 (data only) is part of `make setup`"
    return Path(list(spec.submodule_search_locations)[0]) / "data"


def photos(names: tuple[str, ...], size: int, pre: dict[str, Any]) -> np.ndarray:
    """NHWC float32: PIL resize to size x size, RGB in [0, 255], then (x - mean) / std of the preset."""
    from PIL import Image  # noqa: PLC0415

    assert pre["color_order"] == "RGB" and tuple(pre["value_range"]) == (0.0, 255.0)
    mean = np.asarray(pre["mean"], np.float32)
    std = np.asarray(pre["std"], np.float32)
    out = []
    for n in names:
        im = Image.open(photo_dir() / n).convert("RGB").resize((size, size), Image.BILINEAR)
        out.append((np.asarray(im, np.float32) - mean) / std)
    return np.stack(out).astype(np.float32)


@dataclass
class Model:
    arch: str
    size: int
    weights: Mapping[str, np.ndarray]
    x_nhwc: np.ndarray       # the test photo, preprocessed
    logits: np.ndarray       # TF's logits on it, [1, classes]

    @property
    def x_nchw(self) -> np.ndarray:
        return np.ascontiguousarray(self.x_nhwc.transpose(0, 3, 1, 2))


def _var_name(t: Any) -> str:
    """The variable behind a tensor read in the graph (resource or ref variables)."""
    while t.op.type in ("ReadVariableOp", "Identity"):
        t = t.op.inputs[0]
    return t.op.name


class Session:
    """One tf_slim net in its own graph and session (``is_training`` selects the BatchNorm mode)."""

    def __init__(self, arch: str, size: int, is_training: bool, seed: int) -> None:
        tf, tf_slim = import_tf_slim()
        net = NETS[arch]
        mod = importlib.import_module(f"tf_slim.nets.{net.module}")
        fn: Callable[..., Any] = getattr(mod, net.fn)
        self.tf, self.graph = tf, tf.Graph()
        with self.graph.as_default():
            tf.compat.v1.set_random_seed(seed)
            self.x = tf.compat.v1.placeholder(tf.float32, (None, size, size, 3), name="input")
            with tf_slim.arg_scope(getattr(mod, net.arg_scope)()):
                self.logits, _ = fn(self.x, num_classes=net.classes, is_training=is_training)
            self.variables = {v.op.name: v for v in tf.compat.v1.global_variables()}
            self.sess = tf.compat.v1.Session(graph=self.graph)
            self.sess.run(tf.compat.v1.global_variables_initializer())

    def ops(self, kind: str) -> list[Any]:
        return [op for op in self.graph.get_operations() if op.type.startswith(kind)]

    def run(self, fetches: Any, x: np.ndarray) -> Any:
        return self.sess.run(fetches, {self.x: x})

    def values(self) -> dict[str, np.ndarray]:
        return self.sess.run(self.variables)

    def assign(self, values: Mapping[str, np.ndarray]) -> None:
        """All at once: a run per variable builds an executor each (minutes for resnet_200)."""
        tf = self.tf
        with self.graph.as_default():
            phs = {k: tf.compat.v1.placeholder(self.variables[k].dtype.base_dtype, self.variables[k].shape)
                   for k in values}
            op = tf.group(*[self.variables[k].assign(ph) for k, ph in phs.items()])
        self.sess.run(op, {phs[k]: np.asarray(v, np.float32) for k, v in values.items()})


def random_biases(s: Session, calib: np.ndarray, skip: str, rng: np.random.Generator) -> None:
    """Biases ~ N(0, 0.5) * (std of their layer's pre-bias output) on the calibration photos."""
    pre_bias = {_var_name(op.inputs[1]): op.inputs[0] for op in s.ops("BiasAdd")}
    pre = s.run({k: t for k, t in pre_bias.items() if not k.startswith(skip)}, calib)
    s.assign({k: rng.normal(0, 0.5, v.shape[-1]) * v.std() for k, v in pre.items()})


def calibrated_batchnorm(s: Session, calib: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """In a training-mode net (BatchNorm on batch statistics): each BatchNorm's batch mean and
    variance on the calibration photos, perturbed, as moving statistics; random beta / gamma."""
    batch_stats = {_var_name(op.inputs[2]).rsplit("/", 1)[0]: (op.outputs[1], op.outputs[2])
                   for op in s.ops("FusedBatchNorm")}
    moving = {k.rsplit("/", 1)[0] for k in s.variables if k.endswith("/moving_mean")}
    assert moving == set(batch_stats), sorted(moving ^ set(batch_stats))[:5]
    new: dict[str, np.ndarray] = {}
    for scope, (mean, var) in s.run(batch_stats, calib).items():
        c = mean.shape[0]
        new[f"{scope}/moving_mean"] = mean + 0.2 * np.sqrt(var) * rng.standard_normal(c)
        new[f"{scope}/moving_variance"] = var * rng.uniform(0.5, 2.0, c)
        new[f"{scope}/beta"] = rng.normal(0, 0.2, c)
        if f"{scope}/gamma" in s.variables:
            new[f"{scope}/gamma"] = rng.uniform(0.5, 1.5, c)
    return new


def tf_model(arch: str, size: int, ckpt_dir: Path, seed: int = 0) -> Model:
    """tf_slim's ``arch`` with non-trivial random weights, its variables (saved as a checkpoint in
    ``ckpt_dir`` and opened with xconv's reader) and its logits on the test photo.

    BatchNorm nets are calibrated in a training-mode copy built in a graph of its own (tf_slim
    builds in O(variables^2), and a copy sharing the graph would scan twice the variables)."""
    spec = slim.get(arch)
    rng = np.random.default_rng(seed)
    calib = photos(CALIBRATION, size, dict(spec.preprocessing))
    test = photos((TEST_PHOTO,), size, dict(spec.preprocessing))
    logits_scope = spec.logits_var.rsplit("/", 1)[0]
    values: dict[str, np.ndarray] = {}
    if NETS[arch].bn:
        tr = Session(arch, size, True, seed)
        random_biases(tr, calib, logits_scope, rng)
        values = tr.values()
        values.update(calibrated_batchnorm(tr, calib, rng))
        tr.sess.close()
    s = Session(arch, size, False, seed)
    if values:
        assert set(values) == set(s.variables)
        s.assign(values)
    else:  # no BatchNorm: the inference net itself (dropout is the identity there)
        random_biases(s, calib, logits_scope, rng)
    # the logits: std LOGIT_STD over the classes on the test photo, small random biases
    b_name = f"{logits_scope}/biases"
    y, w, b = s.run((s.logits, s.variables[spec.logits_var], s.variables[b_name]), test)
    scale = LOGIT_STD / float((y - b).std())
    s.assign({spec.logits_var: w * scale, b_name: rng.normal(0, 0.3, b.shape)})
    y = s.run(s.logits, test).reshape(1, -1)
    weights: Mapping[str, np.ndarray]
    if Checkpoint is not None:  # the real path: a V2 checkpoint read by xconv's own reader
        with s.graph.as_default():
            prefix = s.tf.compat.v1.train.Saver().save(s.sess, str(ckpt_dir / arch), write_meta_graph=False)
        weights = Checkpoint.open(prefix)
    else:
        weights = s.values()
    s.sess.close()
    log.info("%s @%d: logits std %.2f, max |logit| %.2f", arch, size, y.std(), np.abs(y).max())
    return Model(arch, size, weights, test, y)


def atol(ref: np.ndarray) -> float:
    return 1e-4 * (1.0 + float(np.abs(ref).max()))


def check_all(m: Model, tmp: Path) -> dict[str, float]:
    """Build the IR, compare reference / Caffe / ONNX logits with TF's; returns max |diff| per backend."""
    spec = slim.get(m.arch)
    assert slim.detect(m.weights.keys()) is spec
    g = slim.build(spec, m.weights, input_shape=(1, 3, m.size, m.size))
    classes = m.logits.shape[1]
    assert g.type_of(g.outputs[0]).shape == (1, classes)
    assert g.meta.num_classes == classes and g.meta.background_offset == (1 if classes == 1001 else 0)
    tol = atol(m.logits)
    errs: dict[str, float] = {}
    (inp,) = g.inputs
    ref = reference.run(g, {inp: m.x_nchw})[g.outputs[0]]
    errs["reference"] = float(np.abs(ref - m.logits).max())
    for target in ("caffe", "onnx"):
        opts = EmitOptions(dialect="bvlc") if target == "caffe" else EmitOptions()
        convert(g, target, tmp, m.arch, opts)
        if target == "caffe":
            out = make_runner(locate(tmp / f"{m.arch}.prototxt"))(m.x_nchw)  # Caffe isolated from TF
        else:
            out = make_runner(locate(tmp / f"{m.arch}.onnx"))(m.x_nchw)
        errs[target] = float(np.abs(np.asarray(out).reshape(m.logits.shape) - m.logits).max())
    log.info("%s @%d: max|logit| %.2f, max|diff| %s (atol %.2g)", m.arch, m.size, np.abs(m.logits).max(),
             {k: f"{v:.2e}" for k, v in errs.items()}, tol)
    for k, v in errs.items():
        assert v <= tol, f"{m.arch} {k}: max |diff| {v:.3g} > {tol:.3g}"
    assert int(ref.argmax()) == int(m.logits.argmax())
    if classes == 1001:
        g2 = slim.build(spec, m.weights, input_shape=(1, 3, m.size, m.size), drop_background=True)
        assert g2.meta.num_classes == 1000 and g2.meta.background_offset == 0
        ref2 = reference.run(g2, {inp: m.x_nchw})[g2.outputs[0]]
        np.testing.assert_allclose(ref2, m.logits[:, 1:], rtol=0, atol=tol)
    else:
        with pytest.raises(XconvError, match="1001-class"):
            slim.build(spec, m.weights, input_shape=(1, 3, m.size, m.size), drop_background=True)
    return errs


# ---------------------------------------------------------------------------- parity
# small inputs each architecture accepts (see the family modules' docs), to keep the suite fast
# (odd sizes put TF's extra 'SAME' pixel at the end and make the stride-2 units see odd maps)
FAST: dict[str, int] = {
    **{f"resnet_v{v}_{d}": s for v in (1, 2) for d, s in ((50, 64), (101, 75), (152, 97), (200, 64))},
    "vgg_a": 224, "vgg_16": 224, "vgg_19": 224,
    "alexnet_v2": 195, "overfeat": 231,
    "inception_v1": 193, "inception_v2": 97, "inception_v3": 107,
}


#: models more than one test uses, built once per module
SHARED = {"resnet_v1_50", "inception_v2"}


@pytest.fixture(scope="module")
def shared_models(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Model]:
    cache: dict[str, Model] = {}

    def get(arch: str) -> Model:
        if arch not in cache:
            cache[arch] = tf_model(arch, FAST[arch], tmp_path_factory.mktemp("ckpt"))
        return cache[arch]
    return get


# tf_slim takes 20-35 s to build (twice: a training-mode copy calibrates BatchNorm) the 152/200-layer
# ResNets here, and VGG's 0.5 GB of weights ~15 s to convert, write and load twice: those run with the
# slow tests (vgg_16 at 224 is also its full-size run).
SLOW = {"resnet_v1_152", "resnet_v1_200", "resnet_v2_152", "resnet_v2_200", "vgg_16", "vgg_19"}


@pytest.mark.parametrize("arch", [pytest.param(a, marks=[pytest.mark.slow] if a in SLOW else [])
                                  for a in sorted(FAST)])
def test_arch_parity(arch: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    t0 = time.perf_counter()
    m = request.getfixturevalue("shared_models")(arch) if arch in SHARED else tf_model(arch, FAST[arch], tmp_path)
    t1 = time.perf_counter()
    check_all(m, tmp_path)
    log.info("%s: tf %.1fs, convert+run %.1fs", arch, t1 - t0, time.perf_counter() - t1)


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["resnet_v1_50", "inception_v3"])
def test_arch_parity_full_size(arch: str, tmp_path: Path) -> None:
    """The default input sizes (vgg_16's, 224, is its only one: test_arch_parity[vgg_16])."""
    spec = slim.get(arch)
    check_all(tf_model(arch, spec.input_size, tmp_path), tmp_path)


# ---------------------------------------------------------------------------- recognition and errors
def test_detect_and_depth_mismatch(shared_models: Callable[[str], Model]) -> None:
    m = shared_models("resnet_v1_50")
    names = list(m.weights.keys())
    assert slim.detect(names).name == "resnet_v1_50"
    # --arch of another depth: the scope is missing, and the message names the checkpoint's scope
    with pytest.raises(InputFileError, match=r"resnet_v1_101/.*resnet_v1_50 \(\d+ variables\)"):
        slim.build(slim.get("resnet_v1_101"), m.weights, (1, 3, 64, 64))
    with pytest.raises(InputFileError, match="resnet_v2_50/"):
        slim.build(slim.get("resnet_v2_50"), m.weights, (1, 3, 64, 64))
    # the same scope with another depth's units (a renamed scope): the unit count names the depth
    fake = {n.replace("resnet_v1_50/", "resnet_v1_101/", 1): np.zeros(1, np.float32) for n in names}
    with pytest.raises(InputFileError, match=r"\[3, 4, 6, 3\] units per block, which is a resnet_v1_50"):
        slim.build(slim.get("resnet_v1_101"), fake, (1, 3, 64, 64))
    deeper = dict.fromkeys(names, np.zeros(1, np.float32))
    for u in range(7, 24):
        deeper[f"resnet_v1_50/block3/unit_{u}/bottleneck_v1/conv1/weights"] = np.zeros(1, np.float32)
    with pytest.raises(InputFileError, match="which is a resnet_v1_101"):
        slim.build(slim.get("resnet_v1_50"), deeper, (1, 3, 64, 64))


def test_inception_v2_plain_first_conv(shared_models: Callable[[str], Model]) -> None:
    """Checkpoints made with ``use_separable_conv=False`` have a plain 7x7 Conv2d_1a_7x7: the
    separable weights composed into one conv must give TF's logits (the depthwise then pointwise
    convs are one linear map)."""
    m = shared_models("inception_v2")
    w = {k: np.asarray(m.weights[k]) for k in m.weights.keys()}
    first = "InceptionV2/Conv2d_1a_7x7"
    dw, pw = w.pop(f"{first}/depthwise_weights"), w.pop(f"{first}/pointwise_weights")
    _, _, c, mult = dw.shape
    w[f"{first}/weights"] = np.einsum("hwcm,cmo->hwco", dw.astype(np.float64),
                                      pw[0, 0].reshape(c, mult, -1).astype(np.float64)).astype(np.float32)
    g = slim.build(slim.get("inception_v2"), w, input_shape=(1, 3, m.size, m.size))
    assert not any(n.name.endswith("/depthwise") for n in g.nodes)
    (inp,) = g.inputs
    got = reference.run(g, {inp: m.x_nchw})[g.outputs[0]]
    np.testing.assert_allclose(got, m.logits, rtol=0, atol=atol(m.logits))


def test_detect_unknown_scope() -> None:
    with pytest.raises(XconvError, match="cannot recognise"):
        slim.detect(["MyNet/conv1/weights", "global_step"])
    assert slim.detect(["InceptionV3/Conv2d_1a_3x3/weights", "global_step"]).name == "inception_v3"
    assert slim.detect(["vgg_19/fc8/weights"]).name == "vgg_19"


def tiny_vgg_a(classes: int = 10, width: int = 3, seed: int = 0) -> dict[str, np.ndarray]:
    """A vgg_a-shaped checkpoint with few channels (no TensorFlow needed)."""
    rng = np.random.default_rng(seed)
    w: dict[str, np.ndarray] = {}
    cin = 3
    layers = [f"conv{i}/conv{i}_{j}" for i, n in enumerate((1, 1, 2, 2, 2), 1) for j in range(1, n + 1)]
    for name in layers:
        w[f"vgg_a/{name}/weights"] = rng.standard_normal((3, 3, cin, width)).astype(np.float32) * 0.3
        w[f"vgg_a/{name}/biases"] = rng.standard_normal(width).astype(np.float32) * 0.1
        cin = width
    for name, k, cout in (("fc6", 7, 8), ("fc7", 1, 8), ("fc8", 1, classes)):
        w[f"vgg_a/{name}/weights"] = rng.standard_normal((k, k, cin, cout)).astype(np.float32) * 0.1
        w[f"vgg_a/{name}/biases"] = rng.standard_normal(cout).astype(np.float32) * 0.1
        cin = cout
    return w


def test_input_size_must_fit_the_head() -> None:
    w = tiny_vgg_a()
    g = slim.build(slim.get("vgg_a"), w, (1, 3, 224, 224))
    assert g.type_of(g.outputs[0]).shape == (1, 10) and g.meta.background_offset == 0
    assert (g.meta.crop, g.meta.resize, g.meta.mean) == (224, 256, (123.68, 116.78, 103.94))
    with pytest.raises(XconvError, match=r"2x2 map for a 256x256 input.*224\.\.255"):
        slim.build(slim.get("vgg_a"), w, (1, 3, 256, 256))


def test_presets() -> None:
    for name in ("resnet_v2_50", "inception_v1", "inception_v2", "inception_v3"):
        spec = slim.get(name)
        # inception preprocessing: central 87.5% crop -> short side input/0.875 then a centre crop
        assert spec.preprocessing["mean"] == (127.5,) * 3 and spec.resize == round(spec.input_size / 0.875)
    assert slim.get("resnet_v1_152").resize == 256 and slim.get("resnet_v1_152").input_size == 224
    assert slim.get("resnet_v2_152").input_size == 299 and slim.get("inception_v3").input_size == 299
    assert slim.get("resnet_v1_50").bn_eps == 1e-5 and slim.get("inception_v2").bn_eps == 1e-3
