"""Frontend registry: ``--from NAME`` -> a loader producing an IR Graph, and a
runner that executes the model in its own framework (for verification).

Frontend modules are imported lazily: converting from ONNX must not import
torch, and so on.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from .errors import XconvError
from .ir import Graph


@dataclass(frozen=True)
class FrontendInfo:
    name: str
    module: str
    description: str


FRONTENDS: dict[str, FrontendInfo] = {
    "pytorch": FrontendInfo("pytorch", "xconv.frontends.pytorch",
                            "nn.Module, TorchScript file, or state_dict + --arch"),
    "tf-slim": FrontendInfo("tf-slim", "xconv.frontends.tensorflow.slim_entry",
                            "TF-slim checkpoint (V1 file or V2 bundle, no meta graph), architecture recognised"),
    "tensorflow": FrontendInfo("tensorflow", "xconv.frontends.tensorflow.graph_entry",
                               "frozen GraphDef .pb, checkpoint with .meta, or SavedModel directory"),
    "keras": FrontendInfo("keras", "xconv.frontends.keras",
                          "Keras 2 or 3 .h5, or Keras 3 .keras (read without Keras)"),
    "onnx": FrontendInfo("onnx", "xconv.frontends.onnx", "ONNX classifier (opset 9-21)"),
    "mxnet": FrontendInfo("mxnet", "xconv.frontends.mxnet",
                          "NAME-symbol.json + NAME-EPOCH.params (read without MXNet)"),
    "caffe": FrontendInfo("caffe", "xconv.frontends.caffe",
                          "deploy .prototxt (V1 or V2; BVLC 1.0/master or fork dialect) + .caffemodel "
                          "(--weights), read without Caffe"),
}


def _module(name: str):
    try:
        info = FRONTENDS[name]
    except KeyError:
        raise XconvError(f"unknown source framework '{name}'; known: {sorted(FRONTENDS)}") from None
    try:
        return importlib.import_module(info.module)
    except ImportError as e:
        raise XconvError(f"the {name} frontend needs a package that is not installed: {e}. "
                         "Run `make setup` (or pip install 'xconv[torch]').") from e


def load(framework: str, source: Any, **opts: Any) -> Graph:
    return _module(framework).load(source, **opts)


def source_runner(framework: str, source: Any, **opts: Any) -> Callable[[np.ndarray], np.ndarray]:
    """A function running the source model in its own framework: NCHW float32 -> first output."""
    return _module(framework).make_runner(source, **opts)
