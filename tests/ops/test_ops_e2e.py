"""Per-op, end to end: a tiny PyTorch module (the source framework) against
the IR reference interpreter, real pycaffe (dialects bvlc and ceil-mode) and
onnxruntime, parametrised over the edges that break converters.

Tolerance: every runtime computes in float32 and the reference in float64;
for these one- or two-op graphs on unit-scale inputs the float32 rounding is
a few ulps of the largest magnitude: atol = 2e-5 * (1 + max|torch|).
"""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from xconv import reference
from xconv.backend import EmitOptions
from xconv.convert import convert
from xconv.errors import BackendError
from xconv.frontends.pytorch import load
from xconv.verify.runners import locate, make_runner

os.environ.setdefault("GLOG_minloglevel", "2")
torch.set_num_threads(1)


class Fn(nn.Module):
    def __init__(self, fn, *mods):
        super().__init__()
        self.fn = fn
        self.mods = nn.ModuleList(mods)

    def forward(self, x):
        return self.fn(x, *self.mods)


def conv(cin, cout, k, **kw):
    torch.manual_seed(1)
    c = nn.Conv2d(cin, cout, k, **kw)
    return c


CASES = {
    # name: (module, input shape)
    "conv_groups_dil": (conv(4, 6, 3, groups=2, dilation=2, padding=1), (1, 4, 11, 9)),
    "conv_stride_gt_k": (conv(3, 5, 2, stride=3, bias=False), (2, 3, 10, 11)),
    "conv_depthwise": (conv(6, 6, 3, groups=6, stride=2, padding=1), (1, 6, 9, 8)),
    "conv_same": (conv(3, 4, 4, padding="same"), (1, 3, 7, 8)),
    "zeropad_asym_conv": (nn.Sequential(nn.ZeroPad2d((0, 1, 0, 1)), conv(3, 4, 3, stride=2)), (1, 3, 8, 8)),
    "pad_asym_alone": (Fn(lambda x: F.pad(x, (1, 2, 0, 3)) * 1.5), (1, 2, 5, 4)),
    "maxpool_floor": (nn.MaxPool2d(3, 2), (1, 3, 8, 9)),
    "maxpool_ceil": (nn.MaxPool2d(3, 2, ceil_mode=True), (1, 3, 8, 9)),
    "maxpool_pad_floor": (nn.MaxPool2d(3, 2, padding=1), (1, 3, 8, 7)),
    "maxpool_stride_gt_k": (nn.MaxPool2d(2, 3), (1, 2, 8, 9)),
    "avgpool_floor_incl": (nn.AvgPool2d(3, 2, padding=1), (1, 3, 8, 9)),
    "avgpool_floor_excl": (nn.AvgPool2d(3, 2, padding=1, count_include_pad=False), (1, 3, 8, 9)),
    "avgpool_ceil_excl": (nn.AvgPool2d(3, 2, padding=1, ceil_mode=True, count_include_pad=False), (1, 3, 10, 7)),
    "avgpool_ceil_incl": (nn.AvgPool2d(2, 2, ceil_mode=True), (1, 3, 7, 7)),
    "adaptive_avg_1": (nn.AdaptiveAvgPool2d(1), (1, 4, 7, 5)),
    "adaptive_avg_7": (nn.AdaptiveAvgPool2d(7), (1, 4, 14, 14)),
    "adaptive_max_1": (nn.AdaptiveMaxPool2d(1), (1, 4, 6, 5)),
    "relu6": (nn.ReLU6(), (1, 3, 5, 5)),
    "hardtanh": (nn.Hardtanh(-0.5, 2.0), (1, 3, 5, 5)),
    "hardsigmoid": (nn.Hardsigmoid(), (1, 3, 5, 5)),
    "hardswish": (nn.Hardswish(), (1, 3, 5, 5)),
    "silu": (nn.SiLU(), (1, 3, 5, 5)),
    "sigmoid_tanh": (Fn(lambda x: torch.sigmoid(x) + torch.tanh(x)), (1, 3, 4, 4)),
    "leaky_elu": (Fn(lambda x: F.leaky_relu(x, 0.2) * F.elu(x)), (1, 3, 4, 4)),
    "prelu": (nn.PReLU(3, 0.3), (1, 3, 4, 4)),
    "bn_standalone": (Fn(lambda x, bn: bn(x + 1.0), nn.BatchNorm2d(3)), (2, 3, 4, 5)),
    "linear": (Fn(lambda x, fc: fc(torch.flatten(x, 1)), nn.Linear(48, 7)), (2, 3, 4, 4)),
    "cat_chunk": (Fn(lambda x: (lambda t: torch.cat([t[2], t[1], t[0]], 1))(x.chunk(3, 1))), (1, 6, 3, 3)),
    "split_unequal": (Fn(lambda x: (lambda t: torch.cat([t[1] * 2, t[0], t[2] * 3], 1))(x.split([1, 3, 2], 1))),
                      (1, 6, 3, 3)),
    "se_block": (Fn(lambda x: x * torch.sigmoid(x.mean((2, 3), keepdim=True))), (2, 4, 5, 5)),
    "channel_shuffle": (Fn(lambda x: x.view(1, 2, 3, 4, 4).transpose(1, 2).contiguous().view(1, 6, 4, 4)),
                        (1, 6, 4, 4)),
    "mul_add_scalar": (Fn(lambda x: (x * 2.5 - 1.0) / 4.0 + 3), (1, 2, 3, 3)),
    "softmax": (Fn(lambda x: F.softmax(torch.flatten(x, 1), 1)), (2, 3, 2, 2)),
    "view_reshape": (Fn(lambda x: x.reshape(x.size(0), -1)), (2, 3, 2, 2)),
}


def _randomise(m: nn.Module) -> None:
    torch.manual_seed(3)
    for b in m.modules():
        if isinstance(b, nn.BatchNorm2d):
            b.running_mean.normal_(0, 0.5)
            b.running_var.uniform_(0.5, 2.0)
            b.weight.data.uniform_(0.5, 1.5)
            b.bias.data.normal_(0, 0.3)


@pytest.mark.parametrize("name", list(CASES))
def test_op_end_to_end(name, tmp_path):
    module, shape = CASES[name]
    module = module.eval()
    _randomise(module)
    x = np.random.default_rng(7).standard_normal(shape).astype(np.float32) * 2
    with torch.no_grad():
        want = module(torch.from_numpy(x)).numpy()
    atol = 2e-5 * (1 + float(np.abs(want).max()))
    graph = load(module, input_shape=shape, name="m")
    ref = reference.run(graph, {next(iter(graph.inputs)): x.astype(np.float64)})[graph.outputs[0]]
    np.testing.assert_allclose(ref, want, rtol=0, atol=atol, err_msg="IR reference vs torch")
    for target, opts in (("caffe", EmitOptions(dialect="bvlc")), ("caffe", EmitOptions(dialect="ceil-mode")),
                         ("onnx", EmitOptions(opset=13)), ("onnx", EmitOptions(opset=18))):
        out = tmp_path / f"{target}-{opts.dialect or opts.opset}"
        try:
            res = convert(graph, target, out, "m", opts)
        except BackendError as e:  # pragma: no cover - every case here must convert
            pytest.fail(f"{target}/{opts}: {e}")
        path = next(p for p in res.files if p.suffix in (".prototxt", ".onnx"))
        got = make_runner(locate(path))(x)
        np.testing.assert_allclose(got.reshape(want.shape), want, rtol=0, atol=atol,
                                   err_msg=f"{target} {opts.dialect or opts.opset} vs torch")
        if target == "caffe" and opts.dialect == "bvlc":
            assert "ceil_mode" not in path.read_text()
