"""MXNet ``*-symbol.json`` read without MXNet, in both layouts:

* current (MXNet >= 0.9.5 / 1.x): each node has ``attrs`` (string values),
  inputs are ``[node, output, version]``, and the graph carries
  ``attrs: {"mxnet_version": ["int", 10901]}``;
* pre-1.0 (legacy): op parameters in ``param``, node attributes (``__lr_mult__``
  and the like) in ``attr``, ``backward_source_id``, inputs ``[node, output]``.

All attribute values are strings (``"(3, 3)"``, ``"True"``, ``"1e-05"``);
:class:`Attrs` parses them by type and remembers which ones a handler read.
"""
from __future__ import annotations

import ast
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xconv.errors import InputFileError, UnsupportedAttrError

# attributes MXNet attaches to nodes that do not change inference
IGNORED_ATTRS = {"workspace", "cudnn_tune", "cudnn_off", "momentum", "use_global_stats", "output_mean_var",
                 "num_args", "lr_mult", "wd_mult", "ctx_group", "mirror_stage", "force_mirroring", "layout",
                 "__profiler_scope__", "storage_type", "dtype", "init", "num_outputs_hint", "preserve_shape",
                 "normalization", "grad_scale", "ignore_label", "multi_output", "use_ignore", "out_grad",
                 "smooth_alpha", "is_hidden", "__init__"}


class Attrs:
    """Typed reads of one node's string attributes."""

    def __init__(self, node: "MxNode") -> None:
        self._a = node.attrs
        self._node = node
        self.used: set[str] = set()

    def has(self, k: str) -> bool:
        return k in self._a and str(self._a[k]) not in ("None", "")

    def raw(self, k: str, default: Any = None) -> Any:
        self.used.add(k)
        v = self._a.get(k)
        return default if v is None or str(v) == "None" else v

    def _bad(self, k: str, v: Any, want: str) -> UnsupportedAttrError:
        return UnsupportedAttrError(f"{self._node.where()}: attribute {k}={v!r} is not {want}")

    def str(self, k: str, default: str | None = None) -> str | None:
        v = self.raw(k)
        return default if v is None else str(v)

    def int(self, k: str, default: int | None = None) -> int | None:
        v = self.raw(k)
        if v is None:
            return default
        try:
            return int(float(v))
        except (TypeError, ValueError):
            raise self._bad(k, v, "an integer") from None

    def float(self, k: str, default: float | None = None) -> float | None:
        v = self.raw(k)
        if v is None:
            return default
        try:
            return float(v)
        except (TypeError, ValueError):
            raise self._bad(k, v, "a number") from None

    def bool(self, k: str, default: bool = False) -> bool:
        v = self.raw(k)
        if v is None:
            return default
        s = str(v).strip().lower()
        if s in ("true", "1"):
            return True
        if s in ("false", "0"):
            return False
        raise self._bad(k, v, "a boolean")

    def ints(self, k: str, default: tuple[int, ...] | None = None) -> tuple[int, ...] | None:
        v = self.raw(k)
        if v is None:
            return default
        if isinstance(v, (list, tuple)):
            return tuple(int(x) for x in v)
        s = str(v).strip()
        try:
            t = ast.literal_eval(s if s.startswith(("(", "[")) else f"({s},)")
        except (ValueError, SyntaxError):
            raise self._bad(k, v, "a tuple of integers") from None
        if isinstance(t, (int, float)):
            t = (t,)
        if t is None:
            return default
        try:
            return tuple(int(x) if x is not None else -1 for x in t)
        except (TypeError, ValueError):
            raise self._bad(k, v, "a tuple of integers") from None

    def leftover(self) -> list[str]:
        return sorted(k for k in self._a if k not in self.used and k not in IGNORED_ATTRS and not k.startswith("__"))


@dataclass
class MxNode:
    index: int
    op: str
    name: str
    attrs: dict[str, Any]
    inputs: list[tuple[int, int]]
    a: Attrs = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.a = Attrs(self)

    def where(self) -> str:
        return f"mxnet node '{self.name}' ({self.op})"


@dataclass
class Symbol:
    nodes: list[MxNode]
    heads: list[tuple[int, int]]
    arg_nodes: list[int]
    version: int | None
    legacy: bool
    path: str = ""

    def node(self, name: str) -> MxNode:
        for n in self.nodes:
            if n.name == name:
                return n
        raise InputFileError(f"mxnet symbol {self.path}: no node named '{name}'")


def parse_symbol(text: str | bytes, path: str = "") -> Symbol:
    try:
        d = json.loads(text)
    except ValueError as e:
        raise InputFileError(f"mxnet symbol {path}: not valid JSON ({e})") from e
    if not isinstance(d, dict) or not isinstance(d.get("nodes"), list) or "heads" not in d:
        raise InputFileError(f"mxnet symbol {path}: not an MXNet symbol (no 'nodes'/'heads'); did you pass the "
                             "-symbol.json file?")
    legacy = False
    nodes = []
    for i, n in enumerate(d["nodes"]):
        if not isinstance(n, dict) or "op" not in n or "name" not in n:
            raise InputFileError(f"mxnet symbol {path}: node {i} lacks op/name")
        if "attrs" in n or "attr" not in n and "param" not in n:
            attrs = dict(n.get("attrs") or {})
        else:
            legacy = True
            attrs = {**(n.get("attr") or {}), **(n.get("param") or {})}
        ins = []
        for e in n.get("inputs", []):
            if not isinstance(e, list) or len(e) < 2 or not 0 <= int(e[0]) < i:
                raise InputFileError(f"mxnet symbol {path}: node '{n['name']}' has a bad input {e!r} (inputs must "
                                     "refer to earlier nodes)")
            ins.append((int(e[0]), int(e[1])))
        nodes.append(MxNode(i, str(n["op"]), str(n["name"]), attrs, ins))
    heads = [(int(h[0]), int(h[1])) for h in d["heads"]]
    for h in heads:
        if not 0 <= h[0] < len(nodes):
            raise InputFileError(f"mxnet symbol {path}: head {h} names no node")
    ver = None
    gattrs = d.get("attrs") or {}
    if "mxnet_version" in gattrs:
        try:
            ver = int(gattrs["mxnet_version"][1])
        except (TypeError, ValueError, IndexError):
            ver = None
    if "backward_source_id" in (d["nodes"][0] if d["nodes"] else {}):
        legacy = True
    return Symbol(nodes, heads, [int(x) for x in d.get("arg_nodes", [])], ver, legacy, path)


def read_symbol(path: str | Path) -> Symbol:
    p = Path(path)
    try:
        text = p.read_bytes()
    except OSError as e:
        raise InputFileError(f"mxnet symbol: cannot read {p}: {e}") from e
    return parse_symbol(text, str(p))
