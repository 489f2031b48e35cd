"""Check a Caffe deploy net against a dialect profile, and say who would accept it.

``lint(prototxt, profile)`` reads any V2 prototxt (``layer { ... }``): it is
parsed with the profile's schema, else with the first schema of
:mod:`.schema` that accepts it (field names are unambiguous in text: the
fork's ``ceil_mode`` and BVLC master's ``round_mode`` are both field 13 but
read apart here), then each layer is checked for

* a layer type the profile lacks (``layer-type``),
* fields outside the profile's fields (``field``; e.g. ``ceil_mode`` under
  ``bvlc``),
* the profile's parameter rules (their own names, e.g. ``permute-order``).

Every :class:`Violation` names the layer and lists the other profiles under
which that layer has no violation at all.  The Caffe backend runs the same
checks on every net it writes (:func:`lint_net`), so a file outside its
profile is never produced.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Union

from google.protobuf.message import Message

from xconv.errors import InputFileError

from .dialects import PROFILES, Profile, get_profile
from .schema import DIALECT_NAMES, CaffeSchemaError, parse_prototxt

Source = Union[str, "os.PathLike[str]", Message]


@dataclass(frozen=True)
class Violation:
    layer: str            # layer name ("(net)" for net-level fields, "(file)" when nothing parses)
    layer_type: str
    rule: str             # "layer-type", "field", "schema", "v1-format" or a profile rule's name
    explanation: str
    accepted_by: tuple[str, ...] = ()

    def line(self) -> str:
        acc = ", ".join(self.accepted_by) or "-"
        return f"{self.layer}\t{self.layer_type}\t{self.rule}\t{acc}\t{self.explanation}"


# --------------------------------------------------------------------------- per layer
def _fields_outside(msg: Message, allowed: frozenset[tuple[str, str]], path: str = "",
                    skip: tuple[str, ...] = ()) -> Iterator[str]:
    """Dotted paths of set fields whose (message, field) is not allowed (outermost only)."""
    mname = msg.DESCRIPTOR.name
    for fd, value in msg.ListFields():
        if fd.name in skip:
            continue
        here = f"{path}{fd.name}"
        if (mname, fd.name) not in allowed:
            yield here
            continue
        if fd.message_type is None:
            continue
        for sub in (value if fd.is_repeated else [value]):
            yield from _fields_outside(sub, allowed, here + ".")


def layer_problems(layer: Message, profile: Profile) -> list[tuple[str, str]]:
    """(rule, explanation) for everything in ``layer`` (a V2 LayerParameter) outside ``profile``."""
    out: list[tuple[str, str]] = []
    type_ok = layer.type in profile.layer_types
    if not type_ok:
        known = any(layer.type in p.layer_types for p in PROFILES.values())
        out.append(("layer-type", f"layer type '{layer.type}' is not in {profile.title} ('{profile.name}')"
                    + ("" if known else "; no profile xconv knows has it")))
    for path in _fields_outside(layer, profile.allowed_fields()):
        if not type_ok and "." not in path and path.endswith("_param"):
            continue  # the missing layer type's own parameters: one violation for one cause
        out.append(("field", f"field '{path}' is not in {profile.title} ('{profile.name}')"))
    for rule, why in profile.rule_violations(layer):
        out.append((rule.name, why))
    return out


def accepting(layer: Message, profile: Profile) -> tuple[str, ...]:
    """The other profiles under which ``layer`` has no problem at all."""
    return tuple(p.name for p in PROFILES.values() if p.name != profile.name and not layer_problems(layer, p))


# --------------------------------------------------------------------------- nets
def lint_net(net: Message, profile: Profile | str) -> list[Violation]:
    """Violations of a parsed NetParameter (of any schema dialect) against ``profile``."""
    prof = get_profile(profile)
    out: list[Violation] = []
    if len(net.layers):
        out.append(Violation("(net)", "", "v1-format",
                             f"{len(net.layers)} V1 'layers' entries: profiles describe V2 'layer' nets; upgrade the "
                             "file with Caffe's upgrade_net_proto_text"))
    net_fields = list(_fields_outside(net, prof.allowed_fields(), skip=("layer", "layers")))
    if net_fields:
        ok = tuple(p.name for p in PROFILES.values() if p.name != prof.name
                   and not list(_fields_outside(net, p.allowed_fields(), skip=("layer", "layers"))))
        out += [Violation("(net)", "", "field", f"field '{f}' is not in {prof.title} ('{prof.name}')", ok)
                for f in net_fields]
    for lay in net.layer:
        problems = layer_problems(lay, prof)
        if problems:
            acc = accepting(lay, prof)
            out += [Violation(lay.name, lay.type, rule, why, acc) for rule, why in problems]
    return out


def read_prototxt(source: str | os.PathLike[str]) -> str:
    """The text of a prototxt given as a path, or the text itself."""
    if isinstance(source, os.PathLike) or ("\n" not in source and "{" not in source):
        p = Path(source)
        try:
            return p.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise InputFileError(f"cannot read prototxt '{p}': {getattr(e, 'strerror', None) or e}") from e
    return source


def parse_any(text: str, prefer: str) -> tuple[Message | None, str, CaffeSchemaError | None]:
    """Parse with schema ``prefer``, else the first schema dialect that accepts the text.

    Returns (net, schema used, the error under ``prefer``); net is None when no schema parses it.
    """
    first: CaffeSchemaError | None = None
    for d in (prefer, *[d for d in DIALECT_NAMES if d != prefer]):
        try:
            return parse_prototxt(text, d), d, first
        except CaffeSchemaError as e:
            first = first or e
    return None, "", first


def lint(source: Source, profile: Profile | str) -> list[Violation]:
    """Lint a prototxt (path, text or parsed NetParameter) against ``profile``."""
    prof = get_profile(profile)
    if isinstance(source, Message):
        return lint_net(source, prof)
    net, _, err = parse_any(read_prototxt(source), prof.schema)
    if net is None:
        return [Violation("(file)", "", "schema", f"no Caffe schema xconv knows parses it: {err}")]
    return lint_net(net, prof)


def format_table(violations: list[Violation], profile: Profile | str) -> str:
    """One line per violation: layer, type, rule, the profiles that accept the layer, explanation."""
    prof = get_profile(profile)
    if not violations:
        return f"clean: no violations of profile '{prof.name}' ({prof.title})"
    head = ("LAYER", "TYPE", "RULE", "ACCEPTED BY", "EXPLANATION")
    rows = [(v.layer, v.layer_type or "-", v.rule, ", ".join(v.accepted_by) or "-", v.explanation)
            for v in violations]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(4)]

    def fmt(r: tuple[str, ...]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(r[:4], widths)) + "  " + r[4]

    layers = len({v.layer for v in violations})
    return "\n".join([fmt(head), *map(fmt, rows),
                      f"{len(violations)} violation(s) in {layers} layer(s) of profile '{prof.name}' ({prof.title})"])


def report(violations: list[Violation], profile: Profile | str) -> str:
    """The violations as indented lines (for error messages)."""
    return "\n".join(f"  layer '{v.layer}' ({v.layer_type or '-'}): [{v.rule}] {v.explanation}"
                     + (f"; accepted by {', '.join(v.accepted_by)}" if v.accepted_by else "")
                     for v in violations)


__all__ = ["Violation", "lint", "lint_net", "layer_problems", "accepting", "format_table", "report",
           "parse_any", "read_prototxt"]
