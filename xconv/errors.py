"""Error hierarchy.

Every error names what went wrong, where (file, node and its source location)
and the way out.  The CLI prints ``str(err)``; the library never prints.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Iterable


class XconvError(Exception):
    """Base class of every error xconv raises on purpose."""


class UnsupportedOpError(XconvError):
    """One or more source ops have no handler.  Lists all of them at once."""

    def __init__(self, framework: str, items: Iterable[tuple[str, str]], hint: str = "") -> None:
        # items: (op, node name)
        grouped: dict[str, list[str]] = defaultdict(list)
        for op, name in items:
            grouped[op].append(name)
        self.framework = framework
        self.ops = dict(grouped)
        lines = [f"{framework}: {sum(len(v) for v in grouped.values())} node(s) use unsupported ops:"]
        for op, names in sorted(grouped.items()):
            shown = ", ".join(names[:8]) + (f", ... (+{len(names) - 8})" if len(names) > 8 else "")
            lines.append(f"  {op} x{len(names)}: {shown}")
        if hint:
            lines.append(hint)
        super().__init__("\n".join(lines))


class UnsupportedAttrError(XconvError):
    """An op is supported but one of its attribute values is not."""


class InvalidGraphError(XconvError):
    """The IR graph breaks an invariant (names, order, shapes, attrs)."""


class UnsafeInputError(XconvError):
    """Loading the input would execute code from it; refused."""


class ParityError(XconvError):
    """Converted model disagrees with the source beyond tolerance."""


class BackendError(XconvError):
    """A construct has no exact form in the chosen target/dialect."""


class InputFileError(XconvError):
    """A model or data file is missing, truncated or malformed."""
