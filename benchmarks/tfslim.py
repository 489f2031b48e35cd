"""``make bench`` part 2: TF-slim checkpoints -> ONNX/Caffe, against tf2onnx.

Each tool takes the input it supports: tf2onnx 1.17.0 (pinned by the
Makefile's bench target) a frozen GraphDef, xconv the checkpoint.  Models are
tf_slim's own inception_v3 and resnet_v2_50/101/152/200 with random weights,
made once per bench directory.  Whole processes, best of BENCH_REPEAT, peak
RSS from wait4.  Also reports how time and memory grow with depth across the
resnet_v2 family (deviation of each point from the least-squares line).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from .run import PY, REPEAT, ROOT, Run, measure, publish

MAKE = r"""
import os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
sys.path.insert(0, {root!r})
from xconv.frontends.tensorflow.tfimport import import_tf, import_tf_slim
tf = import_tf(); slim = import_tf_slim()
from tf_slim.nets import inception_v3, resnet_v2

name, size, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
g = tf.Graph()
with g.as_default():
    x = tf.compat.v1.placeholder(tf.float32, (1, size, size, 3), name="input")
    if name == "inception_v3":
        with slim.arg_scope(inception_v3.inception_v3_arg_scope()):
            logits, _ = inception_v3.inception_v3(x, num_classes=1001, is_training=False)
    else:
        with slim.arg_scope(resnet_v2.resnet_arg_scope()):
            logits, _ = getattr(resnet_v2, name)(x, num_classes=1001, is_training=False)
            logits = tf.squeeze(logits, [1, 2])
    tf.identity(logits, name="logits")
    sess = tf.compat.v1.Session(graph=g)
    sess.run(tf.compat.v1.global_variables_initializer())
    tf.compat.v1.train.Saver().save(sess, os.path.join(out, name + ".ckpt"), write_meta_graph=False)
    frozen = tf.compat.v1.graph_util.convert_variables_to_constants(sess, g.as_graph_def(), ["logits"])
    with open(os.path.join(out, name + ".pb"), "wb") as f:
        f.write(frozen.SerializeToString())
"""

MODELS = {"inception_v3": 299, "resnet_v2_50": 224, "resnet_v2_101": 224, "resnet_v2_152": 224,
          "resnet_v2_200": 224}


def linearity(depths: list[int], values: list[float]) -> float:
    """Largest relative deviation of a point from the least-squares line through all points."""
    a, b = np.polyfit(depths, values, 1)
    fit = a * np.asarray(depths) + b
    return float(np.max(np.abs(np.asarray(values) - fit) / fit))


def main() -> None:
    work = Path(os.environ.get("BENCH_DIR", "/tmp/xconv-bench")) / "tfslim"
    work.mkdir(parents=True, exist_ok=True)
    for name, size in MODELS.items():
        if not (work / f"{name}.pb").exists():
            print(f"making {name} (tf_slim, random weights)", flush=True)
            subprocess.run([PY, "-c", MAKE.format(root=str(ROOT)), name, str(size), str(work)], check=True)
    env = {"TF_CPP_MIN_LOG_LEVEL": "2"}
    rows: dict[str, dict[str, Run]] = {}
    for name in MODELS:
        print(f"benchmark: {name}, best of {REPEAT}", flush=True)
        ckpt = str(work / f"{name}.ckpt")
        r = {
            "xconv -> onnx": measure("xconv -> onnx", [PY, "-m", "xconv.cli", "convert", "--from", "tf-slim", ckpt,
                                                      "--to", "onnx", "-o", str(work / "xo")], env),
            "xconv -> caffe": measure("xconv -> caffe", [PY, "-m", "xconv.cli", "convert", "--from", "tf-slim", ckpt,
                                                        "--to", "caffe", "-o", str(work / "xc")], env),
            "tf2onnx 1.17.0": measure("tf2onnx", [PY, "-m", "tf2onnx.convert", "--graphdef", str(work / f"{name}.pb"),
                                                  "--inputs", "input:0", "--outputs", "logits:0", "--opset", "13",
                                                  "--output", str(work / f"{name}.tf2onnx.onnx")], env),
        }
        rows[name] = r
    lines = ["", "## TF-slim checkpoints (issue #3)", "",
             "xconv reads the checkpoint (no TensorFlow imported); tf2onnx 1.17.0 the frozen GraphDef.", "",
             "| model | tool | wall (s) | peak RSS (MB) | wall vs tf2onnx | RSS vs tf2onnx |",
             "| --- | --- | ---: | ---: | ---: | ---: |"]
    for name, r in rows.items():
        peer = r["tf2onnx 1.17.0"]
        for tool, run in r.items():
            lines.append(f"| {name} | {tool} | {run.wall_s:.2f} | {run.peak_rss_mb:.0f} | "
                         f"{run.wall_s / peer.wall_s:.2f}x | {run.peak_rss_mb / peer.peak_rss_mb:.2f}x |")
    depths = [50, 101, 152, 200]
    lines += ["", "Goals: <= 0.25x tf2onnx's wall time and <= 0.2x its peak RSS; time and memory within 10% of "
              "linear in depth across resnet_v2 50/101/152/200.", "",
              "| xconv target | max deviation from linear: wall | peak RSS |", "| --- | ---: | ---: |"]
    for tool in ("xconv -> onnx", "xconv -> caffe"):
        w = [rows[f"resnet_v2_{d}"][tool].wall_s for d in depths]
        m = [rows[f"resnet_v2_{d}"][tool].peak_rss_mb for d in depths]
        lines.append(f"| {tool} | {100 * linearity(depths, w):.1f}% | {100 * linearity(depths, m):.1f}% |")
    publish(lines, "results_tfslim.json", {n: {t: vars(run) for t, run in r.items()} for n, r in rows.items()})


if __name__ == "__main__":
    sys.exit(main())
