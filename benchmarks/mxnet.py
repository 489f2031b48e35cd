"""``make bench`` part 4: MXNet checkpoints -> Caffe/ONNX (issue #5).

DPN-131 (the paper's configuration, ~79.5 M parameters, written with the
symbol API in tests/mxnet_zoo.py) and gluon's resnet50_v1, random weights,
saved once per bench directory as ``-symbol.json`` + ``-0000.params``.
Whole processes, best of BENCH_REPEAT, peak RSS from wait4.  Peer in the
same run: MXNet 1.9.1's own ONNX exporter (``mx.onnx.export_model``), and
for scale the time MXNet takes just to load and bind the checkpoint.

Goal (DPN-131-sized): under 5 s wall and under 2x the weights' size plus
300 MB peak RSS, without importing MXNet.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from .run import PY, REPEAT, ROOT, Run, budget_rows, measure, publish, runs_json

MAKE = r"""
import sys, numpy as np
sys.path.insert(0, {tests!r})
import mxnet_zoo
mx = mxnet_zoo.import_mxnet()
arch, out = sys.argv[1], sys.argv[2]
if arch.startswith("dpn"):
    sym, args, aux = mxnet_zoo._symbolic(arch, 224, np.random.RandomState(0))
else:
    sym, args, aux = mxnet_zoo._gluon(arch, 224, 0)
mx.model.save_checkpoint(out, 0, sym, args, aux)
"""

MX_LOAD = r"""
import sys, numpy as np
np.bool = bool
import mxnet as mx
sym, args, aux = mx.model.load_checkpoint(sys.argv[1], 0)
ex = sym.simple_bind(mx.cpu(), grad_req="null", data=(1, 3, 224, 224))
ex.copy_params_from(args, aux, allow_extra_params=True)
"""

MX_ONNX = r"""
import sys, numpy as np
np.bool = bool
import mxnet as mx
prefix, out = sys.argv[1], sys.argv[2]
mx.onnx.export_model(prefix + "-symbol.json", prefix + "-0000.params", [(1, 3, 224, 224)], np.float32, out)
"""

MODELS = ("dpn131", "resnet50_v1")


def main() -> None:
    work = Path(os.environ.get("BENCH_DIR", "/tmp/xconv-bench")) / "mxnet"
    work.mkdir(parents=True, exist_ok=True)
    for arch in MODELS:
        if not (work / f"{arch}-0000.params").exists():
            print(f"making {arch} (random weights)", flush=True)
            subprocess.run([PY, "-c", MAKE.format(tests=str(ROOT / "tests")), arch, str(work / arch)], check=True)
    env = {"MXNET_SUBGRAPH_BACKEND": "NONE"}
    rows = []
    for arch in MODELS:
        sym = str(work / f"{arch}-symbol.json")
        print(f"benchmark: {arch}, best of {REPEAT}", flush=True)
        r: dict[str, Run | str] = {
            f"xconv -> {t}": measure(f"xconv -> {t}", [PY, "-m", "xconv.cli", "convert", "--from", "mxnet", sym,
                                                      "--to", t, "-o", str(work / t), "--input-shape", "1,3,224,224"],
                                     env) for t in ("caffe", "onnx")}
        try:
            r["mx.onnx.export_model (MXNet 1.9.1)"] = measure("mx.onnx", [PY, "-c", MX_ONNX, str(work / arch),
                                                                         str(work / f"{arch}.mx.onnx")], env)
        except SystemExit as e:  # the peer failed: say so in the table
            why = str(e).strip().splitlines()[-1][:120]
            if "Onnx and protobuf need to be installed" in why:
                why = ("cannot run beside the stack's onnx 1.23.2: mxnet.onnx imports onnx.mapping, "
                       "which onnx 1.15 removed")
            r["mx.onnx.export_model (MXNet 1.9.1)"] = "failed: " + why
        r["MXNet load + bind only"] = measure("mx load", [PY, "-c", MX_LOAD, str(work / arch)], env)
        wmb = (work / f"{arch}-0000.params").stat().st_size / 2**20
        rows.append((arch, wmb, r))
    lines = ["", "## MXNet checkpoints (issue #5)", "",
             "xconv reads the symbol JSON and the NDArray params file without importing MXNet. Goal for a "
             "DPN-131-sized model: < 5 s wall, peak RSS < 2 x weights + 300 MB.", "",
             "| model | weights (MB) | tool | wall (s) | peak RSS (MB) | RSS budget (MB) |",
             "| --- | ---: | --- | ---: | ---: | ---: |"]
    for arch, wmb, r in rows:
        lines += budget_rows([arch], wmb, r, lambda tool: tool.startswith("xconv"))
    publish(lines, "results_mxnet.json", [{"model": a, "weights_mb": w, **runs_json(r)} for a, w, r in rows])


if __name__ == "__main__":
    sys.exit(main())
