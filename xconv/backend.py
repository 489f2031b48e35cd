"""The backend protocol and registry.

A backend turns a legalised IR graph into file contents; it never touches the
file system (``xconv.convert`` writes atomically).  Each backend declares the
passes that make a graph legal for it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence, Union

from .ir import Graph


@dataclass
class EmitOptions:
    dialect: str = ""          # Caffe dialect profile ("bvlc", "bvlc-master", "ceil-mode", "npu"); ignored by ONNX
    opset: int = 13            # ONNX opset
    extra: dict[str, Any] = field(default_factory=dict)


#: File content: bytes, or a sequence of chunks written one after another (so
#: weights can be streamed from their arrays without a joined copy).
Content = Union[bytes, Sequence[Union[bytes, memoryview]]]


class Backend(Protocol):
    """A target.  Optionally also ``native(opts, construct) -> bool`` and
    ``dialects_with(opts, construct) -> tuple[str, ...]``: what the target's
    dialect writes natively, asked by passes through
    :meth:`xconv.passes.PassContext.native` (the Caffe backend's profiles)."""

    name: str

    def passes(self, opts: EmitOptions) -> list[str]:
        """Names of passes (registered in xconv.passes) to run, in order."""

    def check(self, graph: Graph, opts: EmitOptions) -> None:
        """Raise BackendError/UnsupportedOpError listing everything it cannot emit."""

    def emit(self, graph: Graph, name: str, opts: EmitOptions) -> dict[str, Content]:
        """Return {file name: content} for the model called ``name``."""


BACKENDS: dict[str, Backend] = {}


def register_backend(b: Backend) -> Backend:
    BACKENDS[b.name] = b
    return b


def get_backend(name: str) -> Backend:
    if not BACKENDS:
        from . import backends  # noqa: F401  (registers the built-in backends)
    try:
        return BACKENDS[name]
    except KeyError:
        from .errors import XconvError
        raise XconvError(f"unknown target '{name}'; known: {sorted(BACKENDS)}") from None


def as_bytes(content: Content) -> bytes:
    """Join chunked content (tests and small files; writers stream the chunks instead)."""
    if isinstance(content, (bytes, bytearray)):
        return bytes(content)
    if isinstance(content, memoryview):
        return content.tobytes()
    return b"".join(bytes(c) for c in content)
