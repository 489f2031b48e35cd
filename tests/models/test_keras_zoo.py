"""Keras zoo parity: keras.applications classifiers (code this project did
not write) with random weights made non-trivial (BN statistics measured on
real photos then perturbed, classifier rescaled so logits spread ~3), saved
as a Keras-2 ``.h5`` by tf_keras and as a ``.keras`` by Keras 3 (two archs
also as Keras-3 ``.h5``), converted to Caffe (BVLC 1.0 layers, real pycaffe)
and ONNX (onnxruntime), and compared on real photos with the logits Keras
itself computed for the model it saved (``tests/keras_zoo.py``).

Golden regression: golden/zoo_keras.json holds the measured figures and the
accepted ones (3x measured); a conversion that drifts past them fails.

Tolerance: the bound ``xconv verify`` applies by default,
max|Δlogit| <= 1e-3 + 1e-4 * max|logit| (logits here reach ±10..17), and
top-1 must agree on every photo.  Float32 accumulation differences over
~100-layer nets with BN folded into the convolutions measure 1e-5..5e-4;
a wrong padding, layout or weight order moves logits by O(1).
"""
from __future__ import annotations

import gc
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

import keras_zoo

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
pytest.importorskip("tf_keras")

ATOL, RTOL = 1e-3, 1e-4
# accepted figures of the golden regression: a conversion drifting past 3x what was measured fails
ACCEPTED = json.loads((Path(__file__).resolve().parents[2] / "golden" / "zoo_keras.json").read_text())["accepted"]
EXTRA_FLAVOURS = {"inception_resnet_v2": ("k3.h5",), "mobilenet_v2": ("k3.h5",)}


@pytest.mark.slow
@pytest.mark.parametrize("arch", list(keras_zoo.KERAS_ZOO))
def test_keras_zoo(arch: str, tmp_path: Path) -> None:
    from xconv.backend import EmitOptions
    from xconv.convert import convert
    from xconv.frontends.keras import load
    from xconv.verify.runners import locate, make_runner

    flavours = ("k2.h5", "k3.keras") + EXTRA_FLAVOURS.get(arch, ())
    files = keras_zoo.make_files(arch, tmp_path / "src", flavours)
    gc.collect()
    measured = {}
    for flavour, path in files.items():
        x, want = keras_zoo.load_ref(path)
        graph = load(path)
        assert graph.meta.num_classes == 1000
        xn = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
        bound = ATOL + RTOL * float(np.abs(want).max())
        for target, opts in (("caffe", EmitOptions(dialect="bvlc")), ("onnx", EmitOptions(opset=13))):
            out_dir = tmp_path / f"{flavour}-{target}"
            res = convert(graph, target, out_dir, arch, opts)
            p = next(q for q in res.files if q.suffix in (".prototxt", ".onnx"))
            run = make_runner(locate(p))
            try:
                got = np.concatenate([np.asarray(run(xn[i:i + 1])).reshape(1, -1) for i in range(len(xn))])
            finally:
                if hasattr(run, "close"):
                    run.close()
            err = float(np.abs(got - want).max())
            measured[f"{flavour} -> {target}"] = err
            assert err <= bound, f"{arch} {flavour} -> {target}: max|dlogit| {err:.3g} > {bound:.3g}"
            accepted = ACCEPTED.get(arch, {}).get(f"{flavour} -> {target}")
            assert accepted is None or err <= accepted, (
                f"{arch} {flavour} -> {target}: max|dlogit| {err:.3g} regressed past the accepted {accepted:.3g} "
                "(golden/zoo_keras.json)")
            np.testing.assert_array_equal(got.argmax(1), want.argmax(1), err_msg=f"{arch} {flavour} -> {target}")
            shutil.rmtree(out_dir)
        path.unlink()
    print(json.dumps({arch: measured}))
