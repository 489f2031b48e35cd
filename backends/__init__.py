"""Backends: importing this package registers every built-in backend."""
from __future__ import annotations

from . import caffe, onnx  # noqa: F401
