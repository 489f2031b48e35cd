"""``make bench`` part 6: Caffe and ONNX as inputs (issue #7).

Full-size SE-ResNeXt-50 (32x4d) and ResNet-101-v2 deploy prototxts written
from their papers by ``tests/caffe_zoo.py`` (random weights set and saved by
pycaffe in a child process, once per bench directory).  Whole processes,
best of BENCH_REPEAT, peak RSS from wait4:

* ``xconv convert --from caffe`` to ONNX and to stock Caffe (bvlc), read
  without importing Caffe;
* ``xconv convert --from onnx`` of the ONNX file just written, to Caffe
  (bvlc) and to the ``npu`` profile;
* for scale: pycaffe itself constructing the net and loading the weights.

Goal: conversions under 3 s and under 2 x the weights' size + 300 MB.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from .run import PY, REPEAT, ROOT, Run, budget_rows, measure, publish, runs_json

MAKE = r"""
import sys, json
sys.path.insert(0, {tests!r})
import caffe_zoo
g = caffe_zoo.GenSpec(name=sys.argv[1], out_dir=sys.argv[2], arch=sys.argv[1], full=True, batch=1, calib=2)
print(json.dumps(caffe_zoo.make_files(g)))
"""

CAFFE_LOAD = r"""
import os, sys
os.environ["GLOG_minloglevel"] = "2"
import caffe
caffe.set_mode_cpu()
caffe.Net(sys.argv[1], caffe.TEST, weights=sys.argv[2])
"""

MODELS = ("se_resnext50_32x4d", "resnet101_v2")


def main() -> None:
    work = Path(os.environ.get("BENCH_DIR", "/tmp/xconv-bench")) / "caffe"
    work.mkdir(parents=True, exist_ok=True)
    env = {"GLOG_minloglevel": "2"}
    rows = []
    for arch in MODELS:
        proto, model = work / arch / f"{arch}.prototxt", work / arch / f"{arch}.caffemodel"
        if not model.exists():
            print(f"making {arch} (random weights, pycaffe)", flush=True)
            subprocess.run([PY, "-c", MAKE.format(tests=str(ROOT / "tests")), arch, str(work / arch)], check=True,
                           stdout=subprocess.DEVNULL)
        print(f"benchmark: {arch}, best of {REPEAT}", flush=True)
        xc = [PY, "-m", "xconv.cli", "convert"]
        r: dict[str, Run] = {}
        for t in ("onnx", "caffe"):
            r[f"caffe -> {t}"] = measure(f"caffe -> {t}", xc + ["--from", "caffe", str(proto), "--weights", str(model),
                                                                  "--to", t, "-o", str(work / f"out-{t}")], env)
        onnx_file = work / "out-onnx" / f"{arch}.onnx"
        for d in ("bvlc", "npu"):
            r[f"onnx -> caffe ({d})"] = measure(f"onnx -> caffe {d}", xc + ["--from", "onnx", str(onnx_file), "--to",
                                                                            "caffe", "--dialect", d, "-o",
                                                                            str(work / f"out-{d}")], env)
        r["pycaffe: build net + load weights"] = measure("pycaffe load", [PY, "-c", CAFFE_LOAD, str(proto),
                                                                          str(model)], env)
        rows.append((arch, model.stat().st_size / 2**20, r))
    lines = ["", "## Caffe and ONNX as inputs (issue #7)", "",
             "Full-size nets written from their papers (tests/caffe_zoo.py), random weights. Goal: < 3 s, "
             "peak RSS < 2 x weights + 300 MB.", "",
             "| model | weights (MB) | route | wall (s) | peak RSS (MB) | RSS budget (MB) |",
             "| --- | ---: | --- | ---: | ---: | ---: |"]
    for arch, wmb, r in rows:
        lines += budget_rows([arch], wmb, r, lambda tool: not tool.startswith("pycaffe"))
    publish(lines, "results_caffe.json", [{"model": a, "weights_mb": w, **runs_json(r)} for a, w, r in rows])


if __name__ == "__main__":
    sys.exit(main())
