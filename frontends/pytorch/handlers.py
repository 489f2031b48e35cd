"""Op handlers: one function per source op family, registered explicitly by
module class, function object and tensor-method name (see :mod:`.core`).

A handler reads every argument that changes semantics and raises
:class:`~xconv.errors.UnsupportedAttrError` (naming the node) for values the
IR cannot express exactly; it never drops one silently.  The TorchScript
adapter (:mod:`.capture_ts`) routes ``aten::`` ops to these same handlers.
"""
from __future__ import annotations

import logging
import math
import operator
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from xconv.reference import resize_matrix

from .core import (Builder, Call, ConstTensor, TensorRef, Unavailable, check_rank, is_number, norm_axis,
                   on_function, on_method, on_module, on_named_function, pair, resolve_shape, tensor_in)

log = logging.getLogger(__name__)


# =========================================================================== conv
def emit_conv(b: Builder, call: Call, x: TensorRef, weight: Any, bias: Any, stride: Any, padding: Any,
              dilation: Any, groups: Any, padding_mode: str = "zeros") -> TensorRef:
    if not isinstance(weight, ConstTensor):
        raise call.unsupported("a convolution weight computed at run time", "weights must be parameters")
    if weight.value.dim() != 4:
        raise call.unsupported(f"a {weight.value.dim() - 2}-D convolution", "only 2-D (Conv2d) is supported")
    if bias is not None and not isinstance(bias, ConstTensor):
        raise call.unsupported("a convolution bias computed at run time")
    if padding_mode != "zeros":
        raise call.unsupported(f"padding_mode={padding_mode!r}",
                               "only 'zeros'; pad explicitly with F.pad(mode='reflect'/'replicate') instead")
    check_rank(b, call, x, 4)
    kh, kw = int(weight.value.shape[2]), int(weight.value.shape[3])
    s = pair(stride, "stride", call)
    d = pair(dilation, "dilation", call)
    if isinstance(padding, str):
        if padding == "valid":
            pads = (0, 0, 0, 0)
        elif padding == "same":
            # PyTorch: total = d*(k-1), the odd pixel goes to the end (bottom/right)
            th, tw = d[0] * (kh - 1), d[1] * (kw - 1)
            pads = (th // 2, tw // 2, th - th // 2, tw - tw // 2)
        else:
            raise call.unsupported(f"padding={padding!r}")
    else:
        ph, pw = pair(padding, "padding", call)
        pads = (ph, pw, ph, pw)
    owner = weight.owner or call.name
    ins: list[TensorRef | None] = [x, b.param(weight, f"{owner}.weight")]
    if bias is not None:
        ins.append(b.param(bias, f"{owner}.bias"))
    return b.emit("Conv", ins, call, dict(kernel_shape=(kh, kw), strides=s, pads=pads, dilations=d, group=int(groups)))


@on_module(nn.Conv2d)
def _conv_module(b: Builder, call: Call) -> Any:
    m = call.module
    assert isinstance(m, nn.Conv2d)
    q = call.qualname
    x = tensor_in(b, call, call.arg(0, "input"))
    bias = ConstTensor(m.bias, f"{q}.bias") if m.bias is not None else None
    return emit_conv(b, call, x, ConstTensor(m.weight, f"{q}.weight"), bias, m.stride, m.padding,
                     m.dilation, m.groups, m.padding_mode)


@on_function(F.conv2d, torch.conv2d)
def _conv_fn(b: Builder, call: Call) -> Any:
    if call.kwargs.get("transposed"):
        raise call.unsupported("transposed convolution")
    x = tensor_in(b, call, call.arg(0, "input"))
    return emit_conv(b, call, x, call.arg(1, "weight"), call.arg(2, "bias", None), call.arg(3, "stride", 1),
                     call.arg(4, "padding", 0), call.arg(5, "dilation", 1), call.arg(6, "groups", 1))


# =========================================================================== batch norm
def emit_bn(b: Builder, call: Call, x: TensorRef, mean: Any, var: Any, weight: Any, bias: Any, eps: float,
            prefix: str) -> TensorRef:
    if not isinstance(mean, ConstTensor) or not isinstance(var, ConstTensor):
        raise call.unsupported("batch norm without running statistics (track_running_stats=False)",
                               "it normalises with batch statistics at inference")
    shp = b.shape(x)
    c = int(mean.value.numel())
    if len(shp) < 2 or shp[1] != c:
        raise call.unsupported(f"batch norm of {c} channels on input {shp}")
    w = weight if weight is not None else ConstTensor(torch.ones(c), f"{prefix}.weight")
    bi = bias if bias is not None else ConstTensor(torch.zeros(c), f"{prefix}.bias")
    for v, what in ((w, "weight"), (bi, "bias")):
        if not isinstance(v, ConstTensor):
            raise call.unsupported(f"a batch norm {what} computed at run time")
    ins = [x, b.param(w, f"{prefix}.weight"), b.param(bi, f"{prefix}.bias"),
           b.param(mean, f"{prefix}.running_mean"), b.param(var, f"{prefix}.running_var")]
    return b.emit("BatchNormalization", ins, call, dict(epsilon=float(eps)))


@on_module(nn.BatchNorm2d, nn.BatchNorm1d)
def _bn_module(b: Builder, call: Call) -> Any:
    m = call.module
    assert isinstance(m, nn.modules.batchnorm._BatchNorm)
    q = call.qualname or call.name
    if m.training:
        raise call.unsupported("batch norm in training mode", "call model.eval() first")
    if not m.track_running_stats or m.running_mean is None or m.running_var is None:
        raise call.unsupported("track_running_stats=False", "it normalises with batch statistics at inference")
    x = tensor_in(b, call, call.arg(0, "input"))
    w = ConstTensor(m.weight, f"{q}.weight") if m.weight is not None else None
    bias = ConstTensor(m.bias, f"{q}.bias") if m.bias is not None else None
    return emit_bn(b, call, x, ConstTensor(m.running_mean, f"{q}.running_mean"),
                   ConstTensor(m.running_var, f"{q}.running_var"), w, bias, m.eps, q)


@on_function(F.batch_norm)
def _bn_fn(b: Builder, call: Call) -> Any:
    if call.arg(5, "training", False):
        raise call.unsupported("batch_norm(training=True)", "call model.eval() first")
    x = tensor_in(b, call, call.arg(0, "input"))
    mean = call.arg(1, "running_mean")
    prefix = (mean.owner if isinstance(mean, ConstTensor) else None) or call.name
    return emit_bn(b, call, x, mean, call.arg(2, "running_var"), call.arg(3, "weight", None),
                   call.arg(4, "bias", None), call.arg(7, "eps", 1e-5), prefix)


# =========================================================================== activations
def _unary(op: str, **attrs: Any) -> Any:
    def handler(b: Builder, call: Call) -> Any:
        return b.emit(op, [tensor_in(b, call, call.arg(0, "input"))], call, attrs)
    handler.__name__ = f"_{op.lower()}"
    return handler


_relu = _unary("Relu")
on_module(nn.ReLU)(_relu)
on_function(F.relu, inplace_arg=(1, "inplace"))(_relu)
on_function(torch.relu)(_relu)
on_function(torch.relu_, always_inplace=True)(_relu)
on_method("relu", "relu_")(_relu)

_relu6 = _unary("Clip", min=0.0, max=6.0)
on_function(F.relu6, inplace_arg=(1, "inplace"))(_relu6)

_hswish = _unary("HardSwish")
on_module(nn.Hardswish)(_hswish)
on_function(F.hardswish, inplace_arg=(1, "inplace"))(_hswish)

_hsigmoid = _unary("HardSigmoid", alpha=1.0 / 6.0, beta=0.5)  # relu6(x + 3) / 6
on_module(nn.Hardsigmoid)(_hsigmoid)
on_function(F.hardsigmoid, inplace_arg=(1, "inplace"))(_hsigmoid)

_sigmoid = _unary("Sigmoid")
on_module(nn.Sigmoid)(_sigmoid)
on_function(torch.sigmoid, F.sigmoid)(_sigmoid)
on_function(torch.sigmoid_, always_inplace=True)(_sigmoid)
on_method("sigmoid", "sigmoid_")(_sigmoid)

_silu = _unary("Silu")
on_module(nn.SiLU)(_silu)
on_function(F.silu, inplace_arg=(1, "inplace"))(_silu)

_tanh = _unary("Tanh")
on_module(nn.Tanh)(_tanh)
on_function(torch.tanh, F.tanh)(_tanh)
on_function(torch.tanh_, always_inplace=True)(_tanh)
on_method("tanh", "tanh_")(_tanh)


for _op, _fns, _methods in (("Abs", (torch.abs,), ("abs", "abs_")), ("Neg", (torch.neg, operator.neg), ("neg", "neg_")),
                            ("Exp", (torch.exp,), ("exp", "exp_")), ("Sqrt", (torch.sqrt,), ("sqrt", "sqrt_"))):
    _h = _unary(_op)
    on_function(*_fns)(_h)
    on_method(*_methods)(_h)


@on_module(nn.Hardtanh, nn.ReLU6)
def _hardtanh_module(b: Builder, call: Call) -> Any:
    m = call.module
    assert isinstance(m, nn.Hardtanh)
    x = tensor_in(b, call, call.arg(0, "input"))
    return b.emit("Clip", [x], call, dict(min=float(m.min_val), max=float(m.max_val)))


def _clip_values(call: Call, lo: Any, hi: Any) -> dict[str, float]:
    for v in (lo, hi):
        if v is not None and not is_number(v):
            raise call.unsupported("clamp bounds that are tensors")
    return dict(min=-math.inf if lo is None else float(lo), max=math.inf if hi is None else float(hi))


def _hardtanh_fn(b: Builder, call: Call) -> Any:
    x = tensor_in(b, call, call.arg(0, "input"))
    return b.emit("Clip", [x], call, _clip_values(call, call.arg(1, "min_val", -1.0), call.arg(2, "max_val", 1.0)))


on_function(F.hardtanh, inplace_arg=(3, "inplace"))(_hardtanh_fn)
on_function(F.hardtanh_, always_inplace=True)(_hardtanh_fn)


def _clamp(b: Builder, call: Call) -> Any:
    x = tensor_in(b, call, call.arg(0, "input"))
    return b.emit("Clip", [x], call, _clip_values(call, call.arg(1, "min", None), call.arg(2, "max", None)))


on_function(torch.clamp, torch.clip)(_clamp)
on_function(torch.clamp_, always_inplace=True)(_clamp)
on_method("clamp", "clip", "clamp_", "clip_")(_clamp)


@on_module(nn.LeakyReLU)
def _leaky_module(b: Builder, call: Call) -> Any:
    m = call.module
    assert isinstance(m, nn.LeakyReLU)
    return b.emit("LeakyRelu", [tensor_in(b, call, call.arg(0, "input"))], call, dict(alpha=float(m.negative_slope)))


def _leaky_fn(b: Builder, call: Call) -> Any:
    x = tensor_in(b, call, call.arg(0, "input"))
    return b.emit("LeakyRelu", [x], call, dict(alpha=float(call.arg(1, "negative_slope", 0.01))))


on_function(F.leaky_relu, inplace_arg=(2, "inplace"))(_leaky_fn)
on_function(F.leaky_relu_, always_inplace=True)(_leaky_fn)


@on_module(nn.ELU)
def _elu_module(b: Builder, call: Call) -> Any:
    m = call.module
    assert isinstance(m, nn.ELU)
    return b.emit("Elu", [tensor_in(b, call, call.arg(0, "input"))], call, dict(alpha=float(m.alpha)))


def _elu_fn(b: Builder, call: Call) -> Any:
    # aten::elu carries scale/input_scale (1 for nn.ELU; SELU/CELU use others)
    if float(call.kwargs.get("scale", 1.0)) != 1.0 or float(call.kwargs.get("input_scale", 1.0)) != 1.0:
        raise call.unsupported("elu with scale/input_scale != 1 (SELU/CELU)")
    x = tensor_in(b, call, call.arg(0, "input"))
    return b.emit("Elu", [x], call, dict(alpha=float(call.arg(1, "alpha", 1.0))))


on_function(F.elu, inplace_arg=(2, "inplace"))(_elu_fn)
on_function(F.elu_, always_inplace=True)(_elu_fn)


def emit_prelu(b: Builder, call: Call, x: TensorRef, weight: Any, name: str) -> TensorRef:
    if not isinstance(weight, ConstTensor):
        raise call.unsupported("a PReLU weight computed at run time")
    shp = b.shape(x)
    n = int(weight.value.numel())
    if n != 1 and (len(shp) < 2 or shp[1] != n):
        raise call.unsupported(f"PReLU with {n} slopes on input {shp}")
    slope = weight if weight.value.dim() == 1 else ConstTensor(weight.value.detach().reshape(n), None, weight.qualname)
    return b.emit("PRelu", [x, b.param(slope, name)], call)


@on_module(nn.PReLU)
def _prelu_module(b: Builder, call: Call) -> Any:
    m = call.module
    assert isinstance(m, nn.PReLU)
    x = tensor_in(b, call, call.arg(0, "input"))
    return emit_prelu(b, call, x, ConstTensor(m.weight, f"{call.qualname}.weight"), f"{call.qualname}.weight")


@on_function(F.prelu)
def _prelu_fn(b: Builder, call: Call) -> Any:
    x = tensor_in(b, call, call.arg(0, "input"))
    return emit_prelu(b, call, x, call.arg(1, "weight"), f"{call.name}.weight")


def emit_softmax(b: Builder, call: Call, x: TensorRef, dim: Any, dtype: Any = None) -> TensorRef:
    if dim is None:
        raise call.unsupported("softmax without dim (implicit dim choice)", "pass dim explicitly")
    if dtype is not None and dtype != torch.float32:
        raise call.unsupported(f"softmax dtype={dtype}")
    ax = norm_axis(dim, len(b.shape(x)), call)
    return b.emit("Softmax", [x], call, dict(axis=ax))


@on_module(nn.Softmax)
def _softmax_module(b: Builder, call: Call) -> Any:
    m = call.module
    assert isinstance(m, nn.Softmax)
    return emit_softmax(b, call, tensor_in(b, call, call.arg(0, "input")), m.dim)


@on_function(F.softmax, torch.softmax)
def _softmax_fn(b: Builder, call: Call) -> Any:
    return emit_softmax(b, call, tensor_in(b, call, call.arg(0, "input")), call.arg(1, "dim", None),
                        call.kwargs.get("dtype"))


@on_method("softmax")
def _softmax_method(b: Builder, call: Call) -> Any:
    return emit_softmax(b, call, tensor_in(b, call, call.arg(0, "input")), call.arg(1, "dim", None),
                        call.kwargs.get("dtype"))


# =========================================================================== padding
_PAD_MODES = {"constant": "constant", "reflect": "reflect", "replicate": "edge"}


def emit_pad(b: Builder, call: Call, x: TensorRef, pad: Sequence[int], mode: str, value: Any) -> TensorRef:
    """F.pad semantics: ``pad`` pairs run from the last dim backwards: (left, right, top, bottom)."""
    pad = [int(p) for p in pad]
    if len(pad) % 2 or len(pad) < 2:
        raise call.unsupported(f"pad={pad}")
    if any(pad[4:]):
        raise call.unsupported(f"pad={pad} on dims other than the last two")
    left, right = pad[0], pad[1]
    t, bo = (pad[2], pad[3]) if len(pad) >= 4 else (0, 0)
    check_rank(b, call, x, 4)
    if mode not in _PAD_MODES:
        raise call.unsupported(f"pad mode {mode!r}", f"supported: {sorted(_PAD_MODES)}")
    if mode != "constant" and min(left, right, t, bo) < 0:
        raise call.unsupported(f"negative {mode} padding")
    v = 0.0 if value is None else value
    if not is_number(v):
        raise call.unsupported("a pad value that is a tensor")
    if (t, left, bo, right) == (0, 0, 0, 0):
        return x
    return b.emit("Pad", [x], call, dict(pads=(t, left, bo, right), mode=_PAD_MODES[mode], value=float(v)))


@on_module(nn.ZeroPad2d, nn.ConstantPad2d, nn.ReflectionPad2d, nn.ReplicationPad2d)
def _pad_module(b: Builder, call: Call) -> Any:
    m = call.module
    x = tensor_in(b, call, call.arg(0, "input"))
    if isinstance(m, nn.ConstantPad2d):
        return emit_pad(b, call, x, m.padding, "constant", m.value)
    assert isinstance(m, (nn.ReflectionPad2d, nn.ReplicationPad2d))
    mode = "reflect" if isinstance(m, nn.ReflectionPad2d) else "replicate"
    return emit_pad(b, call, x, m.padding, mode, None)


@on_function(F.pad)
def _pad_fn(b: Builder, call: Call) -> Any:
    x = tensor_in(b, call, call.arg(0, "input"))
    return emit_pad(b, call, x, call.arg(1, "pad"), call.arg(2, "mode", "constant"), call.arg(3, "value", None))


# =========================================================================== pooling
def _stride(stride: Any, kernel: tuple[int, int], call: Call) -> tuple[int, int]:
    if stride is None or (isinstance(stride, (list, tuple)) and len(stride) == 0):
        return kernel
    return pair(stride, "stride", call)


def emit_maxpool(b: Builder, call: Call, x: TensorRef, kernel: Any, stride: Any, padding: Any, dilation: Any,
                 ceil_mode: Any, return_indices: Any) -> Any:
    if return_indices:
        raise call.unsupported("max pooling with return_indices=True")
    k = pair(kernel, "kernel_size", call)
    d = pair(dilation, "dilation", call)
    if d != (1, 1):
        raise call.unsupported(f"max pooling with dilation={d}", "only dilation 1")
    p = pair(padding, "padding", call)
    check_rank(b, call, x, 4)
    return b.emit("MaxPool", [x], call, dict(kernel_shape=k, strides=_stride(stride, k, call),
                                             pads=(p[0], p[1], p[0], p[1]), ceil_mode=bool(ceil_mode)))


@on_module(nn.MaxPool2d)
def _maxpool_module(b: Builder, call: Call) -> Any:
    m = call.module
    assert isinstance(m, nn.MaxPool2d)
    x = tensor_in(b, call, call.arg(0, "input"))
    return emit_maxpool(b, call, x, m.kernel_size, m.stride, m.padding, m.dilation, m.ceil_mode, m.return_indices)


@on_function(F.max_pool2d, torch.max_pool2d)
def _maxpool_fn(b: Builder, call: Call) -> Any:
    x = tensor_in(b, call, call.arg(0, "input"))
    return emit_maxpool(b, call, x, call.arg(1, "kernel_size"), call.arg(2, "stride", None),
                        call.arg(3, "padding", 0), call.arg(4, "dilation", 1), call.arg(5, "ceil_mode", False),
                        call.arg(6, "return_indices", False))


def emit_avgpool(b: Builder, call: Call, x: TensorRef, kernel: Any, stride: Any, padding: Any, ceil_mode: Any,
                 count_include_pad: Any, divisor_override: Any) -> TensorRef:
    if divisor_override is not None:
        raise call.unsupported(f"avg pooling with divisor_override={divisor_override}")
    k = pair(kernel, "kernel_size", call)
    p = pair(padding, "padding", call)
    check_rank(b, call, x, 4)
    return b.emit("AveragePool", [x], call, dict(
        kernel_shape=k, strides=_stride(stride, k, call), pads=(p[0], p[1], p[0], p[1]),
        ceil_mode=bool(ceil_mode), count_include_pad=bool(count_include_pad)))


@on_module(nn.AvgPool2d)
def _avgpool_module(b: Builder, call: Call) -> Any:
    m = call.module
    assert isinstance(m, nn.AvgPool2d)
    x = tensor_in(b, call, call.arg(0, "input"))
    return emit_avgpool(b, call, x, m.kernel_size, m.stride, m.padding, m.ceil_mode, m.count_include_pad,
                        m.divisor_override)


@on_function(F.avg_pool2d)
def _avgpool_fn(b: Builder, call: Call) -> Any:
    x = tensor_in(b, call, call.arg(0, "input"))
    return emit_avgpool(b, call, x, call.arg(1, "kernel_size"), call.arg(2, "stride", None),
                        call.arg(3, "padding", 0), call.arg(4, "ceil_mode", False),
                        call.arg(5, "count_include_pad", True), call.arg(6, "divisor_override", None))


def emit_adaptive(b: Builder, call: Call, x: TensorRef, output_size: Any, kind: str) -> TensorRef:
    shp = check_rank(b, call, x, 4)
    if isinstance(output_size, (int, np.integer)) or output_size is None:
        output_size = (output_size, output_size)
    if len(output_size) == 1:
        output_size = (output_size[0], output_size[0])
    if len(output_size) != 2:
        raise call.unsupported(f"output_size={output_size!r}")
    osz = tuple(int(shp[2 + i]) if o is None else int(o) for i, o in enumerate(output_size))
    if osz == (1, 1):
        return b.emit("GlobalAveragePool" if kind == "avg" else "GlobalMaxPool", [x], call)
    return b.emit("AdaptiveAvgPool" if kind == "avg" else "AdaptiveMaxPool", [x], call, dict(output_size=osz))


@on_module(nn.AdaptiveAvgPool2d)
def _aap_module(b: Builder, call: Call) -> Any:
    m = call.module
    assert isinstance(m, nn.AdaptiveAvgPool2d)
    return emit_adaptive(b, call, tensor_in(b, call, call.arg(0, "input")), m.output_size, "avg")


@on_function(F.adaptive_avg_pool2d)
def _aap_fn(b: Builder, call: Call) -> Any:
    return emit_adaptive(b, call, tensor_in(b, call, call.arg(0, "input")), call.arg(1, "output_size"), "avg")


@on_module(nn.AdaptiveMaxPool2d)
def _amp_module(b: Builder, call: Call) -> Any:
    m = call.module
    assert isinstance(m, nn.AdaptiveMaxPool2d)
    if m.return_indices:
        raise call.unsupported("adaptive max pooling with return_indices=True")
    return emit_adaptive(b, call, tensor_in(b, call, call.arg(0, "input")), m.output_size, "max")


@on_function(F.adaptive_max_pool2d)
def _amp_fn(b: Builder, call: Call) -> Any:
    if call.arg(2, "return_indices", False):
        raise call.unsupported("adaptive max pooling with return_indices=True")
    out = emit_adaptive(b, call, tensor_in(b, call, call.arg(0, "input")), call.arg(1, "output_size"), "max")
    if call.kwargs.get("_with_indices"):  # aten::adaptive_max_pool2d returns (out, indices)
        return out, Unavailable("the indices output of adaptive max pooling")
    return out


# =========================================================================== linear
def emit_linear(b: Builder, call: Call, x: TensorRef, weight: Any, bias: Any) -> TensorRef:
    if not isinstance(weight, ConstTensor) or (bias is not None and not isinstance(bias, ConstTensor)):
        raise call.unsupported("a linear layer whose weight or bias is computed at run time")
    shp = b.shape(x)
    if len(shp) != 2:
        raise call.unsupported(f"a linear layer on a rank-{len(shp)} input {shp}",
                               "the IR Gemm needs [N, features]; flatten first")
    owner = weight.owner or call.name
    ins: list[TensorRef | None] = [x, b.param(weight, f"{owner}.weight")]
    if bias is not None:
        ins.append(b.param(bias, f"{owner}.bias"))
    return b.emit("Gemm", ins, call)


@on_module(nn.Linear)
def _linear_module(b: Builder, call: Call) -> Any:
    m = call.module
    assert isinstance(m, nn.Linear)
    q = call.qualname
    bias = ConstTensor(m.bias, f"{q}.bias") if m.bias is not None else None
    return emit_linear(b, call, tensor_in(b, call, call.arg(0, "input")), ConstTensor(m.weight, f"{q}.weight"), bias)


@on_function(F.linear)
def _linear_fn(b: Builder, call: Call) -> Any:
    return emit_linear(b, call, tensor_in(b, call, call.arg(0, "input")), call.arg(1, "weight"),
                       call.arg(2, "bias", None))


# =========================================================================== shape ops
def emit_reshape(b: Builder, call: Call, x: TensorRef, shape: Sequence[int]) -> TensorRef:
    """Flatten(axis=1) for [N, C, ...] -> [N, rest]; otherwise a static Reshape."""
    in_shape = b.shape(x)
    out = resolve_shape(in_shape, shape, call)
    if out == in_shape:
        return x
    if len(in_shape) >= 3 and len(out) == 2 and out[0] == in_shape[0]:
        return b.emit("Flatten", [x], call, dict(axis=1))
    return b.emit("Reshape", [x], call, dict(shape=out))


def _flatten_shape(shp: tuple[int, ...], start: int, end: int, call: Call) -> tuple[int, ...]:
    if not shp:
        return (1,)
    s, e = norm_axis(start, len(shp), call), norm_axis(end, len(shp), call)
    if s > e:
        raise call.unsupported(f"flatten(start_dim={start}, end_dim={end})")
    return shp[:s] + (math.prod(shp[s:e + 1]),) + shp[e + 1:]


@on_module(nn.Flatten)
def _flatten_module(b: Builder, call: Call) -> Any:
    m = call.module
    assert isinstance(m, nn.Flatten)
    x = tensor_in(b, call, call.arg(0, "input"))
    return emit_reshape(b, call, x, _flatten_shape(b.shape(x), m.start_dim, m.end_dim, call))


@on_function(torch.flatten)
def _flatten_fn(b: Builder, call: Call) -> Any:
    x = tensor_in(b, call, call.arg(0, "input"))
    shp = _flatten_shape(b.shape(x), call.arg(1, "start_dim", 0), call.arg(2, "end_dim", -1), call)
    return emit_reshape(b, call, x, shp)


@on_method("flatten")
def _flatten_method(b: Builder, call: Call) -> Any:
    return _flatten_fn(b, call)


def _shape_args(call: Call, args: Sequence[Any], key: str) -> list[int]:
    if key in call.kwargs:
        args = [call.kwargs[key]]
    if len(args) == 1 and isinstance(args[0], (list, tuple, torch.Size)):
        args = list(args[0])
    if not args or not all(isinstance(a, (int, np.integer)) and not isinstance(a, bool) for a in args):
        raise call.unsupported(f"a shape argument {list(args)!r} that is not a list of ints")
    return [int(a) for a in args]


@on_method("view", "reshape")
def _view_method(b: Builder, call: Call) -> Any:
    x = tensor_in(b, call, call.args[0])
    return emit_reshape(b, call, x, _shape_args(call, call.args[1:], "shape" if "shape" in call.kwargs else "size"))


@on_function(torch.reshape)
def _reshape_fn(b: Builder, call: Call) -> Any:
    x = tensor_in(b, call, call.arg(0, "input"))
    return emit_reshape(b, call, x, _shape_args(call, [call.arg(1, "shape")], "shape"))


def _squeeze(b: Builder, call: Call) -> Any:
    x = tensor_in(b, call, call.arg(0, "input"))
    shp = b.shape(x)
    dim = call.arg(1, "dim", None)
    if dim is None:
        dims = {i for i, d in enumerate(shp) if d == 1}
    else:
        dims = {norm_axis(d, len(shp), call) for d in (dim if isinstance(dim, (list, tuple)) else [dim])}
        dims = {d for d in dims if shp[d] == 1}
    return emit_reshape(b, call, x, tuple(d for i, d in enumerate(shp) if i not in dims))


def _unsqueeze(b: Builder, call: Call) -> Any:
    x = tensor_in(b, call, call.arg(0, "input"))
    shp = list(b.shape(x))
    d = norm_axis(call.arg(1, "dim"), len(shp) + 1, call)
    shp.insert(d, 1)
    return emit_reshape(b, call, x, shp)


on_function(torch.squeeze)(_squeeze)
on_method("squeeze")(_squeeze)
on_function(torch.unsqueeze)(_unsqueeze)
on_method("unsqueeze")(_unsqueeze)


def emit_transpose(b: Builder, call: Call, x: TensorRef, perm: Sequence[int]) -> TensorRef:
    rank = len(b.shape(x))
    perm = tuple(norm_axis(p, rank, call) for p in perm)
    if sorted(perm) != list(range(rank)):
        raise call.unsupported(f"permutation {perm}")
    if perm == tuple(range(rank)):
        return x
    return b.emit("Transpose", [x], call, dict(perm=perm))


def _transpose(b: Builder, call: Call) -> Any:
    x = tensor_in(b, call, call.arg(0, "input"))
    rank = len(b.shape(x))
    d0, d1 = norm_axis(call.arg(1, "dim0"), rank, call), norm_axis(call.arg(2, "dim1"), rank, call)
    perm = list(range(rank))
    perm[d0], perm[d1] = perm[d1], perm[d0]
    return emit_transpose(b, call, x, perm)


on_function(torch.transpose)(_transpose)
on_method("transpose")(_transpose)


@on_function(torch.permute)
def _permute_fn(b: Builder, call: Call) -> Any:
    return emit_transpose(b, call, tensor_in(b, call, call.arg(0, "input")), list(call.arg(1, "dims")))


@on_method("permute")
def _permute_method(b: Builder, call: Call) -> Any:
    dims = call.kwargs.get("dims", call.args[1:])
    if len(dims) == 1 and isinstance(dims[0], (list, tuple)):
        dims = dims[0]
    return emit_transpose(b, call, tensor_in(b, call, call.args[0]), list(dims))


def _t(b: Builder, call: Call) -> Any:
    x = tensor_in(b, call, call.arg(0, "input"))
    rank = len(b.shape(x))
    if rank < 2:
        return x
    return emit_transpose(b, call, x, (1, 0))


on_function(torch.t)(_t)
on_method("t")(_t)


# =========================================================================== aliases
def _alias(b: Builder, call: Call) -> Any:
    return tensor_in(b, call, call.arg(0, "input"))


on_module(nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
          nn.FeatureAlphaDropout)(_alias)
on_method("contiguous", "detach", "clone")(_alias)


def _dropout_fn(b: Builder, call: Call) -> Any:
    p = call.arg(1, "p", 0.5)
    if call.arg(2, "training", True) and p:
        raise call.unsupported("dropout with training=True (random at inference)",
                               "pass training=self.training and convert in eval mode")
    return tensor_in(b, call, call.arg(0, "input"))


on_function(F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout, F.feature_alpha_dropout,
            inplace_arg=(3, "inplace"))(_dropout_fn)


@on_named_function("torchvision.ops.stochastic_depth.stochastic_depth")
def _stochastic_depth(b: Builder, call: Call) -> Any:
    """torchvision's stochastic_depth(input, p, mode, training): the identity at inference."""
    if call.arg(3, "training", True) and call.arg(1, "p"):
        raise call.unsupported("stochastic_depth with training=True (random at inference)")
    return tensor_in(b, call, call.arg(0, "input"))


# =========================================================================== arithmetic
_BINOPS = {"add": "Add", "sub": "Sub", "mul": "Mul", "div": "Div"}


def _fold(op: str, a: torch.Tensor | float, c: torch.Tensor | float) -> Any:
    fns: dict[str, Any] = {"Add": operator.add, "Sub": operator.sub, "Mul": operator.mul,
                           "Div": operator.truediv, "Max": torch.maximum, "Min": torch.minimum}
    return fns[op](a, c)


def _operand(b: Builder, call: Call, v: Any, what: str) -> TensorRef:
    if isinstance(v, TensorRef):
        return v
    if isinstance(v, ConstTensor):
        return b.param(v, f"{call.name}/{what}")
    if is_number(v):
        return b.scalar(float(v), f"{call.name}/{what}")
    raise call.unsupported(f"an operand of type {type(v).__name__}")


def emit_binary(b: Builder, call: Call, op: str, a: Any, c: Any, alpha: Any = 1) -> Any:
    if alpha is not None and alpha != 1:
        if not is_number(alpha):
            raise call.unsupported("a tensor alpha")
        if is_number(c):
            c = c * alpha
        elif isinstance(c, ConstTensor):
            c = ConstTensor(c.value * alpha)
        else:
            c = b.emit("Mul", [_operand(b, call, c, "other"), b.scalar(float(alpha), f"{call.name}/alpha")],
                       call, suffix="alpha")
    if not isinstance(a, TensorRef) and not isinstance(c, TensorRef):
        av = a.value if isinstance(a, ConstTensor) else a
        cv = c.value if isinstance(c, ConstTensor) else c
        out = _fold(op, av, cv)
        return ConstTensor(out) if isinstance(out, torch.Tensor) else out
    return b.emit(op, [_operand(b, call, a, "a"), _operand(b, call, c, "b")], call)


def _binary(op: str, *, reverse: bool = False) -> Any:
    def handler(b: Builder, call: Call) -> Any:
        a, c = call.arg(0, "input"), call.arg(1, "other")
        if op == "Div" and call.kwargs.get("rounding_mode") is not None:
            raise call.unsupported(f"division with rounding_mode={call.kwargs['rounding_mode']!r}")
        alpha = call.arg(2, "alpha", 1) if op in ("Add", "Sub") else 1
        if reverse:  # rsub: other - alpha * input
            return emit_binary(b, call, op, c, a, alpha)
        return emit_binary(b, call, op, a, c, alpha)
    handler.__name__ = f"_{op.lower()}"
    return handler


for _name, _op in _BINOPS.items():
    _h = _binary(_op)
    _pyop = "truediv" if _name == "div" else _name
    on_function(getattr(operator, _pyop), getattr(torch, _name))(_h)
    on_function(getattr(operator, f"i{_pyop}"), always_inplace=True)(_h)
    on_method(_name, f"{_name}_")(_h)
on_function(torch.multiply)(_binary("Mul"))
on_function(torch.subtract)(_binary("Sub"))
on_function(torch.divide, torch.true_divide)(_binary("Div"))
on_function(torch.rsub)(_binary("Sub", reverse=True))


def _elementwise_extreme(op: str) -> Any:
    """torch.max/min of two tensors (their reduction forms are not supported)."""
    def handler(b: Builder, call: Call) -> Any:
        other = call.arg(1, "other", None)
        if not isinstance(other, (TensorRef, ConstTensor)):
            raise call.unsupported(f"the reduction form of {call.op} (dim={other!r})")
        return emit_binary(b, call, op, call.arg(0, "input"), other)
    return handler


on_function(torch.maximum, torch.max)(_elementwise_extreme("Max"))
on_function(torch.minimum, torch.min)(_elementwise_extreme("Min"))
on_method("maximum")(_elementwise_extreme("Max"))
on_method("minimum")(_elementwise_extreme("Min"))
on_method("__rsub__")(_binary("Sub", reverse=True))


# =========================================================================== concat / split
@on_function(torch.cat, torch.concat, torch.concatenate)
def _cat(b: Builder, call: Call) -> Any:
    items = list(call.arg(0, "tensors"))
    dim = call.arg(1, "dim", 0)
    xs = [tensor_in(b, call, v, f"input{i}") for i, v in enumerate(items)]
    if not xs:
        raise call.unsupported("cat of no tensors")
    if len(xs) == 1:
        return xs[0]
    ax = norm_axis(dim, len(b.shape(xs[0])), call)
    return b.emit("Concat", xs, call, dict(axis=ax))


def emit_split(b: Builder, call: Call, x: TensorRef, sizes: Sequence[int], dim: int) -> tuple[TensorRef, ...]:
    shp = b.shape(x)
    ax = norm_axis(dim, len(shp), call)
    sizes = [int(s) for s in sizes]
    if sum(sizes) != shp[ax] or min(sizes) <= 0:
        raise call.unsupported(f"split sizes {sizes} of axis {ax} of {shp}")
    if len(sizes) == 1:
        return (x,)
    return b.emit_n("Split", [x], call, dict(axis=ax, split=sizes), n_out=len(sizes))


def _chunk(b: Builder, call: Call) -> Any:
    x = tensor_in(b, call, call.arg(0, "input"))
    chunks = int(call.arg(1, "chunks"))
    dim = call.arg(2, "dim", 0)
    n = b.shape(x)[norm_axis(dim, len(b.shape(x)), call)]
    each = -(-n // chunks)  # torch.chunk: ceil(n / chunks) per chunk, the last one smaller
    sizes = [each] * (n // each) + ([n % each] if n % each else [])
    return emit_split(b, call, x, sizes, dim)


def _split(b: Builder, call: Call) -> Any:
    x = tensor_in(b, call, call.arg(0, "input"))
    spec = call.arg(1, "split_size_or_sections", None)
    if spec is None:
        spec = call.kwargs.get("split_size", call.kwargs.get("split_sizes"))
    dim = call.arg(2, "dim", 0)
    n = b.shape(x)[norm_axis(dim, len(b.shape(x)), call)]
    if isinstance(spec, (int, np.integer)):
        s = int(spec)
        sizes = [s] * (n // s) + ([n % s] if n % s else [])
    else:
        sizes = [int(v) for v in spec]
    return emit_split(b, call, x, sizes, dim)


on_function(torch.chunk)(_chunk)
on_method("chunk")(_chunk)
on_function(torch.split)(_split)
on_method("split")(_split)


def _tensor_index(b: Builder, call: Call, x: TensorRef, idx: Any) -> TensorRef:
    """x[...] with slices (step 1) and ints: Slice nodes, then a Reshape for ints."""
    shape = list(b.shape(x))
    items = list(idx) if isinstance(idx, tuple) else [idx]
    if any(it is None for it in items):
        raise call.unsupported("indexing with None (new axis)")
    if Ellipsis in items:
        i = items.index(Ellipsis)
        items = items[:i] + [slice(None)] * (len(shape) - len(items) + 1) + items[i + 1:]
    if len(items) > len(shape):
        raise call.unsupported(f"index {idx!r} for shape {tuple(shape)}")
    cuts: list[tuple[int, int, int]] = []
    drop: list[int] = []
    for ax, it in enumerate(items):
        if isinstance(it, (int, np.integer)) and not isinstance(it, bool):
            i = norm_axis(int(it), shape[ax], call)
            it = slice(i, i + 1)
            drop.append(ax)
        if not isinstance(it, slice):
            raise call.unsupported(f"indexing with {type(it).__name__}")
        start, stop, step = it.indices(shape[ax])
        if step != 1 or stop <= start:
            raise call.unsupported(f"slice {it} (step 1, non-empty only)")
        if (start, stop) != (0, shape[ax]):
            cuts.append((ax, start, stop))
    out = x
    for k, (ax, start, stop) in enumerate(cuts):
        last = k == len(cuts) - 1 and not drop
        out = b.emit("Slice", [out], call, dict(axis=ax, start=start, end=stop),
                     suffix=None if last else f"slice{ax}")
        shape[ax] = stop - start
    if drop:
        out = emit_reshape(b, call, out, [d for i, d in enumerate(shape) if i not in drop])
    return out


@on_function(operator.getitem)
def _getitem(b: Builder, call: Call) -> Any:
    obj, idx = call.args[0], call.args[1]
    if isinstance(obj, (list, tuple)):
        return obj[idx]
    if isinstance(obj, TensorRef):
        return _tensor_index(b, call, obj, idx)
    raise call.unsupported(f"indexing a {type(obj).__name__}")


# =========================================================================== reductions
def _mean(b: Builder, call: Call) -> Any:
    x = tensor_in(b, call, call.arg(0, "input"))
    shp = b.shape(x)
    dim = call.arg(1, "dim", None)
    keep = bool(call.arg(2, "keepdim", False))
    dtype = call.arg(3, "dtype", None)
    if dtype is not None and dtype != torch.float32:
        raise call.unsupported(f"mean with dtype={dtype}")
    if dim is None or (isinstance(dim, (list, tuple)) and len(dim) == 0):
        axes = tuple(range(len(shp)))
    else:
        axes = tuple(sorted({norm_axis(d, len(shp), call) for d in (dim if isinstance(dim, (list, tuple)) else [dim])}))
    if len(shp) == 4 and axes == (2, 3):
        if keep:
            return b.emit("GlobalAveragePool", [x], call)
        gap = b.emit("GlobalAveragePool", [x], call, suffix="pool")
        return b.emit("Flatten", [gap], call, dict(axis=1))
    return b.emit("ReduceMean", [x], call, dict(axes=axes, keepdims=keep))


on_function(torch.mean)(_mean)
on_method("mean")(_mean)


# =========================================================================== LRN
def emit_lrn(b: Builder, call: Call, x: TensorRef, size: Any, alpha: Any, beta: Any, k: Any) -> TensorRef:
    """PyTorch's local_response_norm: x / (k + alpha/size * sum of squares)^beta over the channel
    window [c - size//2, c + (size-1)//2] (it pads size//2 in front, (size-1)//2 behind).  For an
    odd size that is the IR's window [c - (size-1)//2, c + size//2]; an even size is one channel
    off it, so it is refused rather than shifted."""
    check_rank(b, call, x, 4)
    size = int(size)
    if size < 1:
        raise call.unsupported(f"local response norm with size={size}")
    if size % 2 == 0:
        h = size // 2
        raise call.unsupported(
            f"local response norm with an even size ({size})",
            f"PyTorch sums channels [c-{h}, c+{h - 1}], one channel off the window [c-{h - 1}, c+{h}] of "
            "ONNX/Caffe LRN (the IR op); use an odd size")
    return b.emit("LRN", [x], call, dict(size=size, alpha=float(alpha), beta=float(beta), bias=float(k)))


@on_module(nn.LocalResponseNorm)
def _lrn_module(b: Builder, call: Call) -> Any:
    m = call.module
    assert isinstance(m, nn.LocalResponseNorm)
    return emit_lrn(b, call, tensor_in(b, call, call.arg(0, "input")), m.size, m.alpha, m.beta, m.k)


@on_function(F.local_response_norm)
def _lrn_fn(b: Builder, call: Call) -> Any:
    return emit_lrn(b, call, tensor_in(b, call, call.arg(0, "input")), call.arg(1, "size"),
                    call.arg(2, "alpha", 1e-4), call.arg(3, "beta", 0.75), call.arg(4, "k", 1.0))


# =========================================================================== resize
#: PyTorch interpolation modes -> the IR Resize encodings that may express them, in order
#: (bilinear by align_corners).  Which one does is decided per node by probing (emit_resize).
_RESIZE_ENCODINGS: dict[tuple[str, bool], tuple[dict[str, str], ...]] = {
    ("nearest", False): (dict(mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor"),),
    ("nearest-exact", False): (dict(mode="nearest", coordinate_transformation_mode="half_pixel",
                                    nearest_mode="round_prefer_ceil"),),
    ("bilinear", False): (dict(mode="linear", coordinate_transformation_mode="half_pixel"),
                          dict(mode="linear", coordinate_transformation_mode="pytorch_half_pixel")),
    ("bilinear", True): (dict(mode="linear", coordinate_transformation_mode="align_corners"),),
}
#: torch computes bilinear weights in float32 (~6e-8 relative); a wrong encoding (another
#: coordinate mode, or PyTorch's 1/scale_factor step against the IR's in/out) moves weights by
#: >= 1/(2*out), far above this
_PROBE_ATOL = 1e-5

SCALE_STEP_HINT = ("with scale_factor PyTorch steps 1/scale_factor per output pixel, the IR input/output size; "
                   "pass recompute_scale_factor=True or size=..., or a scale_factor giving whole output sizes")

ResizeOp = Callable[[torch.Tensor, "tuple[int, int] | None"], torch.Tensor]


def _probe_inputs(h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs whose channel j is the unit impulse at row j (width 1) / column j (height 1):
    resizing them shows the op's whole linear map along that axis, on the real input size."""
    return torch.eye(h).reshape(1, h, h, 1), torch.eye(w).reshape(1, w, 1, w)


def _ir_resize(x: np.ndarray, sizes: tuple[int, int], enc: dict[str, str]) -> np.ndarray:
    """The IR reference's Resize of ``x`` (float64), applied as its per-axis matrices
    (the IR Resize is separable: H, then W)."""
    mh = resize_matrix(enc, x.shape[2], sizes[0])
    mw = resize_matrix(enc, x.shape[3], sizes[1])
    return np.einsum("nchw,oh,qw->ncoq", x, mh, mw)


def emit_resize(b: Builder, call: Call, x: TensorRef, mode: str, align_corners: Any, size: Any,
                op: ResizeOp, hint: str = "") -> TensorRef:
    """An upsample/interpolate call as an IR Resize, proven on the node's own sizes.

    ``op(t, size)`` runs the source op on ``t`` (``size`` replaces its output-size argument
    when not None).  The op is run on impulse inputs along each axis and compared with the
    IR reference of each candidate encoding of ``mode``: the first that agrees is emitted.
    This settles every flag at once (``scale_factor`` with or without
    ``recompute_scale_factor``: PyTorch steps by 1/scale_factor where the IR steps by
    in/out; ``antialias``; PyTorch's clamping at the borders) instead of restating PyTorch's
    arithmetic here."""
    shp = check_rank(b, call, x, 4)
    key = (str(mode), bool(align_corners) if mode == "bilinear" else False)
    if key not in _RESIZE_ENCODINGS:
        if align_corners and mode != "bilinear":
            raise call.unsupported(f"align_corners={align_corners} with mode={mode!r}")
        raise call.unsupported(f"interpolation mode {mode!r}", "supported: nearest, nearest-exact, bilinear")
    h, w = shp[2], shp[3]
    sz = None if size is None else pair(size, "size", call)
    ph, pw = _probe_inputs(h, w)
    with torch.no_grad():
        th = op(ph, None if sz is None else (sz[0], 1)).double().numpy()
        tw = op(pw, None if sz is None else (1, sz[1])).double().numpy()
    out_hw = (int(th.shape[2]), int(tw.shape[3]))
    for enc in _RESIZE_ENCODINGS[key]:
        ok = True
        for probe, got in ((ph, th), (pw, tw)):
            want = _ir_resize(probe.double().numpy(), (int(got.shape[2]), int(got.shape[3])), enc)
            if want.shape != got.shape or not np.allclose(got, want, rtol=0, atol=_PROBE_ATOL):
                ok = False
                break
        if ok:
            return b.emit("Resize", [x], call, dict(sizes=out_hw, **enc))
    raise call.unsupported(
        f"{mode} interpolation from {h}x{w} to {out_hw[0]}x{out_hw[1]} as PyTorch computes it here "
        "(it samples other source positions than an ONNX-style Resize to that size)",
        hint or "pass size=... instead")


def _interpolate_op(size: Any, scale: Any, mode: str, align_corners: Any, recompute: Any, antialias: Any) -> ResizeOp:
    def op(t: torch.Tensor, sz: tuple[int, int] | None) -> torch.Tensor:
        return F.interpolate(t, size=sz if sz is not None else size, scale_factor=None if sz is not None else scale,
                             mode=mode, align_corners=align_corners, recompute_scale_factor=recompute,
                             antialias=antialias)
    return op


def emit_interpolate(b: Builder, call: Call, x: TensorRef, size: Any, scale: Any, mode: str, align_corners: Any,
                     recompute: Any, antialias: Any) -> TensorRef:
    if isinstance(scale, (list, tuple)) and len(scale) != 2:
        raise call.unsupported(f"scale_factor={scale!r} (need 1 or 2 values)")
    if antialias:
        hint = "antialias=True widens the filter when shrinking, which the IR has no form for; pass antialias=False"
    elif scale is not None and not recompute:
        hint = SCALE_STEP_HINT
    else:
        hint = ""
    return emit_resize(b, call, x, mode, align_corners, size,
                       _interpolate_op(size, scale, mode, align_corners, recompute, antialias), hint)


@on_module(nn.Upsample, nn.UpsamplingNearest2d, nn.UpsamplingBilinear2d)
def _upsample_module(b: Builder, call: Call) -> Any:
    m = call.module
    assert isinstance(m, nn.Upsample)
    return emit_interpolate(b, call, tensor_in(b, call, call.arg(0, "input")), m.size, m.scale_factor, m.mode,
                            m.align_corners, m.recompute_scale_factor, False)


@on_function(F.interpolate, F.upsample, F.upsample_nearest, F.upsample_bilinear)
def _interpolate_fn(b: Builder, call: Call) -> Any:
    x = tensor_in(b, call, call.arg(0, "input"))
    size, scale = call.arg(1, "size", None), call.arg(2, "scale_factor", None)
    if call.op.endswith("upsample_nearest"):
        return emit_interpolate(b, call, x, size, scale, "nearest", None, None, False)
    if call.op.endswith("upsample_bilinear"):  # deprecated alias: align_corners=True
        return emit_interpolate(b, call, x, size, scale, "bilinear", True, None, False)
    return emit_interpolate(b, call, x, size, scale, call.arg(3, "mode", "nearest"), call.arg(4, "align_corners", None),
                            call.arg(5, "recompute_scale_factor", None), call.arg(6, "antialias", False))
