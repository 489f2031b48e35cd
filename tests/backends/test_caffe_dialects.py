"""Caffe dialect profiles (backends/caffe/dialects.py), the profile-driven
emitter and the linter (backends/caffe/lint.py).

* Every profile's files parse with its own schema and fail with a narrower one
  where they use its extra fields.
* Every per-op case of tests/ops/test_ops_e2e.py converts under ``ceil-mode``
  and ``npu`` and matches PyTorch in the real pycaffe (the brocolli-caffe fork
  built here runs both).  ``bvlc-master`` files cannot run in this pycaffe: its
  field 13 is the fork's ``ceil_mode`` (bool), master's is ``round_mode``
  (enum), so for them the structure is checked instead (``round_mode: FLOOR``
  for floor pooling, Clip/Swish layers, parsed with master's schema, refused by
  1.0's).
* The fork's native ReLU6, Pad and Permute layers are proven numerically in
  pycaffe against PyTorch, and shown to be the layers actually written.
* The linter: one violation per broken npu rule naming the layer and the
  dialect that would accept it; clean stock nets lint clean; ``xconv lint``'s
  exit codes.
* A model without an exact form under ``npu`` is refused naming the node and
  the profile that accepts it, leaving no files.

Tolerance (pycaffe vs torch): as in tests/ops/test_ops_e2e.py, both compute in
float32 and the compositions add a few roundings: atol = 2e-5 * (1 + max|torch|).
The native fork layers only copy or compare values (max/min, pad copies, index
permutations), so they are checked bit for bit.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

os.environ.setdefault("GLOG_minloglevel", "2")  # before pycaffe loads glog

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from irgraphs import try_import
from ops.test_ops_e2e import CASES, Fn, _randomise

from xconv.backend import EmitOptions, as_bytes, get_backend
from xconv.cli import main as cli_main
from xconv.convert import convert, lower
from xconv.errors import BackendError, UnsupportedOpError, XconvError
from xconv.frontends.pytorch import load
from xconv.backends.caffe import dialects
from xconv.backends.caffe.dialects import PROFILES, get_profile
from xconv.backends.caffe.lint import lint, lint_net
from xconv.backends.caffe.schema import CaffeSchemaError, parse_prototxt

caffe = try_import("caffe")  # imported once: pycaffe's start-up is the slow part
needs_caffe = pytest.mark.xfail(caffe is None, run=False,
                                reason="pycaffe is not importable: the Caffe runtime checks did not run")
torch.set_num_threads(1)


# --------------------------------------------------------------------------- helpers
def _torch_case(module: nn.Module, shape: tuple[int, ...]) -> tuple[Any, np.ndarray, np.ndarray]:
    module = module.eval()
    _randomise(module)
    x = np.random.default_rng(7).standard_normal(shape).astype(np.float32) * 2
    with torch.no_grad():
        want = module(torch.from_numpy(x)).numpy()
    return load(module, input_shape=shape, name="m"), x, want


def _emit(graph: Any, dialect: str) -> tuple[str, bytes]:
    """(prototxt text, caffemodel bytes) without touching the disk."""
    opts = EmitOptions(dialect=dialect)
    files = get_backend("caffe").emit(lower(graph, "caffe", opts), "m", opts)
    return as_bytes(files["m.prototxt"]).decode(), as_bytes(files["m.caffemodel"])


def _run_caffe(text: str, model: bytes, x: np.ndarray, where: Path) -> np.ndarray:
    assert caffe is not None
    where.mkdir(parents=True, exist_ok=True)
    (where / "m.prototxt").write_text(text)
    (where / "m.caffemodel").write_bytes(model)
    net = caffe.Net(str(where / "m.prototxt"), caffe.TEST, weights=str(where / "m.caffemodel"))
    net.blobs[net.inputs[0]].data[...] = x
    net.forward()
    return net.blobs[net.outputs[0]].data.copy()


def _layer_types(text: str, schema: str) -> list[str]:
    return [lay.type for lay in parse_prototxt(text, schema).layer]


# --------------------------------------------------------------------------- the registry
def test_profiles_are_declared_data() -> None:
    assert list(PROFILES)[:4] == ["bvlc", "bvlc-master", "ceil-mode", "npu"]
    assert get_profile(None).name == get_profile("").name == "bvlc"
    with pytest.raises(BackendError, match=r"'nnie'.*bvlc, bvlc-master, ceil-mode, npu"):
        get_profile("nnie")
    bvlc, master, fork, npu = (PROFILES[n] for n in ("bvlc", "bvlc-master", "ceil-mode", "npu"))
    assert not bvlc.native and bvlc.floor_pooling == "rewrite" and not bvlc.rules
    assert master.floor_pooling == "round_mode" and dict(master.native) == {
        "relu6": "Clip", "clip": "Clip", "silu": "Swish"}
    assert fork.floor_pooling == "ceil_mode" and fork.schema == "brocolli"
    assert set(fork.layer_types - bvlc.layer_types) == {"ReLU6", "Pad", "Permute"}
    assert npu.layer_types - bvlc.layer_types == {"Permute"}
    assert {r.name for r in npu.rules} == {"permute-order", "reshape-4d", "slice-batch-axis", "concat-batch-axis"}
    assert all(r.reason for p in PROFILES.values() for r in p.rules)
    # fields: the fork profile may set ceil_mode and its three layers' params, never round_mode
    assert ("PoolingParameter", "ceil_mode") in fork.allowed_fields()
    assert ("LayerParameter", "permute_param") in fork.allowed_fields()
    assert ("PoolingParameter", "round_mode") not in fork.allowed_fields()
    assert ("LayerParameter", "upsample_param") not in fork.allowed_fields()
    assert ("PoolingParameter", "ceil_mode") not in npu.allowed_fields()
    assert ("PermuteParameter", "order") in npu.allowed_fields()
    with pytest.raises(ValueError, match="lacks"):
        dialects.Profile("x", "x", "", "bvlc", frozenset({"ReLU"}), native={"relu6": "ReLU6"})


# --------------------------------------------------------------------------- (a) schemas per profile
class _Features(nn.Module):
    """Floor pooling, ReLU6, a finite clip, SiLU, a zero pad and (optionally) an NCHW -> NHWC permute."""

    def __init__(self, permute: bool) -> None:
        super().__init__()
        self.permute = permute

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.max_pool2d(F.relu6(x), 3, 2)
        y = torch.clamp(F.silu(F.pad(y, (0, 1, 1, 0))), -0.5, 2.0)
        return y.permute(0, 2, 3, 1) if self.permute else y


def test_each_profile_parses_with_its_own_schema_only() -> None:
    texts = {}
    for d in ("bvlc-master", "ceil-mode", "npu"):
        # BVLC master has no Permute layer
        graph, _, _ = _torch_case(_Features(permute=d != "bvlc-master"), (1, 3, 9, 8))
        text, _ = _emit(graph, d)
        texts[d] = text
        p = PROFILES[d]
        net = parse_prototxt(text, p.schema)
        assert lint_net(net, p) == [] and lint(text, p) == []
        assert set(_layer_types(text, p.schema)) <= p.layer_types
    # the stock profile cannot write the permute (no Permute layer): its own refusal is tested below

    m = texts["bvlc-master"]
    assert "round_mode: FLOOR" in m and "ceil_mode" not in m
    types = _layer_types(m, "bvlc-master")
    assert types.count("Clip") == 2 and "Swish" in types  # relu6 and the clamp
    for narrower in ("bvlc", "ceil-mode"):
        with pytest.raises(CaffeSchemaError, match="round_mode|clip_param"):
            parse_prototxt(m, narrower)

    c = texts["ceil-mode"]
    assert "ceil_mode: false" in c and "round_mode" not in c
    assert {"ReLU6", "Pad", "Permute"} <= set(_layer_types(c, "brocolli"))
    with pytest.raises(CaffeSchemaError, match="pad_param|permute_param"):
        parse_prototxt(c, "ceil-mode")  # ceil-mode's schema is exactly 1.0 + ceil_mode
    with pytest.raises(CaffeSchemaError, match="ceil_mode"):
        parse_prototxt(c, "bvlc")
    assert [v.rule for v in lint(c, "bvlc")].count("layer-type") == 3

    n = texts["npu"]
    assert "ceil_mode" not in n and "round_mode" not in n
    assert "Permute" in _layer_types(n, "brocolli") and "Pad" not in _layer_types(n, "brocolli")
    with pytest.raises(CaffeSchemaError, match="permute_param"):
        parse_prototxt(n, "bvlc")


def test_bvlc_files_stay_bvlc() -> None:
    """The stock profile: the same model without the permute parses with 1.0's schema."""
    graph, _, _ = _torch_case(_Features(permute=True), (1, 3, 9, 8))
    with pytest.raises(UnsupportedOpError, match=r"(?s)Transpose.*ceil-mode, npu"):
        _emit(graph, "bvlc")
    graph, _, _ = _torch_case(_Features(permute=False), (1, 3, 9, 8))
    text, _ = _emit(graph, "bvlc")
    assert set(_layer_types(text, "bvlc")) <= PROFILES["bvlc"].layer_types
    assert lint(text, "bvlc") == []


# --------------------------------------------------------------------------- (b) every e2e case
@needs_caffe
@pytest.mark.parametrize("dialect", ["ceil-mode", "npu"])
@pytest.mark.parametrize("name", list(CASES))
def test_e2e_case_runs_in_pycaffe(name: str, dialect: str, tmp_path: Path) -> None:
    module, shape = CASES[name]
    graph, x, want = _torch_case(module, shape)
    text, model = _emit(graph, dialect)
    assert lint(text, dialect) == []
    got = _run_caffe(text, model, x, tmp_path)
    atol = 2e-5 * (1 + float(np.abs(want).max()))  # see the module docstring
    np.testing.assert_allclose(got.reshape(want.shape), want, rtol=0, atol=atol, err_msg=f"{dialect} vs torch")


def test_e2e_cases_under_bvlc_master_structure() -> None:
    """Master's files cannot run here (field 13 is ceil_mode in this pycaffe): check their form."""
    native = {"round_mode": 0, "Clip": 0, "Swish": 0}
    for name, (module, shape) in CASES.items():
        graph, _, _ = _torch_case(module, shape)
        text, _ = _emit(graph, "bvlc-master")
        net = parse_prototxt(text, "bvlc-master")
        assert lint_net(net, "bvlc-master") == [], name
        assert "ceil_mode" not in text, name
        floor = [lay for lay in net.layer if lay.type == "Pooling" and lay.pooling_param.HasField("round_mode")]
        assert all(lay.pooling_param.round_mode == 1 for lay in floor), name  # FLOOR = 1
        native["round_mode"] += bool(floor)
        types = {lay.type for lay in net.layer}
        native["Clip"] += "Clip" in types
        native["Swish"] += "Swish" in types
        if floor or "Clip" in types:  # round_mode / clip_param: fields 1.0's schema lacks
            with pytest.raises(CaffeSchemaError, match="round_mode|clip_param"):
                parse_prototxt(text, "bvlc")
        else:
            parse_prototxt(text, "bvlc")
        if types & {"Clip", "Swish"}:  # a Swish layer sets no field: 1.0's layer set refuses it
            vs = lint(text, "bvlc")
            assert {v.layer_type for v in vs if v.rule == "layer-type"} == types & {"Clip", "Swish"}, name
            assert all(v.accepted_by == ("bvlc-master",) for v in vs), (name, vs)
    # floor pools (maxpool_floor, maxpool_pad_floor, avgpool_floor_*), relu6/hardtanh/hardsigmoid/hardswish, silu
    assert native["round_mode"] >= 3 and native["Clip"] >= 4 and native["Swish"] == 1, native


def test_verify_refuses_a_dialect_this_pycaffe_cannot_load(tmp_path: Path) -> None:
    """verify must not hand a bvlc-master file (round_mode in field 13) to the fork's pycaffe,
    which reads field 13 as ceil_mode: it says so and names the dialects it can prove."""
    from xconv.verify.runners import locate, make_runner  # noqa: PLC0415

    graph, _, _ = _torch_case(*CASES["maxpool_floor"])
    convert(graph, "caffe", tmp_path, "m", EmitOptions(dialect="bvlc-master"))
    conv = locate(tmp_path / "m.prototxt")
    assert conv.info["dialect"] == "bvlc-master"
    with pytest.raises(XconvError, match=r"bvlc-master.*cannot load.*--dialect bvlc or ceil-mode or npu"):
        make_runner(conv)


# --------------------------------------------------------------------------- (c) native fork layers
NATIVE = {
    "relu6": (nn.ReLU6(), (1, 3, 5, 6), {"ReLU6": 1}),
    "relu6_threshold_2.5": (nn.Hardtanh(0.0, 2.5), (2, 3, 4, 5), {"ReLU6": 1}),
    # x * clip(x * (1/6) + 0.5, 0, 1): the clip is one ReLU6 (threshold 1); x * float32(1/6) and the
    # product round differently from torch's x * (x + 3) / 6, so this one compares within the e2e tolerance
    "hardswish_relu6_t1": (nn.Hardswish(), (1, 3, 5, 5), {"ReLU6": 1}),
    "pad_constant_0.7": (Fn(lambda x: F.pad(x, (1, 2, 0, 3), value=0.7)), (1, 2, 5, 4), {"Pad": 1}),
    "pad_reflect": (nn.ReflectionPad2d((2, 1, 1, 3)), (1, 2, 5, 4), {"Pad": 1}),
    "pad_replicate": (nn.ReplicationPad2d((1, 0, 2, 3)), (2, 2, 3, 4), {"Pad": 1}),
    "pad_mixed_negative": (Fn(lambda x: F.pad(x, (-1, 2, 1, -2))), (1, 2, 6, 5), {"Pad": 1, "Slice": 2}),
    "permute_nhwc": (Fn(lambda x: x.permute(0, 2, 3, 1)), (2, 3, 4, 5), {"Permute": 1}),
    "permute_nchw_back": (Fn(lambda x: x.permute(0, 3, 1, 2) * 1.0), (1, 3, 4, 5), {"Permute": 1}),
    "permute_hw_swap": (Fn(lambda x: x.transpose(2, 3)), (2, 3, 4, 5), {"Permute": 1}),
    "permute_batch_channel": (Fn(lambda x: x.permute(1, 0, 3, 2)), (2, 3, 4, 5), {"Permute": 1}),
}


@needs_caffe
@pytest.mark.parametrize("name", list(NATIVE))
def test_native_fork_layer_matches_torch(name: str, tmp_path: Path) -> None:
    module, shape, layers = NATIVE[name]
    graph, x, want = _torch_case(module, shape)
    text, model = _emit(graph, "ceil-mode")
    types = _layer_types(text, "brocolli")
    for lt, count in layers.items():
        assert types.count(lt) == count, (name, types)  # the native layer, not the stock rewrite
    got = _run_caffe(text, model, x, tmp_path).reshape(want.shape)
    if name.startswith("hardswish"):
        np.testing.assert_allclose(got, want, rtol=0, atol=2e-5 * (1 + float(np.abs(want).max())), err_msg=name)
    else:
        np.testing.assert_array_equal(got, want, err_msg=name)  # copies/compares only: exact


def test_reflect_pad_wider_than_the_map_is_refused() -> None:
    """The fork's REFLECT reads only inside the map; a pad >= the side has no exact form there."""
    from xconv.ir import Graph, Node, SourceLoc, TensorType  # noqa: PLC0415
    from xconv.ops import make_attrs  # noqa: PLC0415

    node = Node("Pad", "wide_reflect", ["x"], ["y"], make_attrs("Pad", pads=(0, 4, 0, 0), mode="reflect"),
                SourceLoc("test", "wide_reflect"))
    g = Graph("g", [node], {"x": TensorType((1, 1, 3, 4))}, ["y"])
    with pytest.raises(BackendError, match=r"(?s)'wide_reflect'.*smaller than the map"):
        lower(g, "caffe", EmitOptions(dialect="ceil-mode"))


# --------------------------------------------------------------------------- (d) the linter
_HEAD = ('name: "n"\n'
         'layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 4 dim: 5 } } }\n')
NPU_BAD = {
    "permute-order": ('layer { name: "bad" type: "Permute" bottom: "data" top: "t" '
                      'permute_param { order: 0 order: 2 order: 1 order: 3 } }', ("ceil-mode",)),
    "reshape-4d": ('layer { name: "bad" type: "Reshape" bottom: "data" top: "t" '
                   'reshape_param { shape { dim: 0 dim: -1 } } }',
                   ("bvlc", "bvlc-master", "ceil-mode")),
    "slice-batch-axis": ('layer { name: "bad" type: "Slice" bottom: "data" top: "a" top: "b" '
                         'slice_param { axis: 0 slice_point: 1 } }', ("bvlc", "bvlc-master", "ceil-mode")),
    "concat-batch-axis": ('layer { name: "bad" type: "Concat" bottom: "data" bottom: "data" top: "t" '
                          'concat_param { axis: 0 } }', ("bvlc", "bvlc-master", "ceil-mode")),
    "layer-type": ('layer { name: "bad" type: "ReLU6" bottom: "data" top: "t" }', ("ceil-mode",)),
    "field": ('layer { name: "bad" type: "Pooling" bottom: "data" top: "t" '
              'pooling_param { pool: MAX kernel_size: 2 stride: 2 round_mode: FLOOR } }', ("bvlc-master",)),
}


@pytest.mark.parametrize("rule", list(NPU_BAD))
def test_lint_names_layer_rule_and_accepting_dialect(rule: str) -> None:
    body, accepted = NPU_BAD[rule]
    ok = 'layer { name: "fine" type: "ReLU" bottom: "data" top: "r" }\n'
    vs = lint(_HEAD + ok + body, "npu")
    assert len(vs) == 1, vs
    v = vs[0]
    assert (v.layer, v.rule, v.accepted_by) == ("bad", rule, accepted), v
    assert v.explanation and v.layer_type


def test_lint_reads_fork_and_master_field_13_apart() -> None:
    fork = _HEAD + ('layer { name: "p" type: "Pooling" bottom: "data" top: "t" '
                    'pooling_param { kernel_size: 2 ceil_mode: false } }')
    vs = lint(fork, "bvlc")
    assert [(v.layer, v.rule, v.accepted_by) for v in vs] == [("p", "field", ("ceil-mode",))]
    assert "pooling_param.ceil_mode" in vs[0].explanation
    assert lint(fork, "ceil-mode") == []
    unknown = _HEAD + 'layer { name: "u" type: "Interp" bottom: "data" top: "t" }'
    vs = lint(unknown, "ceil-mode")
    assert [(v.rule, v.accepted_by) for v in vs] == [("layer-type", ())] and "no profile" in vs[0].explanation
    broken = _HEAD + 'layer { name: "u" type: "Interp" interp_param { zoom_factor: 2 } }'
    assert [v.rule for v in lint(broken, "npu")] == ["schema"]


def test_clean_stock_net_lints_clean() -> None:
    graph, _, _ = _torch_case(CASES["linear"][0], CASES["linear"][1])
    text, _ = _emit(graph, "bvlc")
    for d in ("bvlc", "bvlc-master", "npu"):
        assert lint(text, d) == [], d
    assert "Flatten" in text
    npu_text, _ = _emit(graph, "npu")  # the Flatten feeding only the InnerProduct is left out under npu
    assert "Flatten" not in npu_text and "InnerProduct" in npu_text


def test_lint_cli_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clean = tmp_path / "clean.prototxt"
    clean.write_text(_HEAD + 'layer { name: "r" type: "ReLU" bottom: "data" top: "r" }')
    bad = tmp_path / "bad.prototxt"
    bad.write_text(_HEAD + NPU_BAD["permute-order"][0] + "\n" + NPU_BAD["slice-batch-axis"][0])
    assert cli_main(["lint", str(clean), "--dialect", "npu"]) == 0
    assert "clean" in capsys.readouterr().out
    assert cli_main(["lint", str(bad), "--dialect", "npu"]) == 1
    lines = capsys.readouterr().out.splitlines()
    rows = [ln for ln in lines if ln.startswith("bad")]
    assert len(rows) == 2 and "permute-order" in rows[0] and "ceil-mode" in rows[0] and "slice-batch-axis" in rows[1]
    assert cli_main(["lint", str(bad), "--dialect", "ceil-mode"]) == 0
    assert cli_main(["lint", str(tmp_path / "missing.prototxt")]) == 2
    capsys.readouterr()
    assert cli_main(["dialects"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in PROFILES)


@pytest.fixture
def restore_profiles():
    before = dict(PROFILES)
    yield
    PROFILES.clear()
    PROFILES.update(before)


def test_user_profile_file(tmp_path: Path, capsys: pytest.CaptureFixture[str], restore_profiles: None) -> None:
    spec = {"name": "my-npu", "base": "npu", "title": "my chip",
            "add_rules": [{"name": "no-ave-pool", "layer": "Pooling", "param": "pooling_param.pool",
                           "forbidden": [1], "reason": "this chip has no average pooling unit"}]}
    f = tmp_path / "chip.json"
    f.write_text(json.dumps(spec))
    net = tmp_path / "n.prototxt"
    net.write_text(_HEAD + 'layer { name: "avg" type: "Pooling" bottom: "data" top: "t" '
                           'pooling_param { pool: AVE kernel_size: 2 } }')
    assert cli_main(["lint", str(net), "--dialect-file", str(f)]) == 1
    row = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("avg"))
    assert "no-ave-pool" in row and "bvlc, bvlc-master, ceil-mode, npu" in row  # the stock profiles accept it
    assert cli_main(["lint", str(net), "--dialect", "npu"]) == 0
    builtin = tmp_path / "builtin.json"
    builtin.write_text(json.dumps({"name": "npu", "base": "bvlc"}))
    assert cli_main(["lint", str(net), "--dialect-file", str(builtin)]) == 2
    assert "built in" in capsys.readouterr().err and PROFILES["npu"].rules  # the built-in one is untouched
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"name": "x", "colour": 1}))
    assert cli_main(["lint", str(net), "--dialect-file", str(bad)]) == 2
    assert "unknown keys ['colour']" in capsys.readouterr().err


# --------------------------------------------------------------------------- (e) refused under npu
def test_npu_refuses_transpose_naming_node_and_dialect(tmp_path: Path) -> None:
    graph, _, _ = _torch_case(Fn(lambda x: torch.relu(x).transpose(1, 2)), (1, 3, 4, 5))
    out = tmp_path / "out"
    with pytest.raises(BackendError) as ei:
        convert(graph, "caffe", out, "m", EmitOptions(dialect="npu"))
    msg = str(ei.value)
    node = next(n.name for n in graph.nodes if n.op == "Transpose")
    assert f"node '{node}'" in msg and "dialect 'npu'" in msg
    assert "(0, 2, 1, 3)" in msg and "(0, 2, 3, 1)" in msg  # what it is and what the rule allows
    assert "exact in dialect(s): ceil-mode" in msg and "--dialect ceil-mode" in msg and "--to onnx" in msg
    assert not out.exists() or not any(out.iterdir())
    # the NHWC order itself is fine under npu
    graph2, _, _ = _torch_case(Fn(lambda x: torch.relu(x).permute(0, 2, 3, 1)), (1, 3, 4, 5))
    text, _ = _emit(graph2, "npu")
    assert "Permute" in text and lint(text, "npu") == []


@needs_caffe
def test_npu_writes_a_size1_transpose_as_reshape(tmp_path: Path) -> None:
    """(2, 3, 1, 5) -> (2, 1, 3, 5): only a size-1 axis moves, the memory order is unchanged,
    so the (0, 2, 1, 3) Permute npu refuses is written as a 4-D Reshape; a copy: exact."""
    graph, x, want = _torch_case(Fn(lambda x: x.transpose(1, 2)), (2, 3, 1, 5))
    text, model = _emit(graph, "npu")
    assert "Permute" not in _layer_types(text, "brocolli") and "Reshape" in text and lint(text, "npu") == []
    np.testing.assert_array_equal(_run_caffe(text, model, x, tmp_path), want)
    assert "Permute" in _emit(graph, "ceil-mode")[0]  # the fork takes the Permute as it is


@needs_caffe
@pytest.mark.parametrize("dialect", ["bvlc", "npu"])
def test_size1_transpose_is_a_reshape_without_permute(dialect: str, tmp_path: Path) -> None:
    """bvlc has no Permute at all: the same size-1 transpose is still exact there, as a stock
    Reshape (normalize_shapes writes it before the backend's support check), and runs in pycaffe."""
    graph, x, want = _torch_case(Fn(lambda x: x.transpose(1, 2)), (2, 3, 1, 5))
    text, model = _emit(graph, dialect)
    assert _layer_types(text, get_profile(dialect).schema) == ["Input", "Reshape"] and lint(text, dialect) == []
    np.testing.assert_array_equal(_run_caffe(text, model, x, tmp_path), want)


def test_npu_reshape_rules() -> None:
    """A Reshape to (N, C*H*W) is written as Flatten under npu; to 3-D it has no form there."""
    graph, _, _ = _torch_case(CASES["view_reshape"][0], CASES["view_reshape"][1])
    text, _ = _emit(graph, "npu")
    assert "Reshape" not in text and "Flatten" in text
    graph3, _, _ = _torch_case(Fn(lambda x: x.reshape(2, 3, 20)), (2, 3, 4, 5))
    with pytest.raises(BackendError, match=r"(?s)reshape.*4.*exact in dialect\(s\): bvlc, bvlc-master, ceil-mode"):
        _emit(graph3, "npu")
    assert "Reshape" in _emit(graph3, "bvlc")[0]


def test_npu_refuses_batch_axis_slice_and_concat() -> None:
    graph, _, _ = _torch_case(Fn(lambda x: torch.cat([x[1:], x[:1]], 0)), (2, 3, 4, 5))
    with pytest.raises(BackendError) as ei:
        _emit(graph, "npu")
    msg = str(ei.value)
    # x[1:] and x[:1] (two Slices) and the Concat, all on the batch axis
    assert "3 node(s)" in msg and msg.count("slice_param.axis is 0") == 2 and "concat_param.axis is 0" in msg
    assert msg.count("exact in dialect(s): bvlc, bvlc-master, ceil-mode") == 3
    assert "Slice" in _emit(graph, "bvlc")[0]


# --------------------------------------------------------------------------- the guards behind the profile
def test_layer_type_outside_the_profile_is_an_internal_error() -> None:
    from xconv.backends.caffe.emitter import Emitter  # noqa: PLC0415
    from xconv.backends.caffe.schema import get_schema  # noqa: PLC0415
    from xconv.errors import XconvError  # noqa: PLC0415
    from xconv.ir import Graph, TensorType  # noqa: PLC0415

    e = Emitter(Graph("g", [], {"x": TensorType((1, 2, 3, 3))}, ["x"]), get_schema("bvlc"), "bvlc")
    with pytest.raises(XconvError, match=r"internal error.*ReLU6.*'bvlc'"):
        e.layer("ReLU6", "r6", ["x"], ["y"])
    # not a BackendError: the emitter must not report a handler bug as "no exact form"
    with pytest.raises(XconvError) as ei:
        e.layer("Permute", "p", ["x"], ["y"])
    assert not isinstance(ei.value, BackendError)


def test_emitted_net_is_read_back_and_linted() -> None:
    """The last guard before any file: the net text is parsed with the profile's schema and
    linted; a field outside the profile (here the fork's ceil_mode under npu, whose schema is
    the fork's) fails with the report."""
    from xconv.backends.caffe import CaffeBackend  # noqa: PLC0415
    from xconv.backends.caffe.emitter import Emitter  # noqa: PLC0415
    from xconv.backends.caffe.schema import get_schema  # noqa: PLC0415
    from xconv.ir import Graph, TensorType  # noqa: PLC0415

    npu = get_profile("npu")
    S = get_schema(npu.schema)
    e = Emitter(Graph("g", [], {"x": TensorType((1, 2, 4, 4))}, ["x"]), S, npu)
    e.run()
    _, text = CaffeBackend().deploy(S, e, npu, "ok")
    assert 'type: "Input"' in text
    m = e.layer("Pooling", "pool", ["x"], ["y"])
    m.pooling_param.kernel_size = 2
    m.pooling_param.ceil_mode = False
    with pytest.raises(BackendError, match=r"(?s)breaks the profile.*'pool'.*pooling_param.ceil_mode.*ceil-mode"):
        CaffeBackend().deploy(S, e, npu, "bad")
