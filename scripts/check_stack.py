"""Import every framework of the xconv stack in one process and print versions.

    .venv/bin/python scripts/check_stack.py            # all, caffe included
    .venv/bin/python scripts/check_stack.py --skip caffe

Exits non-zero if any import fails.  Two shims are applied first, as the
project code must do too:
  * torchvision 0.28.0 from PyPI is a CUDA build whose C++ ops cannot load on a
    CPU-only machine; defining the torchvision::nms / qnms schemas with
    torch.library before the import lets its Python side (models, transforms)
    load.
  * MXNet 1.9.1 still uses ``np.bool`` (removed in numpy 1.24).
"""

import argparse
import importlib
import os
import sys
import time
import traceback
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("GLOG_minloglevel", "2")

_TV_LIB = None  # keep the torch.library.Library alive (defs die with it)


def _torchvision_shim():
    global _TV_LIB
    import torch

    missing = []
    for name in ("nms", "qnms"):
        try:
            torch._C._get_schema(f"torchvision::{name}", "")
        except RuntimeError:
            missing.append(name)
    if missing:
        _TV_LIB = torch.library.Library("torchvision", "DEF")
        for name in missing:
            _TV_LIB.define(
                f"{name}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor"
            )


def _mxnet_shim():
    import numpy as np

    if not hasattr(np, "bool"):
        np.bool = bool


def _version(mod):
    v = getattr(mod, "__version__", None)
    if v:
        return str(v)
    from importlib import metadata
    dist = {"tf_slim": "tf-slim"}.get(mod.__name__, mod.__name__)
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "?"


CHECKS = [
    # (label, module, shim)
    ("numpy", "numpy", None),
    ("protobuf", "google.protobuf", None),
    ("torch", "torch", None),
    ("torchvision", "torchvision", _torchvision_shim),
    ("tensorflow", "tensorflow", None),
    ("tf_keras", "tf_keras", None),
    ("keras", "keras", None),
    ("tf_slim", "tf_slim", None),
    ("mxnet", "mxnet", _mxnet_shim),
    ("onnx", "onnx", None),
    ("onnxruntime", "onnxruntime", None),
    ("onnxscript", "onnxscript", None),
    ("h5py", "h5py", None),
    ("caffe", "caffe", None),
]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--skip", action="append", default=[],
                    help="label to skip (repeatable), e.g. --skip caffe")
    args = ap.parse_args()

    failed = []
    t_all = time.time()
    for label, modname, shim in CHECKS:
        if label in args.skip:
            print(f"  {label:<12} skipped")
            continue
        t0 = time.time()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if shim:
                    shim()
                mod = importlib.import_module(modname)
            print(f"  {label:<12} {_version(mod):<14} ({time.time() - t0:.1f} s)")
        except Exception:
            failed.append(label)
            print(f"  {label:<12} FAILED")
            traceback.print_exc()

    if "caffe" not in args.skip and "caffe" not in failed:
        import caffe
        from importlib import metadata
        print(f"  caffe: xconv-pycaffe {metadata.version('xconv-pycaffe')}, "
              f"{len(caffe.layer_type_list())} layer types registered")

    print(f"python {sys.version.split()[0]}; imports took {time.time() - t_all:.1f} s")
    if failed:
        print("FAILED: " + ", ".join(failed))
        return 1
    print("stack OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
