"""The MXNet commands end to end: ``xconv convert --from mxnet NAME-symbol.json
--to caffe|onnx`` (params found beside it, files named NAME in the current
directory), ``xconv verify`` on real photos against MXNet running the same
checkpoint, and ``--outputs`` to verify DPN's logits instead of its
SoftmaxOutput probabilities."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import mxnet_zoo
import zoo

ENV = {**os.environ, "GLOG_minloglevel": "2"}


def xconv(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "xconv.cli", *args], capture_output=True, text=True, env=ENV,
                          cwd=cwd, timeout=900)


@pytest.mark.slow
def test_gluon_mobilenet_convert_and_verify(tmp_path: Path) -> None:
    files = mxnet_zoo.make_files("mobilenet1.0", tmp_path)
    sym = files["symbol"].name
    for target in ("caffe", "onnx"):
        r = xconv("convert", "--from", "mxnet", sym, "--to", target, cwd=tmp_path)
        assert r.returncode == 0, r.stderr
    assert (tmp_path / "mobilenet1.0.prototxt").exists() and (tmp_path / "mobilenet1.0.onnx").exists()
    side = json.loads((tmp_path / "mobilenet1.0.xconv.json").read_text())
    assert side["meta"]["source_framework"] == "mxnet"
    r = xconv("verify", sym, "mobilenet1.0.prototxt", "mobilenet1.0.onnx", "--images", str(zoo.photo_dir()),
              "--limit", "8", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "PARITY: PASS" in r.stdout and "8/8" in r.stdout


@pytest.mark.slow
def test_dpn_logits_through_outputs(tmp_path: Path) -> None:
    files = mxnet_zoo.make_files("dpn68", tmp_path)
    prefix = str(files["prefix"].name) + "-0000"  # the checkpoint prefix form: NAME-EPOCH
    r = xconv("convert", "--from", "mxnet", prefix, "--to", "onnx", "--outputs", "fc6", "-o", "out", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    r = xconv("verify", prefix, "out/dpn68.onnx", "--images", str(zoo.photo_dir()), "--limit", "6",
              cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "PARITY: PASS" in r.stdout
