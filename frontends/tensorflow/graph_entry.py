"""``--from tensorflow``: frozen GraphDef, checkpoint + .meta, or SavedModel
(the generic graph path of :mod:`xconv.frontends.tensorflow.graph`)."""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from xconv.ir import Graph


def load(source: Any, **opts: Any) -> Graph:
    from .graph import load_graph  # noqa: PLC0415
    known = {k: v for k, v in opts.items() if k in ("inputs", "outputs", "input_shape", "name", "drop_background")}
    return load_graph(source, **known)


def make_runner(source: Any, **opts: Any) -> Callable[[np.ndarray], np.ndarray]:
    from .graph import make_runner as mk  # noqa: PLC0415
    known = {k: v for k, v in opts.items() if k in ("inputs", "outputs", "input_shape", "drop_background")}
    return mk(source, **known)
