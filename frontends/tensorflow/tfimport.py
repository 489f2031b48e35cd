"""Importing TensorFlow and tf_slim on this stack (only where TensorFlow is
really needed: the generic graph path and running source models)."""
from __future__ import annotations

import importlib
import os
import sys
from typing import Any

from xconv.errors import XconvError


def import_tf() -> Any:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import tensorflow as tf  # noqa: PLC0415
    except ImportError as e:
        raise XconvError(f"this needs TensorFlow ({e}); run `make setup` or pip install 'xconv[tf]'") from e
    return tf


def import_tf_slim() -> Any:
    """tf_slim 1.1.0 on TF 2.21: its layers import ``tf_keras.legacy_tf_layers``, which tf_keras
    ships as ``tf_keras.src.legacy_tf_layers``; alias it before the import."""
    import_tf()
    if "tf_keras.legacy_tf_layers" not in sys.modules:
        try:
            legacy = importlib.import_module("tf_keras.src.legacy_tf_layers")
        except ImportError as e:
            raise XconvError(f"tf_slim needs tf_keras ({e}); run `make setup`") from e
        sys.modules["tf_keras.legacy_tf_layers"] = legacy
        for sub in ("base", "core", "convolutional", "normalization", "pooling", "variable_scope_shim"):
            try:
                sys.modules[f"tf_keras.legacy_tf_layers.{sub}"] = importlib.import_module(
                    f"tf_keras.src.legacy_tf_layers.{sub}")
            except ImportError:
                pass
    try:
        import tf_slim  # noqa: PLC0415
    except ImportError as e:
        raise XconvError(f"this needs tf_slim ({e}); run `make setup`") from e
    return tf_slim
