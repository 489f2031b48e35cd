"""Caffe dialect profiles: what a converted net may contain, as data.

Caffe is not one format.  A profile describes one Caffe a net is written for,
declaratively, so the emitter, the passes and the linter ask it instead of
comparing dialect names:

* ``schema``: the schema dialect of :mod:`.schema` the files are written and
  parsed with (``field_base`` + ``extra_messages`` narrow the fields allowed
  further when the profile is a subset of that schema);
* ``layer_types``: the layer types it has (inference layers: a deploy net's
  data, loss and Python layers are not part of any profile);
* ``floor_pooling``: how floor-rounded pooling is written -- ``rewrite`` (a
  ceil-mode Pooling whose surplus row/col is sliced off: stock 1.0 has no
  rounding field), ``round_mode`` (BVLC master's ``round_mode: FLOOR``) or
  ``ceil_mode`` (the forks' ``ceil_mode: false``; both are field 13);
* ``native``: IR constructs written as one native layer (see
  :data:`CONSTRUCTS`); the exact stock-layer rewrites are the fallback;
* ``rules``: restrictions on layer parameters, each with a one-line reason.

The built-in profiles (:data:`PROFILES`, ``--dialect``):

``bvlc`` (default)
    BVLC Caffe's 1.0 release (April 2017), what embedded toolchains were built
    from: no rounding field (pooling always rounds up), no Clip/Swish/ReLU6/Pad/
    Permute.
``bvlc-master``
    1.0 plus what BVLC master added later: ``round_mode`` (floor pooling is
    ``round_mode: FLOOR``), ``Clip`` (ReLU6 and finite clips) and ``Swish``
    (SiLU).  The Caffe built here cannot run these files: its field 13 is the
    fork's ``ceil_mode`` (a binary ``round_mode: FLOOR`` reads as ``ceil_mode:
    true``).
``ceil-mode``
    The brocolli-caffe 9.0.2 fork built by this project: 1.0 plus
    ``ceil_mode`` (bool, field 13) and its native ``ReLU6``, ``Pad`` and
    ``Permute`` layers.  Written with the fork's own schema (``brocolli``);
    only 1.0's fields, ``ceil_mode`` and those three layers' parameters are
    allowed (the narrower ``ceil-mode`` schema is exactly 1.0 + ``ceil_mode``
    and stays so: it describes the many forks that share only that field).
``npu``
    A restricted embedded-NPU profile modelled on the published restrictions
    of NNIE-class toolchains (HiSilicon NNIE / RuyiStudio mappers): stock 1.0
    inference layers plus the SSD ``Permute`` (order (0, 2, 3, 1) only),
    ``Reshape`` to 4-D only, no ``Slice``/``Concat`` on the batch axis.  A
    particular chip's toolchain may accept more or less: check its own list,
    or describe it in a profile file (``--dialect-file``, see
    :func:`load_profile_file`).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, Mapping

from xconv.errors import BackendError, InputFileError

FloorPooling = Literal["rewrite", "round_mode", "ceil_mode"]
FLOOR_POOLING_STYLES: tuple[str, ...] = ("rewrite", "round_mode", "ceil_mode")

#: IR constructs a profile may write as one native layer (the key of ``Profile.native``).
CONSTRUCTS: Mapping[str, str] = MappingProxyType({
    "relu6": "Clip(x, 0, t) with a finite t (ReLU6): one ReLU6 layer (threshold t) or Clip layer",
    "clip": "Clip(x, lo, hi) with finite bounds: one Clip layer",
    "silu": "x * sigmoid(x) (SiLU): one Swish layer",
    "pad": "Pad (constant of any value, edge, reflect): one Pad layer",
    "transpose": "Transpose: one Permute layer",
})

# --------------------------------------------------------------------------- layer sets
#: BVLC Caffe 1.0's layers usable in a deploy net (its registry, REGISTER_LAYER_CLASS /
#: REGISTER_LAYER_CREATOR at tag 1.0, without the data-source, loss, Accuracy and Python layers).
BVLC_1_0_INFERENCE_LAYERS = frozenset({
    "AbsVal", "ArgMax", "BNLL", "BatchNorm", "BatchReindex", "Bias", "Concat", "Convolution", "Crop",
    "Deconvolution", "Dropout", "DummyData", "ELU", "Eltwise", "Embed", "Exp", "Filter", "Flatten", "Im2col",
    "InnerProduct", "Input", "LRN", "LSTM", "Log", "MVN", "PReLU", "Parameter", "Pooling", "Power", "RNN", "ReLU",
    "Reduction", "Reshape", "SPP", "Scale", "Sigmoid", "Silence", "Slice", "Softmax", "Split", "TanH",
    "Threshold", "Tile",
})


# --------------------------------------------------------------------------- rules
@dataclass(frozen=True)
class Rule:
    """One restriction on a layer type's parameter, declared as data.

    ``param`` is a dotted path inside ``LayerParameter`` (``slice_param.axis``);
    the value read is the field's value, its default when unset, or a tuple for a
    repeated field.  ``measure="length"`` reads the number of entries instead.
    The value must be one of ``allowed`` (when given) and none of ``forbidden``.
    """

    name: str
    layer: str
    param: str
    reason: str
    allowed: tuple[Any, ...] | None = None
    forbidden: tuple[Any, ...] = ()
    measure: Literal["value", "length"] = "value"

    def value(self, layer: Any) -> Any:
        """The parameter's value in a LayerParameter message (None when the schema lacks it)."""
        cur = layer
        parts = self.param.split(".")
        for i, part in enumerate(parts):
            fd = cur.DESCRIPTOR.fields_by_name.get(part)
            if fd is None:
                return None
            cur = getattr(cur, part)
            if fd.is_repeated:
                if i != len(parts) - 1:
                    return None
                cur = tuple(cur)
        if self.measure == "length":
            return len(cur) if isinstance(cur, tuple) else 1
        return cur

    def explain(self, layer: Any) -> str | None:
        """None when ``layer`` (a LayerParameter) keeps the rule, else why not."""
        if layer.type != self.layer:
            return None
        v = self.value(layer)
        if v is None:
            return None
        ok = (self.allowed is None or v in self.allowed) and v not in self.forbidden
        if ok:
            return None
        what = f"number of {self.param} entries" if self.measure == "length" else self.param
        want = (f"one of {_fmt_values(self.allowed)}" if self.allowed is not None
                else f"not {_fmt_values(self.forbidden)}")
        return f"{what} is {_fmt(v)}, must be {want}: {self.reason}"

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "layer": self.layer, "param": self.param, "reason": self.reason}
        if self.allowed is not None:
            d["allowed"] = [list(a) if isinstance(a, tuple) else a for a in self.allowed]
        if self.forbidden:
            d["forbidden"] = [list(a) if isinstance(a, tuple) else a for a in self.forbidden]
        if self.measure != "value":
            d["measure"] = self.measure
        return d


def _fmt(v: Any) -> str:
    return f"({', '.join(map(str, v))})" if isinstance(v, tuple) else str(v)


def _fmt_values(vs: tuple[Any, ...] | None) -> str:
    return " | ".join(_fmt(v) for v in vs or ())


# --------------------------------------------------------------------------- profiles
@dataclass(frozen=True)
class Profile:
    """One Caffe dialect a net can be written for (see the module docstring)."""

    name: str
    title: str
    description: str
    schema: str
    layer_types: frozenset[str]
    floor_pooling: FloorPooling = "rewrite"
    native: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    rules: tuple[Rule, ...] = ()
    field_base: str | None = None
    extra_messages: tuple[str, ...] = ()
    #: leave out a Flatten(axis=1) whose only consumers are InnerProducts (they flatten a 4-D bottom
    #: themselves, in the same order): fewer non-4-D blobs for an NPU
    flatten_into_inner_product: bool = False
    #: the Caffe built by this project (brocolli-caffe 9.0.2) reads and runs its files
    runs_here: bool = True

    def __post_init__(self) -> None:
        if self.floor_pooling not in FLOOR_POOLING_STYLES:
            raise ValueError(f"profile {self.name}: floor_pooling {self.floor_pooling!r} not in {FLOOR_POOLING_STYLES}")
        unknown = set(self.native) - set(CONSTRUCTS)
        if unknown:
            raise ValueError(f"profile {self.name}: unknown constructs {sorted(unknown)}; known: {sorted(CONSTRUCTS)}")
        lacking = {lt for lt in list(self.native.values()) + [r.layer for r in self.rules]} - self.layer_types
        if lacking:
            raise ValueError(f"profile {self.name}: native layers/rules name layer types it lacks: {sorted(lacking)}")
        object.__setattr__(self, "native", MappingProxyType(dict(self.native)))

    # ---------------------------------------------------------------- queries
    def has(self, construct: str) -> bool:
        """Whether the profile writes IR construct ``construct`` natively: a :data:`CONSTRUCTS` key,
        or ``floor_pooling`` (a rounding field instead of the stock rewrite)."""
        if construct == "floor_pooling":
            return self.floor_pooling_native
        return construct in self.native

    def native_layer(self, construct: str) -> str | None:
        return self.native.get(construct)

    @property
    def floor_pooling_native(self) -> bool:
        return self.floor_pooling != "rewrite"

    def rule_violations(self, layer: Any) -> list[tuple[Rule, str]]:
        """(rule, explanation) for each rule ``layer`` (a LayerParameter) breaks."""
        out = []
        for r in self.rules:
            why = r.explain(layer)
            if why is not None:
                out.append((r, why))
        return out

    def allowed_fields(self) -> frozenset[tuple[str, str]]:
        """(message, field) pairs a file of this profile may set."""
        return _allowed_fields(self)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name, "title": self.title, "description": self.description, "schema": self.schema,
            "field_base": self.field_base, "extra_messages": list(self.extra_messages),
            "floor_pooling": self.floor_pooling, "native": dict(self.native),
            "layer_types": sorted(self.layer_types), "rules": [r.to_json() for r in self.rules],
            "flatten_into_inner_product": self.flatten_into_inner_product, "runs_here": self.runs_here,
        }


_FIELDS_CACHE: dict[tuple[str, str | None, tuple[str, ...]], frozenset[tuple[str, str]]] = {}


def _allowed_fields(p: Profile) -> frozenset[tuple[str, str]]:
    key = (p.schema, p.field_base, p.extra_messages)
    if key not in _FIELDS_CACHE:
        from .schema import get_schema  # noqa: PLC0415  (protobuf only when asked)

        full = get_schema(p.schema)
        base = get_schema(p.field_base or p.schema)
        out = {(m, f) for m, cls in base.messages.items() for f in cls.DESCRIPTOR.fields_by_name}
        extra = set(p.extra_messages)
        for m in extra:
            out |= {(m, f) for f in full.descriptor(m).fields_by_name}
        # the LayerParameter (or any) fields that hold an extra message
        for m, cls in full.messages.items():
            for f, fd in cls.DESCRIPTOR.fields_by_name.items():
                if fd.message_type is not None and fd.message_type.name in extra:
                    out.add((m, f))
        _FIELDS_CACHE[key] = frozenset(out)
    return _FIELDS_CACHE[key]


# --------------------------------------------------------------------------- the built-in profiles
NPU_RULES: tuple[Rule, ...] = (
    Rule("permute-order", "Permute", "permute_param.order",
         "NNIE-class mappers implement Permute only as NCHW -> NHWC (the SSD heads' use)",
         allowed=((0, 2, 3, 1),)),
    Rule("reshape-4d", "Reshape", "reshape_param.shape.dim",
         "the NPU holds every blob as N x C x H x W; Reshape must name all four dims",
         allowed=(4,), measure="length"),
    Rule("slice-batch-axis", "Slice", "slice_param.axis",
         "the batch axis is the NPU's frame loop, not a tensor axis: it cannot be sliced",
         forbidden=(0,)),
    Rule("concat-batch-axis", "Concat", "concat_param.axis",
         "the batch axis is the NPU's frame loop, not a tensor axis: it cannot be concatenated",
         forbidden=(0,)),
)

BUILTIN_PROFILES: tuple[Profile, ...] = (
    Profile("bvlc", "BVLC Caffe 1.0",
            "The 1.0 release (April 2017) that embedded toolchains were built from; floor pooling, ReLU6, "
            "clips, SiLU and asymmetric pads are written as exact compositions of stock layers.",
            schema="bvlc", layer_types=BVLC_1_0_INFERENCE_LAYERS),
    Profile("bvlc-master", "BVLC Caffe master",
            "1.0 plus master's later additions: floor pooling as round_mode: FLOOR, ReLU6/finite clips as Clip, "
            "SiLU as Swish (the fork built here reads field 13 as ceil_mode: it cannot run these files).",
            schema="bvlc-master", layer_types=BVLC_1_0_INFERENCE_LAYERS | {"Clip", "Swish"},
            floor_pooling="round_mode", native={"relu6": "Clip", "clip": "Clip", "silu": "Swish"},
            runs_here=False),
    Profile("ceil-mode", "brocolli-caffe 9.0.2 (ceil_mode fork)",
            "The fork built here: 1.0 plus ceil_mode (bool, field 13) for floor pooling and its native ReLU6, "
            "Pad and Permute layers.",
            schema="brocolli", field_base="ceil-mode",
            extra_messages=("ReLU6Parameter", "PadParameter", "PermuteParameter"),
            layer_types=BVLC_1_0_INFERENCE_LAYERS | {"ReLU6", "Pad", "Permute"},
            floor_pooling="ceil_mode", native={"relu6": "ReLU6", "pad": "Pad", "transpose": "Permute"}),
    Profile("npu", "embedded NPU (NNIE-class)",
            "Stock 1.0 inference layers plus Permute (0,2,3,1) only, Reshape to 4-D only, no Slice/Concat on "
            "the batch axis; modelled on published NNIE-class restrictions (a given chip's list may differ).",
            schema="brocolli", field_base="bvlc", extra_messages=("PermuteParameter",),
            layer_types=BVLC_1_0_INFERENCE_LAYERS | {"Permute"},
            native={"transpose": "Permute"}, rules=NPU_RULES, flatten_into_inner_product=True),
)

#: name -> profile, in listing order (the built-ins first).
PROFILES: dict[str, Profile] = {p.name: p for p in BUILTIN_PROFILES}
DEFAULT_PROFILE = "bvlc"


def register_profile(p: Profile, *, replace: bool = False) -> Profile:
    """Add a profile (e.g. one read by :func:`load_profile_file`) to :data:`PROFILES`."""
    if p.name in PROFILES and not replace and PROFILES[p.name] is not p:
        if p.name in {b.name for b in BUILTIN_PROFILES}:
            raise BackendError(f"profile '{p.name}' is built in; give your profile another name")
        raise BackendError(f"a profile named '{p.name}' is already registered")
    PROFILES[p.name] = p
    return p


def get_profile(name: str | Profile | None) -> Profile:
    """The profile called ``name`` (``None``/empty: the default, ``bvlc``)."""
    if isinstance(name, Profile):
        return name
    name = name or DEFAULT_PROFILE
    try:
        return PROFILES[name]
    except KeyError:
        raise BackendError(f"Caffe dialect '{name}' is not a known profile; choose one of "
                           + ", ".join(PROFILES) + " (or describe yours with --dialect-file)") from None


def profiles_with(construct: str, exclude: str = "") -> tuple[str, ...]:
    """Names of the profiles that write ``construct`` natively (see :meth:`Profile.has`)."""
    return tuple(p.name for p in PROFILES.values() if p.name != exclude and p.has(construct))


# --------------------------------------------------------------------------- profile files
_FILE_KEYS = {"name", "title", "description", "base", "schema", "field_base", "extra_messages", "floor_pooling",
              "native", "layer_types", "add_layer_types", "remove_layer_types", "rules", "add_rules",
              "flatten_into_inner_product", "runs_here"}


def profile_from_json(d: Mapping[str, Any], where: str = "profile") -> Profile:
    """A profile from a JSON object: ``base`` (a built-in profile) plus overrides.

    Keys: ``name`` (required), ``title``, ``description``, ``base``, ``schema``,
    ``field_base``, ``extra_messages``, ``floor_pooling``, ``native``,
    ``layer_types`` (replace) or ``add_layer_types``/``remove_layer_types``,
    ``rules`` (replace) or ``add_rules`` (each ``{name, layer, param, reason,
    allowed | forbidden, measure}``), ``flatten_into_inner_product``.
    """
    if not isinstance(d, Mapping):
        raise InputFileError(f"{where}: a profile file holds one JSON object")
    unknown = set(d) - _FILE_KEYS
    if unknown:
        raise InputFileError(f"{where}: unknown keys {sorted(unknown)}; known: {sorted(_FILE_KEYS)}")
    if not isinstance(d.get("name"), str) or not d["name"]:
        raise InputFileError(f"{where}: 'name' (a string) is required")
    base_name = d.get("base", DEFAULT_PROFILE)
    if base_name not in PROFILES:
        raise InputFileError(f"{where}: base '{base_name}' is not a known profile: {', '.join(PROFILES)}")
    base = PROFILES[base_name]
    types = set(d["layer_types"]) if "layer_types" in d else set(base.layer_types)
    types |= set(d.get("add_layer_types", ()))
    types -= set(d.get("remove_layer_types", ()))
    try:
        rules = tuple(_rule_from_json(r) for r in d["rules"]) if "rules" in d else base.rules
        rules += tuple(_rule_from_json(r) for r in d.get("add_rules", ()))
        from .schema import DIALECT_NAMES  # noqa: PLC0415
        schema = d.get("schema", base.schema)
        field_base = d.get("field_base", base.field_base)
        for s in (schema, field_base):
            if s is not None and s not in DIALECT_NAMES:
                raise ValueError(f"schema '{s}' is not one of {', '.join(DIALECT_NAMES)}")
        return Profile(
            name=d["name"], title=str(d.get("title", d["name"])), description=str(d.get("description", "")),
            schema=schema, field_base=field_base,
            extra_messages=tuple(d.get("extra_messages", base.extra_messages)),
            layer_types=frozenset(types), floor_pooling=d.get("floor_pooling", base.floor_pooling),
            native=dict(d.get("native", base.native)), rules=rules,
            flatten_into_inner_product=bool(d.get("flatten_into_inner_product", base.flatten_into_inner_product)),
            runs_here=bool(d.get("runs_here", base.runs_here)))
    except (ValueError, TypeError, KeyError) as e:
        raise InputFileError(f"{where}: {e}") from e


def _rule_from_json(r: Mapping[str, Any]) -> Rule:
    def vals(v: Any) -> tuple[Any, ...]:
        return tuple(tuple(x) if isinstance(x, list) else x for x in v)

    extra = set(r) - {"name", "layer", "param", "reason", "allowed", "forbidden", "measure"}
    if extra:
        raise ValueError(f"rule {r.get('name', '?')}: unknown keys {sorted(extra)}")
    return Rule(name=r["name"], layer=r["layer"], param=r["param"], reason=r["reason"],
                allowed=vals(r["allowed"]) if "allowed" in r else None, forbidden=vals(r.get("forbidden", ())),
                measure=r.get("measure", "value"))


def load_profile_file(path: str | os.PathLike[str]) -> Profile:
    """Read a user profile from a JSON file (see :func:`profile_from_json`) and register it."""
    try:
        text = open(path, encoding="utf-8").read()
    except OSError as e:
        raise InputFileError(f"cannot read profile file '{path}': {e.strerror or e}") from e
    try:
        d = json.loads(text)
    except ValueError as e:
        raise InputFileError(f"profile file '{path}' is not valid JSON: {e}") from e
    p = profile_from_json(d, where=f"profile file '{path}'")
    return register_profile(p, replace=p.name not in {b.name for b in BUILTIN_PROFILES})
