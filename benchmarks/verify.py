"""``make bench`` part 5: ``xconv verify --data`` throughput (issue #6).

EfficientNet-Lite0 (PyTorch, the source) and its ONNX conversion on the
foolbox photos repeated to 60 images (a folder with val.txt).  Compares:

* end to end: ``evaluate()`` as ``xconv verify --data`` runs it (read, decode,
  resize, crop, both models, scoring), single-crop and 12-crop;
* model only: the same two models on the same crops, pre-decoded and
  pre-cropped, at the same batch size.

Goals: single-crop end to end >= 90% of the model-only images/s; 12-crop no
more than 12x the model-only time per image plus one decode per image.
In-process timings, best of BENCH_REPEAT, one run after another.
"""
from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from .run import REPEAT, ROOT

sys.path.insert(0, str(ROOT / "tests"))


def main() -> None:
    import imagenet_fixtures as fx  # noqa: PLC0415
    from xconv.backend import EmitOptions  # noqa: PLC0415
    from xconv.convert import convert  # noqa: PLC0415
    from xconv.demo import ARCH, weights_path  # noqa: PLC0415
    from xconv.frontend import load, source_runner  # noqa: PLC0415
    from xconv.verify.datasets import open_dataset  # noqa: PLC0415
    from xconv.verify.evaluate import default_workers, evaluate, prepare  # noqa: PLC0415
    from xconv.verify.presets import get  # noqa: PLC0415
    from xconv.verify.runners import locate, make_runner  # noqa: PLC0415

    tmp = Path(tempfile.mkdtemp(prefix="xconv-bench-verify-"))
    try:
        w = str(weights_path())
        g = load("pytorch", w, arch=ARCH, input_shape=(1, 3, 224, 224))
        res = convert(g, "onnx", tmp / "m", "lite0", EmitOptions(opset=13))
        onnx = next(p for p in res.files if p.suffix == ".onnx")
        folder = tmp / "val"
        folder.mkdir()
        lines = []
        for rep in range(3):
            for p in fx.photos():
                name = f"r{rep}_{p[0]}"
                shutil.copyfile(p[2], folder / name)
                lines.append(f"{name} {p[1]}")
        (tmp / "val.txt").write_text("\n".join(lines) + "\n")
        ds = open_dataset(folder, labels=tmp / "val.txt")
        entries = ds.select()
        models = {"pytorch (source)": source_runner("pytorch", w, arch=ARCH, input_shape=(1, 3, 224, 224)),
                  "onnx": make_runner(locate(onnx))}
        batch = 24
        rows: dict[str, float] = {}
        ratios: dict[str, list[float]] = {"single": [], "12": []}
        for protocol, preset in (("single", get("efficientnet-lite")),
                                 ("12", get("efficientnet-lite").with_overrides(base=256))):
            n_crops = 1 if protocol == "single" else 12
            crops = np.concatenate([prepare(ds.read(e), preset, protocol) for e in entries])
            group = max(1, batch // n_crops) * n_crops

            def models_only() -> None:
                for i in range(0, len(crops), group):
                    x = crops[i:i + group]
                    for fn in models.values():
                        for j in range(0, len(x), batch):
                            fn(x[j:j + batch])
            t_dec = min(_timed(lambda: [prepare(ds.read(e), preset, protocol) for e in entries])
                        for _ in range(REPEAT)) / len(entries)
            best: dict[str, float] = {}
            for _ in range(REPEAT):  # interleaved, so drift in machine speed hits both alike
                t_e2e = _timed(lambda: evaluate(models, ds, entries, preset, protocol=protocol, batch=batch,
                                                workers=0)) / len(entries)
                t_mod = _timed(models_only) / len(entries)
                ratios[protocol].append(t_e2e / (t_mod + (t_dec if protocol == "12" else 0.0)))
                best["e2e"] = min(best.get("e2e", 1e9), t_e2e)
                best["model"] = min(best.get("model", 1e9), t_mod)
            for workers in sorted({default_workers(), 1} - {0}):
                t = min(_timed(lambda: evaluate(models, ds, entries, preset, protocol=protocol, batch=batch,
                                                workers=workers)) for _ in range(REPEAT))
                rows[f"{protocol} end to end, {workers} decode processes"] = len(entries) / t
            rows[f"{protocol} end to end, prefetch thread"] = 1.0 / best["e2e"]
            rows[f"{protocol} model only (pre-cropped)"] = 1.0 / best["model"]
            rows[f"{protocol} decode+crop only"] = 1.0 / t_dec
        lines_md = ["", "## verify --data throughput (issue #6)", "",
                    f"EfficientNet-Lite0, PyTorch source + ONNX conversion, {len(entries)} photos, batch {batch}, "
                    f"best of {REPEAT}. Goals: single-crop end to end >= 90% of model-only images/s; 12-crop "
                    "<= 12x model-only time per crop + one decode per image.", "",
                    "| run | images/s |", "| --- | ---: |"]
        lines_md += [f"| {k} | {v:.2f} |" for k, v in rows.items()]
        med = {k: float(np.median(v)) for k, v in ratios.items()}
        lines_md += ["", f"single-crop: model-only time / end-to-end time = {1 / med['single']:.2f} (goal >= 0.90); "
                     f"12-crop: end-to-end time / (model-only + one decode) = {med['12']:.2f} (goal <= 1.00); "
                     f"medians of {REPEAT} interleaved pairs"]
        text = "\n".join(lines_md) + "\n"
        print(text)
        with open(ROOT / "benchmarks" / "results.md", "a") as fh:
            fh.write(text)
        (ROOT / "benchmarks" / "results_verify.json").write_text(json.dumps(rows, indent=2))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _timed(fn) -> float:  # noqa: ANN001
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


if __name__ == "__main__":
    sys.exit(main())
