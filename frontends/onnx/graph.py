"""ONNX graph -> IR: values are IR tensors or numpy constants; handlers per op type."""
from __future__ import annotations

import logging
from typing import Any, Callable, Sequence, Union

import numpy as np

from xconv.builder import GraphBuilder
from xconv.errors import InputFileError, InvalidGraphError, UnsupportedAttrError, UnsupportedOpError
from xconv.ir import Graph, ModelMeta

from ..tensorflow.common import same_pads

log = logging.getLogger(__name__)
FRAMEWORK = "onnx"
MIN_OPSET = 7
FLOAT_TYPES = (1, 10, 11)  # TensorProto.FLOAT, FLOAT16, DOUBLE
Value = Union[str, np.ndarray]  # an IR tensor name, or a constant
Handler = Callable[["Ctx", Any], Sequence[Value]]
HANDLERS: dict[str, Handler] = {}


def handles(*ops: str) -> Callable[[Handler], Handler]:
    def deco(fn: Handler) -> Handler:
        for op in ops:
            HANDLERS[op] = fn
        return fn
    return deco


class Ctx:
    def __init__(self, model: Any, builder: GraphBuilder) -> None:
        import onnx  # noqa: PLC0415
        self.onnx = onnx
        self.b = builder
        self.values: dict[str, Value] = {}
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 13)

    def attrs(self, node: Any) -> dict[str, Any]:
        """The node's attributes as Python values (strings decoded)."""
        out = {}
        for a in node.attribute:
            if a.ref_attr_name:
                raise UnsupportedAttrError(f"{_where(node)}: attribute '{a.name}' refers to a function attribute")
            v = self.onnx.helper.get_attribute_value(a)
            out[a.name] = v.decode() if isinstance(v, bytes) else v
        return out

    def v(self, node: Any, i: int) -> Value | None:
        if i >= len(node.input) or not node.input[i]:
            return None
        name = node.input[i]
        if name not in self.values:
            raise InputFileError(f"onnx node '{node.name}' ({node.op_type}): input '{name}' is never produced")
        return self.values[name]

    def act(self, node: Any, i: int = 0) -> str:
        v = self.v(node, i)
        if isinstance(v, np.ndarray):
            return self.b.param(f"{node.name or node.op_type}/in{i}", v.astype(np.float32))
        if v is None:
            raise InputFileError(f"onnx node '{node.name}' ({node.op_type}): input {i} is missing")
        return v

    def const(self, node: Any, i: int) -> np.ndarray | None:
        v = self.v(node, i)
        return v if isinstance(v, np.ndarray) else None

    def need_const(self, node: Any, i: int, what: str) -> np.ndarray:
        c = self.const(node, i)
        if c is None:
            raise UnsupportedAttrError(f"onnx node '{node.name}' ({node.op_type}): {what} must be a constant "
                                       "(an initializer or folded constant)")
        return c

    def param(self, node: Any, i: int, value: np.ndarray) -> str:
        return self.b.param(node.input[i] or f"{node.name}/in{i}", np.asarray(value, np.float32))

    def shape(self, t: str) -> tuple[int, ...]:
        return self.b.shape(t)

    def add(self, op: str, inputs: Sequence[str], node: Any, suffix: str = "", **attrs: Any) -> str:
        name = (node.name or node.output[0]) + (f"/{suffix}" if suffix else "")
        try:
            return self.b.add(op, list(inputs), name=name, source=node.name or node.output[0], **attrs)
        except InvalidGraphError as e:
            raise InvalidGraphError(f"{_where(node)}: {e}") from e


def _where(node: Any) -> str:
    return f"onnx node '{node.name or node.output[0]}' ({node.op_type})"


def _check(node: Any, a: dict[str, Any], known: set[str]) -> None:
    left = sorted(set(a) - known)
    if left:
        raise UnsupportedAttrError(f"{_where(node)}: attributes {left} are not supported")


def _attrs(ctx: Ctx, n: Any, known: set[str]) -> dict[str, Any]:
    """The node's attributes; any not in ``known`` is an error naming the node."""
    a = ctx.attrs(n)
    _check(n, a, known)
    return a


def _rank(ctx: Ctx, n: Any, x: str, want: int, what: str = "input") -> None:
    r = len(ctx.shape(x))
    if r != want:
        raise UnsupportedAttrError(f"{_where(n)}: {what} has rank {r} ({ctx.shape(x)}); only {want}-D "
                                   f"{'NCHW ' if want == 4 else ''}tensors are supported")


def _opt_const(ctx: Ctx, n: Any, i: int, what: str) -> np.ndarray | None:
    """Optional input ``i``: absent -> None, else it must be a constant."""
    return None if ctx.v(n, i) is None else ctx.need_const(n, i, what)


def convert_model(model: Any, *, input_shape: Sequence[int] | None = None, name: str | None = None,
                  source_file: str | None = None) -> Graph:
    from . import ops  # noqa: F401,PLC0415  (registers the handlers)
    from onnx import numpy_helper  # noqa: PLC0415

    g = model.graph
    missing = [(n.op_type, n.name or n.output[0]) for n in g.node
               if n.op_type not in HANDLERS or n.domain not in ("", "ai.onnx")]
    if missing:
        raise UnsupportedOpError(FRAMEWORK, missing, "ONNX -> IR covers image-classifier ops; see the README")
    b = GraphBuilder(FRAMEWORK, source_file)
    ctx = Ctx(model, b)
    if ctx.opset < MIN_OPSET:
        raise InputFileError(f"onnx: opset {ctx.opset} predates opset {MIN_OPSET} (broadcast/axis attributes on "
                             "arithmetic, BatchNormalization 'spatial'); upgrade the file with "
                             "onnx.version_converter.convert_version(model, 13) first")
    for init in g.initializer:
        ctx.values[init.name] = numpy_helper.to_array(init)
    inputs = [i for i in g.input if i.name not in ctx.values]
    if not inputs:
        raise InputFileError("onnx: the graph has no input that is not an initializer (a constant model)")
    for k, inp in enumerate(inputs):
        ctx.values[inp.name] = b.input(inp.name, _input_dims(inp, input_shape if k == 0 else None))
    used = {t for n in g.node for t in n.input} | {o.name for o in g.output}
    for node in g.node:
        outs = HANDLERS[node.op_type](ctx, node)
        extra = [o for o in node.output[len(outs):] if o in used]
        if extra:
            raise UnsupportedAttrError(f"{_where(node)}: its optional output(s) {extra} are used; the IR computes "
                                       f"only the first {len(outs)} (inference) output(s) of {node.op_type}")
        for o, v in zip(node.output, outs):
            if o:
                ctx.values[o] = v
    out_names = []
    for o in g.output:
        v = ctx.values.get(o.name)
        if v is None:
            raise InputFileError(f"onnx: graph output '{o.name}' is never produced")
        if isinstance(v, np.ndarray):
            raise UnsupportedAttrError(f"onnx: graph output '{o.name}' is a constant")
        out_names.append(v)
    meta = ModelMeta(source_framework=FRAMEWORK, source_file=source_file or "")
    for p in model.metadata_props:
        meta.extra.setdefault("onnx_metadata", {})[p.key] = p.value
    s = b.shape(out_names[0])
    if len(s) == 2:
        meta.num_classes = int(s[1])
        meta.background_offset = 1 if s[1] == 1001 else 0
    in_shape = b.shape(ctx.values[inputs[0].name])  # type: ignore[arg-type]
    if len(in_shape) == 4:
        meta.crop = int(in_shape[2])
    return b.graph(out_names, name or (g.name or "onnx_model"), meta)


def _input_dims(inp: Any, override: Sequence[int] | None) -> list[int]:
    """Static NCHW-style dims of a float graph input (a dynamic batch becomes 1)."""
    import onnx  # noqa: PLC0415
    if inp.type.WhichOneof("value") != "tensor_type":
        raise UnsupportedAttrError(f"onnx: input '{inp.name}' is a {inp.type.WhichOneof('value')}, not a tensor; "
                                   "the IR carries tensors only")
    tt = inp.type.tensor_type
    if tt.elem_type not in FLOAT_TYPES:
        raise UnsupportedAttrError(f"onnx: input '{inp.name}' has element type "
                                   f"{onnx.TensorProto.DataType.Name(tt.elem_type)}; the IR computes in float32 "
                                   "and takes float16/float32/float64 inputs only")
    if not tt.HasField("shape"):
        raise InputFileError(f"onnx: input '{inp.name}' has no shape; pass --input-shape")
    dims: list[int | None] = [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]
    if override is not None:
        dims = list(override)
    if any(d is None for d in dims[1:]):
        raise InputFileError(f"onnx: input '{inp.name}' has dynamic dims {dims}; pass --input-shape")
    if any(d == 0 for d in dims):
        raise UnsupportedAttrError(f"onnx: input '{inp.name}' has shape {dims}: empty tensors are not supported")
    return [1 if d is None else int(d) for d in dims]


def pads_of(node: Any, a: dict[str, Any], hw: tuple[int, int], k: tuple[int, int], s: tuple[int, int],
            d: tuple[int, int]) -> tuple[int, int, int, int]:
    auto = str(a.get("auto_pad", "NOTSET"))
    if auto in ("NOTSET", ""):
        p = [int(v) for v in a.get("pads", [0, 0, 0, 0])]
        if len(p) != 4:
            raise UnsupportedAttrError(f"{_where(node)}: pads {p} are not 2-D")
        if min(p) < 0:
            raise UnsupportedAttrError(f"{_where(node)}: negative pads {p}")
        return (p[0], p[1], p[2], p[3])
    if auto == "VALID":
        return (0, 0, 0, 0)
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        (t, bt), (l, r) = same_pads(hw[0], k[0], s[0], d[0]), same_pads(hw[1], k[1], s[1], d[1])
        if auto == "SAME_LOWER":
            t, bt, l, r = bt, t, r, l
        return (t, l, bt, r)
    raise UnsupportedAttrError(f"{_where(node)}: auto_pad {auto!r}")
