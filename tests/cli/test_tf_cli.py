"""The TF-slim headline command end to end:
``xconv convert --from tf-slim MODEL.ckpt --to caffe`` (no -o: the current
directory, files named after the checkpoint), for V2 bundles and V1 files,
then ``xconv verify`` against TensorFlow running tf_slim's own definition."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


import pytest

ENV = {**os.environ, "GLOG_minloglevel": "2", "TF_CPP_MIN_LOG_LEVEL": "2"}


def xconv(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "xconv.cli", *args], capture_output=True, text=True, env=ENV,
                          cwd=cwd, timeout=900)


MAKE = r"""
import sys, numpy as np
from xconv.frontends.tensorflow.tfimport import import_tf, import_tf_slim
tf = import_tf(); slim = import_tf_slim()
from tf_slim.nets import resnet_v1
out, version = sys.argv[1], sys.argv[2]
g = tf.Graph()
with g.as_default():
    x = tf.compat.v1.placeholder(tf.float32, (1, 96, 96, 3))
    with slim.arg_scope(resnet_v1.resnet_arg_scope()):
        resnet_v1.resnet_v1_50(x, num_classes=1000, is_training=False)
    rng = np.random.default_rng(0)
    with tf.compat.v1.Session(graph=g) as sess:
        sess.run(tf.compat.v1.global_variables_initializer())
        for v in tf.compat.v1.global_variables():
            n = v.op.name
            if n.endswith("moving_mean"):
                v.load(rng.normal(0, 0.1, v.shape).astype("f4"), sess)
            elif n.endswith("moving_variance"):
                v.load(rng.uniform(0.5, 2, v.shape).astype("f4"), sess)
            elif n.endswith("logits/weights"):
                v.load(sess.run(v) * 30, sess)
        wv = tf.compat.v1.train.SaverDef.V1 if version == "v1" else tf.compat.v1.train.SaverDef.V2
        tf.compat.v1.train.Saver(write_version=wv).save(sess, out, write_meta_graph=False)
"""


@pytest.fixture(scope="module", params=["v2", "v1"])
def ckpt(request, tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp(f"ckpt_{request.param}")
    path = d / "resnet_v1_50.ckpt"
    r = subprocess.run([sys.executable, "-c", MAKE, str(path), request.param], capture_output=True, text=True,
                       env=ENV, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return path


@pytest.mark.slow
def test_convert_in_cwd_and_verify(ckpt: Path, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    for target in ("caffe", "onnx"):
        r = xconv("convert", "--from", "tf-slim", str(ckpt), "--to", target, "--input-shape", "1,3,96,96", cwd=work)
        assert r.returncode == 0, r.stdout + r.stderr
    names = sorted(p.name for p in work.iterdir())
    assert names == ["resnet_v1_50.caffemodel", "resnet_v1_50.onnx", "resnet_v1_50.prototxt",
                     "resnet_v1_50.xconv.json"], names
    side = json.loads((work / "resnet_v1_50.xconv.json").read_text())
    assert side["meta"]["extra"]["arch"] == "resnet_v1_50" and side["meta"]["num_classes"] == 1000
    r = xconv("verify", str(ckpt), "resnet_v1_50.prototxt", "resnet_v1_50.onnx", cwd=work)
    assert r.returncode == 0 and "PARITY: PASS" in r.stdout, r.stdout + r.stderr
    assert "tf-slim (source)" in r.stdout


def test_unknown_architecture_lists_known(tmp_path: Path) -> None:
    from xconv.errors import XconvError
    from xconv.frontends.tensorflow import slim
    with pytest.raises(XconvError, match="inception_v4.*|resnet_v2_101"):
        slim.detect(["MyNet/conv1/weights", "MyNet/logits/biases"])
    assert {"inception_v4", "inception_resnet_v2", "resnet_v2_101", "mobilenet_v1", "mobilenet_v2",
            "vgg_16", "inception_v3"} <= set(slim.known())



@pytest.mark.slow
def test_checkpoint_conversion_never_imports_tensorflow(ckpt: Path, tmp_path: Path) -> None:
    code = f"""
import sys
from xconv.frontend import load
from xconv.convert import convert
g = load("tf-slim", {str(ckpt)!r}, input_shape=(1, 3, 96, 96))
convert(g, "caffe", {str(tmp_path)!r}, "m")
convert(g, "onnx", {str(tmp_path)!r}, "m")
bad = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "tf_keras", "keras", "tf_slim"))
print("IMPORTED", bad)
assert not bad
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=600)
    assert r.returncode == 0 and "IMPORTED []" in r.stdout, r.stdout + r.stderr[-2000:]
