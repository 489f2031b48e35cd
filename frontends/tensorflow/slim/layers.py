"""TF-slim layers as IR builders, reading weights by slim's variable names.

An architecture is written once, as Python that mirrors the slim model
definition scope by scope (``frontends/tensorflow/slim/<family>.py``); the
layers here turn each slim call into IR nodes and take its variables from a
checkpoint by the names slim gives them, so released checkpoints load
unchanged:

* ``slim.conv2d``: ``{scope}/weights`` [kh, kw, in, out]; ``{scope}/biases``
  unless a normaliser is used, then ``{scope}/BatchNorm/{beta, gamma,
  moving_mean, moving_variance}`` (``gamma`` only with ``scale=True``);
* ``slim.separable_conv2d(num_outputs=None)`` (depthwise):
  ``{scope}/depthwise_weights`` [kh, kw, C, M];
* ``slim.fully_connected``: ``{scope}/weights`` [in, out], ``{scope}/biases``.

Tensors are NCHW in the IR; 'SAME' padding becomes the exact asymmetric IR
pads of TF (extra pixel at the end), average pools with 'SAME' padding do
not count padding (TF's rule).  Whether a layer has biases or BatchNorm (and
BatchNorm a gamma) is read from the checkpoint, as slim decided it when the
model was trained; the BN epsilon is the architecture's (slim's arg_scope
default differs per family) and is passed in, never guessed.
"""
from __future__ import annotations

import difflib
import logging
from collections import Counter
from typing import Any, Mapping, Sequence

import numpy as np

from xconv.builder import GraphBuilder
from xconv.errors import InputFileError, XconvError
from xconv.ir import Graph, ModelMeta

from ..common import depthwise_to_oihw, hwio_to_oihw, nhwc_flatten_rows_to_nchw, tf_pads

log = logging.getLogger(__name__)

FRAMEWORK = "tf-slim"


class WeightSource(Mapping[str, np.ndarray]):
    """What a builder needs from a checkpoint: name -> array (lazy is fine)."""


class SlimNet:
    """Builds the IR of one slim network from its checkpoint variables."""

    def __init__(self, weights: Mapping[str, Any], input_shape: Sequence[int], *, bn_eps: float,
                 source_file: str | None = None, input_name: str = "input") -> None:
        self.w = weights
        self.b = GraphBuilder(FRAMEWORK, source_file)
        self.bn_eps = bn_eps
        self.used: set[str] = set()
        self._names: list[str] | None = None  # checkpoint variable names, listed on first use
        self.input = self.b.input(input_name, input_shape)

    # ------------------------------------------------------------ variables
    def has(self, name: str) -> bool:
        return name in self.w

    def var(self, name: str) -> np.ndarray:
        if name not in self.w:
            close = difflib.get_close_matches(name, list(self.w.keys()), n=3, cutoff=0.6)
            hint = f"; similar names in the checkpoint: {close}" if close else ""
            raise InputFileError(f"tf-slim: the checkpoint has no variable '{name}'{hint}. "
                                 "Is --arch right for this checkpoint?")
        self.used.add(name)
        return np.asarray(self.w[name])

    def shape(self, x: str) -> tuple[int, ...]:
        return self.b.shape(x)

    def has_scope(self, prefix: str) -> bool:
        """Whether any checkpoint variable lives under ``prefix/``."""
        if self._names is None:
            self._names = list(self.w.keys())
        p = prefix.rstrip("/") + "/"
        return any(n.startswith(p) for n in self._names)

    def require_scope(self, scope: str, arch: str) -> None:
        """Fail early, and clearly, when the checkpoint has nothing under the architecture's
        top-level ``scope`` (e.g. a resnet_v1_101 checkpoint built as ``--arch resnet_v1_50``)."""
        if self.has_scope(scope):
            return
        if self._names is None:
            self._names = list(self.w.keys())
        found = Counter(n.split("/", 1)[0] for n in self._names if "/" in n)
        top = ", ".join(f"{s} ({c} variables)" for s, c in found.most_common(5)) or "none"
        raise InputFileError(f"tf-slim: --arch {arch} reads variables under '{scope}/', but this checkpoint "
                             f"has none; its top-level scopes are: {top}. Pass the --arch whose scope matches "
                             "(or leave --arch out to recognise it)")

    # --------------------------------------------------------------- layers
    def conv2d(self, x: str, scope: str, kernel: int | Sequence[int] | None = None, stride: int | Sequence[int] = 1,
               padding: str = "SAME", rate: int = 1, activation: str | None = "relu",
               bn_eps: float | None = None) -> str:
        """``slim.conv2d``; kernel size is read from the weights (checked against ``kernel`` if given)."""
        w = self.var(f"{scope}/weights")
        kh, kw = w.shape[:2]
        if kernel is not None and tuple(_pair(kernel)) != (kh, kw):
            raise InputFileError(f"tf-slim: {scope}/weights is {kh}x{kw}, the architecture says {_pair(kernel)}")
        if w.shape[2] != self.shape(x)[1]:
            raise InputFileError(f"tf-slim: {scope}/weights expects {w.shape[2]} input channels, got "
                                 f"{self.shape(x)[1]}")
        return self._conv(x, scope, hwio_to_oihw(w), 1, stride, padding, rate, activation, bn_eps)

    def depthwise_conv2d(self, x: str, scope: str, stride: int | Sequence[int] = 1, padding: str = "SAME",
                         rate: int = 1, activation: str | None = "relu", bn_eps: float | None = None) -> str:
        """``slim.separable_conv2d(num_outputs=None)``: depthwise only, multiplier from the weights."""
        w = self.var(f"{scope}/depthwise_weights")
        c = self.shape(x)[1]
        if w.shape[2] != c:
            raise InputFileError(f"tf-slim: {scope}/depthwise_weights expects {w.shape[2]} channels, got {c}")
        return self._conv(x, scope, depthwise_to_oihw(w), c, stride, padding, rate, activation, bn_eps)

    def separable_conv2d(self, x: str, scope: str, stride: int | Sequence[int] = 1, padding: str = "SAME",
                         rate: int = 1, activation: str | None = "relu", bn_eps: float | None = None) -> str:
        """``slim.separable_conv2d(num_outputs=N)``: a depthwise conv (``{scope}/depthwise_weights``
        [kh, kw, C, M], with the stride, padding and rate) then a 1x1 pointwise conv
        (``{scope}/pointwise_weights`` [1, 1, C*M, N], VALID); biases or BatchNorm and the
        activation apply after the pointwise conv only (``tf.nn.separable_conv2d``)."""
        dw = self.var(f"{scope}/depthwise_weights")
        pw = self.var(f"{scope}/pointwise_weights")
        _, c, h, wd = self.shape(x)
        if dw.shape[2] != c:
            raise InputFileError(f"tf-slim: {scope}/depthwise_weights expects {dw.shape[2]} channels, got {c}")
        if pw.shape[:3] != (1, 1, dw.shape[2] * dw.shape[3]):
            raise InputFileError(f"tf-slim: {scope}/pointwise_weights is {pw.shape}, expected "
                                 f"[1, 1, {dw.shape[2] * dw.shape[3]}, N] after the depthwise conv")
        w = depthwise_to_oihw(dw)
        k, s, d = w.shape[2:], _pair(stride), _pair(rate)
        y = self.b.add("Conv", [x, self.b.param(f"{scope}/depthwise_weights", w)], name=f"{scope}/depthwise",
                       kernel_shape=k, strides=s, pads=tf_pads(padding, (h, wd), k, s, d), dilations=d, group=c)
        return self._conv(y, scope, hwio_to_oihw(pw), 1, 1, "VALID", 1, activation, bn_eps,
                          weight_var="pointwise_weights")

    def _conv(self, x: str, scope: str, w_oihw: np.ndarray, group: int, stride: int | Sequence[int],
              padding: str, rate: int, activation: str | None, bn_eps: float | None,
              weight_var: str = "weights") -> str:
        _, _, h, wd = self.shape(x)
        k = w_oihw.shape[2:]
        s, d = _pair(stride), _pair(rate)
        pads = tf_pads(padding, (h, wd), k, s, d)
        wname = self.b.param(f"{scope}/{weight_var}", w_oihw)
        inputs = [x, wname]
        if self.has(f"{scope}/biases"):
            inputs.append(self.b.param(f"{scope}/biases", self.var(f"{scope}/biases")))
        y = self.b.add("Conv", inputs, name=scope, kernel_shape=k, strides=s, pads=pads, dilations=d, group=group)
        if self.has(f"{scope}/BatchNorm/moving_mean"):
            y = self.batch_norm(y, f"{scope}/BatchNorm", bn_eps)
        return self.activation(y, activation, scope)

    def batch_norm(self, x: str, scope: str, eps: float | None = None, activation: str | None = None) -> str:
        """``slim.batch_norm`` at inference; ``scope`` ends in ``BatchNorm`` (or is e.g. ``.../preact``)."""
        c = self.shape(x)[1]
        mean = self.var(f"{scope}/moving_mean")
        var = self.var(f"{scope}/moving_variance")
        beta = self.var(f"{scope}/beta") if self.has(f"{scope}/beta") else np.zeros(c, np.float32)
        gamma = self.var(f"{scope}/gamma") if self.has(f"{scope}/gamma") else np.ones(c, np.float32)
        names = [self.b.param(f"{scope}/{n}", a) for n, a in
                 (("gamma", gamma), ("beta", beta), ("moving_mean", mean), ("moving_variance", var))]
        y = self.b.add("BatchNormalization", [x, *names], name=scope,
                       epsilon=self.bn_eps if eps is None else eps)
        return self.activation(y, activation, scope)

    def activation(self, x: str, kind: str | None, scope: str) -> str:
        if kind is None:
            return x
        if kind == "relu":
            return self.b.add("Relu", [x], name=f"{scope}/Relu")
        if kind == "relu6":
            return self.b.add("Clip", [x], name=f"{scope}/Relu6", min=0.0, max=6.0)
        raise ValueError(f"activation {kind!r}")

    def fully_connected(self, x: str, scope: str, activation: str | None = None) -> str:
        w = self.var(f"{scope}/weights")
        shape = self.shape(x)
        if len(shape) == 4:
            # slim flattens NHWC (H, W, C order); the IR flattens NCHW: permute the weight rows instead
            _, c, h, wd = shape
            wt = nhwc_flatten_rows_to_nchw(w, h, wd, c)
            x = self.b.add("Flatten", [x], name=f"{scope}/flatten", axis=1)
        else:
            wt = np.ascontiguousarray(w.T)
        inputs = [x, self.b.param(f"{scope}/weights", wt)]
        if self.has(f"{scope}/biases"):
            inputs.append(self.b.param(f"{scope}/biases", self.var(f"{scope}/biases")))
        y = self.b.add("Gemm", inputs, name=scope)
        return self.activation(y, activation, scope)

    def max_pool2d(self, x: str, kernel: int | Sequence[int], stride: int | Sequence[int] = 2,
                   padding: str = "VALID", scope: str = "MaxPool") -> str:
        _, _, h, w = self.shape(x)
        k, s = _pair(kernel), _pair(stride)
        return self.b.add("MaxPool", [x], name=scope, kernel_shape=k, strides=s, pads=tf_pads(padding, (h, w), k, s))

    def avg_pool2d(self, x: str, kernel: int | Sequence[int], stride: int | Sequence[int] = 2,
                   padding: str = "VALID", scope: str = "AvgPool") -> str:
        _, _, h, w = self.shape(x)
        k, s = _pair(kernel), _pair(stride)
        # TF averages over the real (unpadded) cells of each window
        return self.b.add("AveragePool", [x], name=scope, kernel_shape=k, strides=s,
                          pads=tf_pads(padding, (h, w), k, s), count_include_pad=False)

    def pad(self, x: str, pads: tuple[int, int, int, int], scope: str) -> str:
        """``tf.pad`` of an NHWC tensor's spatial dims: (top, left, bottom, right)."""
        return self.b.add("Pad", [x], name=scope, pads=pads)

    def global_avg_pool(self, x: str, scope: str) -> str:
        """``tf.reduce_mean(x, [1, 2], keep_dims=True)``."""
        return self.b.add("GlobalAveragePool", [x], name=scope)

    def concat(self, xs: Sequence[str], scope: str) -> str:
        return self.b.add("Concat", list(xs), name=scope, axis=1)

    def add(self, a: str, b: str, scope: str) -> str:
        return self.b.add("Add", [a, b], name=scope)

    def scale(self, x: str, factor: float, scope: str) -> str:
        if factor == 1.0:
            return x
        return self.b.add("Mul", [x, self.b.param(f"{scope}/scale", np.float32(factor))], name=scope)

    def relu(self, x: str, scope: str) -> str:
        return self.b.add("Relu", [x], name=scope)

    def flatten(self, x: str, scope: str) -> str:
        """``tf.squeeze(x, [1, 2])`` / ``slim.flatten`` of an N x C x 1 x 1 tensor.  (A flatten of a
        larger NHWC map feeding a dense layer is handled in :meth:`fully_connected`.)"""
        n, c, h, w = self.shape(x)
        if (h, w) != (1, 1):
            raise InputFileError(f"tf-slim: {scope}: flattening a {h}x{w} map outside a fully_connected layer "
                                 "is not supported")
        return self.b.add("Flatten", [x], name=scope, axis=1)

    def spatial_squeeze(self, x: str, scope: str, need: str = "") -> str:
        """``tf.squeeze(x, [1, 2])`` of slim's classifier heads: N x C x 1 x 1 -> N x C.  A larger map
        means the input size does not fit the head (slim's own squeeze would fail too); ``need``
        says which input sizes do."""
        n, c, h, w = self.shape(x)
        if (h, w) != (1, 1):
            ih, iw = self.shape(self.input)[2:]
            raise XconvError(f"tf-slim: {scope}: the classifier sees a {h}x{w} map for a {ih}x{iw} input, "
                             f"where the architecture needs 1x1{'; ' + need if need else ''}. Choose another "
                             "input size (--input-shape)")
        return self.b.add("Flatten", [x], name=scope, axis=1)

    def softmax(self, x: str, scope: str = "Predictions") -> str:
        return self.b.add("Softmax", [x], name=scope, axis=1)

    # ---------------------------------------------------------------- finish
    def finish(self, outputs: Sequence[str], name: str, meta: ModelMeta) -> Graph:
        unused = sorted(k for k in self.w.keys() if k not in self.used and _is_model_var(k))
        if unused:
            log.info("tf-slim: %d checkpoint variables not used by %s (e.g. %s)", len(unused), name, unused[:5])
        return self.b.graph(outputs, name, meta)


def _pair(v: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(v, int):
        return (v, v)
    t = tuple(int(x) for x in v)
    if len(t) != 2:
        raise ValueError(f"expected an int or a pair, got {v!r}")
    return t  # type: ignore[return-value]


def _is_model_var(name: str) -> bool:
    """Training-only variables that a converted model rightly ignores are not worth a warning."""
    skip = ("global_step", "/Momentum", "/RMSProp", "/Adam", "/ExponentialMovingAverage", "AuxLogits")
    return not any(s in name for s in skip)
