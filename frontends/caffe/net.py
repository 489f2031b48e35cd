"""Reading a Caffe deploy prototxt: dialect, V1 upgrade, deploy filtering, inputs.

The text is parsed with the project's own schema (:mod:`xconv.backends.caffe.schema`),
never with pycaffe.  Text names are unambiguous, so the dialect is found by trying
them from the narrowest: ``bvlc`` (1.0), ``ceil-mode`` (1.0 + the forks'
``ceil_mode``), ``bvlc-master`` (``round_mode``, Clip, Swish) and ``brocolli``
(the fork's whole schema).  A text no dialect accepts because it names fields of
two incompatible ones (``round_mode`` and ``ceil_mode``) is reported as such.

V1 nets (``layers { type: CONVOLUTION ... }``) are upgraded to the V2
``LayerParameter`` of the same dialect: the per-type parameter messages are the
same protobuf types in both, so they are copied whole; the V1-only training
fields (``blobs_lr``, ``weight_decay``, ``param`` names, ``blob_share_mode``) are
dropped.  Layers a deploy net does not run (TRAIN-phase rules, data, loss and
accuracy layers) are removed with a log line.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Sequence

from xconv.backends.caffe.schema import CaffeSchema, CaffeSchemaError, get_schema, parse_prototxt
from xconv.errors import InputFileError

log = logging.getLogger(__name__)

#: Dialects tried in order when none is given: the first that accepts the text wins.
DIALECT_ORDER: tuple[str, ...] = ("bvlc", "ceil-mode", "bvlc-master", "brocolli")

#: V1LayerParameter.LayerType names -> V2 layer type strings (Caffe's own upgrade table).
V1_TYPES: dict[str, str] = {
    "NONE": "", "ABSVAL": "AbsVal", "ACCURACY": "Accuracy", "ARGMAX": "ArgMax", "BNLL": "BNLL",
    "CONCAT": "Concat", "CONTRASTIVE_LOSS": "ContrastiveLoss", "CONVOLUTION": "Convolution",
    "DATA": "Data", "DECONVOLUTION": "Deconvolution", "DROPOUT": "Dropout", "DUMMY_DATA": "DummyData",
    "EUCLIDEAN_LOSS": "EuclideanLoss", "ELTWISE": "Eltwise", "EXP": "Exp", "FLATTEN": "Flatten",
    "HDF5_DATA": "HDF5Data", "HDF5_OUTPUT": "HDF5Output", "HINGE_LOSS": "HingeLoss", "IM2COL": "Im2col",
    "IMAGE_DATA": "ImageData", "INFOGAIN_LOSS": "InfogainLoss", "INNER_PRODUCT": "InnerProduct",
    "LRN": "LRN", "MEMORY_DATA": "MemoryData", "MULTINOMIAL_LOGISTIC_LOSS": "MultinomialLogisticLoss",
    "MVN": "MVN", "POOLING": "Pooling", "POWER": "Power", "RELU": "ReLU", "SIGMOID": "Sigmoid",
    "SIGMOID_CROSS_ENTROPY_LOSS": "SigmoidCrossEntropyLoss", "SILENCE": "Silence", "SOFTMAX": "Softmax",
    "SOFTMAX_LOSS": "SoftmaxWithLoss", "SPLIT": "Split", "SLICE": "Slice", "TANH": "TanH",
    "WINDOW_DATA": "WindowData", "THRESHOLD": "Threshold",
}

#: V1 fields that only matter for training (or name sharing) and are dropped by the upgrade.
V1_TRAINING_FIELDS = frozenset({"blobs_lr", "weight_decay", "param", "blob_share_mode"})

#: Layer types that feed a training net; their first top becomes an input when the net has no other.
DATA_LAYERS = frozenset({"Data", "ImageData", "HDF5Data", "MemoryData", "WindowData", "DummyData",
                         "AnnotatedData", "VideoData"})
#: Layer types with no place in a deploy net (besides data and ``*Loss`` layers).
NON_DEPLOY = frozenset({"Accuracy", "HDF5Output", "DetectionEvaluate"})


@dataclass
class CaffeLayer:
    """One layer of the deploy net, as a V2 ``LayerParameter`` of the net's dialect."""

    index: int
    name: str
    type: str
    bottoms: tuple[str, ...]
    tops: tuple[str, ...]
    msg: Any
    v1: bool = False

    def where(self) -> str:
        return f"caffe layer '{self.name}' ({self.type}, #{self.index})"


@dataclass
class CaffeNet:
    name: str
    dialect: str
    dialect_reason: str
    format: str                                  # "V2 layer" or "V1 layers"
    schema: CaffeSchema
    msg: Any                                     # the whole NetParameter as parsed
    inputs: list[tuple[str, tuple[int, ...] | None]]
    layers: list[CaffeLayer]
    data_inputs: list[tuple[str, CaffeLayer]] = field(default_factory=list)  # (top, data layer)
    dropped: list[tuple[str, str, str]] = field(default_factory=list)       # (name, type, why)
    path: str = ""


# --------------------------------------------------------------------------- dialect
def _schema_error(path: str, err: CaffeSchemaError, dialect: str | None) -> InputFileError:
    how = (f"--source-dialect {dialect}" if dialect else "any Caffe dialect xconv knows")
    return InputFileError(f"caffe: {path} cannot be read under {how}: {err}")


def parse_net_text(text: str, path: str, dialect: str | None = None) -> tuple[Any, str, str]:
    """(NetParameter, dialect, why this dialect) for a prototxt's text."""
    if dialect:
        try:
            return parse_prototxt(text, dialect), dialect, "given with --source-dialect"
        except CaffeSchemaError as err:
            if err.dialects_with_field:
                raise InputFileError(
                    f"caffe: {path} uses field '{err.field}' of {err.message_type}, which dialect '{dialect}' "
                    f"does not have (it is in {', '.join(err.dialects_with_field)}): pass --source-dialect "
                    f"{err.dialects_with_field[0]} or leave --source-dialect out ({err})") from err
            raise _schema_error(path, err, dialect) from err
    errors: dict[str, CaffeSchemaError] = {}
    for d in DIALECT_ORDER:
        try:
            msg = parse_prototxt(text, d)
        except CaffeSchemaError as err:
            errors[d] = err
            continue
        why = "the text uses only BVLC Caffe 1.0 fields" if d == "bvlc" else (
            "the first dialect that has every field the text uses (tried " + ", ".join(DIALECT_ORDER[
                :DIALECT_ORDER.index(d) + 1]) + ")")
        if errors:
            first = next(iter(errors.values()))
            why += f"; e.g. '{first.field}' of {first.message_type} is not in BVLC 1.0"
        return msg, d, why
    clash: dict[tuple[str, str], tuple[str, ...]] = {}
    for err in errors.values():
        if err.field and err.dialects_with_field:
            clash[(err.message_type or "?", err.field)] = err.dialects_with_field
    if len(clash) >= 2:
        parts = [f"'{f}' of {m} (only in {', '.join(ds)})" for (m, f), ds in sorted(clash.items())]
        raise InputFileError(
            f"caffe: {path} names fields of incompatible Caffe dialects: {'; '.join(parts)}. One file cannot "
            "be both: BVLC master spells pooling rounding 'round_mode: CEIL|FLOOR', the forks 'ceil_mode: "
            "true|false' (both are field 13 in a caffemodel). Edit the prototxt to use one dialect's spelling")
    raise _schema_error(path, errors["bvlc"], None) from errors["bvlc"]


# --------------------------------------------------------------------------- V1 -> V2
def _upgrade_v1(S: CaffeSchema, v1: Any, index: int, path: str) -> CaffeLayer:
    name = v1.name or f"layer{index}"
    if v1.HasField("layer"):
        raise InputFileError(f"caffe: {path}: layer '{name}' is in the V0 format (a nested 'layer' inside "
                             "'layers', before 2014); upgrade it with Caffe's upgrade_net_proto_text tool first")
    type_name = S.V1LayerParameter.LayerType.Name(v1.type)
    new = S.LayerParameter(name=name, type=V1_TYPES.get(type_name, type_name))
    new.bottom.extend(v1.bottom)
    new.top.extend(v1.top)
    for fd, value in v1.ListFields():
        if fd.name in ("name", "type", "bottom", "top") or fd.name in V1_TRAINING_FIELDS:
            continue
        target = new.DESCRIPTOR.fields_by_name.get(fd.name)
        if target is None:
            raise InputFileError(f"caffe: {path}: V1 layer '{name}' sets '{fd.name}', which has no V2 "
                                 "counterpart xconv knows")
        if fd.is_repeated:
            getattr(new, fd.name).extend(value)
        elif fd.message_type is not None:
            getattr(new, fd.name).CopyFrom(value)
        else:
            setattr(new, fd.name, value)
    return CaffeLayer(index, new.name, new.type, tuple(new.bottom), tuple(new.top), new, v1=True)


# --------------------------------------------------------------------------- deploy filtering
def _meets(rule: Any, phase: int, level: int, stages: set[str]) -> bool:
    """Caffe's NetStateRule test (net.cpp StateMeetsRule)."""
    if rule.HasField("phase") and rule.phase != phase:
        return False
    if rule.HasField("min_level") and level < rule.min_level:
        return False
    if rule.HasField("max_level") and level > rule.max_level:
        return False
    if any(s not in stages for s in rule.stage):
        return False
    return not any(s in stages for s in rule.not_stage)


def _included(msg: Any, phase: int, level: int, stages: set[str], where: str) -> bool:
    if len(msg.include) and len(msg.exclude):
        raise InputFileError(f"caffe: {where} has both include and exclude rules (Caffe refuses that too)")
    if len(msg.include):
        return any(_meets(r, phase, level, stages) for r in msg.include)
    return not any(_meets(r, phase, level, stages) for r in msg.exclude)


def _not_deploy(layer_type: str) -> str | None:
    if layer_type in DATA_LAYERS:
        return "a data layer (the deploy net is fed directly)"
    if layer_type.endswith("Loss") or layer_type in NON_DEPLOY:
        return "a training/evaluation layer"
    return None


def _input_shapes(net: Any, path: str) -> list[tuple[str, tuple[int, ...] | None]]:
    """Net-level ``input:`` names with ``input_shape {}`` or 4 ``input_dim:`` each."""
    names = list(net.input)
    if not names:
        return []
    if len(net.input_shape):
        if len(net.input_shape) != len(names):
            raise InputFileError(f"caffe: {path}: {len(names)} net inputs but {len(net.input_shape)} input_shape")
        return [(n, tuple(int(d) for d in s.dim)) for n, s in zip(names, net.input_shape)]
    if len(net.input_dim):
        dims = list(net.input_dim)
        if len(dims) != 4 * len(names):
            raise InputFileError(f"caffe: {path}: {len(names)} net inputs need {4 * len(names)} input_dim values, "
                                 f"found {len(dims)}")
        return [(n, tuple(int(d) for d in dims[4 * i:4 * i + 4])) for i, n in enumerate(names)]
    return [(n, None) for n in names]


def read_net(text: str, path: str, dialect: str | None = None) -> CaffeNet:
    msg, d, why = parse_net_text(text, path, dialect)
    S = get_schema(d)
    if len(msg.layer) and len(msg.layers):
        raise InputFileError(f"caffe: {path} mixes V2 'layer' and V1 'layers' entries; Caffe refuses that too")
    v1 = bool(len(msg.layers))
    raw = ([_upgrade_v1(S, m, i, path) for i, m in enumerate(msg.layers)] if v1 else
           [CaffeLayer(i, m.name or f"layer{i}", m.type, tuple(m.bottom), tuple(m.top), m)
            for i, m in enumerate(msg.layer)])
    phase = S.TEST  # a deploy net runs in the TEST phase whatever the text's state says
    level = msg.state.level if msg.HasField("state") else 0
    stages = set(msg.state.stage) if msg.HasField("state") else set()
    net = CaffeNet(msg.name or "caffe_model", d, why, "V1 layers" if v1 else "V2 layer", S, msg,
                   _input_shapes(msg, path), [], path=path)
    for lay in raw:
        if not _included(lay.msg, phase, level, stages, f"{path}: layer '{lay.name}'"):
            net.dropped.append((lay.name, lay.type, "excluded from the TEST phase by its include/exclude rules"))
            continue
        why_not = _not_deploy(lay.type)
        if why_not:
            net.dropped.append((lay.name, lay.type, why_not))
            if lay.type in DATA_LAYERS and lay.tops:
                net.data_inputs.append((lay.tops[0], lay))
            continue
        net.layers.append(lay)
    for name, type_, why_not in net.dropped:
        log.info("caffe: layer '%s' (%s) is not converted: %s", name, type_, why_not)
    return net


def data_layer_shape(layer: CaffeLayer) -> tuple[int, ...] | None:
    """The static shape a data layer declares for its first top, when it declares one."""
    m = layer.msg
    if layer.type == "MemoryData" and m.HasField("memory_data_param"):
        p = m.memory_data_param
        return (int(p.batch_size), int(p.channels), int(p.height), int(p.width))
    if layer.type == "DummyData" and m.HasField("dummy_data_param") and len(m.dummy_data_param.shape):
        return tuple(int(d) for d in m.dummy_data_param.shape[0].dim)
    return None


def consumed_blobs(layers: Sequence[CaffeLayer]) -> set[str]:
    return {b for lay in layers for b in lay.bottoms}
