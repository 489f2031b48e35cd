"""The generic TensorFlow graph path: frozen GraphDef / checkpoint+meta / SavedModel -> IR Graph.

Loading (this module)
---------------------
* a frozen GraphDef ``.pb`` (binary, or text ``.pbtxt``);
* a TF1 checkpoint with its meta graph (``model.ckpt.meta``, or the prefix
  ``model.ckpt`` whose ``.meta`` exists, or a directory with a ``checkpoint``
  file): the meta graph is imported into a ``tf.compat.v1`` graph, the
  variables restored and frozen with ``convert_variables_to_constants``;
* a SavedModel directory: its serving signature's concrete function is
  frozen with ``convert_variables_to_constants_v2``.

TensorFlow is imported lazily, only here, to read and freeze these formats
(their protobufs and checkpoint formats belong to TF).  The conversion
itself works on the frozen GraphDef's NodeDefs: see :mod:`.graph_ops` for
the layout rule (NHWC -> NCHW once, at the input) and the op handlers.

Input and output names (``--inputs/--outputs``; op names, ``name:0``
accepted) are inferred when unambiguous: the single ``Placeholder``, and the
single sink node fed by it that is not a no-op/save/assign op.

Public API: :func:`load_graph` (alias :func:`load`), :func:`make_runner`,
:func:`supported_ops`.
"""
from __future__ import annotations

import difflib
import importlib.util
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from xconv.builder import GraphBuilder
from xconv.errors import InputFileError, XconvError
from xconv.ir import Graph, ModelMeta, Node, SourceLoc

from .graph_ops import (FRAMEWORK, Act, Ctx, TensorRef, TfNode, const_nodes, convert_nodes, parse_ref,
                        scan_unsupported, supported_ops)

__all__ = ["load_graph", "load", "make_runner", "supported_ops"]

log = logging.getLogger(__name__)

#: sink ops that are never a model output
_NOT_OUTPUT = {"NoOp", "SaveV2", "Save", "SaveSlices", "RestoreV2", "Restore", "RestoreSlice", "MergeV2Checkpoints",
               "Assign", "AssignVariableOp", "AssignAdd", "AssignSub", "VariableV2", "Variable", "VarHandleOp",
               "VarIsInitializedOp", "IsVariableInitialized", "Const", "Placeholder", "PlaceholderWithDefault"}


def _tf() -> Any:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "tensorflow" not in sys.modules and "caffe" not in sys.modules and importlib.util.find_spec("caffe"):
        # pycaffe segfaults building a Net in a process that imported TensorFlow first (their
        # protobuf/glog symbols clash); loaded first, both work.  `xconv verify` runs TF and Caffe
        # in one process, so load pycaffe (when installed) before TensorFlow.
        os.environ.setdefault("GLOG_minloglevel", "2")
        try:
            importlib.import_module("caffe")
        except Exception as e:  # noqa: BLE001 - optional
            log.debug("tensorflow: preloading pycaffe failed: %s", e)
    try:
        import tensorflow as tf  # noqa: PLC0415
    except ImportError as e:  # pragma: no cover - depends on the install
        raise XconvError("reading TensorFlow models needs tensorflow: pip install 'xconv[tf]'") from e
    return tf


# --------------------------------------------------------------------------- names
def _ref(name: str) -> TensorRef:
    return parse_ref(name.strip().lstrip("^"))


def _fmt(t: TensorRef) -> str:
    return t[0] if t[1] == 0 else f"{t[0]}:{t[1]}"


def _check_names(gd: Any, refs: Sequence[TensorRef], what: str) -> None:
    names = [n.name for n in gd.node]
    known = set(names)
    for r in refs:
        if r[0] not in known:
            close = difflib.get_close_matches(r[0], names, n=5)
            raise XconvError(f"tensorflow: {what} '{_fmt(r)}' is not a node of the graph"
                             + (f"; did you mean {close}?" if close else ""))


def infer_io(gd: Any, inputs: Sequence[str] | None, outputs: Sequence[str] | None
             ) -> tuple[list[TensorRef], list[TensorRef]]:
    """Input and output tensors of ``gd``: the given names, or the unambiguous defaults."""
    if inputs:
        ins = [_ref(i) for i in inputs]
        _check_names(gd, ins, "input")
    else:
        ph = [n.name for n in gd.node if n.op == "Placeholder"]
        if len(ph) != 1:
            raise XconvError(f"tensorflow: cannot infer the input: the graph has {len(ph)} Placeholder nodes"
                             + (f" ({', '.join(ph[:20])})" if ph else "") + "; name it with --inputs")
        ins = [(ph[0], 0)]
    if outputs:
        outs = [_ref(o) for o in outputs]
        _check_names(gd, outs, "output")
        return ins, outs
    consumed: set[str] = set()
    users: dict[str, list[str]] = {}
    for n in gd.node:
        for i in n.input:
            src = _ref(i)[0]
            consumed.add(src)
            if not i.startswith("^"):
                users.setdefault(src, []).append(n.name)
    fed: set[str] = set()
    stack = [r[0] for r in ins]
    while stack:
        s = stack.pop()
        for u in users.get(s, []):
            if u not in fed:
                fed.add(u)
                stack.append(u)
    sinks = [n.name for n in gd.node if n.name in fed and n.name not in consumed and n.op not in _NOT_OUTPUT
             and not n.name.startswith("save/")]
    if len(sinks) != 1:
        raise XconvError(f"tensorflow: cannot infer the output: {len(sinks)} candidate sink nodes"
                         + (f" ({', '.join(sinks[:20])})" if sinks else "") + "; name it with --outputs")
    return ins, [(sinks[0], 0)]


# --------------------------------------------------------------------------- reading and freezing
@dataclass
class TfSource:
    kind: str                       # "graphdef" | "checkpoint" | "savedmodel"
    path: str                       # "" for an in-memory GraphDef
    graph_def: Any                  # frozen GraphDef
    inputs: list[TensorRef]
    outputs: list[TensorRef]
    extra: dict[str, Any] = field(default_factory=dict)  # savedmodel: the loaded object and function


def _checkpoint_prefix(p: Path) -> str | None:
    if p.name.endswith(".meta") and p.is_file():
        return str(p)[: -len(".meta")]
    if Path(str(p) + ".meta").is_file():
        return str(p)
    if p.is_dir() and (p / "checkpoint").is_file():
        latest = _tf().train.latest_checkpoint(str(p))
        if latest and Path(latest + ".meta").is_file():
            return str(latest)
    return None


def _read_graph_def(p: Path) -> Any:
    tf = _tf()
    gd = tf.compat.v1.GraphDef()
    data = p.read_bytes()
    try:
        gd.ParseFromString(data)
        if gd.node:
            return gd
    except Exception:  # noqa: BLE001 - maybe text format
        pass
    from google.protobuf import text_format  # noqa: PLC0415

    try:
        text_format.Parse(data.decode("utf-8"), gd)
    except Exception as e:  # noqa: BLE001
        raise InputFileError(f"'{p}' is neither a binary nor a text TensorFlow GraphDef: {e}") from e
    return gd


def _freeze_checkpoint(prefix: str, inputs: Sequence[str] | None, outputs: Sequence[str] | None) -> TfSource:
    tf = _tf()
    g = tf.Graph()
    with g.as_default():
        saver = tf.compat.v1.train.import_meta_graph(prefix + ".meta", clear_devices=True)
        if saver is None:
            saver = tf.compat.v1.train.Saver()
        gd = g.as_graph_def()
        ins, outs = infer_io(gd, inputs, outputs)
        with tf.compat.v1.Session(graph=g) as sess:
            try:
                saver.restore(sess, prefix)
            except Exception as e:  # noqa: BLE001
                raise InputFileError(f"tensorflow: restoring checkpoint '{prefix}' failed: {e}") from e
            frozen = tf.compat.v1.graph_util.convert_variables_to_constants(
                sess, gd, sorted({o[0] for o in outs}))
    log.info("tensorflow: froze checkpoint %s (%d nodes)", prefix, len(frozen.node))
    return TfSource("checkpoint", prefix, frozen, ins, outs)


def _freeze_saved_model(path: Path, inputs: Sequence[str] | None, outputs: Sequence[str] | None,
                        signature: str | None) -> TfSource:
    tf = _tf()
    from tensorflow.python.framework.convert_to_constants import (  # noqa: PLC0415
        convert_variables_to_constants_v2)

    loaded = tf.saved_model.load(str(path))
    sigs = dict(loaded.signatures)
    if signature:
        key = signature
    elif "serving_default" in sigs:
        key = "serving_default"
    elif len(sigs) == 1:
        key = next(iter(sigs))
    else:
        raise XconvError(f"tensorflow: SavedModel '{path}' has signatures {sorted(sigs)}; choose one "
                         "(signature=...)")
    if key not in sigs:
        raise XconvError(f"tensorflow: SavedModel '{path}' has no signature '{key}' (it has {sorted(sigs)})")
    fn = sigs[key]
    frozen = convert_variables_to_constants_v2(fn)
    gd = frozen.graph.as_graph_def()
    sig_ins = [_ref(t.name) for t in frozen.inputs if t.dtype != tf.resource]
    sig_outs = [_ref(t.name) for t in frozen.outputs]
    ins = [_ref(i) for i in inputs] if inputs else sig_ins
    outs = [_ref(o) for o in outputs] if outputs else sig_outs
    _check_names(gd, ins + outs, "tensor")
    log.info("tensorflow: froze SavedModel %s signature %s (%d nodes)", path, key, len(gd.node))
    return TfSource("savedmodel", str(path), gd, ins, outs,
                    {"loaded": loaded, "fn": fn, "frozen": frozen, "signature_outputs": sig_outs,
                     "signature_inputs": sig_ins})


def open_source(source: Any, inputs: Sequence[str] | None = None, outputs: Sequence[str] | None = None,
                signature: str | None = None) -> TfSource:
    """Read (and freeze) a TF model: see the module doc for the accepted forms."""
    if hasattr(source, "node") and hasattr(source, "SerializeToString"):  # an in-memory GraphDef
        ins, outs = infer_io(source, inputs, outputs)
        return TfSource("graphdef", "", source, ins, outs)
    p = Path(os.fspath(source))
    if p.is_dir() and ((p / "saved_model.pb").is_file() or (p / "saved_model.pbtxt").is_file()):
        return _freeze_saved_model(p, inputs, outputs, signature)
    prefix = _checkpoint_prefix(p)
    if prefix is not None:
        return _freeze_checkpoint(prefix, inputs, outputs)
    if p.is_file():
        gd = _read_graph_def(p)
        ins, outs = infer_io(gd, inputs, outputs)
        return TfSource("graphdef", str(p), gd, ins, outs)
    if p.name.endswith(".index") or Path(str(p) + ".index").exists() or p.with_suffix(".index").exists():
        raise InputFileError(f"tensorflow: checkpoint '{p}' has no .meta graph next to it; a checkpoint holds "
                             "only weights: export a frozen .pb, a SavedModel or keep the .meta file")
    raise InputFileError(f"tensorflow: '{p}' does not exist or is not a .pb, a checkpoint (.meta) or a "
                         "SavedModel directory")


# --------------------------------------------------------------------------- conversion
def _toposort(nodes: dict[str, Any], outputs: Sequence[TensorRef], leaves: set[str]) -> list[str]:
    """Nodes the outputs depend on through data edges, inputs first (iterative DFS); the graph is
    cut at ``leaves`` (the inputs: an --inputs node inside the graph is not traversed further)."""
    order: list[str] = []
    state: dict[str, int] = {}
    for out in outputs:
        stack: list[tuple[str, int]] = [(out[0], 0)]
        while stack:
            name, k = stack.pop()
            if k == 0:
                if state.get(name) == 2:
                    continue
                if state.get(name) == 1:
                    raise XconvError(f"tensorflow: the graph has a cycle through '{name}' (control flow loops "
                                     "are not supported)")
                state[name] = 1
            ins = [] if name in leaves else [i for i in nodes[name].input if not i.startswith("^")]
            if k < len(ins):
                stack.append((name, k + 1))
                src = parse_ref(ins[k])[0]
                if src not in nodes:
                    raise XconvError(f"tensorflow: node '{name}' reads '{src}', which is not in the graph")
                if state.get(src) != 2:
                    if state.get(src) == 1:
                        raise XconvError(f"tensorflow: the graph has a cycle through '{src}'")
                    stack.append((src, 0))
            else:
                state[name] = 2
                order.append(name)
    return order


def _tf_input_shape(nd: Any, user: Sequence[int] | None) -> tuple[int, ...]:
    """The static TF shape of placeholder ``nd``; ``user`` is given NCHW for 4-D inputs."""
    dims: list[int] | None = None
    if "shape" in nd.attr and not nd.attr["shape"].shape.unknown_rank:
        dims = [int(d.size) for d in nd.attr["shape"].shape.dim]
    if user is not None:
        u = [int(d) for d in user]
        want = [u[0], u[2], u[3], u[1]] if len(u) == 4 else u
        if dims is not None and (len(dims) != len(want) or any(d not in (-1, w) for d, w in zip(dims, want))):
            shown = f"NHWC {dims}" if len(dims) == 4 else str(dims)
            raise XconvError(f"tensorflow: input_shape {tuple(u)} (NCHW) does not fit placeholder '{nd.name}' "
                             f"of shape {shown}")
        return tuple(want)
    if dims is None:
        raise XconvError(f"tensorflow: placeholder '{nd.name}' has no static shape; give input_shape (N,C,H,W)")
    if dims and dims[0] == -1:
        dims[0] = 1
    if any(d < 0 for d in dims):
        raise XconvError(f"tensorflow: placeholder '{nd.name}' has shape {dims} with unknown dims; give "
                         "input_shape (N,C,H,W)")
    return tuple(dims)


def convert_graph_def(gd: Any, inputs: Sequence[TensorRef], outputs: Sequence[TensorRef], *,
                      input_shape: Sequence[int] | None = None, name: str = "model",
                      source_file: str = "") -> Graph:
    """Convert a frozen GraphDef to a validated IR graph (no metadata beyond the framework)."""
    nodes_def = {n.name: n for n in gd.node}
    input_names = [i[0] for i in inputs]
    order = _toposort(nodes_def, outputs, set(input_names))
    nodes = {n: TfNode.of(nodes_def[n]) for n in order}
    is_const = const_nodes(nodes, order, [n for n in input_names if n in nodes])
    scan_unsupported(nodes, order, is_const, input_names)
    b = GraphBuilder(FRAMEWORK, source_file or None)
    refs: dict[str, str] = {}
    for r in inputs:
        if r[1] != 0:
            raise XconvError(f"tensorflow: input '{_fmt(r)}': only an op's first output can be an input")
    for k, inp in enumerate(input_names):
        if inp not in nodes:
            log.warning("tensorflow: input '%s' does not feed the outputs", inp)
            continue
        shp = _tf_input_shape(nodes_def[inp], input_shape if k == 0 else None)
        ir_shape = (shp[0], shp[3], shp[1], shp[2]) if len(shp) == 4 else shp
        refs[inp] = b.input(inp, ir_shape)
    ctx = Ctx(nodes, order, list(outputs), b)
    ctx.is_const = is_const
    convert_nodes(ctx, refs)
    out_names: list[str] = []
    for o in outputs:
        v = ctx.values.get(o)
        if not isinstance(v, Act):
            raise XconvError(f"tensorflow: output '{_fmt(o)}' is a constant or has no value")
        if v.flat_src is not None:
            v = ctx.materialise(v)
        out_names.append(v.ir)
    if not refs:
        raise XconvError("tensorflow: the outputs do not depend on any input")
    return b.graph(out_names, name)


def _default_name(src: TfSource) -> str:
    if not src.path:
        return "tf_graph"
    n = Path(src.path.rstrip("/")).name
    for suf in (".meta", ".pbtxt", ".pb"):
        if n.endswith(suf):
            n = n[: -len(suf)]
    return n.split(".ckpt")[0] or "tf_graph"


def _tf_shape_of(g: Graph, t: str) -> tuple[int, ...]:
    s = g.type_of(t).shape
    return (s[0], s[2], s[3], s[1]) if len(s) == 4 else s


def load_graph(source: Any, *, inputs: list[str] | None = None, outputs: list[str] | None = None,
               input_shape: tuple[int, ...] | None = None, name: str | None = None,
               drop_background: bool = False, signature: str | None = None, **ignored: Any) -> Graph:
    """Convert a TensorFlow graph (frozen .pb, checkpoint+.meta, SavedModel, GraphDef) into a validated IR graph.

    ``input_shape`` is NCHW (N, C, H, W) for 4-D inputs.  ``drop_background``
    turns a 1001-class TF-slim head into 1000 classes (see :func:`drop_background_class`).
    """
    if ignored:
        log.warning("tensorflow.load_graph: ignoring options it does not know: %s", sorted(ignored))
    src = open_source(source, inputs, outputs, signature)
    g = convert_graph_def(src.graph_def, src.inputs, src.outputs, input_shape=input_shape,
                          name=name or _default_name(src), source_file=src.path)
    meta = ModelMeta(source_framework=FRAMEWORK, source_file=src.path)
    out_shape = _tf_shape_of(g, g.outputs[0])
    if len(out_shape) == 2 or (len(out_shape) == 4 and out_shape[1] * out_shape[2] == 1):
        meta.num_classes = int(out_shape[-1])
    if meta.num_classes == 1001:
        meta.background_offset = 1
    g.meta = meta
    if drop_background:
        g = drop_background_class(g)
    log.info("tensorflow: %s", g.summary())
    return g


load = load_graph


# --------------------------------------------------------------------------- background class
_CHAIN = ("Softmax", "Reshape", "Flatten", "Identity")


def drop_background_class(g: Graph) -> Graph:
    """A 1001-class head (logit 0 = background) -> 1000 classes.

    Exact: when the logits come from a Gemm/Conv with constant weights
    (possibly through Softmax/Reshape/Flatten/Identity), row 0 of its weight
    and bias is dropped.  Otherwise a Slice on axis 1 is inserted before
    that chain.  A Softmax in the chain then normalises over the 1000 classes
    (the TF output's ``p[:, 1:] / p[:, 1:].sum()``).
    """
    out = g.outputs[0]
    shp = g.type_of(out).shape
    if len(shp) < 2 or shp[1] != 1001:
        raise XconvError(f"drop_background needs a 1001-class output; '{out}' has shape {shp}")
    k = shp[1]
    g = g.replace()
    prod, cons = g.producers(), g.consumers()
    chain: list[Node] = []
    t = out
    while True:
        n = prod.get(t)
        if n is None or n.op not in _CHAIN or (t != out and len(cons.get(t, [])) != 1):
            break
        in_shape = g.type_of(n.inputs[0]).shape
        if len(in_shape) < 2 or in_shape[1] != k or (n.op == "Softmax" and n.attrs["axis"] % len(in_shape) != 1) \
                or (n.op == "Reshape" and n.attrs["shape"][1] != k):
            break
        chain.append(n)
        t = n.inputs[0]
    head = prod.get(t)
    single = t == out or len(cons.get(t, [])) == 1
    if head is not None and single and head.op in ("Gemm", "Conv") and head.inputs[1] in g.params \
            and (len(head.inputs) < 3 or head.inputs[2] in g.params) \
            and (head.op == "Gemm" or head.attrs["group"] == 1) and g.type_of(t).shape[1] == k:
        for j in range(1, len(head.inputs)):
            pname = head.inputs[j]
            new = g.unique_name(f"{pname}_no_background")
            g.params[new] = np.ascontiguousarray(g.params[pname][1:])
            head.inputs[j] = new
        how = f"dropped row 0 of {head.op} '{head.name}'"
    else:
        loc = head.loc if head is not None else SourceLoc(FRAMEWORK, t)
        sl_out = g.unique_name(f"{t}/drop_background")
        sl = Node("Slice", sl_out, [t], [sl_out], {"axis": 1, "start": 1, "end": k}, loc)
        if chain:
            chain[-1].inputs[0] = sl_out
            pos = g.nodes.index(chain[-1])
            g.nodes.insert(pos, sl)
        else:
            g.nodes.append(sl)
            g.outputs[0] = sl_out
        how = f"sliced '{t}'"
    for n in chain:
        if n.op == "Reshape":
            s = list(n.attrs["shape"])
            s[1] = k - 1
            n.attrs["shape"] = tuple(s)
    g.meta.num_classes = k - 1
    g.meta.background_offset = 0
    g.meta.extra["dropped_background_class"] = True
    g.validate()
    log.info("tensorflow: background class: %s", how)
    return g.prune()


def _softmax_in_chain(gd: Any, out: TensorRef) -> bool:
    nodes = {n.name: n for n in gd.node}
    name = out[0]
    for _ in range(64):
        n = nodes.get(name)
        if n is None:
            return False
        if n.op == "Softmax":
            return True
        if n.op not in ("Identity", "Reshape", "Squeeze") or not n.input:
            return False
        name = parse_ref(n.input[0])[0]
    return False


# --------------------------------------------------------------------------- runner
def make_runner(source: Any, *, inputs: list[str] | None = None, outputs: list[str] | None = None,
                drop_background: bool = False, signature: str | None = None,
                **ignored: Any) -> Callable[[np.ndarray], np.ndarray]:
    """A function running the source TF model: NCHW float32 array -> first output (NCHW when 4-D).

    SavedModels run through their signature function; checkpoints in a
    session on the restored meta graph; GraphDefs in a session.
    """
    if ignored:
        log.debug("tensorflow.make_runner: ignoring options %s", sorted(ignored))
    tf = _tf()
    src = open_source(source, inputs, outputs, signature)
    inp, out = src.inputs[0], src.outputs[0]
    run_nhwc: Callable[[np.ndarray], np.ndarray]
    if src.kind == "savedmodel" and out in src.extra["signature_outputs"] and inp in src.extra["signature_inputs"]:
        fn = src.extra["fn"]  # the signature's own function, reading the restored variables
        idx = src.extra["signature_outputs"].index(out)
        kwargs = fn.structured_input_signature[1]
        arg = next(iter(kwargs)) if kwargs else None

        def run_nhwc(x: np.ndarray) -> np.ndarray:
            res = fn(**{arg: tf.constant(x)}) if arg is not None else fn(tf.constant(x))
            return np.asarray(tf.nest.flatten(res)[idx])
    else:
        g = tf.Graph()
        with g.as_default():
            if src.kind == "checkpoint":
                saver = tf.compat.v1.train.import_meta_graph(src.path + ".meta", clear_devices=True)
                sess = tf.compat.v1.Session(graph=g)
                (saver or tf.compat.v1.train.Saver()).restore(sess, src.path)
            else:
                tf.compat.v1.import_graph_def(src.graph_def, name="")
                sess = tf.compat.v1.Session(graph=g)
        in_t = g.get_tensor_by_name(f"{inp[0]}:{inp[1]}")
        out_t = g.get_tensor_by_name(f"{out[0]}:{out[1]}")

        def run_nhwc(x: np.ndarray) -> np.ndarray:
            return np.asarray(sess.run(out_t, {in_t: x}))

    renorm = drop_background and _softmax_in_chain(src.graph_def, out)

    def run(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        y = run_nhwc(np.ascontiguousarray(x.transpose(0, 2, 3, 1)) if x.ndim == 4 else x)
        if y.ndim == 4:
            y = y.transpose(0, 3, 1, 2)
        if drop_background:
            y = y[:, 1:]
            if renorm:
                y = y / y.sum(axis=1, keepdims=True)
        return np.ascontiguousarray(y)

    return run
