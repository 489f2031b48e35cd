"""The command line end to end: convert, verify, inspect, and the errors a
user meets (bad input, unwritable output, unsupported ops)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


import pytest

XCONV = [sys.executable, "-m", "xconv.cli"]
ENV = {**os.environ, "GLOG_minloglevel": "2"}


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*XCONV, *args], capture_output=True, text=True, env=ENV, cwd=cwd, timeout=600)


@pytest.fixture(scope="module")
def resnet18_state(tmp_path_factory) -> Path:
    import torch

    from xconv.frontends.pytorch import import_torchvision
    tv = import_torchvision()
    torch.manual_seed(0)
    m = tv.models.resnet18(weights=None)
    p = tmp_path_factory.mktemp("m") / "resnet18.pth"
    torch.save(m.state_dict(), p)
    return p


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> tuple[Path, Path]:
    from xconv.demo import foolbox_photos
    d = tmp_path_factory.mktemp("photos")
    return foolbox_photos(d / "images")


def test_convert_both_targets_and_verify(resnet18_state, photos, tmp_path):
    out = tmp_path / "out"
    for target in ("caffe", "onnx"):
        r = run("convert", "--from", "pytorch", str(resnet18_state), "--arch", "torchvision:resnet18",
                "--to", target, "-o", str(out), "--input-shape", "1,3,96,96")
        assert r.returncode == 0, r.stderr
    names = sorted(p.name for p in out.iterdir())
    assert names == ["resnet18.caffemodel", "resnet18.onnx", "resnet18.prototxt", "resnet18.xconv.json"]
    side = json.loads((out / "resnet18.xconv.json").read_text())
    assert set(side["targets"]) == {"caffe", "onnx"} and side["targets"]["caffe"]["dialect"] == "bvlc"
    assert side["meta"]["mean"] == pytest.approx([0.485, 0.456, 0.406])
    images, labels = photos
    rj = tmp_path / "r.json"
    r = run("verify", str(resnet18_state), str(out / "resnet18.prototxt"), str(out / "resnet18.onnx"),
            "--images", str(images), "--labels", str(labels), "--limit", "4", "--json", str(rj))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "PARITY: PASS" in r.stdout and "caffe (bvlc)" in r.stdout and "onnx (opset 13)" in r.stdout
    rep = json.loads(rj.read_text())
    assert rep["passed"] and rep["images"] == 4 and len(rep["parity"]) == 2
    for p in rep["parity"]:
        assert p["top1_agree"] == 4 and p["max_abs"] < 1e-3


def test_verify_random_tensors_without_images(resnet18_state, tmp_path):
    r = run("convert", "--from", "pytorch", str(resnet18_state), "--arch", "torchvision:resnet18",
            "--to", "onnx", "-o", str(tmp_path), "--input-shape", "1,3,64,64")
    assert r.returncode == 0, r.stderr
    r = run("verify", str(resnet18_state), str(tmp_path / "resnet18.onnx"))
    assert r.returncode == 0 and "random tensors" in r.stdout, r.stdout + r.stderr


def test_verify_fails_and_localises_a_corrupted_conversion(resnet18_state, tmp_path):
    """Damage one weight of the converted model: verify must fail and name the first diverging layer."""
    import onnx
    from onnx import numpy_helper
    r = run("convert", "--from", "pytorch", str(resnet18_state), "--arch", "torchvision:resnet18",
            "--to", "onnx", "-o", str(tmp_path), "--input-shape", "1,3,64,64")
    assert r.returncode == 0, r.stderr
    path = tmp_path / "resnet18.onnx"
    m = onnx.load(str(path))
    node = next(n for n in m.graph.node if n.name == "layer2.0.conv2")
    init = next(i for i in m.graph.initializer if i.name == node.input[1])
    w = numpy_helper.to_array(init).copy()
    w[0, 0, 0, 0] += 5.0
    init.CopyFrom(numpy_helper.from_array(w, init.name))
    onnx.save(m, str(path))
    r = run("verify", str(resnet18_state), str(path))
    assert r.returncode == 1, r.stdout + r.stderr
    assert "PARITY: FAIL" in r.stdout
    assert "first divergence at node 'layer2.0.conv2'" in r.stdout, r.stdout


def test_inspect_reports_gmacs(resnet18_state):
    r = run("inspect", "--from", "pytorch", str(resnet18_state), "--arch", "torchvision:resnet18")
    assert r.returncode == 0, r.stderr
    # resnet18 at 224: 1.81 GMACs, 11.69 M parameters (published figures)
    assert "GMACs per image: 1.81" in r.stdout and "parameters: 11,689,512" in r.stdout


def test_unwritable_output_dir(resnet18_state, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    r = run("convert", "--from", "pytorch", str(resnet18_state), "--arch", "torchvision:resnet18",
            "--to", "caffe", "-o", str(blocker / "sub"), "--input-shape", "1,3,64,64")
    assert r.returncode == 2 and "cannot write to output directory" in r.stderr, r.stderr


def test_write_failure_midway_rolls_back(resnet18_state, tmp_path):
    """The last file cannot be put in place (a directory holds its name): the files renamed
    before it are taken back and an older conversion in the directory is restored."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "resnet18.prototxt").write_text("old")
    (out / "resnet18.xconv.json").mkdir()
    (out / "resnet18.xconv.json" / "x").write_text("blocks the rename")
    r = run("convert", "--from", "pytorch", str(resnet18_state), "--arch", "torchvision:resnet18",
            "--to", "caffe", "-o", str(out), "--input-shape", "1,3,64,64")
    assert r.returncode == 2 and "nothing was written" in r.stderr, r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["resnet18.prototxt", "resnet18.xconv.json"]
    assert (out / "resnet18.prototxt").read_text() == "old"


def test_failed_conversion_leaves_nothing(tmp_path):
    """A model that fails in the backend (transpose: no stock Caffe form) writes no file."""
    import torch

    class T(torch.nn.Module):
        def forward(self, x):
            return x.permute(0, 2, 1, 3).contiguous() * 2

    p = tmp_path / "t.pt"
    torch.jit.save(torch.jit.trace(T(), torch.zeros(1, 3, 4, 4)), p)
    out = tmp_path / "out"
    r = run("convert", "--from", "pytorch", str(p), "--to", "caffe", "-o", str(out), "--input-shape", "1,3,4,4")
    assert r.returncode == 2, r.stdout + r.stderr
    assert "Transpose" in r.stderr
    assert not out.exists() or list(out.iterdir()) == []


def test_truncated_file_is_a_clear_error(resnet18_state, tmp_path):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(resnet18_state.read_bytes()[:1000])
    r = run("convert", "--from", "pytorch", str(bad), "--arch", "torchvision:resnet18", "--to", "onnx",
            "-o", str(tmp_path / "o"))
    assert r.returncode == 2 and "bad.pth" in r.stderr and "Traceback" not in r.stderr


def test_code_running_pickle_is_refused(tmp_path):
    import pickle
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    p = tmp_path / "evil.pth"
    for proto in (2, 4):
        p.write_bytes(pickle.dumps({"w": Evil()}, protocol=proto))
        r = run("convert", "--from", "pytorch", str(p), "--arch", "torchvision:resnet18", "--to", "onnx",
                "-o", str(tmp_path / "o"))
        assert r.returncode == 2 and "refused to load" in r.stderr and "evil.pth" in r.stderr, r.stderr
        if proto == 2:
            assert "system" in r.stderr, "the refused global is named"
        assert not marker.exists()
        assert not (tmp_path / "o").exists()


def test_unsupported_ops_listed_at_once(tmp_path):
    import torch

    class M(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.ps = torch.nn.PixelShuffle(2)
            self.ps2 = torch.nn.PixelShuffle(2)
            self.unshuffle = torch.nn.PixelUnshuffle(2)

        def forward(self, x):
            return self.unshuffle(self.ps2(self.ps(x)))

    from xconv.errors import UnsupportedOpError
    from xconv.frontends.pytorch import load
    with pytest.raises(UnsupportedOpError) as ei:
        load(M(), input_shape=(1, 16, 4, 4))
    msg = str(ei.value)
    assert "ps" in msg and "ps2" in msg and "unshuffle" in msg
    assert "PixelShuffle x2" in msg and "PixelUnshuffle x1" in msg

