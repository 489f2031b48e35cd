"""``--from tf-slim``: a TF-slim checkpoint (V1 file or V2 bundle, no meta
graph needed) -> IR, through the architecture builders of
:mod:`xconv.frontends.tensorflow.slim`.  Reading the checkpoint and building
the IR never imports TensorFlow.

:func:`make_runner` is the source-framework side of ``xconv verify``: it
builds the architecture with tf_slim's own definition and restores the
checkpoint into it, for the architectures tf_slim ships.
"""
from __future__ import annotations

import logging
import os
from typing import Any, Callable

import numpy as np

from xconv.errors import XconvError
from xconv.ir import Graph

log = logging.getLogger(__name__)


def _open(source: Any):
    from .checkpoint import Checkpoint  # noqa: PLC0415
    if isinstance(source, (str, os.PathLike)):
        return Checkpoint.open(source), str(source)
    return source, None  # a Mapping name -> array (Python API)


def load(source: Any, *, arch: str | None = None, input_shape: tuple[int, ...] | None = None,
         drop_background: bool = False, name: str | None = None, **ignored: Any) -> Graph:
    from . import slim  # noqa: PLC0415
    if ignored:
        log.debug("tf-slim load ignores %s", sorted(ignored))
    weights, path = _open(source)
    spec = slim.get(arch) if arch else slim.detect(weights.keys())
    log.info("tf-slim: architecture %s%s", spec.name, "" if arch else " (recognised from the variable scopes)")
    return slim.build(spec, weights, tuple(input_shape) if input_shape else None, source_file=path,
                      drop_background=drop_background, name=name)


# tf_slim's own definitions: arch -> (module, function, arg_scope function)
TF_SLIM_NETS: dict[str, tuple[str, str, str]] = {
    **{f"resnet_v1_{d}": ("resnet_v1", f"resnet_v1_{d}", "resnet_arg_scope") for d in (50, 101, 152, 200)},
    **{f"resnet_v2_{d}": ("resnet_v2", f"resnet_v2_{d}", "resnet_arg_scope") for d in (50, 101, 152, 200)},
    "vgg_a": ("vgg", "vgg_a", "vgg_arg_scope"),
    "vgg_16": ("vgg", "vgg_16", "vgg_arg_scope"),
    "vgg_19": ("vgg", "vgg_19", "vgg_arg_scope"),
    "alexnet_v2": ("alexnet", "alexnet_v2", "alexnet_v2_arg_scope"),
    "overfeat": ("overfeat", "overfeat", "overfeat_arg_scope"),
    "inception_v1": ("inception_v1", "inception_v1", "inception_v1_arg_scope"),
    "inception_v2": ("inception_v2", "inception_v2", "inception_v2_arg_scope"),
    "inception_v3": ("inception_v3", "inception_v3", "inception_v3_arg_scope"),
}


def make_runner(source: Any, *, arch: str | None = None, input_shape: tuple[int, ...] | None = None,
                drop_background: bool = False, **ignored: Any) -> Callable[[np.ndarray], np.ndarray]:
    """Run the checkpoint in TensorFlow with tf_slim's definition: NCHW float32 -> logits."""
    from . import slim  # noqa: PLC0415
    from .tfimport import import_tf, import_tf_slim  # noqa: PLC0415

    weights, path = _open(source)
    if path is None:
        raise XconvError("tf-slim: running the source model needs a checkpoint file")
    spec = slim.get(arch) if arch else slim.detect(weights.keys())
    if spec.name not in TF_SLIM_NETS:
        raise XconvError(f"tf-slim: tf_slim 1.1.0 ships no definition of {spec.name}, so there is no TensorFlow "
                         "model to run it in; verify with the model's frozen graph (--from tensorflow) instead")
    classes = int(np.asarray(weights[spec.logits_var]).shape[-1])
    tf = import_tf()
    import_tf_slim()
    import importlib  # noqa: PLC0415
    modname, fn, scope_fn = TF_SLIM_NETS[spec.name]
    mod = importlib.import_module(f"tf_slim.nets.{modname}")
    shape = tuple(input_shape) if input_shape else (1, 3, spec.input_size, spec.input_size)
    g = tf.Graph()
    with g.as_default():
        x = tf.compat.v1.placeholder(tf.float32, (None, shape[2], shape[3], shape[1]), name="input")
        import tf_slim as slim_tf  # noqa: PLC0415
        with slim_tf.arg_scope(getattr(mod, scope_fn)()):
            kw: dict[str, Any] = {"num_classes": classes, "is_training": False}
            out = getattr(mod, fn)(x, **kw)
        logits = out[0] if isinstance(out, tuple) else out
        if len(logits.shape) == 4:
            logits = tf.squeeze(logits, [1, 2])
        saver = tf.compat.v1.train.Saver()
        sess = tf.compat.v1.Session(graph=g)
        saver.restore(sess, path)

    def run(xb: np.ndarray) -> np.ndarray:
        y = sess.run(logits, {x: np.ascontiguousarray(xb.transpose(0, 2, 3, 1))})
        return y[:, 1:] if drop_background else y

    return run
