"""The Keras frontend (xconv.frontends.keras): per-layer cases built with the
real Keras APIs (tf_keras = Keras 2, keras = Keras 3), saved as Keras-2
``.h5``, Keras-3 ``.keras`` and Keras-3 ``.h5``, converted without Keras and
compared with the live Keras model; then the same files through real
onnxruntime and pycaffe (bvlc).

Tolerance: Keras computes in float32, the IR reference in float64 and the
runtimes in float32; on these few-layer models over unit-scale inputs the
rounding is a few ulps of the largest magnitude (measured below 2e-6), far
below atol = 2e-5 * (1 + max|Keras output|).  A layout, padding or weight-
order mistake moves outputs by O(1).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
tf_keras = pytest.importorskip("tf_keras")
keras = pytest.importorskip("keras")

from xconv import reference  # noqa: E402
from xconv.backend import EmitOptions  # noqa: E402
from xconv.convert import convert  # noqa: E402
from xconv.errors import InputFileError, UnsafeInputError, UnsupportedAttrError, UnsupportedOpError  # noqa: E402
from xconv.frontends import keras as xk  # noqa: E402
from xconv.verify.runners import locate, make_runner  # noqa: E402

LIBS = {"k2": tf_keras, "k3": keras}
# (library, file suffix): Keras 2 HDF5, Keras 3 archive, Keras 3 legacy HDF5
FLAVOURS = [("k2", ".h5"), ("k3", ".keras"), ("k3", ".h5")]


# --------------------------------------------------------------------------- helpers
def randomise(model: Any, seed: int) -> None:
    """Non-trivial weights: BN statistics and affine terms, biases (initialisers leave them 0/1)."""
    rng = np.random.default_rng(seed)
    new = []
    for w in model.weights:
        a = np.asarray(w.numpy())
        n = w.name.split("/")[-1].split(":")[0]
        path = getattr(w, "path", w.name)
        if "norm_adapted" in path:
            # Keras 3 ignores set_weights on an adapted Normalization until finalize_state(): keep adapt()'s
            new.append(a)
            continue
        if "variance" in n or n == "gamma":
            a = rng.uniform(0.5, 1.5, a.shape)
        elif n in ("bias", "beta", "moving_mean", "mean") or "mean" in path:
            a = rng.normal(0.0, 0.3, a.shape)
        elif n == "alpha":
            a = rng.uniform(0.05, 0.3, a.shape)
        elif n == "count":
            pass
        else:
            a = a + rng.normal(0.0, 0.05, a.shape)
        new.append(a.astype(np.float32))
    model.set_weights(new)


def save(model: Any, lib: str, suffix: str, tmp: Path, name: str) -> Path:
    path = tmp / f"{name}_{lib}{suffix.replace('.', '_')}{suffix}"
    model.save(str(path))
    return path


def keras_out(model: Any, x_nhwc: np.ndarray) -> np.ndarray:
    y = model(x_nhwc, training=False)
    y = np.asarray(y[0] if isinstance(y, (list, tuple)) else y)
    return y.transpose(0, 3, 1, 2) if y.ndim == 4 else y


def ir_out(graph: Any, x_nhwc: np.ndarray) -> np.ndarray:
    x = x_nhwc.transpose(0, 3, 1, 2) if x_nhwc.ndim == 4 else x_nhwc
    return reference.run(graph, {next(iter(graph.inputs)): x.astype(np.float64)})[graph.outputs[0]]


def tol(want: np.ndarray) -> float:
    return 2e-5 * (1.0 + float(np.abs(want).max()))


def target_out(graph: Any, target: str, out: Path, x_nhwc: np.ndarray) -> np.ndarray:
    opts = EmitOptions(dialect="bvlc") if target == "caffe" else EmitOptions(opset=13)
    res = convert(graph, target, out, "m", opts)
    path = next(p for p in res.files if p.suffix in (".prototxt", ".onnx"))
    run = make_runner(locate(path))
    try:
        x = x_nhwc.transpose(0, 3, 1, 2) if x_nhwc.ndim == 4 else x_nhwc
        return np.asarray(run(np.ascontiguousarray(x, dtype=np.float32)))
    finally:
        if hasattr(run, "close"):
            run.close()


# --------------------------------------------------------------------------- cases
# each case: (lib module, lib id) -> (model, input NHWC shape); built with the real Keras layer API
def case_convs(K: Any, lib: str) -> Any:
    L = K.layers
    x = K.Input((13, 12, 3))
    h = L.Conv2D(8, 3, padding="same", name="c0")(x)
    a = L.Conv2D(8, 3, strides=2, padding="same", activation="relu", name="same_s2")(h)
    b = L.Conv2D(6, (3, 5), padding="valid", dilation_rate=2, use_bias=False, name="dilated")(h)
    c = L.DepthwiseConv2D(3, strides=2, padding="same", depth_multiplier=2, activation="relu", name="dw")(h)
    d = L.SeparableConv2D(6, 3, padding="same", depth_multiplier=2, activation="sigmoid", name="sep")(h)
    e = L.Conv2D(8, 3, groups=4, padding="valid", strides=(2, 1), name="grouped")(h)
    f = L.Conv2D(5, 4, strides=3, padding="same", name="same_k4_s3")(h)
    outs = [L.GlobalAveragePooling2D()(t) for t in (a, b, c, d, e, f)]
    y = L.Concatenate()(outs)
    return K.Model(x, L.Dense(7, name="head")(y))


ACTS = {"k2": ["relu", "sigmoid", "tanh", "swish", "hard_sigmoid", "elu", "softmax", "linear"],
        "k3": ["relu", "relu6", "sigmoid", "tanh", "silu", "swish", "hard_sigmoid", "hard_silu", "hard_swish",
               "elu", "leaky_relu", "softmax", "linear"]}


def case_norms_acts(K: Any, lib: str) -> Any:
    L = K.layers
    x = K.Input((9, 10, 3))
    h = L.Conv2D(8, 3, padding="same")(x)
    h = L.BatchNormalization(epsilon=1e-3, name="bn")(h)
    h1 = L.BatchNormalization(center=False, epsilon=0.01, name="bn_nocenter")(h)
    h2 = L.BatchNormalization(scale=False, name="bn_noscale")(h)
    h = L.Add()([h1, h2])
    branches = [L.Activation(a, name=f"act_{a}")(h) for a in ACTS[lib]]
    branches += [L.ReLU(max_value=6.0, name="relu6")(h), L.ReLU(negative_slope=0.1, max_value=2.0, name="lrelu_max")(h),
                 L.ReLU(name="relu_plain")(h), L.LeakyReLU(name="leaky")(h), L.ELU(alpha=0.7, name="elu_layer")(h),
                 L.PReLU(shared_axes=[1, 2], name="prelu")(h), L.Softmax(name="softmax_layer")(h),
                 L.Activation("exponential", name="exp")(L.Activation("tanh")(h))]
    y = L.Concatenate(name="cat")(branches)
    y = L.Dropout(0.5)(y)
    g = L.GlobalAveragePooling2D()(y)
    g = L.Dense(6)(g)
    g = L.BatchNormalization(name="bn_dense")(g)
    return K.Model(x, L.Activation("relu")(g))


def case_pools_pads(K: Any, lib: str) -> Any:
    L = K.layers
    x = K.Input((13, 11, 4))
    h = L.ZeroPadding2D(((1, 2), (0, 3)), name="zpad")(x)
    h = L.Cropping2D(((1, 0), (2, 1)), name="crop")(h)
    a = L.MaxPooling2D(3, 2, padding="same", name="max_same")(h)
    b = L.AveragePooling2D(3, 2, padding="same", name="avg_same")(h)
    c = L.AveragePooling2D(2, padding="valid", name="avg_valid")(h)
    d = L.MaxPooling2D((2, 3), (1, 2), padding="valid", name="max_valid")(h)
    e = L.AveragePooling2D((3, 2), (2, 3), padding="same", name="avg_same_rect")(h)
    se = L.GlobalMaxPooling2D(keepdims=True, name="gmax_keep")(a)
    a = L.Multiply(name="se")([a, se])
    ga = L.GlobalAveragePooling2D(keepdims=True)(b)
    b = L.Add(name="bcast_add")([b, ga])
    outs = [L.GlobalAveragePooling2D()(t) for t in (a, b, c, e)] + [L.GlobalMaxPooling2D()(d)]
    return K.Model(x, L.Concatenate()(outs))


def case_merges(K: Any, lib: str) -> Any:
    L = K.layers
    x = K.Input((6, 7, 4))
    a = L.Conv2D(4, 1, name="a")(x)
    b = L.Conv2D(4, 3, padding="same", name="b")(x)
    c = L.Conv2D(4, 1, use_bias=False, name="c")(x)
    ms = [L.Add()([a, b, c]), L.Subtract()([a, b]), L.Multiply()([a, b]), L.Maximum()([a, b, c]),
          L.Minimum()([a, c]), L.Average()([a, b, c])]
    h = L.Concatenate(axis=-1)(ms)
    g1 = L.GlobalAveragePooling2D()(h)
    g2 = L.GlobalMaxPooling2D()(h)
    return K.Model(x, L.Concatenate(axis=1)([g1, g2, L.Add()([g1, g2])]))


def case_dense_flatten(K: Any, lib: str) -> Any:
    L = K.layers
    x = K.Input((6, 8, 3))
    h = L.Conv2D(5, 3, strides=2, padding="same")(x)  # 3 x 4 x 5
    f = L.Flatten(name="flat")(h)
    d1 = L.Dense(7, name="dense_after_flatten")(f)  # weight rows permuted
    r = L.Reshape((60,), name="reshape_flat")(h)
    d2 = L.Dense(7, activation="tanh", name="dense_after_reshape")(r)
    g = L.GlobalAveragePooling2D()(h)
    g = L.Reshape((1, 1, 5), name="to_11c")(g)
    g = L.Dense(4, name="dense_rank4")(g)  # a 1x1 convolution
    g = L.Reshape((4,), name="to_vec")(g)
    back = L.Reshape((3, 4, 5), name="unflatten")(f)  # undoes the flatten: no op at all
    back = L.Conv2D(2, 1, name="after_unflatten")(back)
    back = L.Dense(3, name="dense_after_unflatten")(L.Flatten()(back))
    return K.Model(x, L.Concatenate()([d1, d2, g, back]))


def case_reshape_general(K: Any, lib: str) -> Any:
    """NHWC order that must be materialised: Transpose + Reshape/Flatten (ONNX; BVLC Caffe has no Permute)."""
    L = K.layers
    x = K.Input((4, 6, 2))
    h = L.Reshape((6, 4, 2), name="swap")(x)  # a true reshape of NHWC data
    h = L.Conv2D(3, 3, padding="same")(h)
    f = L.Flatten()(h)
    m = L.Activation("relu", name="relu_on_flat")(f)  # a flatten not feeding a Dense
    return K.Model(x, L.Concatenate()([m, L.Dense(4)(f)]))


def case_preprocessing(K: Any, lib: str) -> Any:
    L = K.layers
    x = K.Input((8, 8, 3))
    h = L.Rescaling(1 / 127.5, offset=-1.0, name="rescale")(x)
    h = L.Normalization(mean=[0.1, -0.2, 0.3], variance=[0.5, 2.0, 1.5], name="norm_cfg")(h)
    n2 = L.Normalization(name="norm_adapted")
    n2.adapt(np.random.default_rng(3).normal(0.5, 2.0, (16, 8, 8, 3)).astype(np.float32))
    h = n2(h)
    h = L.Rescaling([0.5, 1.0, 2.0], name="rescale_per_channel")(h) if lib == "k3" else h
    h = L.Conv2D(4, 3)(h)
    return K.Model(x, L.GlobalAveragePooling2D()(h))


def case_nested_shared(K: Any, lib: str) -> Any:
    L = K.layers
    x = K.Input((8, 9, 3))
    inner_seq = K.Sequential([K.Input((8, 9, 3)), L.Conv2D(4, 3, padding="same"), L.BatchNormalization(),
                              L.ReLU()], name="inner_seq")
    i2 = K.Input((8, 9, 4))
    t = L.Conv2D(4, 1, name="inner_conv")(i2)
    inner_fn = K.Model(i2, L.Add()([i2, t]), name="inner_fn")
    shared = L.Conv2D(4, 3, padding="same", name="shared")
    a = inner_seq(x)
    b = inner_fn(a)
    c = inner_fn(shared(b))  # the nested model called twice, the shared conv in between
    d = shared(c)
    y = L.Concatenate()([a, b, c, d])
    return K.Model(x, L.GlobalAveragePooling2D()(y))


def case_custom_scale(K: Any, lib: str) -> Any:
    L = K.layers
    mod = ("tf_keras.src.applications.inception_resnet_v2" if lib == "k2"
           else "keras.src.applications.inception_resnet_v2")
    import importlib
    CustomScaleLayer = importlib.import_module(mod).CustomScaleLayer
    x = K.Input((7, 7, 4))
    up = L.Conv2D(4, 1, name="up")(x)
    y = CustomScaleLayer(0.17, name="block35_1")([x, up])
    return K.Model(x, L.Activation("relu")(y))


def case_sequential(K: Any, lib: str) -> Any:
    L = K.layers
    return K.Sequential([K.Input((10, 10, 3)), L.Conv2D(6, 3, strides=2, activation="relu"), L.BatchNormalization(),
                         L.MaxPooling2D(), L.Flatten(), L.Dense(5), L.Softmax()], name="seq_top")


CASES: dict[str, Callable[[Any, str], Any]] = {
    "convs": case_convs, "norms_acts": case_norms_acts, "pools_pads": case_pools_pads, "merges": case_merges,
    "dense_flatten": case_dense_flatten, "reshape_general": case_reshape_general,
    "preprocessing": case_preprocessing, "nested_shared": case_nested_shared, "custom_scale": case_custom_scale,
    "sequential": case_sequential,
}
CUSTOM = {"custom_scale"}


def _custom_objects(lib: str) -> dict[str, Any]:
    return xk._custom_objects("tf_keras" if lib == "k2" else "keras")


@pytest.fixture(scope="module")
def built(tmp_path_factory: Any) -> Callable[[str, str, str], tuple[Path, Any, np.ndarray]]:
    cache: dict[tuple[str, str, str], tuple[Path, Any, np.ndarray]] = {}
    tmp = tmp_path_factory.mktemp("keras_cases")

    def get(case: str, lib: str, suffix: str) -> tuple[Path, Any, np.ndarray]:
        key = (case, lib, suffix)
        if key not in cache:
            K = LIBS[lib]
            K.utils.set_random_seed(1)
            model = CASES[case](K, lib)
            randomise(model, seed=hash(case) % 1000)
            path = save(model, lib, suffix, tmp, case)
            shape = (3,) + tuple(model.inputs[0].shape[1:])
            x = np.random.default_rng(0).normal(0, 1, shape).astype(np.float32)
            if case == "preprocessing":
                x = np.random.default_rng(0).uniform(0, 255, shape).astype(np.float32)
            cache[key] = (path, model, x)
        return cache[key]
    return get


# --------------------------------------------------------------------------- IR vs Keras
@pytest.mark.parametrize("lib,suffix", FLAVOURS, ids=[f"{a}{b}" for a, b in FLAVOURS])
@pytest.mark.parametrize("case", list(CASES))
def test_case_matches_keras(case: str, lib: str, suffix: str, built: Any) -> None:
    path, model, x = built(case, lib, suffix)
    want = keras_out(model, x)
    g = xk.load(path, input_shape=(3,) + (x.shape[3], x.shape[1], x.shape[2]))
    got = ir_out(g, x)
    np.testing.assert_allclose(got, want, rtol=0, atol=tol(want), err_msg=f"{case} {lib}{suffix}: IR vs Keras")
    # the file round-trips in Keras itself to the same numbers (the saved file is what was converted)
    if not (lib == "k3" and suffix == ".h5" and case in CUSTOM):
        again = keras_out(LIBS[lib].models.load_model(str(path), compile=False,
                                                      custom_objects=_custom_objects(lib)), x)
        np.testing.assert_allclose(again, want, rtol=0, atol=1e-6)


@pytest.mark.parametrize("lib,suffix", [("k2", ".h5"), ("k3", ".keras")])
@pytest.mark.parametrize("case", [c for c in CASES if c != "reshape_general"])
def test_case_real_backends(case: str, lib: str, suffix: str, built: Any, tmp_path: Path) -> None:
    """The same files through onnxruntime and real pycaffe (BVLC 1.0 layers)."""
    path, model, x = built(case, lib, suffix)
    want = keras_out(model, x)
    g = xk.load(path, input_shape=(3,) + (x.shape[3], x.shape[1], x.shape[2]))
    for target in ("onnx", "caffe"):
        got = target_out(g, target, tmp_path / target, x)
        np.testing.assert_allclose(got.reshape(want.shape), want, rtol=0, atol=tol(want),
                                   err_msg=f"{case} {lib}{suffix}: {target} vs Keras")


def test_reshape_general_onnx(built: Any, tmp_path: Path) -> None:
    """A true NHWC reshape goes through Transpose/Reshape: ONNX has them; BVLC Caffe has no Permute."""
    path, model, x = built("reshape_general", "k3", ".keras")
    want = keras_out(model, x)
    g = xk.load(path, input_shape=(3, 2, 4, 6))
    got = target_out(g, "onnx", tmp_path, x)
    np.testing.assert_allclose(got, want, rtol=0, atol=tol(want))


def test_runner_matches_live_model(built: Any) -> None:
    """make_runner (verify's source side) loads the file in the right Keras and takes NCHW."""
    for lib, suffix in FLAVOURS:
        path, model, x = built("pools_pads", lib, suffix)
        run = xk.make_runner(path)
        np.testing.assert_allclose(run(x.transpose(0, 3, 1, 2)), keras_out(model, x), rtol=0, atol=1e-6)


def test_hard_sigmoid_follows_the_files_keras(built: Any) -> None:
    """Keras 2 hard_sigmoid is clip(0.2x + 0.5); Keras 3 is relu6(x + 3) / 6: the file's version decides."""
    for lib, suffix, alpha in (("k2", ".h5", 0.2), ("k3", ".keras", 1 / 6)):
        path, _, _ = built("norms_acts", lib, suffix)
        g = xk.load(path)
        n = next(n for n in g.nodes if n.op == "HardSigmoid")
        assert n.attrs["alpha"] == pytest.approx(alpha)


def test_flatten_dense_permutes_rows_without_transpose(built: Any) -> None:
    path, _, _ = built("dense_flatten", "k2", ".h5")
    g = xk.load(path)
    gemm = next(n for n in g.nodes if n.name == "dense_after_flatten")
    assert not any(n.op == "Transpose" and n.outputs[0] in gemm.inputs for n in g.nodes)
    assert not any(n.op == "Transpose" for n in g.nodes)
    path, _, _ = built("reshape_general", "k2", ".h5")
    ops = [n.op for n in xk.load(path).nodes]
    assert ops.count("Transpose") == 3  # in and out of the true reshape, and the relu on the NHWC flatten


def test_weights_keep_shared_layers_once(built: Any) -> None:
    path, model, _ = built("nested_shared", "k3", ".keras")
    g = xk.load(path)
    n_params = sum(int(np.prod(a.shape)) for a in g.params.values())
    keras_params = sum(int(np.prod(w.shape)) for w in model.weights)
    # BN folds nothing here (load only); every Keras weight is in the IR exactly once, no copy per call
    assert n_params == keras_params
