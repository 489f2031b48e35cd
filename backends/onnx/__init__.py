"""ONNX backend: a legal IR graph -> one ``.onnx`` file.

Design
------
* The model is built as protobuf through ``onnx.helper``/``numpy_helper``;
  nothing is produced by text formatting.
* Every IR op has exactly one handler in :data:`handlers.HANDLERS`
  (``@_handler("Conv")``) that turns one IR node into ONNX nodes plus any
  extra initializers (shape/pads/axes constants ...).  The ONNX node that
  produces an IR node's outputs keeps the IR node's name; helper nodes are
  named ``<ir name>/<role>``.  IR tensor names are kept unchanged.
* IR params become initializers with their dtype unchanged; graph inputs and
  outputs carry their static IR shapes, and every intermediate IR tensor gets
  a ``value_info`` so ``onnx.checker`` (full check) cross-checks onnx's own
  shape inference against the IR's.
* ``check`` reports every IR op without a handler at once
  (:class:`UnsupportedOpError`), then every node whose attrs cannot be
  expressed (:class:`BackendError`, naming the pass that lowers it).
* ``ModelMeta`` travels as ``metadata_props["xconv.meta"]`` (JSON).

Opsets 13..21 are supported and tested.  What changes with the opset:

=====================  =========================================================
IR op                  ONNX emitted
=====================  =========================================================
HardSwish              13: ``HardSigmoid(alpha=1/6, beta=0.5)`` + ``Mul``;
                       14+: ``HardSwish``
ReduceMean/ReduceMax   <18: ``axes`` attribute; 18+: ``axes`` int64 input
Split                  13+: ``split`` int64 input (``num_outputs`` of 18+ unused)
Clip                   min/max as optional scalar inputs (infinite bound omitted)
Pad                    pads int64 input ``[0,0,t,l,0,0,b,r]`` + value input;
                       negative pads -> ``Slice`` first (then ``Pad``)
Slice                  starts/ends/axes int64 inputs
Reshape                exact static shape as an int64 input
Gemm                   ``transB=1`` (IR weight is [out, in])
Silu                   ``Sigmoid`` + ``Mul``
ChannelShuffle         ``Reshape`` -> ``Transpose`` -> ``Reshape``
Dropout, Identity      ``Identity``
PRelu                  slope [C] reshaped to [C,1,1] (unidirectional broadcast)
MaxPool/AveragePool    always ``ceil_mode=0``: ceil mode becomes extra end
                       padding (see :func:`handlers._pool` for why and for
                       ``count_include_pad``)
AdaptiveAvg/MaxPool    (1,1) -> Global*Pool; H, W divisible by the output ->
                       plain pool with kernel = stride = H/out; otherwise a
                       ``BackendError`` asking for the ``lower_adaptive_pool`` pass
=====================  =========================================================

The model's ``ir_version`` is the lowest one that allows the chosen opset, so
older runtimes can load opset-13 models.
"""
from __future__ import annotations

import json
import os
import tempfile
import logging

import numpy as np
import onnx
from onnx import TensorProto, ValueInfoProto, helper, numpy_helper

from xconv import wire
from xconv.backend import Content, EmitOptions, register_backend
from xconv.errors import BackendError, UnsupportedOpError
from xconv.ir import Graph, TensorType

from .emitter import ModelContext
from .handlers import ADAPTIVE_POOL_PASS, HANDLERS, PRECHECKS

log = logging.getLogger(__name__)

__all__ = ["OnnxBackend", "to_model", "MIN_OPSET", "MAX_OPSET", "META_KEY", "HANDLERS", "ADAPTIVE_POOL_PASS"]

MIN_OPSET = 13
MAX_OPSET = 21
META_KEY = "xconv.meta"


def _producer_version() -> str:
    import xconv
    return str(getattr(xconv, "__version__", "0.1.0"))


def _check_opset(opset: int) -> None:
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise BackendError(f"ONNX opset {opset} is not supported; choose {MIN_OPSET}..{MAX_OPSET} "
                           f"(--opset)")


def _unsupported(graph: Graph) -> None:
    missing = [(n.op, n.name) for n in graph.nodes if n.op not in HANDLERS]
    if missing:
        raise UnsupportedOpError(
            "onnx", missing,
            hint="These IR ops have no ONNX handler (backends/onnx/handlers.py); "
                 "a lowering pass may rewrite them into supported ops.")


def _prechecks(graph: Graph, ctx: ModelContext) -> None:
    problems = [p for n in graph.nodes if n.op in PRECHECKS
                for p in [PRECHECKS[n.op](n, ctx)] if p]
    if problems:
        raise BackendError(f"onnx: {len(problems)} node(s) cannot be emitted:\n  " + "\n  ".join(problems))


def _value_info(name: str, t: TensorType) -> ValueInfoProto:
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(t.dtype))
    return helper.make_tensor_value_info(name, elem, list(t.shape))


def to_model(graph: Graph, opset: int = 13) -> onnx.ModelProto:
    """Translate a legal IR graph into an ONNX model for ``opset`` (13..21).

    Validates the graph first (which also fills ``graph.types``).
    """
    return _build(graph, opset, None)


#: params at least this large are streamed by :meth:`OnnxBackend.emit` (smaller ones stay inline)
STREAM_MIN_BYTES = 4096
_STUB_FILE = "xconv-check.bin"


def _stub(name: str, a: np.ndarray, offset: int) -> TensorProto:
    """An initializer whose data is 'external' at ``offset`` of the check stub file."""
    t = TensorProto(name=name, dims=list(a.shape), data_type=helper.np_dtype_to_tensor_dtype(a.dtype))
    t.data_location = TensorProto.EXTERNAL
    for k, v in (("location", _STUB_FILE), ("offset", str(offset)), ("length", str(a.nbytes))):
        e = t.external_data.add()
        e.key, e.value = k, v
    return t


def _build(graph: Graph, opset: int, streamed: dict[str, np.ndarray] | None) -> onnx.ModelProto:
    """``streamed=None``: every initializer inline.  A dict: large params become
    external-data stubs and are collected in it (name -> array) for streaming."""
    _check_opset(opset)
    _unsupported(graph)
    graph.validate()
    ctx = ModelContext(graph, opset)
    _prechecks(graph, ctx)

    nodes: list[onnx.NodeProto] = []
    extra: list[TensorProto] = []
    for n in graph.nodes:
        low = HANDLERS[n.op](n, ctx)
        nodes.extend(low.nodes)
        extra.extend(low.initializers)

    used = {i for nd in nodes for i in nd.input if i} | set(graph.outputs)
    inits = []
    offset = 0
    for k, a in graph.params.items():
        if k not in used:
            continue
        if streamed is not None and a.nbytes >= STREAM_MIN_BYTES:
            streamed[k] = a
            inits.append(_stub(k, a, offset))
            offset += a.nbytes
        else:
            inits.append(numpy_helper.from_array(np.require(a, requirements="C"), k))
    dropped = sorted(k for k in graph.params if k not in used)
    if dropped:
        log.debug("onnx: %d param(s) not referenced by any emitted node: %s", len(dropped), dropped[:10])
    inits.extend(extra)

    inputs = [_value_info(k, t) for k, t in graph.inputs.items()]
    outputs = [_value_info(o, graph.type_of(o)) for o in graph.outputs]
    out_set = set(graph.outputs)
    value_info = [_value_info(k, t) for k, t in graph.types.items() if k not in out_set]

    g = helper.make_graph(nodes, graph.name or "xconv", inputs, outputs, initializer=inits, value_info=value_info)
    opsets = [helper.make_opsetid("", opset)]
    model = helper.make_model(g, opset_imports=opsets, producer_name="xconv",
                              producer_version=_producer_version())
    model.ir_version = helper.find_min_ir_version_for(opsets, ignore_unknown=True)
    helper.set_model_props(model, {META_KEY: json.dumps(graph.meta.to_json(), sort_keys=True)})
    log.info("onnx: %s -> %d ONNX nodes, %d initializers, opset %d", graph.name, len(nodes), len(inits), opset)
    return model


class OnnxBackend:
    """The ``onnx`` target."""

    name = "onnx"

    def passes(self, opts: EmitOptions) -> list[str]:
        return ["remove_identity", "fold_slice"]

    def check(self, graph: Graph, opts: EmitOptions) -> None:
        _unsupported(graph)
        _check_opset(opts.opset)
        graph.validate()
        _prechecks(graph, ModelContext(graph, opts.opset))

    def emit(self, graph: Graph, name: str, opts: EmitOptions) -> dict[str, Content]:
        """The model file as chunks: protobuf headers, then each large weight
        array's own memory (no serialised copy of the weights is ever made).

        onnx.checker (full check, with shape inference) runs on the model with
        its large initializers as external-data stubs over a sparse file, so
        checking costs neither a copy of the weights nor their serialisation.
        """
        streamed: dict[str, np.ndarray] = {}
        model = _build(graph, opts.opset, streamed)
        self._check(model, streamed, graph.name)
        return {f"{name}.onnx": _stream(model, streamed)}

    @staticmethod
    def _check(model: onnx.ModelProto, streamed: dict[str, np.ndarray], what: str) -> None:
        with tempfile.TemporaryDirectory(prefix="xconv-onnx-check-") as d:
            with open(os.path.join(d, _STUB_FILE), "wb") as f:
                f.truncate(sum(a.nbytes for a in streamed.values()))  # sparse: no disk, no memory
            path = os.path.join(d, "model.onnx")
            with open(path, "wb") as f:
                f.write(model.SerializeToString())
            try:
                onnx.checker.check_model(path, full_check=True)
            except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
                raise BackendError(f"onnx: emitted model for '{what}' fails onnx.checker "
                                   f"(an xconv bug, please report): {e}") from e


_GRAPH = onnx.ModelProto.DESCRIPTOR.fields_by_name["graph"].number
_INIT = onnx.GraphProto.DESCRIPTOR.fields_by_name["initializer"].number
_RAW = TensorProto.DESCRIPTOR.fields_by_name["raw_data"].number


def _stream(model: onnx.ModelProto, streamed: dict[str, np.ndarray]) -> list[wire.Chunk]:
    """Encode ``model`` with its stub initializers replaced by the real data.

    Protobuf fields may come in any order and repeated fields may be split, so
    the graph is written as its serialised non-streamed part followed by one
    ``initializer`` record per streamed array; lengths are computed up front.
    """
    g = model.graph
    records: list[wire.Chunk] = []
    keep = []
    for t in g.initializer:
        a = streamed.get(t.name)
        if a is None:
            keep.append(t)
            continue
        head = TensorProto(name=t.name, dims=list(t.dims), data_type=t.data_type).SerializeToString()
        raw = memoryview(np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<")).reshape(-1)).cast("B")
        records += wire.nested(_INIT, [head, *wire.nested(_RAW, [raw])])
    graph_only = onnx.GraphProto()
    graph_only.CopyFrom(g)
    graph_only.ClearField("initializer")
    graph_only.initializer.extend(keep)
    gbytes = graph_only.SerializeToString()
    rest = onnx.ModelProto()
    rest.CopyFrom(model)
    rest.ClearField("graph")
    return [rest.SerializeToString(), *wire.nested(_GRAPH, [gbytes, *records])]


register_backend(OnnxBackend())
