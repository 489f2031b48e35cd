"""``--from caffe``: a deploy ``.prototxt`` + ``.caffemodel`` -> IR, without Caffe.

* The prototxt is parsed with the project's own Caffe schema in the dialect
  its fields name (``bvlc``, ``ceil-mode``, ``bvlc-master``, ``brocolli``; or
  ``--source-dialect``), V2 ``layer`` and V1 ``layers`` alike (:mod:`.net`).
* The caffemodel is read at the wire level (:mod:`.weights`): blobs are matched
  to layers by name, V1 and V2 caffemodels alike, legacy 4-D blob dims
  included; pooling field 13 (``round_mode`` in BVLC master, ``ceil_mode`` in
  the forks) is checked against the prototxt (:mod:`.rounding`).
* Layers become IR nodes (:mod:`.graph`, :mod:`.layers`); training-only
  layers are left out with a log line, unsupported layer types are listed
  together in one error, every unimplemented non-default field is an error.

:func:`make_runner` (verify's source side) runs the prototxt in pycaffe.  The
input batch is 1 unless ``input_shape`` says otherwise (deploy prototxts often
declare 10 for oversampling).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from xconv.backends.caffe.dialects import BUILTIN_PROFILES
from xconv.errors import InputFileError, XconvError
from xconv.ir import Graph

from .graph import HANDLERS, convert_net
from .net import CaffeNet, read_net
from .rounding import resolve
from .weights import CaffeModel, parse_caffemodel_bytes, read_caffemodel

__all__ = ["load", "make_runner", "locate_weights", "read_prototxt", "HANDLERS", "CaffeNet", "CaffeModel",
           "parse_caffemodel_bytes", "read_caffemodel", "PYCAFFE_CANNOT_RUN"]
log = logging.getLogger(__name__)

#: What the pycaffe built here (the brocolli-caffe 9.0.2 fork) cannot run: the layer types of the built-in
#: profiles it cannot run (``runs_here``, i.e. BVLC master's additions) that no profile it runs has.
PYCAFFE_CANNOT_RUN = frozenset().union(*(p.layer_types for p in BUILTIN_PROFILES if not p.runs_here)).difference(
    *(p.layer_types for p in BUILTIN_PROFILES if p.runs_here))


def read_prototxt(source: Any, source_dialect: str | None = None) -> CaffeNet:
    """The deploy net; an unknown ``source_dialect`` is an InputFileError (from the schema's check)."""
    path = Path(os.fspath(source))
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputFileError(f"caffe: no prototxt {path}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputFileError(f"caffe: cannot read {path} as a text prototxt ({e}); pass the deploy .prototxt as "
                             "the model and the .caffemodel with --weights") from e
    return read_net(text, str(path), source_dialect)


def locate_weights(source: Any, weights: Any = None) -> Path:
    """The caffemodel: ``weights``, or the prototxt's stem with ``.caffemodel`` beside it."""
    if weights:
        p = Path(os.fspath(weights))
        if not p.is_file():
            raise InputFileError(f"caffe: the weights file {p} does not exist; pass the trained weights with "
                                 "--weights FILE.caffemodel")
        return p
    p = Path(os.fspath(source)).with_suffix(".caffemodel")
    if not p.is_file():
        raise InputFileError(f"caffe: no weights for {source}: {p} does not exist; pass the trained weights with "
                             "--weights FILE.caffemodel")
    return p


def load(source: Any, *, weights: Any = None, source_dialect: str | None = None,
         input_shape: Sequence[int] | None = None, outputs: Sequence[str] | None = None, name: str | None = None,
         **ignored: Any) -> Graph:
    if ignored:
        log.debug("caffe load ignores %s", sorted(ignored))
    net = read_prototxt(source, source_dialect)
    log.info("caffe: %s: dialect '%s' (%s), %s format, %d deploy layers", net.path, net.dialect, net.dialect_reason,
             net.format, len(net.layers))
    model = read_caffemodel(locate_weights(source, weights))
    rounding = resolve(net, model, dialect_given=source_dialect is not None)
    g = convert_net(net, model, rounding, input_shape=input_shape, outputs=outputs,
                    name=name or net.msg.name or Path(os.fspath(source)).stem, source_file=net.path)
    g.meta.extra["caffemodel"] = model.path
    g.meta.extra["caffemodel_format"] = model.format
    return g


def make_runner(source: Any, *, weights: Any = None, outputs: Sequence[str] | None = None,
                source_dialect: str | None = None, device: str | None = None,
                **ignored: Any) -> Callable[[np.ndarray], np.ndarray]:
    """The prototxt in pycaffe (CPU): NCHW float32 -> the net's first output blob (Caffe's order: by name),
    or ``outputs[0]``."""
    net = read_prototxt(source, source_dialect)
    why = []
    if net.dialect == "bvlc-master":
        pools = [lay.name for lay in net.layers if lay.type == "Pooling" and lay.msg.pooling_param.HasField("round_mode")]
        if pools:
            why.append(f"pooling round_mode (layers {', '.join(pools[:5])})")
    types = sorted({lay.type for lay in net.layers if lay.type in PYCAFFE_CANNOT_RUN})
    if types:
        why.append(f"layer types {', '.join(types)}")
    if why:
        raise XconvError(f"caffe: the pycaffe built here (the brocolli-caffe 9.0.2 fork) cannot run {net.path}: it "
                         f"uses BVLC master's {' and '.join(why)}, which the fork lacks; compare the conversions "
                         "with each other or with the IR reference instead")
    from xconv.verify.runners import CaffeRunner  # noqa: PLC0415

    return CaffeRunner(Path(net.path), locate_weights(source, weights), output=outputs[0] if outputs else None)
