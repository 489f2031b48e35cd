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


class InProcessCaffeRunner:
    """pycaffe in this process: fastest, but only safe before TensorFlow is imported."""

    def __init__(self, prototxt: Path, caffemodel: Path, output: str | None = None) -> None:
        os.environ.setdefault("GLOG_minloglevel", "2")
        try:
            import caffe  # type: ignore[import-not-found]  # noqa: PLC0415
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


def CaffeRunner(prototxt: Path, caffemodel: Path, output: str | None = None):  # noqa: N802 - a factory
    """pycaffe in-process when that is safe, else in a child process.

    pycaffe crashes when TensorFlow was imported before it; ``XCONV_CAFFE_ISOLATE=1``
    forces the child process (which also turns a Caffe CHECK abort into an error).
    """
    import sys  # noqa: PLC0415
    isolate = os.environ.get("XCONV_CAFFE_ISOLATE") == "1" or (
        "tensorflow" in sys.modules and "caffe" not in sys.modules)
    if isolate:
        return WorkerCaffeRunner(prototxt, caffemodel, output)
    return InProcessCaffeRunner(prototxt, caffemodel, output)


class WorkerCaffeRunner:
    """A Caffe net served by a child process (see :mod:`xconv.verify.caffe_worker`)."""

    def __init__(self, prototxt: Path, caffemodel: Path, output: str | None = None) -> None:
        import subprocess  # noqa: PLC0415
        import sys  # noqa: PLC0415

        env = {**os.environ, "GLOG_minloglevel": os.environ.get("GLOG_minloglevel", "2")}
        self.proc = subprocess.Popen([sys.executable, "-m", "xconv.verify.caffe_worker", str(prototxt),
                                      str(caffemodel)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=env)
        hello = self._line()
        self.input = hello["input"]
        self.outputs = hello["outputs"]
        self.blobs = hello["blobs"]
        self.output = output or self.outputs[0]

    def _fail(self, what: str) -> XconvError:
        self.proc.kill()
        err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
        tail = "\n".join(err.strip().splitlines()[-8:])
        return XconvError(f"Caffe {what}; its last words:\n{tail or '(nothing)'}")

    def _line(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise self._fail("exited while loading or running the net")
        return json.loads(line)

    def _run(self, x: np.ndarray, names: Sequence[str]) -> dict[str, np.ndarray]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        x = np.ascontiguousarray(x, dtype="<f4")
        try:
            self.proc.stdin.write((json.dumps({"names": list(names), "shape": list(x.shape)}) + "\n").encode())
            self.proc.stdin.write(x.tobytes())
            self.proc.stdin.flush()
        except BrokenPipeError:
            raise self._fail("is gone") from None
        rep = self._line()
        if not rep.get("ok"):
            raise XconvError(f"Caffe forward failed: {rep.get('error')}")
        out = {}
        for name, shape in rep["arrays"]:
            n = int(np.prod(shape)) * 4
            buf = self.proc.stdout.read(n)
            if len(buf) != n:
                raise self._fail("stopped mid-reply")
            out[name] = np.frombuffer(buf, dtype="<f4").reshape(shape).copy()
        return out

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self._run(x, [self.output])[self.output]

    def tensors(self, x: np.ndarray, names: Sequence[str]) -> dict[str, np.ndarray]:
        return self._run(x, [n for n in names if n in self.blobs])

    def close(self) -> None:
        if self.proc.poll() is None:
            if self.proc.stdin:
                self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except Exception:  # noqa: BLE001
                self.proc.kill()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001
            pass


def make_runner(conv: Converted, device: str = "cpu", intermediates: Sequence[str] = (),
                output: str | None = None):
    if conv.target == "onnx":
        return OnnxRunner(conv.files["onnx"], device=device, intermediates=intermediates)
    dialect = conv.info.get("dialect")
    if dialect:
        from ..backends.caffe.dialects import PROFILES  # noqa: PLC0415

        prof = PROFILES.get(dialect)
        if prof is not None and not prof.runs_here:
            runnable = sorted(n for n, p in PROFILES.items() if p.runs_here)
            raise XconvError(
                f"'{conv.files['prototxt']}' is written for the {dialect} dialect ({prof.title}), which the "
                "pycaffe built here (brocolli-caffe, whose field 13 is ceil_mode) cannot load; its structure "
                f"was checked against the {dialect} schema when it was written. To prove parity here, convert "
                f"with --dialect {' or '.join(runnable)}, or run this file in a {prof.title} build")
    return CaffeRunner(conv.files["prototxt"], conv.files["caffemodel"], output=output)
