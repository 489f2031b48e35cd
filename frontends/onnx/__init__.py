"""``--from onnx``: ONNX classifiers (opset 9-21) -> IR, so ONNX -> Caffe works.

The IR's op names and attribute conventions follow ONNX, so most nodes map
one to one; weights come from initializers and ``Constant`` nodes, and small
constant sub-graphs (``Shape -> Gather -> Unsqueeze -> Concat -> Reshape``, as
exporters write them) are folded with numpy using the IR's static shapes.
Unsupported ops are listed in one error; every attribute a handler does not
implement is an error naming the node.  Opset-dependent forms are read per
the model's opset (7 and later): Softmax before 13 (coerced to 2-D at
``axis``), Clip/Pad/Split/Slice/ReduceMean/Squeeze attributes vs inputs,
Resize 10 / 11+ / 18+ and Upsample 7 / 9 (:mod:`.resize`).  The ONNX backend
test suite's node cases for every claimed op are run in
``tests/frontends/test_onnx_node_suite.py``.  :func:`make_runner` runs the
file in onnxruntime (verify's source side).
"""
from __future__ import annotations

import logging
import os
from typing import Any, Callable, Sequence

import numpy as np

from xconv.errors import InputFileError
from xconv.ir import Graph

log = logging.getLogger(__name__)


def _load_model(source: Any) -> Any:
    import onnx  # noqa: PLC0415
    if isinstance(source, onnx.ModelProto):
        return source
    path = os.fspath(source)
    try:
        return onnx.load(path)
    except Exception as e:  # noqa: BLE001 - protobuf DecodeError, OSError, external data errors
        raise InputFileError(f"onnx: cannot read {path} as an ONNX model ({type(e).__name__}: {e}); truncated or "
                             "not ONNX?") from e


def load(source: Any, *, input_shape: Sequence[int] | None = None, name: str | None = None,
         **ignored: Any) -> Graph:
    from .graph import convert_model  # noqa: PLC0415
    if ignored:
        log.debug("onnx load ignores %s", sorted(ignored))
    model = _load_model(source)
    src = None if not isinstance(source, (str, os.PathLike)) else os.fspath(source)
    return convert_model(model, input_shape=input_shape, name=name, source_file=src)


def make_runner(source: Any, *, input_shape: Sequence[int] | None = None, device: str | None = None,
                **ignored: Any) -> Callable[[np.ndarray], np.ndarray]:
    """The source model in onnxruntime: NCHW float32 -> first output (static batches are looped)."""
    import onnxruntime as ort  # noqa: PLC0415
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if device == "cuda" else ["CPUExecutionProvider"]
    so = ort.SessionOptions()
    so.log_severity_level = 3
    model = _load_model(source)
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=providers)
    inp = sess.get_inputs()[0]
    static = inp.shape[0] if isinstance(inp.shape[0], int) else None
    out = sess.get_outputs()[0].name

    def run(x: np.ndarray) -> np.ndarray:
        if static is None or len(x) == static:
            return sess.run([out], {inp.name: x})[0]
        return np.concatenate([sess.run([out], {inp.name: x[i:i + static]})[0] for i in range(0, len(x), static)])

    return run
