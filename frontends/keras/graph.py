"""Keras model config + weights -> IR.

Layout changes once, at the boundary: a Keras input ``[N, H, W, C]`` becomes
an IR input ``(N, C, H, W)`` and every 4-D activation is held NCHW in the IR
from then on; tensors of other ranks keep Keras's layout.  A ``Flatten`` of
a 4-D activation whose spatial size is not 1x1 is held as the NCHW flatten
plus its 4-D source (:attr:`KT.flat_src`): a ``Dense`` layer consumes it by
permuting its weight rows (exact, no Transpose); anything else materialises
Keras's NHWC order with ``Transpose(0, 2, 3, 1)`` + ``Flatten``.

Layers are looked up in :data:`HANDLERS`, first by layer name (a user's
replacement for one layer), then by class name.  ``Lambda`` layers and
custom classes nobody registered are refused before anything is built: they
carry Python code (Keras 2 Lambda configs hold marshalled bytecode) and
xconv never runs or deserialises it.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable, Sequence, Union

import numpy as np

from xconv.builder import GraphBuilder
from xconv.errors import InputFileError, InvalidGraphError, UnsafeInputError, UnsupportedAttrError, UnsupportedOpError
from xconv.ir import Graph, ModelMeta

from .reader import MODEL_CLASSES, Call, KerasFile, LayerSpec, ModelSpec, Ref

log = logging.getLogger(__name__)
FRAMEWORK = "keras"


@dataclass(frozen=True)
class KT:
    """A Keras tensor in the IR: ``ir`` (rank 4 means NCHW for Keras's NHWC).

    ``flat_src``: set when ``ir`` is the NCHW flatten of the 4-D IR tensor
    ``flat_src`` while Keras flattened in NHWC order (see the module doc).
    """

    ir: str
    flat_src: str | None = None


Handler = Callable[["Ctx", LayerSpec, list[KT], Call], Union[KT, Sequence[KT]]]
HANDLERS: dict[str, Handler] = {}
#: layers that are identities at inference (noise, dropout, regularisers)
IDENTITY_LAYERS = ("Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "GaussianNoise",
                   "GaussianDropout", "AlphaDropout", "ActivityRegularization", "Identity")


def register_layer(*names: str, replace: bool = False) -> Callable[[Handler], Handler]:
    """Register a handler for Keras layer class names, or for single layers by their names.

    A handler is ``fn(ctx, layer, inputs, call) -> KT | [KT, ...]``: ``layer``
    is the :class:`~xconv.frontends.keras.reader.LayerSpec` (class, name,
    config), ``inputs`` the IR tensors it is called on (4-D ones are NCHW),
    ``ctx.weights(layer)`` its arrays by variable name, and ``ctx.add`` /
    ``ctx.param`` build IR nodes.  This is the way to convert a ``Lambda``
    layer or a custom class: xconv never executes the code a file carries.
    """
    def deco(fn: Handler) -> Handler:
        for n in names:
            if n in HANDLERS and not replace:
                raise ValueError(f"keras handler for {n} registered twice (pass replace=True to override)")
            HANDLERS[n] = fn
        return fn
    return deco


def layer_handler(layer: LayerSpec) -> Handler | None:
    """By layer name, then class name; tf_keras registers classes as ``Package>Class`` (``Custom>`` by default)."""
    return (HANDLERS.get(layer.name) or HANDLERS.get(layer.class_name)
            or HANDLERS.get(layer.class_name.rpartition(">")[2]))


# --------------------------------------------------------------------------- context
class Ctx:
    """State of one conversion: the file, the IR builder, the nesting path."""

    def __init__(self, kf: KerasFile, builder: GraphBuilder) -> None:
        self.file = kf
        self.b = builder
        self.keras_major = kf.major
        self.path: tuple[str, ...] = ()
        self._weights: dict[tuple[str, ...], dict[str, np.ndarray]] = {}
        self._consts: dict[tuple[Any, ...], str] = {}
        self._materialised: dict[str, KT] = {}
        self.call_index = 0

    # names
    def node_name(self, layer: LayerSpec, suffix: str = "") -> str:
        base = "/".join(self.path + (layer.name,))
        if self.call_index:
            base += f"_call{self.call_index}"
        return base + (f"/{suffix}" if suffix else "")

    # weights and constants
    def weights(self, layer: LayerSpec) -> dict[str, np.ndarray]:
        key = self.path + (layer.name,)
        if key not in self._weights:
            self._weights[key] = self.file.weights.get(self.path, layer)
        return self._weights[key]

    def weight(self, layer: LayerSpec, name: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
        from .reader import VAR_ALIASES  # noqa: PLC0415
        w = self.weights(layer)
        for n in (name,) + VAR_ALIASES.get(name, ()):
            if n in w:
                a = np.asarray(w[n])
                if shape is not None and a.shape != shape:
                    raise InputFileError(f"{layer.where()}: weight '{name}' has shape {a.shape}, the config "
                                         f"implies {shape}")
                return a
        raise InputFileError(f"{layer.where()}: weight '{name}' is missing from the file (has: "
                             f"{sorted(w) or 'none'})")

    def param(self, layer: LayerSpec, tag: str, make: Callable[[], Any]) -> str:
        """An IR constant for ``layer`` (made once, shared by every call of a shared layer)."""
        key = (self.path, layer.name, tag)
        if key not in self._consts:
            self._consts[key] = self.b.param("/".join(self.path + (layer.name, tag)), make())
        return self._consts[key]

    def const(self, name: str, value: Any) -> str:
        return self.b.param(name, np.asarray(value, np.float32))

    def add(self, op: str, inputs: Sequence[str], layer: LayerSpec, suffix: str = "", **attrs: Any) -> str:
        try:
            out: str = self.b.add(op, list(inputs), name=self.node_name(layer, suffix), source=layer.name, **attrs)
        except InvalidGraphError as e:
            raise InvalidGraphError(f"{layer.where()}: {e}") from e
        return out

    # values
    def act(self, v: KT, layer: LayerSpec | None = None) -> KT:
        """``v`` as a plain tensor (a pending NHWC flatten is materialised)."""
        if v.flat_src is None:
            return v
        if v.ir not in self._materialised:
            tr = self.b.add("Transpose", [v.flat_src], name=f"{v.ir}/to_nhwc", source=v.ir, perm=(0, 2, 3, 1))
            fl = self.b.add("Flatten", [tr], name=f"{v.ir}/nhwc_flatten", source=v.ir, axis=1)
            self._materialised[v.ir] = KT(fl)
        return self._materialised[v.ir]

    def shape(self, v: KT | str) -> tuple[int, ...]:
        return self.b.shape(v.ir if isinstance(v, KT) else v)

    def kshape(self, v: KT) -> tuple[int, ...]:
        """Keras's shape of ``v`` (NHWC for 4-D)."""
        s = self.shape(v)
        return (s[0], s[2], s[3], s[1]) if len(s) == 4 else s

    def axis(self, axis: Any, rank: int, layer: LayerSpec) -> int:
        """A Keras axis of a rank-``rank`` tensor -> the IR axis."""
        if isinstance(axis, (list, tuple)):
            if len(axis) != 1:
                raise UnsupportedAttrError(f"{layer.where()}: axis {axis} (several axes) is not supported")
            axis = axis[0]
        a = int(axis)
        a = a + rank if a < 0 else a
        if not 0 <= a < rank:
            raise UnsupportedAttrError(f"{layer.where()}: axis {axis} is out of range for rank {rank}")
        if rank == 4:
            return {0: 0, 1: 2, 2: 3, 3: 1}[a]
        return a


# --------------------------------------------------------------------------- walking
def _key(r: Ref) -> tuple[str, int, int]:
    return (r.layer, r.node, r.tensor)


def run_model(ctx: Ctx, model: ModelSpec, inputs: Sequence[KT]) -> list[KT]:
    """Apply ``model`` to ``inputs``: every layer call, in dependency order."""
    if len(inputs) != len(model.inputs):
        raise InputFileError(f"keras model '{model.name}' takes {len(model.inputs)} input(s), called with "
                             f"{len(inputs)}")
    vals: dict[tuple[str, int, int], KT] = {_key(r): v for r, v in zip(model.inputs, inputs)}
    pending = [(layer, i) for layer in model.layers if layer.class_name != "InputLayer"
               for i in range(len(layer.calls))]
    while pending:
        rest = []
        for layer, i in pending:
            call = layer.calls[i]
            if not all(_key(r) in vals for r in call.inputs):
                rest.append((layer, i))
                continue
            outs = call_layer(ctx, layer, i, [vals[_key(r)] for r in call.inputs], call)
            for t, o in enumerate(outs):
                vals[(layer.name, i, t)] = o
        if len(rest) == len(pending):
            missing = sorted({r.layer for layer, i in rest for r in layer.calls[i].inputs if _key(r) not in vals})
            raise InputFileError(f"keras model '{model.name}': layers {[layer.name for layer, _ in rest][:8]} wait "
                                 f"for tensors nobody produces (from {missing[:8]}); the config is inconsistent")
        pending = rest
    missing_out = [r for r in model.outputs if _key(r) not in vals]
    if missing_out:
        raise InputFileError(f"keras model '{model.name}': outputs {missing_out} are never computed")
    return [vals[_key(r)] for r in model.outputs]


def call_layer(ctx: Ctx, layer: LayerSpec, index: int, ins: list[KT], call: Call) -> list[KT]:
    saved = ctx.call_index
    ctx.call_index = index
    try:
        if layer.model is not None and layer_handler(layer) is None:
            saved_path = ctx.path
            ctx.path = ctx.path + (layer.name,)
            try:
                return run_model(ctx, layer.model, ins)
            finally:
                ctx.path = saved_path
        fn = layer_handler(layer)
        assert fn is not None  # checked up front by check_layers
        out = fn(ctx, layer, ins, call)
        return [out] if isinstance(out, KT) else list(out)
    finally:
        ctx.call_index = saved


# layers of Keras itself that have no handler (so a missing handler is "unsupported", not "unsafe")
KERAS_BUILTIN_HINTS = {
    "LSTM", "GRU", "SimpleRNN", "Bidirectional", "TimeDistributed", "Embedding", "Conv1D", "Conv3D",
    "Conv2DTranspose", "Conv3DTranspose", "LayerNormalization", "GroupNormalization", "UnitNormalization",
    "MultiHeadAttention", "Attention", "UpSampling2D", "Resizing", "CenterCrop", "RandomFlip", "RandomRotation",
    "RandomZoom", "RandomCrop", "RandomContrast", "RandomTranslation", "Permute", "RepeatVector", "Dot",
    "EinsumDense", "MaxPooling1D", "AveragePooling1D", "MaxPooling3D", "AveragePooling3D", "GlobalAveragePooling1D",
    "GlobalMaxPooling1D", "ThresholdedReLU", "Softmax", "Masking", "TFOpLambda", "SlicingOpLambda", "Subtract",
    "Maximum", "Minimum", "Average", "LocallyConnected2D", "ConvLSTM2D", "UpSampling1D", "ZeroPadding1D",
    "Cropping1D", "Discretization", "CategoryEncoding", "Hashing", "StringLookup", "IntegerLookup",
}


def check_layers(model: ModelSpec) -> None:
    """Refuse, all at once, layers that carry code and layers with no handler."""
    unsafe: list[str] = []
    unsupported: list[tuple[str, str]] = []
    for path, layer in model.walk():
        if layer.class_name == "InputLayer" or layer_handler(layer) is not None:
            continue
        if layer.model is not None:
            continue
        full = "/".join(path + (layer.name,))
        if layer.class_name == "Lambda":
            unsafe.append(f"'{full}' (Lambda: Python code{', marshalled bytecode' if _has_bytecode(layer) else ''})")
        elif layer.class_name in KERAS_BUILTIN_HINTS or str(layer.module or "").startswith("keras.layers"):
            unsupported.append((layer.class_name, full))
        else:
            where = f", module {layer.module}" if layer.module else ""
            unsafe.append(f"'{full}' (custom class {layer.class_name}{where})")
    if unsafe:
        raise UnsafeInputError(
            "keras: layers whose behaviour is Python code in (or named by) the file: " + "; ".join(unsafe[:12])
            + (f" (+{len(unsafe) - 12} more)" if len(unsafe) > 12 else "")
            + ". xconv never executes or deserialises such code. If you know what a layer computes, register a "
              "replacement: @xconv.frontends.keras.register_layer('<class or layer name>') on a function "
              "fn(ctx, layer, inputs, call), in a file passed with --plugin FILE.py")
    if unsupported:
        raise UnsupportedOpError(FRAMEWORK, unsupported,
                                 "register a handler with xconv.frontends.keras.register_layer (see --plugin)")


def _has_bytecode(layer: LayerSpec) -> bool:
    f = layer.config.get("function")
    return isinstance(f, (list, tuple)) or (isinstance(f, dict) and f.get("class_name") == "__lambda__")


# --------------------------------------------------------------------------- meta
# keras.applications preprocessing, by the model names its builders give
_CAFFE = dict(color_order="BGR", value_range=(0.0, 255.0), mean=(103.939, 116.779, 123.68), std=(1.0, 1.0, 1.0))
_TF = dict(color_order="RGB", value_range=(-1.0, 1.0), mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
_TORCH = dict(color_order="RGB", value_range=(0.0, 1.0), mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
APP_PREPROCESS: list[tuple[str, dict[str, Any]]] = [
    (r"^(vgg16|vgg19|resnet(50|101|152))$", _CAFFE),
    (r"^(resnet\d+v2|xception|inception_v3|inception_resnet_v2|mobilenet(v2)?_[\d.]+_\d+|nasnet|NASNet)", _TF),
    (r"^densenet\d+$", _TORCH),
]


def keras_meta(kf: KerasFile, out_shape: tuple[int, ...], in_shape: tuple[int, ...]) -> ModelMeta:
    meta = ModelMeta(source_framework=FRAMEWORK, source_file=kf.path)
    import re  # noqa: PLC0415
    for pat, pre in APP_PREPROCESS:
        if re.match(pat, kf.model.name):
            for k, v in pre.items():
                setattr(meta, k, v)
            meta.extra["preprocessing"] = f"keras.applications ({kf.model.name})"
            break
    if len(in_shape) == 4:
        meta.crop = int(in_shape[2])
        meta.resize = int(round(in_shape[2] / 0.875))
    if len(out_shape) == 2:
        meta.num_classes = int(out_shape[1])
    meta.extra["keras_version"] = kf.keras_version
    meta.extra["keras_format"] = kf.kind
    return meta


# --------------------------------------------------------------------------- entry
def convert_file(kf: KerasFile, *, input_shape: Sequence[int] | None = None, name: str | None = None) -> Graph:
    from . import layers  # noqa: F401,PLC0415 - registers the handlers

    model = kf.model
    check_layers(model)
    b = GraphBuilder(FRAMEWORK, kf.path)
    ctx = Ctx(kf, b)
    ins: list[KT] = []
    for i, r in enumerate(model.inputs):
        layer = model.layer(r.layer)
        shape = layer.config.get("batch_shape") or layer.config.get("batch_input_shape")
        if shape is None:
            raise InputFileError(f"{layer.where()}: no input shape in the config")
        shape = list(shape)
        if len(shape) == 4:
            n, h, w, c = shape
            if input_shape is not None and i == 0:
                if len(input_shape) != 4:
                    raise InputFileError(f"--input-shape wants N,C,H,W for the 4-D input '{layer.name}'")
                n, c2, h, w = input_shape
                if c is not None and int(c2) != int(c):
                    raise InputFileError(f"--input-shape has {c2} channels; input '{layer.name}' takes {c}")
                c = c2
            if h is None or w is None or c is None:
                raise InputFileError(f"{layer.where()}: its height/width are not fixed in the model "
                                     f"({shape}); pass --input-shape N,C,H,W")
            ir_shape = (int(n or 1), int(c), int(h), int(w))
        else:
            if input_shape is not None and i == 0:
                shape = list(input_shape)
            if any(d is None for d in shape[1:]):
                raise InputFileError(f"{layer.where()}: input shape {shape} is not fixed; pass --input-shape")
            ir_shape = (int(shape[0] or 1),) + tuple(int(d) for d in shape[1:])
        ins.append(KT(b.input(layer.name, ir_shape)))
    outs = run_model(ctx, model, ins)
    out_names = [ctx.act(o).ir for o in outs]
    in_shape = b.shape(ins[0].ir) if ins else ()
    meta = keras_meta(kf, b.shape(out_names[0]), in_shape)
    return b.graph(out_names, name or model.name, meta)


def is_model_class(c: str) -> bool:
    return c in MODEL_CLASSES
