"""MXNet zoo parity: gluon model zoo nets exported with ``export()`` (code this
project did not write) and DPN-68/92, ResNeXt-50 and SE-ResNeXt-50 written
with the symbol API from their papers (tests/mxnet_zoo.py), with random
weights, BN statistics measured on real photos then perturbed, classifiers
rescaled so logits spread ~3; converted without MXNet to Caffe (BVLC 1.0
layers, real pycaffe) and ONNX (onnxruntime) and compared on real photos
with the outputs MXNet computed from the saved files.  Two archs are also
converted from the pre-1.0 JSON layout.

Golden regression: golden/zoo_mxnet.json holds the measured figures and the
accepted ones (3x measured); a conversion that drifts past them fails.

Tolerance: the bound ``xconv verify`` applies by default,
max|Δlogit| <= 1e-3 + 1e-4 * max|logit|, and top-1 agrees on every photo.
DPN's head is a SoftmaxOutput: its probabilities are compared to 1e-4
absolute and its logits (``outputs=[fc]``) as above.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import mxnet_zoo

ATOL, RTOL = 1e-3, 1e-4
# accepted figures of the golden regression: a conversion drifting past 3x what was measured fails
ACCEPTED = json.loads((Path(__file__).resolve().parents[2] / "golden" / "zoo_mxnet.json").read_text())["accepted"]
LEGACY = {"resnext50_32x4d", "dpn68"}


def _run(path: Path, x: np.ndarray) -> np.ndarray:
    from xconv.verify.runners import locate, make_runner
    run = make_runner(locate(path))
    try:
        return np.concatenate([np.asarray(run(x[i:i + 1])).reshape(1, -1) for i in range(len(x))])
    finally:
        if hasattr(run, "close"):
            run.close()


@pytest.mark.slow
@pytest.mark.parametrize("arch", list(mxnet_zoo.MXNET_ZOO))
def test_mxnet_zoo(arch: str, tmp_path: Path) -> None:
    from xconv.backend import EmitOptions
    from xconv.convert import convert
    from xconv.frontends.mxnet import load

    files = mxnet_zoo.make_files(arch, tmp_path / "src")
    ref = mxnet_zoo.load_ref(files["ref"])
    x = ref["x"]
    shape = (1,) + x.shape[1:]
    nodes = json.loads(files["symbol"].read_text())["nodes"]
    head = nodes[json.loads(files["symbol"].read_text())["heads"][0][0]]
    checks = [("head", None, ref["logits"])]
    if head["op"] == "SoftmaxOutput":
        fc = nodes[head["inputs"][0][0]]["name"]
        checks.append(("logits", [fc], ref["fc_logits"]))
    sym_files = [files["symbol"]]
    if arch in LEGACY:
        legacy_dir = tmp_path / "legacy"
        legacy_dir.mkdir()
        mxnet_zoo.to_legacy_json(files["symbol"], legacy_dir / files["symbol"].name)
        (legacy_dir / files["params"].name).symlink_to(files["params"])
        sym_files.append(legacy_dir / files["symbol"].name)
    measured = {}
    for sym in sym_files:
        layout = "legacy" if sym.parent.name == "legacy" else "current"
        for what, outputs, want in checks:
            graph = load(sym, input_shape=shape, outputs=outputs)
            probs = what == "head" and head["op"] == "SoftmaxOutput"
            bound = 1e-4 if probs else ATOL + RTOL * float(np.abs(want).max())
            for target, opts in (("caffe", EmitOptions(dialect="bvlc")), ("onnx", EmitOptions(opset=13))):
                out_dir = tmp_path / f"{layout}-{what}-{target}"
                res = convert(graph, target, out_dir, arch, opts)
                got = _run(next(q for q in res.files if q.suffix in (".prototxt", ".onnx")), x)
                err = float(np.abs(got - want.reshape(got.shape)).max())
                measured[f"{layout} {what} -> {target}"] = err
                assert err <= bound, f"{arch} {layout} {what} -> {target}: max|d| {err:.3g} > {bound:.3g}"
                accepted = ACCEPTED.get(arch, {}).get(f"{layout} {what} -> {target}")
                assert accepted is None or err <= accepted, (
                    f"{arch} {layout} {what} -> {target}: max|d| {err:.3g} regressed past the accepted "
                    f"{accepted:.3g} (golden/zoo_mxnet.json)")
                np.testing.assert_array_equal(got.argmax(1), want.reshape(got.shape).argmax(1))
                shutil.rmtree(out_dir)
    print(json.dumps({arch: measured}))
