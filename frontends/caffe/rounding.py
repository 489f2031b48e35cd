"""Pooling rounding: the prototxt's words against the caffemodel's field 13.

``PoolingParameter`` field 13 is ``round_mode`` (enum CEIL=0, FLOOR=1, default
CEIL) in BVLC master and ``ceil_mode`` (bool, default true) in the forks; BVLC
1.0 has no such field (always ceil).  On the wire both are one varint, and
every value means opposite things: 0 is master's CEIL but the forks' false, 1
is master's FLOOR but the forks' true.  A prototxt says which it means by the
field's name; a caffemodel cannot.

The net's structure comes from the prototxt (as pycaffe does: it copies only
blobs from the caffemodel).  Field 13 in the caffemodel is still evidence of
how the model was trained, so it is checked:

* the prototxt names the setting and the caffemodel's value, read in the
  prototxt's dialect, agrees: fine;
* the caffemodel carries field 13 and the prototxt is silent, or the two
  disagree: :class:`~xconv.errors.InputFileError` explaining both readings and
  asking for ``--source-dialect bvlc-master|ceil-mode``;
* with ``--source-dialect`` given, that dialect reads the caffemodel's value:
  the prototxt's explicit setting still wins (a disagreement is logged), and
  where the prototxt is silent the caffemodel's value decides.
"""
from __future__ import annotations

import logging
from typing import Any

from xconv.errors import InputFileError

from .net import CaffeNet
from .weights import CaffeModel

log = logging.getLogger(__name__)

FORK_DIALECTS = ("ceil-mode", "brocolli")


def text_rounding(layer_msg: Any, dialect: str) -> bool | None:
    """The prototxt's explicit rounding (True = ceil), or None when it says nothing."""
    p = layer_msg.pooling_param
    if dialect in FORK_DIALECTS and p.HasField("ceil_mode"):
        return bool(p.ceil_mode)
    if dialect == "bvlc-master" and p.HasField("round_mode"):
        return p.round_mode == 0  # RoundMode: CEIL=0 FLOOR=1
    return None


def binary_rounding(raw: int, dialect: str) -> bool | None:
    """Field 13's raw varint read in ``dialect`` (True = ceil); None where the dialect has no field 13."""
    if dialect in FORK_DIALECTS:
        return raw != 0
    if dialect == "bvlc-master":
        return raw == 0
    return None


def _readings(raw: int) -> str:
    master = {0: "round_mode: CEIL", 1: "round_mode: FLOOR"}.get(raw, f"an unknown round_mode {raw}")
    fork = f"ceil_mode: {'true' if raw else 'false'}"
    return f"BVLC master reads it as '{master}', the forks (ceil-mode, brocolli) as '{fork}'"


def resolve(net: CaffeNet, model: CaffeModel, dialect_given: bool) -> dict[str, bool]:
    """Ceil (True) or floor (False) per pooling layer name; raises on an unresolved field-13 clash."""
    out: dict[str, bool] = {}
    problems: list[str] = []
    for lay in net.layers:
        if lay.type != "Pooling":
            continue
        said = text_rounding(lay.msg, net.dialect)
        ml = model.layers.get(lay.name)
        raw = ml.field13 if ml is not None else None
        if raw is None:
            out[lay.name] = True if said is None else said
            continue
        if raw > 1:
            problems.append(f"layer '{lay.name}': field 13 = {raw} is neither a bool nor a RoundMode value")
            continue
        if dialect_given:
            theirs = binary_rounding(raw, net.dialect)
            if theirs is None:
                log.warning("caffe: %s: the caffemodel sets pooling field 13 = %d for layer '%s', which dialect "
                            "'%s' does not have; ignored (%s)", model.path, raw, lay.name, net.dialect,
                            _readings(raw))
                out[lay.name] = True if said is None else said
            elif said is None:
                out[lay.name] = theirs
                log.warning("caffe: layer '%s': the prototxt does not set pooling rounding; the caffemodel's "
                            "field 13 = %d read as dialect '%s' says %s", lay.name, raw, net.dialect,
                            "ceil" if theirs else "floor")
            else:
                out[lay.name] = said
                if said != theirs:
                    log.warning("caffe: layer '%s': the prototxt says %s, the caffemodel's field 13 = %d read as "
                                "dialect '%s' says %s; the prototxt wins", lay.name, "ceil" if said else "floor",
                                raw, net.dialect, "ceil" if theirs else "floor")
            continue
        if said is None:
            problems.append(f"layer '{lay.name}': the caffemodel sets PoolingParameter field 13 = {raw} and the "
                            f"prototxt does not set rounding; {_readings(raw)}")
            continue
        theirs = binary_rounding(raw, net.dialect)
        if theirs == said:
            out[lay.name] = said
            continue
        problems.append(f"layer '{lay.name}': the prototxt says {'ceil' if said else 'floor'} rounding "
                        f"(dialect '{net.dialect}'), but the caffemodel's field 13 = {raw} read in that dialect "
                        f"says {'ceil' if theirs else 'floor'}; {_readings(raw)}")
    if problems:
        shown = "\n  ".join(problems[:10]) + (f"\n  ... (+{len(problems) - 10} more)" if len(problems) > 10 else "")
        raise InputFileError(
            f"caffe: pooling rounding is ambiguous between {net.path} and {model.path} (PoolingParameter field "
            f"13 is round_mode in BVLC master but ceil_mode in the forks):\n  {shown}\n"
            "say which Caffe wrote the caffemodel with --source-dialect bvlc-master or --source-dialect ceil-mode "
            "(that dialect then reads field 13; an explicit setting in the prototxt still wins)")
    return out
