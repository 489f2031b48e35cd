"""Caffe backend: deploy ``.prototxt`` + ``.caffemodel``.

Dialects (``--dialect``):

* ``bvlc`` (default): only the layers and fields of BVLC Caffe's 1.0
  release, the Caffe embedded toolchains were built from.  Pooling always
  rounds up there; floor-mode pooling, asymmetric padding, ReLU6/Clip,
  hard-sigmoid/swish and SiLU are written as exact compositions of stock
  layers (see :mod:`.emitter` and the passes listed in :meth:`passes`).
* ``ceil-mode``: BVLC 1.0 plus ``pooling_param.ceil_mode`` (bool, field 13)
  as the brocolli-caffe fork built by this project reads it; floor-mode
  pooling is then written directly.

Files are produced through the project's own protobuf schema (no pycaffe
needed).  The ``.caffemodel`` is assembled from serialised layer messages
plus hand-encoded ``BlobProto`` fields, so multi-hundred-MB weights are
written at memory speed instead of float by float.
"""
from __future__ import annotations

import logging

import numpy as np

from xconv.backend import Content, EmitOptions, register_backend
from xconv.errors import BackendError, UnsupportedOpError
from xconv import wire
from xconv.ir import Graph

from .emitter import HANDLERS, Emitter
from .schema import get_schema, to_prototxt

log = logging.getLogger(__name__)

WRITE_DIALECTS = ("bvlc", "ceil-mode")


class _Fields:
    """Field numbers read from the schema, so nothing is hard-coded twice."""

    def __init__(self, S) -> None:
        f = lambda msg, name: S.descriptor(msg).fields_by_name[name].number  # noqa: E731
        self.net_layer = f("NetParameter", "layer")
        self.layer_blobs = f("LayerParameter", "blobs")
        self.blob_shape = f("BlobProto", "shape")
        self.blob_data = f("BlobProto", "data")
        self.shape_dim = f("BlobShape", "dim")

    def blob(self, a: np.ndarray) -> list[wire.Chunk]:
        """A BlobProto as chunks: header bytes, then the float32 data itself (no copy)."""
        dims = b"".join(wire.varint(int(d)) for d in a.shape)
        shape = wire.field(self.shape_dim, dims) if a.ndim else b""
        data = np.ascontiguousarray(a, dtype="<f4")
        return [wire.field(self.blob_shape, shape), *wire.nested(self.blob_data, [memoryview(data).cast("B")])]


class CaffeBackend:
    name = "caffe"

    def passes(self, opts: EmitOptions) -> list[str]:
        return ["remove_identity", "lower_adaptive_pool", "normalize_shapes", "fold_slice", "fold_batchnorm",
                "fuse_pad", "decompose_activations", "legalize_pad", "legalize_pool", "remove_identity"]

    def dialect(self, opts: EmitOptions) -> str:
        d = opts.dialect or "bvlc"
        if d not in WRITE_DIALECTS:
            raise BackendError(f"Caffe dialect '{d}' cannot be written; choose one of {WRITE_DIALECTS}")
        return d

    def check(self, graph: Graph, opts: EmitOptions) -> None:
        d = self.dialect(opts)
        missing = [(n.op, n.name) for n in graph.nodes if n.op not in HANDLERS]
        if missing:
            raise UnsupportedOpError("caffe", missing,
                                     hint=f"these IR ops have no Caffe ({d}) form; convert to ONNX (--to onnx)")
        # a dry run of the emitter (no serialisation): every node without an exact
        # form is reported here, all at once, before any file is produced
        self.build(graph, opts)

    def build(self, graph: Graph, opts: EmitOptions):
        dialect = self.dialect(opts)
        S = get_schema(dialect)
        graph.validate()
        em = Emitter(graph, S, dialect)
        em.run()
        return S, em

    def emit(self, graph: Graph, name: str, opts: EmitOptions) -> dict[str, Content]:
        S, em = self.build(graph, opts)
        deploy = S.NetParameter(name=name)
        for lay in em.layers:
            deploy.layer.add().CopyFrom(lay.msg)
        fields = _Fields(S)
        parts: list[wire.Chunk] = [S.NetParameter(name=name).SerializeToString()]
        for lay in em.layers:
            body: list[wire.Chunk] = [lay.msg.SerializeToString()]
            for b in lay.blobs:
                body += wire.nested(fields.layer_blobs, fields.blob(b))
            parts += wire.nested(fields.net_layer, body)
        log.info("caffe: %d layers, %d blobs", len(em.layers), sum(len(x.blobs) for x in em.layers))
        return {f"{name}.prototxt": to_prototxt(deploy).encode(), f"{name}.caffemodel": parts}


register_backend(CaffeBackend())
