"""The ONNX backend test suite's node cases for every op the ONNX frontend claims.

The cases come from ``onnx.backend.test.case.node`` (the generator of
``onnx/backend/test/data/node/*``; the onnx 1.23.2 wheel ships the generator
but not the ``data/node`` files): each is a one-op model (or an op's function
body, ``*_expanded``) with inputs and the expected outputs the ONNX project
computed with its numpy reference (independent of xconv).  Selected: the
cases from the modules of the ops in the frontend's handler registry whose
models use claimed ops only (op types read from each model).

Mapping to an image-classifier IR: the first graph input stays a run-time
input; the other inputs of single-input ops (weights, bias, slope, BN
statistics, shapes, axes, pads, scales, Clip bounds...) become initializers
holding the case's values, as they would be in a classifier; the operands of
elementwise/variadic ops (Add ... Mean, Concat) all stay run-time inputs.

Every selected case is in exactly one class:

* ``EXCLUDED`` (pattern -> reason): not run; nothing xconv does is at stake;
* ``REFUSED`` (pattern -> error type, reason): ``xconv.frontends.onnx.load``
  raises that error (a tested refusal, with the node named);
* ``CAFFE_NO_FORM`` (pattern -> reason): the IR takes it, the IR reference and
  ONNX (onnxruntime) match, and the Caffe (bvlc) conversion raises
  BackendError / UnsupportedOpError instead of writing a wrong net;
* everything else must match the expected outputs in the IR reference
  (float64), through ONNX in onnxruntime and through Caffe in pycaffe.

Tolerance: the suite's own per-case rtol/atol (1e-3 / 1e-7: what the ONNX
backend test runner asks of every runtime).

When written: 408 cases (onnx 1.23.2): 190 pass in all three, 186 refused,
32 IR + ONNX only, 0 excluded (``test_classification_is_complete`` prints
the table per op); ~6 s single process, the Caffe runs batched in one
pycaffe child process.
"""
from __future__ import annotations

import collections
import fnmatch
import importlib
import json
import os
import pkgutil
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from xconv import reference
from xconv.backend import EmitOptions
from xconv.convert import convert
from xconv.errors import BackendError, InputFileError, UnsupportedAttrError, UnsupportedOpError
from xconv.frontends import onnx as xo
from xconv.frontends.onnx import ops as _registers_handlers  # noqa: F401
from xconv.frontends.onnx.graph import HANDLERS

ENV = {**os.environ, "GLOG_minloglevel": "2"}
RUNTIME_ALL = {"Add", "Sub", "Mul", "Div", "Max", "Min", "Sum", "Mean", "Concat"}
MAX_OPSET = 21  # the ONNX backend's highest opset

# --------------------------------------------------------------------------- classification
# Patterns are fnmatch patterns on the case name without "test_"; one line each, grouped by reason.
# EXCLUDED: not run at all (pattern -> reason).  Empty: every case the frontend claims is either
# converted or refused with a tested error; kept so an exclusion must be written down with its reason.
EXCLUDED: dict[str, str] = {}

_INT = (UnsupportedAttrError, "integer / bool tensors: the IR computes in float32 (element type refused at the input)")
_LOWP = (UnsupportedAttrError, "bfloat16 / float8 / float4 / int4 / int2 tensors: not float16/32/64 (input refused)")
_CAST = (UnsupportedAttrError, "Cast of a run-time tensor to a type other than float32/float64 changes values")
_SCALE = (UnsupportedAttrError, "Resize scales with floor(H*s) != H*s: ONNX maps coordinates with s, the IR "
                                "with out/in (different values); refused, pointing at 'sizes'")
REFUSED: dict[str, tuple[type[Exception], str]] = {
    # element types
    **{f"{op}_{t}": _INT for op in ("add", "sub", "mul", "div", "max", "min")
       for t in ("int*", "uint*")},
    "clip_default_int8_*": _INT,
    "maxpool_2d_uint8": _INT,
    "constantofshape_*": _INT,  # the shape is an int64 run-time input
    "edge_pad": _INT,  # int32 data (float edge/reflect pads: tests/frontends/test_onnx_frontend.py)
    "reflect_pad": _INT,
    "wrap_pad": _INT,
    "cast_BFLOAT16_to_*": _LOWP,
    "cast_FLOAT8*_to_*": _LOWP,
    "cast_FLOAT4E2M1_to_*": _LOWP,
    "cast_[UI]INT[24]_to_*": _LOWP,
    "cast_INT[24]_to_*": _LOWP,
    "cast_e8m0_FLOAT8E8M0_to_*": _LOWP,
    # Cast to a narrower / integer type
    "cast_*_to_FLOAT16": _CAST,
    "cast_*_to_BFLOAT16": _CAST,
    "cast_*_to_FLOAT8*": _CAST,
    "cast_*_to_FLOAT4E2M1": _CAST,
    "cast_*_to_[UI]INT[24]": _CAST,
    "cast_*_to_INT[24]": _CAST,
    "cast_no_saturate_*": _CAST,
    # not image-classifier graphs
    "constant": (InputFileError, "no run-time input (a constant model)"),
    "identity_sequence": (UnsupportedAttrError, "sequence values: the IR carries tensors only"),
    "identity_opt": (UnsupportedAttrError, "optional values: the IR carries tensors only"),
    "shape*": (UnsupportedAttrError, "the graph output is a shape, i.e. a constant of a static-shape IR"),
    "gather_*": (UnsupportedAttrError, "Gather of run-time data (only constant shape sub-graphs are folded)"),
    "matmul_[!2]*": (UnsupportedAttrError, "batched / vector MatMul; classifiers use [..., K] x constant [K, M]"),
    "reshape_allowzero_reordered": (UnsupportedAttrError, "empty tensors (a 0 dim)"),
    "split_zero_size_splits_*": (UnsupportedAttrError, "empty tensors (a 0 dim)"),
    "slice_start_out_of_bounds": (UnsupportedAttrError, "an empty slice"),
    "slice_neg_steps": (UnsupportedAttrError, "Slice steps other than 1"),
    # training-time behaviour
    "batchnorm_*_training_mode": (UnsupportedAttrError, "training-mode BatchNormalization (batch statistics)"),
    "training_dropout*": (UnsupportedAttrError, "training-mode Dropout is random"),
    "dropout_default_mask*": (UnsupportedAttrError, "the Dropout mask output is used"),
    "maxpool_with_argmax_*": (UnsupportedAttrError, "the MaxPool Indices output is used"),
    # pooling outside the IR
    "averagepool_1d_default": (UnsupportedAttrError, "1-D pooling (the IR pools NCHW)"),
    "maxpool_1d_default": (UnsupportedAttrError, "1-D pooling (the IR pools NCHW)"),
    "averagepool_3d_*": (UnsupportedAttrError, "3-D pooling (the IR pools NCHW)"),
    "maxpool_3d_*": (UnsupportedAttrError, "3-D pooling (the IR pools NCHW)"),
    "averagepool_2d_dilations": (UnsupportedAttrError, "dilated pooling"),
    "maxpool_2d_dilations": (UnsupportedAttrError, "dilated pooling"),
    # Resize forms outside the IR op
    "resize_*cubic*": (UnsupportedAttrError, "cubic interpolation"),
    "resize_tf_crop_and_resize*": (UnsupportedAttrError, "tf_crop_and_resize (a region of interest)"),
    "resize_downsample_sizes_linear_antialias": (UnsupportedAttrError, "antialias=1 when downscaling"),
    "resize_downsample_scales_nearest": _SCALE,
    "resize_downsample_scales_linear": _SCALE,
    "resize_downsample_scales_linear_align_corners": _SCALE,
    "resize_downsample_scales_linear_antialias": _SCALE,
    "resize_downsample_sizes_nearest_not_smaller": _SCALE,
    "resize_*_scales_linear_half_pixel_symmetric": _SCALE,
}
# the IR takes these (IR reference and onnxruntime match); BVLC Caffe 1.0 layers cannot express them
CAFFE_NO_FORM: dict[str, str] = {
    "add_bcast": "run-time operands [3,4,5] and [5] broadcast from the right: Eltwise needs equal shapes",
    "sub_bcast": "run-time operands [3,4,5] and [5] broadcast from the right: Eltwise needs equal shapes",
    "mul_bcast": "run-time operands [3,4,5] and [5] broadcast from the right: Eltwise needs equal shapes",
    "div_bcast": "run-time operands [3,4,5] and [5] broadcast from the right: Eltwise needs equal shapes",
    "prelu_example": "a slope per element ([3,4,5]): a product with a full-shape constant",
    "gemm_default_matrix_bias": "a bias matrix C [M, N] (a different bias per row)",
    "gemm_transposeA": "transA=1 needs a Transpose of A: BVLC Caffe has no Permute layer",
    "gemm_all_attributes": "transA=1 needs a Transpose of A: BVLC Caffe has no Permute layer",
    "transpose_default": "BVLC Caffe has no Permute layer",
    "transpose_all_permutations_[1-5]": "BVLC Caffe has no Permute layer",
    "constant_pad*": "pad value 1.2: stock Caffe pads with zeros only",
    "reduce_mean_*": "ReduceMean over axes other than (H, W): the Caffe backend has no reduction form",
    # Caffe writes integer upsampling as a Deconvolution; other factors have no stock layer
    "resize_upsample_sizes_nearest": "2x2 -> 7x8: not an integer factor",
    "resize_upsample_sizes_nearest_axes_[23]_[23]": "2x2 -> 7x8: not an integer factor",
    "resize_upsample_sizes_nearest_not_larger": "2x2 -> 7x7: not an integer factor",
    "resize_downsample_sizes_nearest": "downsampling 2x4 -> 1x3",
    "resize_downsample_sizes_nearest_not_larger": "downsampling 2x4 -> 1x2",
    "resize_downsample_sizes_linear_pytorch_half_pixel": "downsampling 4x4 -> 3x1",
}


# --------------------------------------------------------------------------- the cases
def _collect() -> dict[str, Any]:
    """Node cases of the claimed ops' generator modules, keyed by name without ``test_``."""
    import onnx.backend.test.case.node as pkg
    modules = {m.name.replace("_", ""): m.name for m in pkgutil.iter_modules(pkg.__path__)}
    claimed = set(HANDLERS)
    with warnings.catch_warnings():  # the generators' own numpy overflow warnings (cast cases)
        warnings.simplefilter("ignore")
        for op in sorted(claimed):
            if op.lower() in modules:
                importlib.import_module(f"{pkg.__name__}.{modules[op.lower()]}")
    out = {}
    for tc in pkg._NodeTestCases:
        ops = {n.op_type for n in tc.model.graph.node}
        if ops and ops <= claimed:
            out[tc.name[len("test_"):]] = tc
    return out


CASES = _collect()


def _match(name: str, table: dict[str, Any]) -> str | None:
    hits = [p for p in table if fnmatch.fnmatchcase(name, p)]
    return hits[0] if hits else None


def category(name: str) -> str:
    for cat, table in (("excluded", EXCLUDED), ("refused", REFUSED), ("caffe_no_form", CAFFE_NO_FORM)):
        if _match(name, table):
            return cat
    return "pass"


def op_of(tc: Any) -> str:
    ops = sorted({n.op_type for n in tc.model.graph.node})
    return ops[0] if len(ops) == 1 else "+".join(ops)


def classifier_form(tc: Any) -> tuple[onnx.ModelProto, dict[str, np.ndarray], list[Any]]:
    """The case's model with its non-data inputs as initializers; run-time feeds; expected outputs."""
    m = onnx.ModelProto()
    m.CopyFrom(tc.model)
    ins, outs = tc.data_sets[0]
    g = m.graph
    names = [i.name for i in g.input]
    ops = {n.op_type for n in g.node}
    runtime = set(names) if ops <= RUNTIME_ALL else set(names[:1])
    feeds = {}
    keep = []
    for vi, val in zip(g.input, ins):
        if isinstance(val, onnx.TensorProto) and vi.name in runtime:
            val = _to_array(val)
        if vi.name in runtime:
            keep.append(vi)
            feeds[vi.name] = val
        else:
            g.initializer.append(val if isinstance(val, onnx.TensorProto) else numpy_helper.from_array(val, vi.name))
    del g.input[:]
    g.input.extend(keep)
    if m.ir_version < 4:
        m.ir_version = 4  # initializers need not be graph inputs
    return m, feeds, [_to_array(o) if isinstance(o, onnx.TensorProto) else o for o in outs]


def _to_array(t: onnx.TensorProto) -> Any:
    try:
        return numpy_helper.to_array(t)
    except Exception:  # noqa: BLE001 - exotic element types numpy cannot hold: xconv refuses those inputs
        return t


def _close(got: np.ndarray, want: Any, tc: Any, what: str) -> None:
    want = np.asarray(want)
    got = np.asarray(got).reshape(want.shape) if np.size(got) == want.size else np.asarray(got)
    np.testing.assert_allclose(got.astype(np.float64), want.astype(np.float64), rtol=tc.rtol, atol=tc.atol,
                               err_msg=f"{tc.name}: {what}")


def _opset(m: onnx.ModelProto) -> int:
    return next((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), 13)


# --------------------------------------------------------------------------- Caffe in a child process
CAFFE_WORKER = r"""
import json, os, sys
import numpy as np
os.environ.setdefault("GLOG_minloglevel", "2")
import caffe
caffe.set_mode_cpu()
for line in sys.stdin:
    job = json.loads(line)
    feeds = np.load(job["feeds"])
    net = caffe.Net(job["prototxt"], caffe.TEST, weights=job["caffemodel"])
    for k in net.inputs:
        v = feeds[k]
        net.blobs[k].reshape(*v.shape)
    net.reshape()
    for k in net.inputs:
        net.blobs[k].data[...] = feeds[k]
    net.forward()
    np.savez(job["out"], *[net.blobs[o].data.copy() for o in job["outputs"]])
    print("done", flush=True)
"""


def run_caffe_jobs(jobs: list[dict[str, Any]]) -> dict[int, str]:
    """Run every job in one pycaffe child (pycaffe and TensorFlow cannot share a process; a Caffe
    CHECK failure aborts only the child, which is restarted for the remaining jobs).
    Returns {job index: error} for the jobs that failed."""
    errors: dict[int, str] = {}
    i = 0
    while i < len(jobs):
        proc = subprocess.Popen([sys.executable, "-c", CAFFE_WORKER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=ENV, text=True)
        assert proc.stdin and proc.stdout
        while i < len(jobs):
            try:
                proc.stdin.write(json.dumps(jobs[i]) + "\n")
                proc.stdin.flush()
            except BrokenPipeError:
                pass
            if proc.stdout.readline().strip() != "done":
                proc.kill()
                err = proc.stderr.read() if proc.stderr else ""
                errors[i] = "Caffe aborted: " + "\n".join(err.strip().splitlines()[-4:])
                i += 1
                break
            i += 1
        else:
            proc.stdin.close()
            proc.wait(timeout=60)
    return errors


@pytest.fixture(scope="module")
def caffe_outputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Every case expected to run in Caffe: converted (bvlc), then run in pycaffe in one batch.
    Maps case -> list of outputs, or the exception / error text of its failure."""
    root = tmp_path_factory.mktemp("caffe_cases")
    results: dict[str, Any] = {}
    jobs, owners = [], []
    for name, tc in CASES.items():
        if category(name) != "pass":
            continue
        try:
            m, feeds, _ = classifier_form(tc)
            g = xo.load(m)
            d = root / name
            res = convert(g, "caffe", d, "m", EmitOptions(dialect="bvlc"))
            np.savez(d / "feeds.npz", **{k: np.asarray(feeds[k], np.float32) for k in g.inputs})
        except Exception as e:  # noqa: BLE001 - reported by the case's own test
            results[name] = e
            continue
        jobs.append({"prototxt": str(d / "m.prototxt"), "caffemodel": str(d / "m.caffemodel"),
                     "feeds": str(d / "feeds.npz"), "outputs": list(res.graph.outputs), "out": str(d / "out.npz")})
        owners.append(name)
    errors = run_caffe_jobs(jobs)
    for k, (name, job) in enumerate(zip(owners, jobs)):
        if k in errors:
            results[name] = errors[k]
        else:
            with np.load(job["out"]) as z:
                results[name] = [z[f"arr_{j}"] for j in range(len(job["outputs"]))]
    return results


# --------------------------------------------------------------------------- the tests
def _params(*cats: str) -> list[str]:
    return [n for n in CASES if category(n) in cats]


@pytest.mark.parametrize("name", _params("refused"))
def test_refused(name: str) -> None:
    err_type, _ = REFUSED[_match(name, REFUSED)]  # type: ignore[index]
    m, _, _ = classifier_form(CASES[name])
    with pytest.raises(err_type) as e:
        xo.load(m)
    assert "onnx" in str(e.value)  # the message names the ONNX input or node


@pytest.mark.parametrize("name", _params("pass", "caffe_no_form"))
def test_ir_reference(name: str) -> None:
    """The frontend's graph in xconv's float64 reference against the expected outputs."""
    tc = CASES[name]
    m, feeds, want = classifier_form(tc)
    g = xo.load(m)
    ref = reference.run(g, {k: np.asarray(feeds[k]) for k in g.inputs})
    assert len(g.outputs) == len(want)
    for k, (o, w) in enumerate(zip(g.outputs, want)):
        _close(ref[o], w, tc, f"IR reference output {k}")


@pytest.mark.parametrize("name", _params("pass", "caffe_no_form"))
def test_onnx_runtime(name: str, tmp_path: Path) -> None:
    """ONNX -> IR -> ONNX (opset max(13, the case's), at most 21) in onnxruntime."""
    tc = CASES[name]
    m, feeds, want = classifier_form(tc)
    g = xo.load(m)
    convert(g, "onnx", tmp_path, "m", EmitOptions(opset=min(max(13, _opset(m)), MAX_OPSET)))
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    got = sess.run(None, {i.name: np.asarray(feeds[i.name], np.float32) for i in sess.get_inputs()})
    assert len(got) == len(want)
    for k, (o, w) in enumerate(zip(got, want)):
        _close(o, w, tc, f"ONNX output {k}")


@pytest.mark.parametrize("name", _params("pass", "caffe_no_form"))
def test_caffe(name: str, tmp_path: Path, caffe_outputs: dict[str, Any]) -> None:
    """ONNX -> IR -> Caffe (bvlc) in pycaffe; or, for CAFFE_NO_FORM, a refusal that writes nothing."""
    tc = CASES[name]
    if category(name) == "caffe_no_form":
        g = xo.load(classifier_form(tc)[0])
        with pytest.raises((BackendError, UnsupportedOpError)):
            convert(g, "caffe", tmp_path, "m", EmitOptions(dialect="bvlc"))
        assert not list(tmp_path.glob("m.*"))
        return
    got = caffe_outputs.get(name, "not run in Caffe")
    if isinstance(got, Exception):
        raise got
    assert not isinstance(got, str), got
    want = classifier_form(tc)[2]
    assert len(got) == len(want)
    for k, (o, w) in enumerate(zip(got, want)):
        _close(o, w, tc, f"Caffe output {k}")


def test_classification_is_complete(record_property: Any) -> None:
    """Every table pattern matches a case; the summary per op (passed / refused / IR-only / excluded)."""
    for table in (EXCLUDED, REFUSED, CAFFE_NO_FORM):
        stale = [p for p in table if not any(fnmatch.fnmatchcase(n, p) for n in CASES)]
        assert not stale, f"patterns that match no case: {stale}"
    counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for name, tc in CASES.items():
        counts[op_of(tc)][category(name)] += 1
    lines = [f"{'op':32s} pass refused caffe_no_form excluded"]
    for op in sorted(counts):
        c = counts[op]
        lines.append(f"{op[:32]:32s} {c['pass']:4d} {c['refused']:7d} {c['caffe_no_form']:13d} {c['excluded']:8d}")
    total = collections.Counter(category(n) for n in CASES)
    lines.append(f"{'total ' + str(len(CASES)):32s} {total['pass']:4d} {total['refused']:7d} "
                 f"{total['caffe_no_form']:13d} {total['excluded']:8d}")
    summary = "\n".join(lines)
    record_property("onnx_node_suite_summary", summary)
    print(summary)
    assert total["pass"] > 0
