"""The Keras headline commands end to end, on the case the issue names: a
Keras-2 MobileNet ``.h5`` (tf_keras.applications, random weights made
non-trivial) that Keras 3 itself refuses to load.

``xconv convert --from keras mobilenet.h5 --to caffe|onnx`` (no -o: the
current directory), then ``xconv verify`` on real photos against tf_keras
running the same file, with verify's default tolerance."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import keras_zoo
import zoo

pytest.importorskip("tf_keras")
ENV = {**os.environ, "GLOG_minloglevel": "2", "TF_CPP_MIN_LOG_LEVEL": "3"}


def xconv(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "xconv.cli", *args], capture_output=True, text=True, env=ENV,
                          cwd=cwd, timeout=900)


KERAS3_LOAD = r"""
import os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import keras
try:
    keras.saving.load_model(sys.argv[1], compile=False)
except Exception as e:
    msg = str(e).replace("\n", " ")
    print("REFUSED", type(e).__name__, "groups" if "groups" in msg else "", msg[-300:])
else:
    print("LOADED")
"""


@pytest.mark.slow
def test_keras2_mobilenet_h5_that_keras3_cannot_load(tmp_path: Path) -> None:
    files = keras_zoo.make_files("mobilenet", tmp_path, ("k2.h5",))
    src = tmp_path / "mobilenet.h5"
    files["k2.h5"].rename(src)
    # the scenario is real: Keras 3 refuses this file (DepthwiseConv2D's 'groups' keyword)
    r = subprocess.run([sys.executable, "-c", KERAS3_LOAD, str(src)], capture_output=True, text=True, env=ENV,
                       timeout=300)
    assert r.stdout.startswith("REFUSED"), r.stdout + r.stderr
    assert "groups" in r.stdout

    for target in ("caffe", "onnx"):
        r = xconv("convert", "--from", "keras", str(src), "--to", target, cwd=tmp_path)
        assert r.returncode == 0, r.stderr
    assert (tmp_path / "mobilenet.prototxt").exists() and (tmp_path / "mobilenet.caffemodel").exists()
    assert (tmp_path / "mobilenet.onnx").exists()
    side = json.loads((tmp_path / "mobilenet.xconv.json").read_text())
    meta = side.get("meta") or next(iter(side.values())).get("meta", {})
    assert meta.get("source_framework") == "keras"

    report = tmp_path / "report.json"
    r = xconv("verify", str(src), "mobilenet.prototxt", "mobilenet.onnx", "--images", str(zoo.photo_dir()),
              "--limit", "8", "--json", str(report), cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "PARITY: PASS" in r.stdout
    rep = json.loads(report.read_text())
    text = json.dumps(rep)
    assert "keras" in text
