"""xconv: a model-conversion compiler between deep-learning frameworks.

Frontends parse source models into one typed IR (:mod:`xconv.ir`), passes
(:mod:`xconv.passes`) rewrite it into exact target-legal forms, backends emit
Caffe or ONNX, and :mod:`xconv.verify` proves parity against the source
framework.
"""
from __future__ import annotations

__version__ = "0.1.0"
