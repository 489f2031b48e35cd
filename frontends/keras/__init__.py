"""``--from keras``: Keras 2 ``.h5``, Keras 3 ``.h5`` and ``.keras`` models -> IR.

Reading and converting never imports Keras or TensorFlow: the config and the
weights are parsed directly (:mod:`.reader`), so old files convert even
where Keras 3 itself refuses them.  :func:`make_runner` (the source side of
``xconv verify``) does run the model in Keras: tf_keras for Keras 2 files,
Keras 3 for Keras 3 files.
"""
from __future__ import annotations

import logging
import os
from typing import Any, Callable, Sequence

import numpy as np

from xconv.errors import XconvError
from xconv.ir import Graph

from .graph import HANDLERS, KT, Ctx, register_layer
from .reader import KerasFile, LayerSpec, ModelSpec, open_keras

__all__ = ["load", "make_runner", "register_layer", "open_keras", "Ctx", "KT", "LayerSpec", "ModelSpec",
           "HANDLERS", "KerasFile"]
log = logging.getLogger(__name__)


def load(source: Any, *, input_shape: Sequence[int] | None = None, name: str | None = None,
         **ignored: Any) -> Graph:
    """A Keras model file (``.h5`` or ``.keras``) -> validated IR graph (NCHW)."""
    from .graph import convert_file  # noqa: PLC0415
    if ignored:
        log.debug("keras load ignores %s", sorted(ignored))
    if isinstance(source, KerasFile):
        return convert_file(source, input_shape=input_shape, name=name)
    with open_keras(source) as kf:
        return convert_file(kf, input_shape=input_shape, name=name)


def _custom_objects(lib: str) -> dict[str, Any]:
    """Classes that keras.applications defines itself (loading needs them by name)."""
    import importlib  # noqa: PLC0415
    mod = {"tf_keras": "tf_keras.src.applications.inception_resnet_v2",
           "keras": "keras.src.applications.inception_resnet_v2"}[lib]
    try:
        return {"CustomScaleLayer": importlib.import_module(mod).CustomScaleLayer}
    except (ImportError, AttributeError):
        return {}


def make_runner(source: Any, *, input_shape: Sequence[int] | None = None, device: str | None = None,
                **ignored: Any) -> Callable[[np.ndarray], np.ndarray]:
    """Run the file in Keras: NCHW float32 -> the first output (4-D outputs back in NCHW).

    Keras 2 files (``keras_version`` 2.x) load in tf_keras, Keras 3 files in
    Keras 3.  The file's layers are checked first, so a Lambda layer or an
    unknown custom class is refused before Keras could deserialise it.
    """
    from .graph import check_layers  # noqa: PLC0415
    from . import layers  # noqa: F401,PLC0415

    path = os.fspath(source)
    with open_keras(path) as kf:
        check_layers(kf.model)
        major = kf.major
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if major < 3:
        try:
            import tf_keras as lib  # noqa: PLC0415
        except ImportError as e:
            raise XconvError("keras: running a Keras 2 file needs tf_keras (`make setup`)") from e
        model = lib.models.load_model(path, compile=False, custom_objects=_custom_objects("tf_keras"))
    else:
        import keras as lib  # noqa: PLC0415
        model = lib.saving.load_model(path, compile=False, safe_mode=True, custom_objects=_custom_objects("keras"))

    def run(x: np.ndarray) -> np.ndarray:
        xk = np.ascontiguousarray(x.transpose(0, 2, 3, 1)) if x.ndim == 4 else x
        y = model(xk, training=False)
        y = y[0] if isinstance(y, (list, tuple)) else y
        y = np.asarray(y)
        return np.ascontiguousarray(y.transpose(0, 3, 1, 2)) if y.ndim == 4 else y

    return run
