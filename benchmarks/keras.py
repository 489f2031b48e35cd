"""``make bench`` part 3: Keras files -> Caffe/ONNX (issue #4).

Models are keras.applications builders with random weights (``weights=None``),
saved once per bench directory as a Keras-2 ``.h5`` (tf_keras) and a Keras-3
``.keras``.  Whole ``xconv convert`` processes, best of BENCH_REPEAT, peak RSS
from wait4; for scale, the time and memory Keras itself takes just to load
the same file (tf_keras for .h5, Keras 3 for .keras).

Goal (ResNet-50-sized .h5): under 3 s wall and under 2x the weights' size
plus 300 MB peak RSS, without importing Keras or TensorFlow.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from .run import PY, REPEAT, Run, budget_rows, measure, publish, runs_json

MAKE = r"""
import os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
fn, size, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
import tf_keras, keras
getattr(tf_keras.applications, fn)(weights=None, input_shape=(size, size, 3)).save(out + ".h5")
getattr(keras.applications, fn)(weights=None, input_shape=(size, size, 3)).save(out + ".keras")
"""

KERAS_LOAD = r"""
import os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
path = sys.argv[1]
if path.endswith(".h5"):
    import tf_keras as k
    k.models.load_model(path, compile=False)
else:
    import keras as k
    k.saving.load_model(path, compile=False)
"""

MODELS = {"resnet50": ("ResNet50", 224), "inception_v3": ("InceptionV3", 299), "vgg16": ("VGG16", 224)}


def weights_mb(path: Path) -> float:
    from xconv.frontends.keras import open_keras
    total = 0
    with open_keras(path) as kf:
        for p, layer in kf.model.walk():
            if layer.model is None:
                total += sum(a.nbytes for a in kf.weights.get(p, layer).values())
    return total / 2**20


def main() -> None:
    work = Path(os.environ.get("BENCH_DIR", "/tmp/xconv-bench")) / "keras"
    work.mkdir(parents=True, exist_ok=True)
    for name, (fn, size) in MODELS.items():
        if not (work / f"{name}.keras").exists():
            print(f"making {name} (keras.applications.{fn}, random weights)", flush=True)
            subprocess.run([PY, "-c", MAKE, fn, str(size), str(work / name)], check=True)
    env = {"TF_CPP_MIN_LOG_LEVEL": "3"}
    rows: list[tuple[str, str, float, dict[str, Run]]] = []
    for name in MODELS:
        for suffix in (".h5", ".keras"):
            f = work / f"{name}{suffix}"
            print(f"benchmark: {f.name}, best of {REPEAT}", flush=True)
            r = {f"xconv -> {t}": measure(f"xconv -> {t}", [PY, "-m", "xconv.cli", "convert", "--from", "keras",
                                                           str(f), "--to", t, "-o", str(work / t)], env)
                 for t in ("caffe", "onnx")}
            r["keras load_model only"] = measure("keras load", [PY, "-c", KERAS_LOAD, str(f)], env)
            rows.append((name, suffix, weights_mb(f), r))
    lines = ["", "## Keras files (issue #4)", "",
             "xconv reads the file with h5py/zip/json (Keras and TensorFlow are not imported). For scale: the "
             "time and memory Keras itself needs just to load the same file (tf_keras for .h5, Keras 3 for "
             ".keras). Goal for a ResNet-50-sized .h5: < 3 s wall, peak RSS < 2 x weights + 300 MB.", "",
             "| model | file | weights (MB) | tool | wall (s) | peak RSS (MB) | RSS budget (MB) |",
             "| --- | --- | ---: | --- | ---: | ---: | ---: |"]
    for name, suffix, wmb, r in rows:
        lines += budget_rows([name, suffix], wmb, r, lambda tool: tool.startswith("xconv"))
    publish(lines, "results_keras.json",
            [{"model": n, "file": s, "weights_mb": w, **runs_json(r)} for n, s, w, r in rows])


if __name__ == "__main__":
    sys.exit(main())
