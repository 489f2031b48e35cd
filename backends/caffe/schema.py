"""xconv's own protobuf schema for Caffe files, one per Caffe dialect.

Design
------
Caffe has no single schema: BVLC tagged 1.0 in April 2017 and kept adding to
master, and forks reuse field numbers for different things (most notably
``PoolingParameter`` field 13: ``round_mode`` enum in BVLC master, ``ceil_mode``
bool in the forks).  A ``.caffemodel`` carries no schema, so reading or writing
one means choosing a dialect explicitly.

This module ships no ``.proto`` text, runs no protoc and uses no generated
``_pb2`` code.  The facts (message, field, number, label, type, default,
``packed``, enum values) live in ``_TABLE`` (:mod:`.schema_table`), a compact line format of our
own in which every message, enum and field is tagged with the dialects that
have it, so the four dialects share one definition.  At import of a dialect
(:func:`get_schema`, cached) the table is turned into a
``descriptor_pb2.FileDescriptorProto`` with package ``xconv_caffe_<dialect>``
(never ``caffe``: that is pycaffe's package in the default pool), added to a
private ``descriptor_pool.DescriptorPool`` and the message classes are made by
``message_factory.GetMessageClass``.  Semantics are proto2 throughout.

Provenance of the facts
-----------------------
* ``bvlc``: BVLC ``src/caffe/proto/caffe.proto`` at tag 1.0 (PR #5539,
  2017-04-15).  Established as BVLC's final master descriptor minus the four
  post-1.0 additions (Swish layer PR #6002, Clip layer, pooling ``round_mode``
  PR #6282 (2018), ``SolverParameter.weights``), and checked against an
  independent 2017 BVLC-derived descriptor that lacks exactly those four
  (the descriptors shipped in PyPI caffe-onnx 0.1.2 and mmdnn 0.3.1).  It
  agrees with 1.0's own bookkeeping comments (next LayerParameter ID 147,
  last added recurrent_param; next SolverParameter ID 42, last added
  layer_wise_reduce).  ``InfogainLossParameter.axis`` is in 1.0 (PR #3855,
  merged 2017-04-14, the day before the 1.0 PR #5539).
* ``bvlc-master``: 1.0 plus those four additions.
* ``ceil-mode``: 1.0 plus ``PoolingParameter.ceil_mode = 13`` (bool, default
  true) exactly as the brocolli-caffe 9.0.2 fork declares it, nothing else.
* ``brocolli``: the complete caffe.proto of PyPI brocolli-caffe 9.0.2 (an
  SSD-derived fork plus its own layers).  Where it disagrees with 1.0 on a
  shared field the table carries both variants (``ConvolutionParameter``
  ``stride_h``/``stride_w`` default 1 in the fork only; ``SolverParameter``
  field 41 is ``layer_wise_reduce`` in BVLC but ``eval_type`` in the fork;
  the fork has no ``InfogainLossParameter.axis``).

Table format (``_TABLE``)
-------------------------
``message NAME [@TAGS]`` opens a message; inside it ``enum NAME [@TAGS]:
A=0 B=1 ...`` (values may continue on following, deeper-indented lines) and
field lines ``NUMBER LABEL NAME TYPE [=DEFAULT] [packed] [@TAGS]`` with
LABEL one of ``opt``/``rep``/``req``, TYPE a scalar type, a message or enum
name (resolved in the enclosing message first, then at file level; a dotted
``Msg.Enum`` names another message's enum), DEFAULT in protobuf's text form
(string defaults quoted).  A top-level ``enum`` line outside any message is a
file-level enum.  TAGS joins atoms with ``+``: ``1.0`` = bvlc, bvlc-master and
ceil-mode; ``master`` = bvlc-master; ``ceil`` = ceil-mode; ``fork`` =
brocolli.  No tag means every dialect.  ``#`` starts a comment line.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, NamedTuple

from google.protobuf import (
    descriptor_pb2,
    descriptor_pool,
    message_factory,
    text_format,
)
from google.protobuf.descriptor import Descriptor, FileDescriptor
from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper
from google.protobuf.message import DecodeError, EncodeError, Message

__all__ = [
    "DIALECTS",
    "DIALECT_NAMES",
    "CaffeSchema",
    "CaffeSchemaError",
    "Dialect",
    "build_file_descriptor",
    "get_schema",
    "package_for",
    "parse_caffemodel",
    "parse_prototxt",
    "to_caffemodel",
    "to_prototxt",
    "unknown_fields",
]


class Dialect(NamedTuple):
    """One Caffe schema variant: its name, a short title and a one-line description."""

    name: str
    title: str
    description: str


DIALECTS: tuple[Dialect, ...] = (
    Dialect("bvlc", "BVLC Caffe 1.0",
            "BVLC Caffe caffe.proto at the 1.0 release tag (April 2017)."),
    Dialect("bvlc-master", "BVLC Caffe master",
            "BVLC 1.0 plus master's later additions: PoolingParameter.round_mode, "
            "Swish and Clip layers, SolverParameter.weights."),
    Dialect("ceil-mode", "BVLC Caffe 1.0 + ceil_mode",
            "BVLC 1.0 plus PoolingParameter.ceil_mode (bool, field 13, default true) "
            "as the brocolli-caffe fork defines it."),
    Dialect("brocolli", "brocolli-caffe 9.0.2",
            "The complete schema of the brocolli-caffe 9.0.2 fork (SSD-derived, "
            "with its extra layers)."),
)
DIALECT_NAMES: tuple[str, ...] = tuple(d.name for d in DIALECTS)
_BY_NAME: dict[str, Dialect] = {d.name: d for d in DIALECTS}

_TAG_ATOMS: dict[str, frozenset[str]] = {
    "1.0": frozenset({"bvlc", "bvlc-master", "ceil-mode"}),
    "master": frozenset({"bvlc-master"}),
    "ceil": frozenset({"ceil-mode"}),
    "fork": frozenset({"brocolli"}),
}
_EVERY = frozenset(DIALECT_NAMES)

# Field-name hints added to error messages: the same setting spelled
# differently by different dialects (and sharing field number 13 on the wire).
_HINTS: dict[tuple[str, str], str] = {
    ("PoolingParameter", "ceil_mode"):
        "BVLC master spells this setting 'round_mode: CEIL|FLOOR' (dialect 'bvlc-master')",
    ("PoolingParameter", "round_mode"):
        "the forks spell this setting 'ceil_mode: true|false' (dialects 'ceil-mode', 'brocolli')",
}

# fmt: off
from .schema_table import _TABLE  # noqa: E402  (the data: ~900 lines of field facts)

# fmt: on


class CaffeSchemaError(ValueError):
    """A Caffe file does not fit the chosen dialect (or the table is inconsistent).

    ``dialect``, ``message_type`` and ``field`` are set when known; ``line`` and
    ``column`` for prototxt errors; ``dialects_with_field`` lists the other
    dialects that do have the offending field.
    """

    def __init__(
        self,
        text: str,
        *,
        dialect: str | None = None,
        message_type: str | None = None,
        field: str | None = None,
        line: int | None = None,
        column: int | None = None,
        dialects_with_field: tuple[str, ...] = (),
    ) -> None:
        super().__init__(text)
        self.dialect = dialect
        self.message_type = message_type
        self.field = field
        self.line = line
        self.column = column
        self.dialects_with_field = dialects_with_field


# ---------------------------------------------------------------------------
# The table, parsed into dataclasses


@dataclass(frozen=True)
class EnumSpec:
    name: str
    values: tuple[tuple[str, int], ...]
    dialects: frozenset[str]


@dataclass(frozen=True)
class FieldSpec:
    number: int
    label: str  # "opt" | "rep" | "req"
    name: str
    type: str
    default: str | None
    packed: bool
    dialects: frozenset[str]


@dataclass(frozen=True)
class MessageSpec:
    name: str
    enums: tuple[EnumSpec, ...]
    fields: tuple[FieldSpec, ...]
    dialects: frozenset[str]


@dataclass(frozen=True)
class SchemaTable:
    enums: tuple[EnumSpec, ...]
    messages: tuple[MessageSpec, ...]


_F = descriptor_pb2.FieldDescriptorProto
_SCALARS: dict[str, int] = {
    "double": _F.TYPE_DOUBLE, "float": _F.TYPE_FLOAT, "int64": _F.TYPE_INT64,
    "uint64": _F.TYPE_UINT64, "int32": _F.TYPE_INT32, "fixed64": _F.TYPE_FIXED64,
    "fixed32": _F.TYPE_FIXED32, "bool": _F.TYPE_BOOL, "string": _F.TYPE_STRING,
    "bytes": _F.TYPE_BYTES, "uint32": _F.TYPE_UINT32, "sfixed32": _F.TYPE_SFIXED32,
    "sfixed64": _F.TYPE_SFIXED64, "sint32": _F.TYPE_SINT32, "sint64": _F.TYPE_SINT64,
}
_LABELS: dict[str, int] = {"opt": _F.LABEL_OPTIONAL, "rep": _F.LABEL_REPEATED, "req": _F.LABEL_REQUIRED}
_VALUE = re.compile(r"^([A-Za-z_]\w*)=(-?\d+)$")


def _tags(token: str | None, where: str) -> frozenset[str]:
    if token is None:
        return _EVERY
    out: set[str] = set()
    for atom in token[1:].split("+"):
        if atom not in _TAG_ATOMS:
            raise CaffeSchemaError(f"schema table: unknown tag {atom!r} at {where}")
        out |= _TAG_ATOMS[atom]
    return frozenset(out)


def _split_tag(words: list[str]) -> tuple[list[str], str | None]:
    if words and words[-1].startswith("@"):
        return words[:-1], words[-1]
    return words, None


def _parse_values(tokens: list[str], where: str) -> list[tuple[str, int]]:
    out = []
    for tok in tokens:
        m = _VALUE.match(tok)
        if not m:
            raise CaffeSchemaError(f"schema table: bad enum value {tok!r} at {where}")
        out.append((m.group(1), int(m.group(2))))
    return out


def _parse_table(text: str) -> SchemaTable:
    top_enums: list[EnumSpec] = []
    messages: list[MessageSpec] = []
    cur: dict[str, Any] | None = None  # message being built
    pending: dict[str, Any] | None = None  # enum being built

    def close_enum() -> None:
        nonlocal pending
        if pending is not None:
            spec = EnumSpec(pending["name"], tuple(pending["values"]), pending["dialects"])
            (cur["enums"] if pending["nested"] else top_enums).append(spec)  # type: ignore[index]
            pending = None

    def close_message() -> None:
        nonlocal cur
        close_enum()
        if cur is not None:
            messages.append(MessageSpec(cur["name"], tuple(cur["enums"]), tuple(cur["fields"]),
                                        cur["dialects"]))
            cur = None

    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.rstrip()
        where = f"table line {lineno}"
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        indent = len(line) - len(line.lstrip())
        words = line.split()
        if indent >= 4 and pending is not None:  # enum continuation
            pending["values"].extend(_parse_values(words, where))
            continue
        close_enum()
        if words[0] == "message":
            close_message()
            rest, tag = _split_tag(words[1:])
            cur = {"name": rest[0], "enums": [], "fields": [], "dialects": _tags(tag, where)}
        elif words[0] == "enum":
            head, _, vals = line.strip()[5:].partition(":")
            hw, tag = _split_tag(head.split())
            if indent == 0:
                close_message()
            pending = {"name": hw[0], "values": _parse_values(vals.split(), where),
                       "dialects": _tags(tag, where), "nested": indent > 0}
        else:
            if cur is None:
                raise CaffeSchemaError(f"schema table: field outside a message at {where}")
            rest, tag = _split_tag(words)
            number, label, name, ftype, *extra = rest
            default = None
            packed = False
            for item in extra:
                if item == "packed":
                    packed = True
                elif item.startswith("="):
                    default = item[1:]
                else:
                    raise CaffeSchemaError(f"schema table: bad field option {item!r} at {where}")
            if label not in _LABELS:
                raise CaffeSchemaError(f"schema table: bad label {label!r} at {where}")
            cur["fields"].append(FieldSpec(int(number), label, name, ftype, default, packed,
                                           _tags(tag, where)))
    close_message()
    return SchemaTable(tuple(top_enums), tuple(messages))


# ---------------------------------------------------------------------------
# Building one dialect's FileDescriptorProto


def package_for(dialect: str) -> str:
    """The protobuf package of a dialect's descriptors, e.g. ``xconv_caffe_bvlc_master``."""
    return "xconv_caffe_" + dialect.replace("-", "_")


def _enum_proto(spec: EnumSpec, out: descriptor_pb2.EnumDescriptorProto) -> None:
    out.name = spec.name
    for vname, number in spec.values:
        out.value.add(name=vname, number=number)


def build_file_descriptor(dialect: str) -> descriptor_pb2.FileDescriptorProto:
    """The FileDescriptorProto of ``dialect``, built from the table."""
    if dialect not in _BY_NAME:
        raise _unknown_dialect(dialect)
    pkg = package_for(dialect)
    table = _table()
    messages = [m for m in table.messages if dialect in m.dialects]
    top_enums = {e.name for e in table.enums if dialect in e.dialects}
    nested: dict[str, set[str]] = {
        m.name: {e.name for e in m.enums if dialect in e.dialects} for m in messages
    }
    names = {m.name for m in messages}

    def resolve(owner: str, tname: str) -> tuple[int, str]:
        if tname in nested[owner]:
            return _F.TYPE_ENUM, f".{pkg}.{owner}.{tname}"
        if "." in tname:
            outer, inner = tname.split(".", 1)
            if inner in nested.get(outer, ()):
                return _F.TYPE_ENUM, f".{pkg}.{tname}"
        elif tname in names:
            return _F.TYPE_MESSAGE, f".{pkg}.{tname}"
        elif tname in top_enums:
            return _F.TYPE_ENUM, f".{pkg}.{tname}"
        raise CaffeSchemaError(
            f"schema table: type {tname!r} of {owner} is not defined in dialect {dialect!r}")

    fdp = descriptor_pb2.FileDescriptorProto(
        name=f"xconv/caffe/{pkg}.proto", package=pkg, syntax="proto2")
    for e in table.enums:
        if dialect in e.dialects:
            _enum_proto(e, fdp.enum_type.add())
    for m in messages:
        mp = fdp.message_type.add(name=m.name)
        for e in m.enums:
            if dialect in e.dialects:
                _enum_proto(e, mp.enum_type.add())
        seen_names: set[str] = set()
        seen_numbers: set[int] = set()
        for f in m.fields:
            if dialect not in f.dialects:
                continue
            if f.name in seen_names or f.number in seen_numbers:
                raise CaffeSchemaError(
                    f"schema table: {m.name}.{f.name} = {f.number} clashes in dialect {dialect!r}")
            seen_names.add(f.name)
            seen_numbers.add(f.number)
            fp = mp.field.add(name=f.name, number=f.number, label=_LABELS[f.label])
            if f.type in _SCALARS:
                fp.type = _SCALARS[f.type]  # type: ignore[assignment]
            else:
                kind, full = resolve(m.name, f.type)
                fp.type = kind  # type: ignore[assignment]
                fp.type_name = full
            if f.default is not None:
                d = f.default
                if fp.type == _F.TYPE_STRING:
                    if not (len(d) >= 2 and d[0] == d[-1] == '"'):
                        raise CaffeSchemaError(f"schema table: unquoted string default of {m.name}.{f.name}")
                    d = d[1:-1]
                fp.default_value = d
            if f.packed:
                fp.options.packed = True
    return fdp


@functools.cache
def _table() -> SchemaTable:
    return _parse_table(_TABLE)


# ---------------------------------------------------------------------------
# Schemas


@dataclass(frozen=True, eq=False)
class CaffeSchema:
    """One dialect's message classes (``s.NetParameter``, ``s.PoolingParameter`` ...).

    Every message of the dialect is an attribute, and so are file-level enums
    (``s.Phase``) and their values (``s.TRAIN``, ``s.TEST``), like a ``caffe_pb2``
    module.  ``pool`` is the dialect's private DescriptorPool.
    """

    name: str
    title: str
    description: str
    package: str
    pool: descriptor_pool.DescriptorPool
    file: FileDescriptor
    messages: Mapping[str, type[Message]]
    enums: Mapping[str, EnumTypeWrapper]
    enum_values: Mapping[str, int]

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(attr)
        for table in ("messages", "enums", "enum_values"):
            found = self.__dict__.get(table, {})
            if attr in found:
                return found[attr]
        raise AttributeError(f"dialect {self.__dict__.get('name')!r} has no message or enum {attr!r}")

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | set(self.messages) | set(self.enums) | set(self.enum_values))

    def __repr__(self) -> str:
        return f"<CaffeSchema {self.name!r} ({self.title}), {len(self.messages)} messages>"

    def descriptor(self, message: str) -> Descriptor:
        """The Descriptor of a top-level message of this dialect."""
        return self.messages[message].DESCRIPTOR

    def has_field(self, message: str, field: str) -> bool:
        """Whether ``message`` exists in this dialect and has a field named ``field``."""
        cls = self.messages.get(message)
        return cls is not None and field in cls.DESCRIPTOR.fields_by_name


def _unknown_dialect(name: object) -> CaffeSchemaError:
    return CaffeSchemaError(
        f"unknown Caffe dialect {name!r}; known dialects: "
        + ", ".join(f"{d.name!r} ({d.title})" for d in DIALECTS),
        dialect=str(name))


@functools.cache
def _build_schema(name: str) -> CaffeSchema:
    info = _BY_NAME[name]
    fdp = build_file_descriptor(name)
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(fdp.SerializeToString())
    fd = pool.FindFileByName(fdp.name)
    messages = {m: message_factory.GetMessageClass(fd.message_types_by_name[m])
                for m in fd.message_types_by_name}
    enums = {e: EnumTypeWrapper(fd.enum_types_by_name[e]) for e in fd.enum_types_by_name}
    values = {v.name: v.number for e in fd.enum_types_by_name.values() for v in e.values}
    return CaffeSchema(name=name, title=info.title, description=info.description,
                       package=fdp.package, pool=pool, file=fd,
                       messages=MappingProxyType(messages), enums=MappingProxyType(enums),
                       enum_values=MappingProxyType(values))


def get_schema(name: str) -> CaffeSchema:
    """The (cached) schema of dialect ``name``, one of :data:`DIALECT_NAMES`."""
    if not isinstance(name, str) or name not in _BY_NAME:
        raise _unknown_dialect(name)
    return _build_schema(name)


# ---------------------------------------------------------------------------
# Reading and writing

_NO_FIELD = re.compile(r'Message type "([\w.]+)" has no field named "([^"]+)"')
_NO_VALUE = re.compile(r'Enum type "([\w.]+)" has no value named ([^\s.]+)')
_LINE_COL = re.compile(r"^(\d+):(\d+)\s*:\s*")


def _short(full_name: str, schema: CaffeSchema) -> str:
    prefix = schema.package + "."
    return full_name.removeprefix(prefix)


def _dialects_with(message: str, field: str, exclude: str) -> tuple[str, ...]:
    out = []
    for d in DIALECT_NAMES:
        if d == exclude:
            continue
        cls: Any = get_schema(d).messages.get(message.split(".")[0])
        desc = cls.DESCRIPTOR if cls is not None else None
        for part in message.split(".")[1:]:  # nested message names (none in Caffe today)
            desc = desc.nested_types_by_name.get(part) if desc is not None else None
        if desc is not None and field in desc.fields_by_name:
            out.append(d)
    return tuple(out)


def _explain_parse_error(err: text_format.ParseError, schema: CaffeSchema, what: str) -> CaffeSchemaError:
    msg = str(err)
    line, column = err.GetLine(), err.GetColumn()
    m = _LINE_COL.match(msg)
    if m:
        msg = msg[m.end():]
    where = f" [{what} line {line}, column {column}]" if line is not None else ""
    mf = _NO_FIELD.search(msg)
    if mf:
        mtype, field = _short(mf.group(1), schema), mf.group(2)
        others = _dialects_with(mtype, field, schema.name)
        text = (f"{what} uses field '{field}' of {mtype}, which dialect '{schema.name}' "
                f"({schema.title}) does not have")
        if len(others) == 1:
            text += f"; use dialect '{others[0]}', which has it"
        elif others:
            text += "; use dialect " + " or ".join(f"'{d}'" for d in others) + ", which have it"
        else:
            text += "; no dialect known to xconv has it"
        hint = _HINTS.get((mtype, field))
        if hint:
            text += f"; {hint}"
        return CaffeSchemaError(text + where, dialect=schema.name, message_type=mtype, field=field,
                                line=line, column=column, dialects_with_field=others)
    mv = _NO_VALUE.search(msg)
    if mv:
        etype, value = _short(mv.group(1), schema), mv.group(2).strip('"')
        text = (f"{what} uses value '{value}' of enum {etype}, which dialect '{schema.name}' "
                f"({schema.title}) does not have")
        return CaffeSchemaError(text + where, dialect=schema.name, message_type=etype, field=value,
                                line=line, column=column)
    return CaffeSchemaError(f"{what} is not valid under dialect '{schema.name}' ({schema.title}): "
                            f"{msg}{where}", dialect=schema.name, line=line, column=column)


def _new_message(schema: CaffeSchema, message: str) -> Message:
    cls = schema.messages.get(message)
    if cls is None:
        raise CaffeSchemaError(f"dialect '{schema.name}' ({schema.title}) has no message {message!r}",
                               dialect=schema.name, message_type=message)
    return cls()


def _check_initialized(msg: Message, schema: CaffeSchema, what: str) -> None:
    if not msg.IsInitialized():
        missing = msg.FindInitializationErrors()
        raise CaffeSchemaError(
            f"{what} lacks required field(s) {', '.join(missing)} under dialect "
            f"'{schema.name}' ({schema.title})",
            dialect=schema.name, message_type=msg.DESCRIPTOR.name,
            field=missing[0] if missing else None)


def parse_prototxt(text: str, dialect: str, message: str = "NetParameter") -> Message:
    """Parse Caffe text format (a .prototxt) as ``message`` of ``dialect``.

    Strict like Caffe's own reader: unknown fields, unknown enum values, a
    non-repeated field given twice and missing required fields are errors,
    reported as :class:`CaffeSchemaError` naming the dialect and the field.
    """
    schema = get_schema(dialect)
    msg = _new_message(schema, message)
    what = "prototxt"
    try:
        text_format.Parse(text, msg)
    except text_format.ParseError as err:
        raise _explain_parse_error(err, schema, what) from err
    _check_initialized(msg, schema, what)
    return msg


def parse_caffemodel(data: bytes, dialect: str, message: str = "NetParameter",
                     *, strict: bool = False) -> Message:
    """Parse binary protobuf (a .caffemodel, or a .binaryproto with ``message="BlobProto"``).

    Binary data carries field numbers only, so bytes written under another
    dialect parse silently whenever numbers and wire types agree (e.g. BVLC
    master's ``round_mode: FLOOR`` reads as the fork's ``ceil_mode: true``).
    Fields the dialect does not know are kept as unknown fields; with
    ``strict=True`` they are an error (see :func:`unknown_fields`).
    """
    schema = get_schema(dialect)
    msg = _new_message(schema, message)
    try:
        msg.ParseFromString(bytes(data))
    except DecodeError as err:
        raise CaffeSchemaError(
            f"binary data is not a valid {message} under dialect '{schema.name}' "
            f"({schema.title}): {err}", dialect=schema.name, message_type=message) from err
    _check_initialized(msg, schema, "binary data")
    if strict:
        unknown = unknown_fields(msg)
        if unknown:
            raise CaffeSchemaError(
                f"binary data has field(s) that dialect '{schema.name}' ({schema.title}) "
                f"does not know: {', '.join(unknown[:10])}"
                + (f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""),
                dialect=schema.name, message_type=message)
    return msg


def unknown_fields(msg: Message) -> list[str]:
    """Paths of the fields the schema did not recognise, e.g. ``layer[3].#147``."""
    from google.protobuf import unknown_fields as _uf

    out: list[str] = []

    def walk(m: Message, path: str) -> None:
        for item in _uf.UnknownFieldSet(m):
            out.append(f"{path}#{item.field_number}")
        for fd, value in m.ListFields():
            if fd.message_type is None:
                continue
            if fd.is_repeated:
                for i, sub in enumerate(value):
                    walk(sub, f"{path}{fd.name}[{i}].")
            else:
                walk(value, f"{path}{fd.name}.")

    walk(msg, "")
    return out


def to_prototxt(msg: Message) -> str:
    """Caffe text format of ``msg``; float fields print in the shortest form
    that reads back to the same float32 (protobuf's default), so text
    round-trips are exact."""
    return text_format.MessageToString(msg)


def to_caffemodel(msg: Message) -> bytes:
    """Binary protobuf of ``msg`` (raises CaffeSchemaError if required fields are unset)."""
    try:
        return msg.SerializeToString()
    except EncodeError as err:
        raise CaffeSchemaError(f"cannot serialise {msg.DESCRIPTOR.name}: {err}",
                               message_type=msg.DESCRIPTOR.name) from err
