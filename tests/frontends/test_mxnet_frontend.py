"""The MXNet frontend (xconv.frontends.mxnet): per-op symbols built with
MXNet's own symbol API, saved as a checkpoint (``-symbol.json`` +
``-0000.params`` with ``arg:``/``aux:`` keys), converted without MXNet and
compared with MXNet's executor; the same files in the pre-1.0 JSON layout;
then real onnxruntime and pycaffe (bvlc) on the converted models.

Tolerance: MXNet computes in float32, the IR reference in float64 and the
runtimes in float32; on these few-op graphs over unit-scale inputs float32
rounding stays a few ulps of the largest magnitude, far below
atol = 2e-5 * (1 + max|MXNet output|); a wrong pad, divisor, group or
weight layout moves outputs by O(1e-1) or more.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

from xconv import reference
from xconv.backend import EmitOptions
from xconv.convert import convert
from xconv.errors import InputFileError, UnsupportedAttrError, UnsupportedOpError
from xconv.frontends import mxnet as xm
from xconv.verify.runners import locate, make_runner

mx = xm.import_mxnet()
import mxnet_zoo  # noqa: E402

S = mx.sym


# --------------------------------------------------------------------------- helpers
def save(sym: Any, shape: tuple[int, ...], prefix: Path, seed: int = 0) -> tuple[Path, Path]:
    """Random weights for every argument but 'data' (BN statistics positive/non-trivial), saved as a checkpoint."""
    rng = np.random.default_rng(seed)
    arg_shapes, _, aux_shapes = sym.infer_shape(data=shape)
    arg, aux = {}, {}
    for name, s in zip(sym.list_arguments(), arg_shapes):
        if name == "data" or name.endswith("label"):
            continue
        a = rng.normal(0, 0.5, s)
        if name.endswith("gamma"):
            a = rng.uniform(0.5, 1.5, s)
        arg[name] = mx.nd.array(a.astype(np.float32))
    for name, s in zip(sym.list_auxiliary_states(), aux_shapes):
        a = rng.uniform(0.5, 2.0, s) if name.endswith("var") else rng.normal(0, 0.5, s)
        aux[name] = mx.nd.array(a.astype(np.float32))
    mx.model.save_checkpoint(str(prefix), 0, sym, arg, aux)
    return Path(f"{prefix}-symbol.json"), Path(f"{prefix}-0000.params")


def mx_run(sym_path: Path, x: np.ndarray, outputs: list[str] | None = None) -> np.ndarray:
    return xm.make_runner(sym_path, outputs=outputs)(x)


def ir_run(g: Any, x: np.ndarray) -> np.ndarray:
    return reference.run(g, {next(iter(g.inputs)): x.astype(np.float64)})[g.outputs[0]]


def tol(want: np.ndarray) -> float:
    return 2e-5 * (1.0 + float(np.abs(want).max()))


def data() -> Any:
    return S.Variable("data")


# --------------------------------------------------------------------------- cases: (symbol, input shape)
def c_conv() -> tuple[Any, tuple[int, ...]]:
    x = data()
    a = S.Convolution(x, kernel=(3, 3), num_filter=8, pad=(1, 1), name="c3")
    b = S.Convolution(a, kernel=(3, 5), num_filter=8, stride=(2, 1), dilate=(2, 1), pad=(2, 0), num_group=4,
                      no_bias=True, name="grouped_dilated")
    c = S.Convolution(a, kernel=(3, 3), num_filter=8, num_group=8, stride=(2, 2), pad=(1, 1), name="depthwise")
    c = S.Pooling(c, kernel=(1, 1), global_pool=True, pool_type="avg")
    b = S.Pooling(b, kernel=(1, 1), global_pool=True, pool_type="max")
    return S.Concat(S.flatten(b), S.Flatten(c), dim=1, name="cat"), (2, 3, 13, 11)


def c_bn_acts() -> tuple[Any, tuple[int, ...]]:
    x = S.Convolution(data(), kernel=(1, 1), num_filter=6, name="c")
    a = S.BatchNorm(x, fix_gamma=False, eps=2e-5, name="bn_free")
    b = S.BatchNorm(x, name="bn_fixed_gamma")  # fix_gamma=True (default): stored gamma ignored
    c = S.BatchNorm(x, fix_gamma=False, use_global_stats=True, name="bn_global")
    outs = [S.Activation(a, act_type="relu"), S.Activation(b, act_type="sigmoid"), S.Activation(c, act_type="tanh"),
            S.LeakyReLU(a, act_type="leaky", slope=0.1), S.LeakyReLU(b, act_type="elu", slope=0.3),
            S.LeakyReLU(c, act_type="prelu", name="prelu"), S.LeakyReLU(a, act_type="rrelu")[0],
            S.clip(b, a_min=-0.5, a_max=0.7), S.relu(c), S.sigmoid(a)]
    return S.Concat(*outs, dim=1), (2, 3, 5, 6)


def c_pools() -> tuple[Any, tuple[int, ...]]:
    x = S.Convolution(data(), kernel=(1, 1), num_filter=4, name="c")
    outs = [
        S.Pooling(x, kernel=(3, 3), stride=(2, 2), pool_type="max", pooling_convention="full", name="max_full"),
        S.Pooling(x, kernel=(3, 3), stride=(2, 2), pad=(1, 1), pool_type="avg", pooling_convention="full",
                  name="avg_full_pad"),
        S.Pooling(x, kernel=(3, 3), stride=(2, 2), pad=(1, 1), pool_type="avg", count_include_pad=False,
                  pooling_convention="full", name="avg_full_nopad"),
        S.Pooling(x, kernel=(2, 2), stride=(2, 2), pool_type="max", name="max_valid"),
        S.Pooling(x, kernel=(3, 3), stride=(1, 1), pad=(1, 1), pool_type="avg", name="avg_valid_pad"),
        S.Pooling(x, kernel=(3, 3), stride=(2, 2), pool_type="sum", name="sum_valid"),
    ]
    return S.Concat(*[S.Flatten(o) for o in outs], dim=1), (2, 3, 11, 9)


def c_dense_shapes() -> tuple[Any, tuple[int, ...]]:
    x = S.Convolution(data(), kernel=(3, 3), num_filter=4, stride=(2, 2), name="c")
    f = S.FullyConnected(x, num_hidden=7, name="fc_flatten")  # flatten=True: 4-D input flattened
    g = S.FullyConnected(S.Reshape(x, shape=(0, -1)), num_hidden=5, no_bias=True, flatten=False, name="fc_noflat")
    s = S.SliceChannel(x, num_outputs=2, axis=1, name="split")
    h = S.elemwise_add(s[0], s[1], name="add") + 1.5
    h = S.broadcast_mul(h, S.Pooling(h, kernel=(1, 1), global_pool=True, pool_type="avg"), name="se_mul")
    h = S.broadcast_add(h, S.slice_axis(x, axis=1, begin=1, end=3), name="badd")
    h = mx.sym._internal._copy(S.identity(S.BlockGrad(S.Dropout(h, p=0.5))))
    h = (h * 2.0 - 0.25) / 4.0
    h = S.Reshape(h, shape=(0, -3, -2), name="rs")  # (N, 2*H, W)
    k = S.FullyConnected(S.Flatten(h), num_hidden=3, name="fc_tail")
    return S.Concat(f, g, k, dim=1), (2, 3, 9, 8)


def c_softmax_head() -> tuple[Any, tuple[int, ...]]:
    x = S.Convolution(data(), kernel=(3, 3), num_filter=4, name="c")
    fc = S.FullyConnected(S.Pooling(x, kernel=(2, 2), stride=(2, 2), pool_type="max"), num_hidden=10, name="fc")
    return S.SoftmaxOutput(fc, name="softmax"), (2, 3, 8, 8)


def c_softmax_ops() -> tuple[Any, tuple[int, ...]]:
    x = S.Convolution(data(), kernel=(1, 1), num_filter=5, name="c")
    a = S.softmax(S.Flatten(x), axis=-1)
    b = S.Flatten(S.SoftmaxActivation(x, mode="channel"))
    c = S.SoftmaxActivation(S.Flatten(x))
    return S.Concat(a, b, c, dim=1), (2, 3, 3, 4)


CASES: dict[str, Callable[[], tuple[Any, tuple[int, ...]]]] = {
    "conv": c_conv, "bn_acts": c_bn_acts, "pools": c_pools, "dense_shapes": c_dense_shapes,
    "softmax_head": c_softmax_head, "softmax_ops": c_softmax_ops,
}


@pytest.fixture(scope="module")
def files(tmp_path_factory: Any) -> Callable[[str], tuple[Path, Path, np.ndarray]]:
    tmp = tmp_path_factory.mktemp("mx_cases")
    cache: dict[str, tuple[Path, Path, np.ndarray]] = {}

    def get(case: str) -> tuple[Path, Path, np.ndarray]:
        if case not in cache:
            sym, shape = CASES[case]()
            js, pr = save(sym, shape, tmp / case, seed=len(case))
            x = np.random.default_rng(1).normal(0, 1, shape).astype(np.float32)
            cache[case] = (js, pr, x)
        return cache[case]
    return get


@pytest.mark.parametrize("layout", ["current", "legacy"])
@pytest.mark.parametrize("case", list(CASES))
def test_case_matches_mxnet(case: str, layout: str, files: Any, tmp_path: Path) -> None:
    js, pr, x = files(case)
    want = mx_run(js, x)
    if layout == "legacy":
        legacy = tmp_path / f"{case}-symbol.json"
        mxnet_zoo.to_legacy_json(js, legacy)
        (tmp_path / pr.name).write_bytes(pr.read_bytes())
        assert "backward_source_id" in legacy.read_text()
        np.testing.assert_allclose(mx_run(legacy, x), want, rtol=0, atol=1e-6)  # MXNet reads it the same
        js = legacy
    g = xm.load(js, input_shape=x.shape)
    assert g.meta.extra["mxnet_symbol_layout"] == ("legacy (pre-1.0)" if layout == "legacy" else "current")
    np.testing.assert_allclose(ir_run(g, x), want, rtol=0, atol=tol(want), err_msg=f"{case} ({layout}): IR vs MXNet")


@pytest.mark.parametrize("case", [c for c in CASES if c != "dense_shapes"])
def test_case_real_backends(case: str, files: Any, tmp_path: Path) -> None:
    js, pr, x = files(case)
    want = mx_run(js, x)
    g = xm.load(js, input_shape=x.shape)
    for target, opts in (("onnx", EmitOptions(opset=13)), ("caffe", EmitOptions(dialect="bvlc"))):
        res = convert(g, target, tmp_path / target, "m", opts)
        p = next(q for q in res.files if q.suffix in (".prototxt", ".onnx"))
        got = np.asarray(make_runner(locate(p))(x))
        np.testing.assert_allclose(got.reshape(want.shape), want, rtol=0, atol=tol(want),
                                   err_msg=f"{case}: {target} vs MXNet")


def test_dense_shapes_onnx(files: Any, tmp_path: Path) -> None:
    """Reshape to rank 3 has no BVLC Caffe form; ONNX runs the whole case."""
    js, pr, x = files("dense_shapes")
    want = mx_run(js, x)
    g = xm.load(js, input_shape=x.shape)
    res = convert(g, "onnx", tmp_path, "m", EmitOptions(opset=13))
    got = np.asarray(make_runner(locate(next(q for q in res.files if q.suffix == ".onnx")))(x))
    np.testing.assert_allclose(got, want, rtol=0, atol=tol(want))


def test_outputs_option_picks_the_logits(files: Any) -> None:
    js, pr, x = files("softmax_head")
    g = xm.load(js, input_shape=x.shape, outputs=["fc"])
    want = mx_run(js, x, outputs=["fc"])
    np.testing.assert_allclose(ir_run(g, x), want, rtol=0, atol=tol(want))
    assert g.meta.num_classes == 10


def test_fix_gamma_ignores_the_stored_gamma(files: Any) -> None:
    js, pr, _ = files("bn_acts")
    g = xm.load(js, input_shape=(2, 3, 5, 6))
    bn = next(n for n in g.nodes if n.name == "bn_fixed_gamma")
    np.testing.assert_array_equal(g.params[bn.inputs[1]], np.ones(6, np.float32))
    assert np.abs(xm.Params.open(pr)["bn_fixed_gamma_gamma"] - 1).max() > 0.1  # the file's gamma is not 1


# --------------------------------------------------------------------------- bad input
def test_params_reader_layouts(tmp_path: Path) -> None:
    """Arrays of every rank and several dtypes round-trip through MXNet's own writer."""
    arrays = {"arg:a": np.arange(24, dtype=np.float32).reshape(2, 3, 4), "aux:b": np.array([1.5, -2.0]),
              "arg:c": np.array(7, dtype=np.int32).reshape(1), "arg:d": np.ones((1, 1, 1, 5), np.float16)}
    p = tmp_path / "x.params"
    mx.nd.save(str(p), {k: mx.nd.array(v, dtype=v.dtype) for k, v in arrays.items()})
    got = xm.Params.open(p)
    assert got.raw_names == list(arrays)
    for k, v in arrays.items():
        a = got[k.split(":")[1]]
        assert a.dtype == v.dtype and a.shape == v.shape
        np.testing.assert_array_equal(a, v)
    lst = tmp_path / "list.params"
    mx.nd.save(str(lst), [mx.nd.array(np.ones(3))])  # a list: no names
    assert list(xm.Params.open(lst)) == ["0"]


def test_truncated_params(files: Any, tmp_path: Path) -> None:
    js, pr, _ = files("conv")
    data_ = pr.read_bytes()
    for keep in (0, 10, 40, len(data_) // 2, len(data_) - 3):
        bad = tmp_path / f"t{keep}-0000.params"
        bad.write_bytes(data_[:keep])
        with pytest.raises(InputFileError, match="truncated|too short"):
            xm.Params.open(bad)


def test_wrong_magic(files: Any, tmp_path: Path) -> None:
    js, pr, _ = files("conv")
    d = bytearray(pr.read_bytes())
    d[0] ^= 0xFF
    bad = tmp_path / "conv-0000.params"
    bad.write_bytes(bytes(d))
    (tmp_path / js.name).write_bytes(js.read_bytes())
    with pytest.raises(InputFileError, match="bad magic number"):
        xm.load(tmp_path / js.name)
    torch_file = tmp_path / "notmx.params"
    torch_file.write_bytes(b"PK\x03\x04" + b"\0" * 100)
    with pytest.raises(InputFileError, match="bad magic"):
        xm.Params.open(torch_file)


def test_symbol_naming_a_missing_weight(files: Any, tmp_path: Path) -> None:
    js, pr, _ = files("conv")
    loaded = mx.nd.load(str(pr))
    del loaded["arg:grouped_dilated_weight"]
    mx.nd.save(str(tmp_path / "conv-0000.params"), loaded)
    (tmp_path / js.name).write_bytes(js.read_bytes())
    with pytest.raises(InputFileError, match="'grouped_dilated_weight'.*grouped_dilated"):
        xm.load(tmp_path / js.name, input_shape=(2, 3, 13, 11))


def test_shape_disagreeing_with_symbol(files: Any, tmp_path: Path) -> None:
    js, pr, _ = files("conv")
    loaded = mx.nd.load(str(pr))
    loaded["arg:c3_weight"] = mx.nd.zeros((8, 3, 5, 5))
    mx.nd.save(str(tmp_path / "conv-0000.params"), loaded)
    (tmp_path / js.name).write_bytes(js.read_bytes())
    with pytest.raises(InputFileError, match="c3_weight.*\\(8, 3, 5, 5\\).*\\(8, 3, 3, 3\\)"):
        xm.load(tmp_path / js.name, input_shape=(2, 3, 13, 11))


def test_bad_symbol_files(tmp_path: Path) -> None:
    p = tmp_path / "x-symbol.json"
    p.write_text("{not json")
    (tmp_path / "x-0000.params").write_bytes(b"")
    with pytest.raises(InputFileError, match="not valid JSON"):
        xm.load(p)
    p.write_text(json.dumps({"hello": 1}))
    with pytest.raises(InputFileError, match="not an MXNet symbol"):
        xm.load(p)
    with pytest.raises(InputFileError, match="no symbol file"):
        xm.load(tmp_path / "missing-symbol.json")


def test_unsupported_ops_listed_at_once(tmp_path: Path) -> None:
    x = data()
    y = S.UpSampling(S.Convolution(x, kernel=(1, 1), num_filter=2, name="c"), scale=2, sample_type="nearest",
                     name="up")
    y = S.LRN(y, nsize=3, name="lrn")
    js, _ = save(y, (1, 3, 4, 4), tmp_path / "u")
    with pytest.raises(UnsupportedOpError) as e:
        xm.load(js, input_shape=(1, 3, 4, 4))
    assert "UpSampling" in str(e.value) and "LRN" in str(e.value)


def test_unread_attribute_is_an_error(files: Any, tmp_path: Path) -> None:
    js, pr, _ = files("softmax_head")
    d = json.loads(js.read_text())
    for n in d["nodes"]:
        if n["name"] == "c":
            n["attrs"]["mystery_option"] = "3"
    (tmp_path / js.name).write_text(json.dumps(d))
    (tmp_path / pr.name).write_bytes(pr.read_bytes())
    with pytest.raises(UnsupportedAttrError, match="'c'.*mystery_option"):
        xm.load(tmp_path / js.name, input_shape=(2, 3, 8, 8))


NO_MXNET = r"""
import sys, importlib.abc
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "mxnet" or name.startswith("mxnet."):
            raise ImportError("mxnet is not installed (blocked by the test)")
sys.meta_path.insert(0, Block())
from xconv.cli import main
rc = main(["convert", "--from", "mxnet", sys.argv[1], "--to", sys.argv[2], "-o", sys.argv[3], "--input-shape",
           "2,3,13,11"])
bad = [m for m in ("mxnet", "torch", "tensorflow", "keras") if m in sys.modules]
print("IMPORTED", bad)
sys.exit(rc or (1 if bad else 0))
"""


def test_converts_where_mxnet_is_not_installed(files: Any, tmp_path: Path) -> None:
    js, pr, x = files("conv")
    for target in ("caffe", "onnx"):
        r = subprocess.run([sys.executable, "-c", NO_MXNET, str(js), target, str(tmp_path / target)],
                           capture_output=True, text=True, timeout=300,
                           env={**os.environ, "GLOG_minloglevel": "2"})
        assert r.returncode == 0, r.stdout + r.stderr
        assert "IMPORTED []" in r.stdout
    onnx_file = next((tmp_path / "onnx").glob("*.onnx"))
    np.testing.assert_allclose(make_runner(locate(onnx_file))(x), mx_run(js, x), rtol=0, atol=tol(mx_run(js, x)))


def _list_file(arrays: list[bytes], names: list[str]) -> bytes:
    import struct
    out = struct.pack("<QQQ", 0x112, 0, len(arrays)) + b"".join(arrays) + struct.pack("<Q", len(names))
    return out + b"".join(struct.pack("<Q", len(n)) + n.encode() for n in names)


def test_older_ndarray_layouts_read_like_mxnet(tmp_path: Path) -> None:
    """V1 (magic 0xF993FAC8, no storage type) and pre-V1 (no magic, uint32 dims) arrays, written
    byte by byte from the format description; MXNet's own loader is the reference."""
    import struct
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    b = np.array([1.5, -2.5, 4.0], dtype=np.float64)
    v1 = struct.pack("<Ii", 0xF993FAC8, 2) + struct.pack("<2q", 2, 3) + struct.pack("<iii", 1, 0, 0) + a.tobytes()
    pre = struct.pack("<I", 1) + struct.pack("<I", 3) + struct.pack("<iii", 1, 0, 1) + b.tobytes()
    p = tmp_path / "old.params"
    p.write_bytes(_list_file([v1, pre], ["arg:a", "aux:b"]))
    ours = xm.Params.open(p)
    theirs = mx.nd.load(str(p))
    for k in ("a", "b"):
        ref = [v for n, v in theirs.items() if n.endswith(":" + k)][0].asnumpy()
        np.testing.assert_array_equal(ours[k], ref)
        assert ours[k].dtype == ref.dtype
