"""Run converted models in their real runtimes: pycaffe and onnxruntime.

Each runner maps an NCHW float32 batch to the model's first output and can
return named intermediate tensors (Caffe blobs / ONNX values), whose names
are the IR tensor names the backends kept.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import InputFileError, XconvError

log = logging.getLogger(__name__)


@dataclass
class Converted:
    """A converted model on disk and its sidecar (``info``: the sidecar's
    common part merged with this target's entry)."""

    target: str
    files: dict[str, Path]
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        extra = self.info.get("dialect") or (f"opset {self.info['opset']}" if self.info.get("opset") else "")
        return f"{self.target} ({extra})" if extra else self.target

    @property
    def input_shape(self) -> tuple[int, ...]:
        shapes = list(self.info.get("inputs", {}).values())
        return tuple(shapes[0]) if shapes else ()


def locate(path: str | os.PathLike[str]) -> Converted:
    """Find a converted model from any of its files (or its sidecar)."""
    p = Path(path)
    if not p.exists():
        raise InputFileError(f"converted model '{p}' does not exist")
    stem = p.name
    for suf in (".xconv.json", ".prototxt", ".caffemodel", ".onnx"):
        if stem.endswith(suf):
            stem = stem[: -len(suf)]
            break
    d = p.parent
    side: dict[str, Any] = {}
    if (d / f"{stem}.xconv.json").exists():
        try:
            side = json.loads((d / f"{stem}.xconv.json").read_text())
        except ValueError as e:
            raise InputFileError(f"sidecar {d / (stem + '.xconv.json')} is not valid JSON: {e}") from e
    targets = side.get("targets", {})
    if p.suffix == ".onnx":
        target = "onnx"
    elif p.suffix in (".prototxt", ".caffemodel"):
        target = "caffe"
    elif len(targets) == 1:
        target = next(iter(targets))
    else:
        raise InputFileError(f"'{p}' describes {sorted(targets) or 'no'} conversions: "
                             "name the model file (NAME.onnx or NAME.prototxt) instead")
    info = {k: v for k, v in side.items() if k != "targets"}
    info.update(targets.get(target, {}))
    if target == "onnx":
        return Converted("onnx", {"onnx": d / f"{stem}.onnx"}, info)
    proto, model = d / f"{stem}.prototxt", d / f"{stem}.caffemodel"
    if proto.exists():
        return Converted("caffe", {"prototxt": proto, "caffemodel": model}, info)
    raise InputFileError(f"cannot tell what '{p}' is: expected NAME.onnx, NAME.prototxt(+.caffemodel) "
                         "or NAME.xconv.json")


class OnnxRunner:
    def __init__(self, path: Path, device: str = "cpu", intermediates: Sequence[str] = ()) -> None:
        import onnx
        import onnxruntime as ort

        providers = ["CPUExecutionProvider"]
        if device == "cuda":
            providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
        so = ort.SessionOptions()
        so.log_severity_level = 3
        if intermediates:
            model = onnx.load(str(path))
            have = {o.name for o in model.graph.output}
            for name in intermediates:
                if name not in have:
                    model.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
            self.sess = ort.InferenceSession(model.SerializeToString(), so, providers=providers)
        else:
            self.sess = ort.InferenceSession(str(path), so, providers=providers)
        inp = self.sess.get_inputs()[0]
        self.input = inp.name
        self.batch = inp.shape[0] if isinstance(inp.shape[0], int) else None  # static batch, or dynamic
        self.outputs = [o.name for o in self.sess.get_outputs()]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self.batch is None or len(x) == self.batch:
            return self.sess.run([self.outputs[0]], {self.input: x})[0]
        if len(x) % self.batch:
            raise XconvError(f"the ONNX model has a static batch of {self.batch}; got {len(x)} inputs")
        return np.concatenate([self.sess.run([self.outputs[0]], {self.input: x[i:i + self.batch]})[0]
                               for i in range(0, len(x), self.batch)])

    def tensors(self, x: np.ndarray, names: Sequence[str]) -> dict[str, np.ndarray]:
        want = [n for n in names if n in self.outputs]
        return dict(zip(want, self.sess.run(want, {self.input: x})))


class CaffeRunner:
    def __init__(self, prototxt: Path, caffemodel: Path, output: str | None = None) -> None:
        os.environ.setdefault("GLOG_minloglevel", "2")
        try:
            import caffe  # type: ignore[import-not-found]
        except ImportError as e:
            raise XconvError("running a Caffe model needs pycaffe: run `make setup` to build it") from e
        caffe.set_mode_cpu()
        self.net = caffe.Net(str(prototxt), caffe.TEST, weights=str(caffemodel))
        self.input = self.net.inputs[0]
        self.output = output or self.net.outputs[0]

    def _forward(self, x: np.ndarray) -> None:
        blob = self.net.blobs[self.input]
        if tuple(blob.data.shape) != x.shape:
            blob.reshape(*x.shape)
            self.net.reshape()
        blob.data[...] = x
        self.net.forward()

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self._forward(x)
        return self.net.blobs[self.output].data.copy()

    def tensors(self, x: np.ndarray, names: Sequence[str]) -> dict[str, np.ndarray]:
        self._forward(x)
        return {n: self.net.blobs[n].data.copy() for n in names if n in self.net.blobs}


def make_runner(conv: Converted, device: str = "cpu", intermediates: Sequence[str] = (),
                output: str | None = None):
    if conv.target == "onnx":
        return OnnxRunner(conv.files["onnx"], device=device, intermediates=intermediates)
    return CaffeRunner(conv.files["prototxt"], conv.files["caffemodel"], output=output)
