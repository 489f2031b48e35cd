"""Caffe backend: deploy ``.prototxt`` + ``.caffemodel``.

Dialects (``--dialect``) are profiles, declared as data in :mod:`.dialects`
(layer types, schema and fields, how floor pooling is written, which IR
constructs have a native layer, parameter rules); ``xconv dialects`` lists them:

* ``bvlc`` (default): only the layers and fields of BVLC Caffe's 1.0
  release, the Caffe embedded toolchains were built from.  Pooling always
  rounds up there; floor-mode pooling, asymmetric padding, ReLU6/Clip,
  hard-sigmoid/swish and SiLU are written as exact compositions of stock
  layers (see :mod:`.emitter` and the passes listed in :meth:`CaffeBackend.passes`).
* ``bvlc-master``: 1.0 plus ``round_mode: FLOOR``, ``Clip`` and ``Swish``.
* ``ceil-mode``: the brocolli-caffe fork built by this project: 1.0 plus
  ``pooling_param.ceil_mode`` (bool, field 13) and its ``ReLU6``, ``Pad``
  and ``Permute`` layers (written with the fork's schema, ``brocolli``).
* ``npu``: stock 1.0 inference layers with NNIE-class restrictions
  (``Permute`` (0,2,3,1) only, 4-D ``Reshape`` only, no ``Slice``/``Concat``
  on the batch axis).

A node without an exact form under the chosen profile is a
:class:`~xconv.errors.BackendError` naming it and the profiles that would
accept it (tried by emitting it under each).  ``check()`` lints the emitted
net (:mod:`.lint`: layer types, fields, rules); ``emit()`` parses its prototxt
text back with the profile's schema and lints that, so a file outside its
dialect is never written.

Files are produced through the project's own protobuf schema (no pycaffe
needed).  The ``.caffemodel`` is assembled from serialised layer messages
plus hand-encoded ``BlobProto`` fields, so multi-hundred-MB weights are
written at memory speed instead of float by float.
"""
from __future__ import annotations

import logging
from typing import Any

import numpy as np

from xconv.backend import Content, EmitOptions, register_backend
from xconv.errors import BackendError, UnsupportedOpError
from xconv import wire
from xconv.ir import Graph

from .dialects import PROFILES, Profile, get_profile, profiles_with
from .emitter import Emitter, native_keeps_rules, supports, unsupported_hint
from .lint import lint_net, report
from .schema import get_schema, parse_prototxt, to_prototxt

log = logging.getLogger(__name__)

#: The built-in dialects the backend writes (a --dialect-file registers more in dialects.PROFILES).
WRITE_DIALECTS = tuple(PROFILES)


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

    def profile(self, opts: EmitOptions) -> Profile:
        return get_profile(opts.dialect or "bvlc")

    def dialect(self, opts: EmitOptions) -> str:
        return self.profile(opts).name

    # what the passes ask (xconv.passes.PassContext.native / .dialects_with)
    def native(self, opts: EmitOptions, construct: str, **attrs: Any) -> bool:
        """Whether the dialect writes ``construct`` natively (see Profile.has); given an IR node's
        ``attrs``, also whether that native layer keeps the profile's rules."""
        p = self.profile(opts)
        return p.has(construct) and (not attrs or native_keeps_rules(p, construct, attrs))

    def dialects_with(self, opts: EmitOptions, construct: str) -> tuple[str, ...]:
        """The other dialects that write ``construct`` natively (for error messages)."""
        return profiles_with(construct, self.dialect(opts))

    def check(self, graph: Graph, opts: EmitOptions) -> None:
        p = self.profile(opts)
        missing = [(n.op, n.name) for n in graph.nodes if not supports(p, n.op)]
        if missing:
            raise UnsupportedOpError("caffe", missing, hint=unsupported_hint(p, {op for op, _ in missing}))
        # a dry run of the emitter: every node without an exact form is reported
        # here, all at once, and the net is linted, before any file is produced
        # (the message itself: emit() alone writes the text and parses it back)
        S, em = self.build(graph, opts)
        self._lint(self.net(S, em, "net"), p)

    def build(self, graph: Graph, opts: EmitOptions) -> tuple[Any, Emitter]:
        """Run the emitter: (the profile's schema, the emitter holding the layers and blobs)."""
        p = self.profile(opts)
        S = get_schema(p.schema)
        graph.validate()
        em = Emitter(graph, S, p)
        em.run()
        return S, em

    @staticmethod
    def net(S: Any, em: Emitter, name: str) -> Any:
        """The deploy NetParameter of the emitted layers (without blobs)."""
        net = S.NetParameter(name=name)
        for lay in em.layers:
            net.layer.add().CopyFrom(lay.msg)
        return net

    @staticmethod
    def _lint(net: Any, p: Profile) -> None:
        bad = lint_net(net, p)
        if bad:
            raise BackendError(f"caffe (dialect '{p.name}'): the emitted net breaks the profile (an xconv bug; "
                               f"please report it):\n{report(bad, p)}")

    def deploy(self, S: Any, em: Emitter, p: Profile, name: str) -> tuple[Any, str]:
        """The deploy NetParameter and its prototxt text, read back with the profile's schema
        and linted: a field, layer type or parameter outside the profile is never written."""
        net = self.net(S, em, name)
        text = to_prototxt(net)
        self._lint(parse_prototxt(text, p.schema), p)
        return net, text

    def emit(self, graph: Graph, name: str, opts: EmitOptions) -> dict[str, Content]:
        S, em = self.build(graph, opts)
        _, text = self.deploy(S, em, self.profile(opts), name)
        fields = _Fields(S)
        parts: list[wire.Chunk] = [S.NetParameter(name=name).SerializeToString()]
        for lay in em.layers:
            body: list[wire.Chunk] = [lay.msg.SerializeToString()]
            for b in lay.blobs:
                body += wire.nested(fields.layer_blobs, fields.blob(b))
            parts += wire.nested(fields.net_layer, body)
        log.info("caffe: %d layers, %d blobs", len(em.layers), sum(len(x.blobs) for x in em.layers))
        return {f"{name}.prototxt": text.encode(), f"{name}.caffemodel": parts}


register_backend(CaffeBackend())
