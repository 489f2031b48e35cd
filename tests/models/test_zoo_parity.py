"""Zoo parity: torchvision classifiers (random weights, non-trivial BN,
spread logits) converted to Caffe (BVLC 1.0 layers, real pycaffe) and ONNX
(onnxruntime), compared on real photos against golden logits that PyTorch
itself computed (``scripts/make_golden.py``; never values from xconv).

Tolerances per model live in ``golden/zoo.json`` with the figures measured
when they were set.  Also checked: PyTorch today still reproduces the golden
logits (so a drift in the recipe or in torch cannot masquerade as a
conversion error), and top-1 agrees on every photo.
"""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

import zoo

os.environ.setdefault("GLOG_minloglevel", "2")
MANIFEST = json.loads((zoo.GOLDEN / "zoo.json").read_text())


def _golden(name: str):
    d = np.load(zoo.GOLDEN / "zoo" / f"{name}.npz")
    return d["x"], d["logits"]


@pytest.fixture(scope="module")
def torch_threads():
    import torch
    torch.set_num_threads(2)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(zoo.ZOO))
def test_zoo_parity(name, tmp_path, torch_threads):
    import torch

    from xconv.backend import EmitOptions
    from xconv.convert import convert
    from xconv.frontends.pytorch import load
    from xconv.verify.runners import locate, make_runner

    spec = MANIFEST["models"][name]
    x, golden = _golden(name)
    model = zoo.build(name)
    with torch.no_grad():
        now = model(torch.from_numpy(x)).numpy()
    # the recipe and torch reproduce the golden logits (float32 run-to-run noise only)
    np.testing.assert_allclose(now, golden, rtol=0, atol=MANIFEST["torch_reproducibility_atol"])
    graph = load(model, input_shape=(1,) + x.shape[1:], name=name)
    results = {}
    for target, opts in (("caffe", EmitOptions(dialect="bvlc")), ("onnx", EmitOptions(opset=13))):
        res = convert(graph, target, tmp_path, name, opts)
        path = next(p for p in res.files if p.suffix in (".prototxt", ".onnx"))
        run = make_runner(locate(path))
        out = np.concatenate([run(x[i:i + 1]) for i in range(len(x))]).reshape(golden.shape)
        err = float(np.abs(out - golden).max())
        results[target] = err
        assert (out.argmax(1) == golden.argmax(1)).all(), f"{target}: top-1 flipped"
        assert err <= spec["atol"], f"{target}: max|dlogit| {err:.3e} > {spec['atol']:.1e}"
    print(name, {k: f"{v:.2e}" for k, v in results.items()})
