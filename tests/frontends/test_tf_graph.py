"""The generic TensorFlow graph frontend (xconv.frontends.tensorflow.graph).

Per-op: tiny tf.compat.v1 graphs (NHWC placeholders), converted and run in
TensorFlow (the source framework), the IR reference (float64), real pycaffe
(bvlc) and onnxruntime, parametrised over the edges (SAME/VALID, odd sizes,
strides 1/2/3, AvgPool SAME borders, depthwise multipliers, dilation,
asymmetric and mirror padding, concat, NHWC flatten -> MatMul).

Tolerance (per-op): TF and the runtimes compute in float32, the reference in
float64; on these one- to three-op graphs over unit-scale inputs the float32
rounding is a few ulps of the largest magnitude involved, far below
atol = 2e-5 * (1 + max|TF output|); a layout or padding mistake moves
outputs by O(1).

Whole nets (slow): tf_slim's own resnet_v1_50 and inception_v3 (code this
project did not write) with random weights, random BN statistics and
logits rescaled to spread, saved as checkpoint+meta and frozen .pb, compared
on real photos.
"""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("GLOG_minloglevel", "2")
tf = pytest.importorskip("tensorflow")

from xconv import reference  # noqa: E402
from xconv.backend import EmitOptions  # noqa: E402
from xconv.convert import convert  # noqa: E402
from xconv.errors import UnsupportedAttrError, UnsupportedOpError, XconvError  # noqa: E402
from xconv.frontends.tensorflow.graph import load_graph, make_runner  # noqa: E402
from xconv.verify.runners import locate  # noqa: E402
from xconv.verify.runners import make_runner as target_runner  # noqa: E402

tf1 = tf.compat.v1
PHOTOS = ("imagenet_00_243.jpg", "imagenet_05_853.jpg")
CALIBRATION = tuple(f"imagenet_{i:02d}_{lab}.jpg" for i, lab in enumerate((243, 559, 438, 990, 949, 853)))


# --------------------------------------------------------------------------- helpers
class Consts:
    """Seeded float32 constants for one test graph."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def __call__(self, *shape: int, scale: float = 0.5, name: str | None = None) -> Any:
        return tf.constant((self.rng.standard_normal(shape) * scale).astype(np.float32), name=name)

    def pos(self, *shape: int) -> Any:
        return tf.constant(self.rng.uniform(0.5, 2.0, shape).astype(np.float32))


def build(fn: Callable[[Any, Consts], Any], shape: tuple[int, ...], seed: int = 0) -> tuple[Any, str]:
    g = tf.Graph()
    with g.as_default():
        x = tf1.placeholder(tf.float32, shape, name="input")
        y = fn(x, Consts(seed))
        y = tf.identity(y, name="output")
    return g, y.op.name


def run_tf(g: Any, out: str, x_nhwc: np.ndarray) -> np.ndarray:
    with tf1.Session(graph=g) as sess:
        return np.asarray(sess.run(f"{out}:0", {"input:0": x_nhwc}))


def to_nchw(y: np.ndarray) -> np.ndarray:
    return y.transpose(0, 3, 1, 2) if y.ndim == 4 else y


# pycaffe segfaults building a Net in a process that imported TensorFlow before it (other test
# modules import TF at collection): Caffe runs in one long-lived child interpreter per session.
_CAFFE_WORKER = r"""
import os, sys
os.environ["GLOG_minloglevel"] = "2"
import numpy as np
from xconv.verify.runners import locate, make_runner
for line in sys.stdin:
    proto, xin, xout = line.rstrip("\n").split("\t")
    try:
        np.save(xout, make_runner(locate(proto))(np.load(xin)))
        print("@@ok", flush=True)
    except Exception as e:
        print("@@err " + repr(e).replace("\n", " "), flush=True)
"""


class CaffeWorker:
    def __init__(self) -> None:
        env = dict(os.environ, GLOG_minloglevel="2")
        self.proc = subprocess.Popen([sys.executable, "-c", _CAFFE_WORKER], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=env,
                                     cwd=str(Path(__file__).resolve().parents[2]))

    def __call__(self, prototxt: Path, x: np.ndarray) -> np.ndarray:
        xin, xout = prototxt.with_suffix(".in.npy"), prototxt.with_suffix(".out.npy")
        np.save(xin, x)
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"{prototxt}\t{xin}\t{xout}\n")
        self.proc.stdin.flush()
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"the pycaffe worker died (exit code {self.proc.poll()})")
            if line.startswith("@@"):
                break
        if not line.startswith("@@ok"):
            raise RuntimeError(f"pycaffe: {line[7:].strip()}")
        return np.load(xout)

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait(timeout=30)


_WORKER: list[CaffeWorker] = []


def run_caffe(prototxt: Path, x: np.ndarray) -> np.ndarray:
    if not _WORKER:
        _WORKER.append(CaffeWorker())
    return _WORKER[0](prototxt, x)


@pytest.fixture(scope="module", autouse=True)
def _close_caffe_worker() -> Any:
    yield
    while _WORKER:
        _WORKER.pop().close()


def run_target(graph: Any, target: str, out: Path, x_nchw: np.ndarray, name: str = "m") -> np.ndarray:
    opts = EmitOptions(dialect="bvlc") if target == "caffe" else EmitOptions(opset=13)
    res = convert(graph, target, out, name, opts)
    path = next(p for p in res.files if p.suffix in (".prototxt", ".onnx"))
    x = x_nchw.astype(np.float32)
    return run_caffe(path, x) if target == "caffe" else target_runner(locate(path))(x)


def check_targets(graph: Any, x_nchw: np.ndarray, want: np.ndarray, tmp_path: Path, atol: float,
                  caffe: bool = True) -> None:
    """IR reference (float64), pycaffe bvlc and onnxruntime against ``want`` (NCHW)."""
    ref = reference.run(graph, {next(iter(graph.inputs)): x_nchw.astype(np.float64)})[graph.outputs[0]]
    np.testing.assert_allclose(ref, want, rtol=0, atol=atol, err_msg="IR reference vs TensorFlow")
    for target in ("onnx", "caffe") if caffe else ("onnx",):
        got = run_target(graph, target, tmp_path / target, x_nchw)
        np.testing.assert_allclose(got.reshape(want.shape), want, rtol=0, atol=atol, err_msg=f"{target} vs TF")


# --------------------------------------------------------------------------- per-op cases
def conv(k: int, cout: int, s: int = 1, pad: Any = "SAME", d: int = 1, bias: bool = True):
    def f(x: Any, c: Consts) -> Any:
        y = tf.nn.conv2d(x, c(k, k, int(x.shape[-1]), cout), strides=s, padding=pad, dilations=d)
        return tf.nn.bias_add(y, c(cout)) if bias else y
    return f


def dwconv(k: int, mult: int, s: int = 1, pad: str = "SAME", d: int = 1):
    def f(x: Any, c: Consts) -> Any:
        return tf.nn.depthwise_conv2d(x, c(k, k, int(x.shape[-1]), mult), [1, s, s, 1], pad, dilations=[d, d])
    return f


def pool(kind: str, k: int, s: int, pad: str):
    op = tf.nn.max_pool2d if kind == "max" else tf.nn.avg_pool2d
    return lambda x, c: op(x, k, s, pad)


def fused_bn(x: Any, c: Consts) -> Any:
    ch = int(x.shape[-1])
    y = tf.nn.conv2d(x, c(3, 3, ch, 5), 1, "SAME")
    return tf1.nn.fused_batch_norm(y, c.pos(5), c(5), mean=c(5), variance=c.pos(5), epsilon=1e-3,
                                   is_training=False)[0]


def unfused_bn(x: Any, c: Consts) -> Any:
    # the arithmetic tf.layers/slim emit for fused=False at inference, on constants after freezing
    ch = int(x.shape[-1])
    gamma, beta, mean, var = c.pos(ch), c(ch), c(ch), c.pos(ch)
    inv = tf.math.rsqrt(var + 1e-3) * gamma
    return x * inv + (beta - mean * inv)


def flatten_matmul(x: Any, c: Consts) -> Any:
    y = tf.nn.relu(tf.nn.conv2d(x, c(3, 3, int(x.shape[-1]), 4), 2, "SAME"))
    n = int(np.prod(y.shape[1:]))
    y = tf.reshape(y, [-1, n])
    return tf.nn.bias_add(tf.matmul(y, c(n, 7)), c(7))


def shape_flatten_matmul_tb(x: Any, c: Consts) -> Any:
    # Shape/StridedSlice/Pack computing the flatten shape; MatMul with transpose_b
    n = int(np.prod(x.shape[1:]))
    y = tf.reshape(x, tf.stack([tf.shape(x)[0], -1]))
    return tf.matmul(y, c(6, n), transpose_b=True) + c(6)


def flatten_softmax(x: Any, c: Consts) -> Any:
    return tf.nn.softmax(tf.reshape(x, [-1, int(np.prod(x.shape[1:]))]))


def concat(axis: int):
    def f(x: Any, c: Consts) -> Any:
        a = tf.nn.conv2d(x, c(1, 1, int(x.shape[-1]), 3), 1, "SAME")
        b = tf.nn.relu(tf.nn.conv2d(x, c(3, 3, int(x.shape[-1]), 2), 1, "SAME"))
        return tf.concat([b, a, x], axis=axis)
    return f


def branch_add_const(x: Any, c: Consts) -> Any:
    y = tf.nn.conv2d(x, c(3, 3, int(x.shape[-1]), 4), 1, "VALID")
    return tf.nn.relu(y + c(4)) * y  # the conv output has two consumers: the Add is not folded


def binary_acts(x: Any, c: Consts) -> Any:
    a = tf.nn.relu(x)
    return a * tf.sigmoid(x) - tf.tanh(x) + a / (tf.abs(x) * 0 + 2.0)


def se_block(x: Any, c: Consts) -> Any:
    m = tf.reduce_mean(x, [1, 2], keepdims=True)
    return x * tf.sigmoid(tf.nn.conv2d(m, c(1, 1, int(x.shape[-1]), int(x.shape[-1])), 1, "VALID"))


def mean_squeeze_dense(x: Any, c: Consts) -> Any:
    m = tf.squeeze(tf.reduce_mean(x, [1, 2], keepdims=True), [1, 2])
    return tf.matmul(m, c(int(x.shape[-1]), 5))


def max_reduce(x: Any, c: Consts) -> Any:
    return tf.reduce_max(x, [1, 2]) + tf.reduce_mean(x, [1, 2])


def pad_conv(x: Any, c: Consts) -> Any:
    y = tf.pad(x, [[0, 0], [1, 2], [0, 1], [0, 0]])
    return tf.nn.conv2d(y, c(3, 3, int(x.shape[-1]), 4), 2, "VALID")


def pad_alone(x: Any, c: Consts) -> Any:
    return tf.pad(x, [[0, 0], [2, 0], [1, 3], [0, 0]]) * 1.5


def mirror_pad(x: Any, c: Consts) -> Any:
    return tf.pad(x, [[0, 0], [1, 2], [2, 1], [0, 0]], mode="REFLECT") + 0.5


def activations(x: Any, c: Consts) -> Any:
    return tf.nn.relu6(x * 4) + tf.nn.elu(x) + tf.nn.leaky_relu(x, 0.2)


CASES: dict[str, tuple[Callable[[Any, Consts], Any], tuple[int, ...], bool]] = {
    # name: (graph, NHWC input shape, Caffe bvlc has an exact form)
    "conv_same_s1_odd": (conv(3, 4), (1, 7, 9, 3), True),
    "conv_same_s2_even": (conv(3, 4, 2), (1, 8, 10, 3), True),
    "conv_same_s2_odd": (conv(3, 4, 2), (2, 9, 7, 3), True),
    "conv_same_k4_s3": (conv(4, 5, 3), (1, 10, 11, 2), True),
    "conv_same_k2_s1": (conv(2, 3, 1), (1, 6, 5, 2), True),
    "conv_valid_s2": (conv(3, 4, 2, "VALID"), (1, 9, 8, 3), True),
    "conv_valid_s3_gt_k": (conv(2, 4, 3, "VALID", bias=False), (1, 10, 11, 3), True),
    "conv_dilated_same": (conv(3, 4, 1, "SAME", 2), (1, 9, 10, 3), True),
    "conv_dilated_valid": (conv(3, 4, 1, "VALID", 2), (1, 9, 10, 3), True),
    "conv_explicit_pads": (conv(3, 4, 2, [[0, 0], [1, 2], [0, 1], [0, 0]]), (1, 8, 9, 3), True),
    "depthwise_m1_same_s2": (dwconv(3, 1, 2), (1, 9, 8, 4), True),
    "depthwise_m2_valid": (dwconv(3, 2, 1, "VALID"), (1, 7, 7, 3), True),
    "depthwise_m2_dilated": (dwconv(3, 2, 1, "SAME", 2), (1, 8, 9, 3), True),
    "fused_bn": (fused_bn, (2, 5, 6, 3), True),
    "unfused_bn": (unfused_bn, (1, 5, 6, 4), True),
    "branch_add_const": (branch_add_const, (1, 6, 6, 3), True),
    "activations": (activations, (1, 5, 4, 3), True),
    "sigmoid_tanh_binary": (binary_acts, (1, 4, 5, 3), True),
    "maxpool_same_k3_s2_odd": (pool("max", 3, 2, "SAME"), (1, 9, 7, 3), True),
    "maxpool_same_k3_s3": (pool("max", 3, 3, "SAME"), (1, 10, 11, 2), True),
    "maxpool_valid_k2_s2_odd": (pool("max", 2, 2, "VALID"), (1, 9, 7, 3), True),
    "maxpool_valid_k1_s2": (pool("max", 1, 2, "VALID"), (1, 9, 8, 2), True),
    "avgpool_same_k3_s2_odd": (pool("avg", 3, 2, "SAME"), (1, 9, 7, 3), True),
    "avgpool_same_k3_s1": (pool("avg", 3, 1, "SAME"), (1, 6, 5, 3), True),
    "avgpool_same_k5_s1_small": (pool("avg", 5, 1, "SAME"), (1, 4, 4, 2), True),
    "avgpool_same_k2_s3": (pool("avg", 2, 3, "SAME"), (1, 10, 8, 2), True),
    "avgpool_valid_k3_s2": (pool("avg", 3, 2, "VALID"), (1, 9, 8, 3), True),
    "concat_axis3": (concat(3), (1, 5, 6, 3), True),
    "concat_axis_neg1": (concat(-1), (2, 4, 3, 2), True),
    "se_block_mean_keepdims": (se_block, (2, 5, 4, 3), True),
    "mean_squeeze_dense": (mean_squeeze_dense, (2, 5, 4, 3), True),
    "max_mean_reduce": (max_reduce, (1, 5, 4, 3), True),
    "flatten_matmul_nhwc_order": (flatten_matmul, (2, 7, 6, 3), True),
    "shape_stridedslice_pack_matmul_tb": (shape_flatten_matmul_tb, (2, 3, 4, 5), True),
    "flatten_softmax_transpose": (flatten_softmax, (1, 3, 2, 4), False),  # Transpose: no stock Caffe layer
    "pad_asym_conv_valid": (pad_conv, (1, 8, 7, 3), True),
    "pad_asym_alone": (pad_alone, (1, 5, 4, 2), True),
    "mirror_pad_reflect": (mirror_pad, (1, 5, 6, 2), False),  # Caffe pads with zeros only
    "softmax_4d": (lambda x, c: tf.nn.softmax(x * 2.0), (1, 3, 4, 5), True),
}


@pytest.mark.parametrize("name", list(CASES))
def test_op(name: str, tmp_path: Path) -> None:
    fn, shape, caffe_ok = CASES[name]
    g, out = build(fn, shape)
    x = np.random.default_rng(7).standard_normal(shape).astype(np.float32)
    want = to_nchw(run_tf(g, out, x))
    atol = 2e-5 * (1 + float(np.abs(want).max()))
    graph = load_graph(g.as_graph_def(), name="m")
    assert graph.meta.source_framework == "tensorflow"
    assert all(n.loc.framework == "tensorflow" for n in graph.nodes)
    check_targets(graph, x.transpose(0, 3, 1, 2), want, tmp_path, atol, caffe=caffe_ok)
    if not caffe_ok:  # explicitly refused, never silently wrong
        with pytest.raises(XconvError):
            convert(graph, "caffe", tmp_path / "caffe", "m", EmitOptions(dialect="bvlc"))


def test_layout_rewrites_are_exact_forms() -> None:
    """Bias folds into the conv; an NHWC flatten before MatMul permutes weight rows (no Transpose)."""
    g, _ = build(conv(3, 4, 2), (1, 8, 9, 3))
    ir = load_graph(g.as_graph_def())
    assert ir.op_counts() == {"Conv": 1} and len(ir.nodes[0].inputs) == 3
    assert ir.inputs[ir.nodes[0].inputs[0]].shape == (1, 3, 8, 9)
    assert ir.nodes[0].attrs["pads"] == (0, 1, 1, 1)  # SAME 8x9, k3 s2: H pads (0, 1), W pads (1, 1)
    g, _ = build(flatten_matmul, (1, 7, 6, 3))
    ir = load_graph(g.as_graph_def())
    assert "Transpose" not in ir.op_counts() and ir.op_counts()["Gemm"] == 1
    g, _ = build(pool("avg", 3, 2, "SAME"), (1, 9, 7, 3))
    node = load_graph(g.as_graph_def()).nodes[0]
    assert node.attrs["count_include_pad"] is False and node.attrs["pads"] == (1, 1, 1, 1)
    g, _ = build(unfused_bn, (1, 5, 6, 4))
    assert load_graph(g.as_graph_def()).op_counts() == {"BatchNormalization": 1}


# --------------------------------------------------------------------------- errors
def test_unsupported_ops_listed_at_once() -> None:
    def fn(x: Any, c: Consts) -> Any:
        y = tf.nn.lrn(tf.nn.relu(x), depth_radius=2, name="norm1")
        return tf.image.resize(y, [8, 8], name="up") + tf.image.resize(x, [8, 8], name="up2")
    g, _ = build(fn, (1, 4, 4, 3))
    with pytest.raises(UnsupportedOpError) as ei:
        load_graph(g.as_graph_def())
    err = ei.value
    assert set(err.ops) == {"LRN", "ResizeBilinear"}
    assert err.ops["LRN"] == ["norm1"] and len(err.ops["ResizeBilinear"]) == 2
    assert "norm1" in str(err) and "up/" in str(err)


def test_data_dependent_shape_op_is_listed() -> None:
    g, _ = build(lambda x, c: tf.nn.relu(x)[:, 1:, :, :], (1, 4, 4, 3))
    with pytest.raises(UnsupportedOpError, match="StridedSlice"):
        load_graph(g.as_graph_def())


def test_unsupported_attrs_name_the_node() -> None:
    g, _ = build(lambda x, c: tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="SYMMETRIC", name="mp"),
                 (1, 4, 4, 3))
    with pytest.raises(UnsupportedAttrError, match="'mp'.*SYMMETRIC"):
        load_graph(g.as_graph_def())
    g, _ = build(lambda x, c: tf.nn.conv2d(x, c(3, 3, 4, 2), 1, "SAME", data_format="NCHW", name="cv"),
                 (1, 4, 5, 5))
    with pytest.raises(UnsupportedAttrError, match="'cv'.*data_format NCHW"):
        load_graph(g.as_graph_def())


def test_io_inference_and_names() -> None:
    g = tf.Graph()
    with g.as_default():
        a = tf1.placeholder(tf.float32, [1, 4, 4, 3], name="a")
        b = tf1.placeholder(tf.float32, [1, 4, 4, 3], name="b")
        tf.nn.relu(a + b, name="r")
        tf.nn.sigmoid(a, name="s")
    gd = g.as_graph_def()
    with pytest.raises(XconvError, match="2 Placeholder nodes.*a, b"):
        load_graph(gd)
    with pytest.raises(XconvError, match="2 candidate sink nodes.*r, s"):
        load_graph(gd, inputs=["a"])
    with pytest.raises(XconvError, match="did you mean"):
        load_graph(gd, inputs=["a:0"], outputs=["ss"])
    ir = load_graph(gd, inputs=["a:0"], outputs=["s:0"], input_shape=(1, 3, 4, 4))
    assert list(ir.inputs) == ["a"] and ir.op_counts() == {"Sigmoid": 1}
    with pytest.raises(XconvError, match="does not fit"):
        load_graph(gd, inputs=["a"], outputs=["s"], input_shape=(1, 3, 5, 4))
    # cutting the graph: an unsupported op before an --inputs node is never looked at
    g, out = build(lambda x, c: tf.nn.relu(tf.nn.lrn(x, name="norm"), name="r"), (1, 4, 4, 3))
    ir = load_graph(g.as_graph_def(), inputs=["norm"], input_shape=(1, 3, 4, 4))
    assert list(ir.inputs) == ["norm"] and ir.op_counts() == {"Relu": 1}


# --------------------------------------------------------------------------- files: .pb, checkpoint, SavedModel
def test_pb_and_checkpoint_with_variables(tmp_path: Path) -> None:
    slim = _import_slim()
    g = tf.Graph()
    with g.as_default():
        tf1.set_random_seed(1)
        x = tf1.placeholder(tf.float32, [None, 9, 9, 3], name="input")
        y = slim.conv2d(x, 6, 3, stride=2, padding="SAME")
        y = slim.batch_norm(y, is_training=False, fused=False, scale=True)  # the unfused arithmetic
        y = slim.max_pool2d(y, 2, 2, padding="SAME")
        y = slim.fully_connected(slim.flatten(y), 5, activation_fn=None, scope="fc")
        with tf1.Session(graph=g) as sess:
            sess.run(tf1.global_variables_initializer())
            rng = np.random.default_rng(2)
            for v in tf1.global_variables():
                if "moving" in v.op.name or "gamma" in v.op.name or "beta" in v.op.name:
                    lo = 0.5 if ("variance" in v.op.name or "gamma" in v.op.name) else -0.5
                    v.load(rng.uniform(lo, lo + 1.5, v.shape).astype(np.float32), sess)
            tf1.train.Saver().save(sess, str(tmp_path / "model.ckpt"))
            frozen = tf1.graph_util.convert_variables_to_constants(sess, g.as_graph_def(), [y.op.name])
            xin = np.random.default_rng(3).standard_normal((2, 9, 9, 3)).astype(np.float32)
            want = sess.run(y, {x: xin})
    (tmp_path / "frozen.pb").write_bytes(frozen.SerializeToString())
    atol = 2e-5 * (1 + float(np.abs(want).max()))
    xn = xin.transpose(0, 3, 1, 2)
    for src in (tmp_path / "frozen.pb", tmp_path / "model.ckpt.meta", tmp_path / "model.ckpt", tmp_path):
        ir = load_graph(src, input_shape=(2, 3, 9, 9))
        assert ir.name in ("frozen", "model") and ir.meta.num_classes == 5
        assert "BatchNormalization" in ir.op_counts() and "Transpose" not in ir.op_counts()
        ref = reference.run(ir, {"input": xn})[ir.outputs[0]]
        np.testing.assert_allclose(ref, want, rtol=0, atol=atol, err_msg=str(src))
        np.testing.assert_allclose(make_runner(src)(xn), want, rtol=0, atol=atol, err_msg=f"runner {src}")
    check_targets(ir, xn, want, tmp_path, atol)
    with pytest.raises(XconvError, match="no .meta"):
        (tmp_path / "model.ckpt.meta").unlink()
        load_graph(tmp_path / "model.ckpt")


def test_saved_model(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)

    class Net(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w1 = tf.Variable(rng.standard_normal((3, 3, 3, 8)).astype(np.float32) * 0.3)
            self.b1 = tf.Variable(rng.standard_normal(8).astype(np.float32) * 0.1)
            self.dw = tf.Variable(rng.standard_normal((3, 3, 8, 1)).astype(np.float32) * 0.3)
            self.fc = tf.Variable(rng.standard_normal((8, 10)).astype(np.float32))

        @tf.function(input_signature=[tf.TensorSpec([None, 11, 13, 3], tf.float32, name="image")])
        def __call__(self, x: Any) -> Any:
            y = tf.nn.relu6(tf.nn.bias_add(tf.nn.conv2d(x, self.w1, 2, "SAME"), self.b1))
            y = tf.nn.depthwise_conv2d(y, self.dw, [1, 1, 1, 1], "SAME")
            y = tf.nn.avg_pool2d(y, 3, 2, "SAME")
            return {"logits": tf.matmul(tf.reduce_mean(y, [1, 2]), self.fc)}

    net = Net()
    tf.saved_model.save(net, str(tmp_path / "sm"), signatures=net.__call__)
    xin = np.random.default_rng(5).standard_normal((2, 11, 13, 3)).astype(np.float32)
    want = net(tf.constant(xin))["logits"].numpy()
    ir = load_graph(tmp_path / "sm", input_shape=(2, 3, 11, 13))
    assert ir.name == "sm" and ir.meta.num_classes == 10
    xn = xin.transpose(0, 3, 1, 2)
    atol = 2e-5 * (1 + float(np.abs(want).max()))
    np.testing.assert_allclose(make_runner(tmp_path / "sm")(xn), want, rtol=0, atol=atol)
    check_targets(ir, xn, want, tmp_path, atol)


# --------------------------------------------------------------------------- tf_slim nets
def _import_slim() -> Any:
    pytest.importorskip("tf_keras")
    import tf_keras.src.legacy_tf_layers as legacy  # noqa: PLC0415

    sys.modules.setdefault("tf_keras.legacy_tf_layers", legacy)
    return pytest.importorskip("tf_slim")


def _photos(size: int, names: tuple[str, ...]) -> np.ndarray:
    """Two real photos, NHWC, resized (short side) and centre-cropped, scaled to [-1, 1] (inception style)."""
    from PIL import Image  # noqa: PLC0415

    spec = importlib.util.find_spec("foolbox")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("foolbox data photos are not installed")
    d = Path(list(spec.submodule_search_locations)[0]) / "data"
    out = []
    for name in names:
        im = Image.open(d / name).convert("RGB")
        s = size / min(im.size)
        im = im.resize((max(size, round(im.size[0] * s)), max(size, round(im.size[1] * s))), Image.BILINEAR)
        left, top = (im.size[0] - size) // 2, (im.size[1] - size) // 2
        a = np.asarray(im.crop((left, top, left + size, top + size)), dtype=np.float32)
        out.append(a / 127.5 - 1.0)
    return np.stack(out)


SLIM_NETS = {
    # name: (input size, classes, logits op, final weights variable)
    "resnet_v1_50": (224, 1000, "resnet_v1_50/logits/BiasAdd", "resnet_v1_50/logits/weights"),
    "inception_v3": (299, 1001, "InceptionV3/Logits/SpatialSqueeze", "InceptionV3/Logits/Conv2d_1c_1x1/weights"),
}
_SLIM_CACHE: dict[str, dict[str, Any]] = {}


def slim_net(name: str, root: Path) -> dict[str, Any]:
    """Build, randomise, save (.meta checkpoint and frozen .pb) and run one tf_slim net, once per session.

    BN statistics: measured on calibration photos (a training-mode twin of the net sharing its
    variables reports every BN input in one run), then perturbed at random (mean shifted by
    N(0, 0.1) std, variance scaled by U(0.5, 2)), with random gamma/beta: non-trivial, and the
    activations stay input-dependent through 50-95 layers.  The logits layer is rescaled and its
    bias centred so logits on the photos spread by ~3 units (else every photo gets one class).
    """
    if name in _SLIM_CACHE:
        return _SLIM_CACHE[name]
    slim = _import_slim()
    from tf_slim.nets import inception_v3, resnet_v1  # noqa: PLC0415

    size, classes, logits_op, final_w = SLIM_NETS[name]
    photos, calib = _photos(size, PHOTOS), _photos(size, CALIBRATION)
    g = tf.Graph()
    with g.as_default():
        tf1.set_random_seed(0)
        x = tf1.placeholder(tf.float32, [None, size, size, 3], name="input")
        if name == "resnet_v1_50":
            scope, arg_scope, net_fn = "resnet_v1_50", resnet_v1.resnet_arg_scope(), resnet_v1.resnet_v1_50
        else:
            scope, arg_scope, net_fn = "InceptionV3", inception_v3.inception_v3_arg_scope(), inception_v3.inception_v3
        with slim.arg_scope(arg_scope):
            net_fn(x, classes, is_training=False, scope=scope)
            net_fn(x, classes, is_training=True, reuse=True, scope=scope)  # op scope f"{scope}_1"
        logits = g.get_tensor_by_name(logits_op + ":0")
        bns = [op for op in g.get_operations() if op.type.startswith("FusedBatchNorm")]
        twin_bns = [op for op in bns if op.name.startswith(scope + "_1/")]
        infer_bns = [op for op in bns if op.name.startswith(scope + "/")]
        assert len(twin_bns) == len(infer_bns) > 50
        sess = tf1.Session(graph=g)
        sess.run(tf1.global_variables_initializer())
        rng = np.random.default_rng(0)
        variables = {v.op.name: v for v in tf1.global_variables()}
        for n, v in variables.items():
            if n.endswith("BatchNorm/gamma"):
                v.load(rng.uniform(0.5, 1.5, v.shape).astype(np.float32), sess)
            elif n.endswith("BatchNorm/beta"):
                v.load(rng.normal(0, 0.1, v.shape).astype(np.float32), sess)
        bn_inputs = sess.run([op.inputs[0] for op in twin_bns], {x: calib})
        for op, z in zip(infer_bns, bn_inputs):  # same creation order in both copies
            mean_v, var_v = (variables[op.inputs[k].op.inputs[0].op.name] for k in (3, 4))  # read <- variable
            mean, var = z.mean((0, 1, 2)), z.var((0, 1, 2))
            mean_v.load((mean + rng.normal(0, 0.1, mean.shape) * np.sqrt(var)).astype(np.float32), sess)
            var_v.load((var * rng.uniform(0.5, 2.0, var.shape)).astype(np.float32), sess)
        w = variables[final_w]
        b = variables[final_w.rsplit("/", 1)[0] + "/biases"]
        z = sess.run(logits, {x: calib}).reshape(len(calib), classes)
        mu = z.mean(0)
        k = 3.0 / float((z - mu).std())
        w.load(sess.run(w) * k, sess)
        b.load(((sess.run(b) - mu) * k).astype(np.float32), sess)
        want = sess.run(logits, {x: photos}).reshape(len(photos), classes)
        d = root / name
        d.mkdir()
        tf1.train.Saver().save(sess, str(d / "model.ckpt"))
        frozen = tf1.graph_util.convert_variables_to_constants(sess, g.as_graph_def(), [logits_op])
        (d / "frozen.pb").write_bytes(frozen.SerializeToString())
        sess.close()
    info = {"dir": d, "photos": photos, "want": want, "logits": logits_op, "size": size}
    _SLIM_CACHE[name] = info
    return info


@pytest.mark.slow
@pytest.mark.parametrize("name", list(SLIM_NETS))
def test_slim_net(name: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    net = slim_net(name, tmp_path_factory.mktemp("slim"))
    want, photos, size = net["want"], net["photos"], net["size"]
    assert np.std(want) > 1.0 and len(set(want.argmax(1))) == 2  # logits spread; photos not all one class
    shape = (len(photos), 3, size, size)
    from_pb = load_graph(net["dir"] / "frozen.pb", input_shape=shape)
    from_meta = load_graph(net["dir"] / "model.ckpt.meta", outputs=[net["logits"]], input_shape=shape)
    assert from_pb.op_counts() == from_meta.op_counts()
    assert from_pb.meta.num_classes == want.shape[1]
    assert from_pb.meta.background_offset == (1 if want.shape[1] == 1001 else 0)
    # 50-95 conv layers in float32 (TF, Caffe, ORT) vs float64: a few 1e-6 relative per layer, accumulated
    atol = 1e-4 * (1 + float(np.abs(want).max()))
    xn = photos.transpose(0, 3, 1, 2)
    for ir in (from_pb, from_meta):
        ref = reference.run(ir, {"input": xn})[ir.outputs[0]].reshape(want.shape)
        err = float(np.abs(ref - want).max())
        print(f"{name}: max |IR reference - TF| = {err:.3g} (max |logit| {np.abs(want).max():.3g})")
        np.testing.assert_allclose(ref, want, rtol=0, atol=atol)
        assert (ref.argmax(1) == want.argmax(1)).all()
    tmp = tmp_path_factory.mktemp(f"{name}_out")
    for target in ("onnx", "caffe"):
        got = run_target(from_pb, target, tmp, xn, name).reshape(want.shape)
        print(f"{name}: max |{target} - TF| = {float(np.abs(got - want).max()):.3g}")
        np.testing.assert_allclose(got, want, rtol=0, atol=atol, err_msg=target)
        assert (got.argmax(1) == want.argmax(1)).all()


@pytest.mark.slow
def test_slim_drop_background(tmp_path_factory: pytest.TempPathFactory) -> None:
    net = slim_net("inception_v3", tmp_path_factory.mktemp("slim"))
    want, photos = net["want"], net["photos"]
    shape = (len(photos), 3, net["size"], net["size"])
    ir = load_graph(net["dir"] / "frozen.pb", input_shape=shape, drop_background=True)
    assert ir.meta.num_classes == 1000 and ir.meta.background_offset == 0
    assert "Slice" not in ir.op_counts()  # exact: row 0 of the logits conv dropped
    xn = photos.transpose(0, 3, 1, 2)
    atol = 1e-4 * (1 + float(np.abs(want).max()))
    ref = reference.run(ir, {"input": xn})[ir.outputs[0]].reshape(len(photos), 1000)
    np.testing.assert_allclose(ref, want[:, 1:], rtol=0, atol=atol)
    runner = make_runner(net["dir"] / "model.ckpt.meta", outputs=[net["logits"]], drop_background=True)
    np.testing.assert_allclose(runner(xn), want[:, 1:], rtol=0, atol=atol)
    got = run_target(ir, "onnx", tmp_path_factory.mktemp("drop"), xn).reshape(ref.shape)
    np.testing.assert_allclose(got, want[:, 1:], rtol=0, atol=atol)


def test_drop_background_slice_and_softmax() -> None:
    """Logits not from a constant-weight layer: a Slice; with a Softmax the 1000 classes renormalise."""
    g, out = build(lambda x, c: tf.nn.softmax(tf.reduce_mean(x, [1, 2]) * 3.0), (2, 3, 4, 1001))
    x = np.random.default_rng(8).standard_normal((2, 3, 4, 1001)).astype(np.float32)
    probs = run_tf(g, out, x)
    ir = load_graph(g.as_graph_def())
    assert ir.meta.num_classes == 1001 and ir.meta.background_offset == 1
    ir = load_graph(g.as_graph_def(), drop_background=True)
    assert "Slice" in ir.op_counts() and ir.meta.num_classes == 1000
    ref = reference.run(ir, {"input": x.transpose(0, 3, 1, 2)})[ir.outputs[0]]
    np.testing.assert_allclose(ref, probs[:, 1:] / probs[:, 1:].sum(1, keepdims=True), rtol=0, atol=1e-6)
