"""Per-op, end to end: a tiny PyTorch module (the source framework) against
the IR reference interpreter, real pycaffe (dialects bvlc and ceil-mode) and
onnxruntime, parametrised over the edges that break converters.

Tolerance: every runtime computes in float32 and the reference in float64;
for these one- or two-op graphs on unit-scale inputs the float32 rounding is
a few ulps of the largest magnitude: atol = 2e-5 * (1 + max|torch|).

These are also the per-layer proofs of the stock-Caffe rewrites (dialect
``bvlc``): LRN (an even size as Power/Convolution/Power/Eltwise), nearest and
bilinear upsampling as a fixed-weight Deconvolution (bilinear ``half_pixel``
with its border replicated by Slice+Concat first), Softmax on any axis,
tensor-tensor Max/Min/Sub/Div, count_include_pad=False average pooling at the
borders.  Resizes without an exact Caffe form must fail naming the node
(:data:`CAFFE_REFUSES`), and still convert to ONNX.
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
from xconv.errors import BackendError, UnsupportedAttrError
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


def conv(cin, cout, k, seed=1, **kw):
    torch.manual_seed(seed)
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
    # --- LRN (alpha large enough that the normalisation is far from the identity)
    "lrn5": (nn.LocalResponseNorm(5, alpha=0.5, beta=0.75, k=1.5), (2, 7, 4, 3)),
    "lrn3_fn": (Fn(lambda x: F.local_response_norm(x, 3, alpha=0.3, beta=0.6, k=2.0)), (1, 6, 3, 5)),
    "lrn_size_gt_c": (nn.LocalResponseNorm(7, alpha=1.0), (1, 4, 3, 3)),
    # --- upsampling: Deconvolution with fixed weights in Caffe
    "nearest_x2": (nn.Upsample(scale_factor=2), (1, 3, 4, 5)),
    "nearest_x2x3": (Fn(lambda x: F.interpolate(x, scale_factor=(2, 3))), (2, 2, 3, 4)),
    "nearest_size": (nn.UpsamplingNearest2d(size=(9, 8)), (1, 2, 3, 4)),
    "nearest_exact_x3": (Fn(lambda x: F.interpolate(x, scale_factor=3, mode="nearest-exact")), (1, 2, 3, 4)),
    "bilinear_x2": (nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False), (1, 3, 4, 5)),
    "bilinear_x3": (Fn(lambda x: F.interpolate(x, scale_factor=3, mode="bilinear")), (1, 2, 3, 4)),
    "bilinear_x2x4_1px": (Fn(lambda x: F.interpolate(x, scale_factor=(2, 4), mode="bilinear")), (1, 2, 1, 3)),
    "bilinear_x2_align": (nn.UpsamplingBilinear2d(size=(7, 9)), (1, 3, 4, 5)),  # (H-1)*2+1: a plain deconvolution
    "conv_up_conv": (Fn(lambda x, a, b: b(F.interpolate(a(x), scale_factor=2, mode="bilinear")),
                        conv(3, 4, 3, padding=1), conv(4, 2, 3, seed=2)), (1, 3, 5, 6)),
    # --- softmax on any axis of a 4-D tensor
    "softmax_axis1_4d": (nn.Softmax(1), (2, 3, 4, 5)),
    "softmax_axis2": (Fn(lambda x: F.softmax(x, 2)), (2, 3, 4, 5)),
    "softmax_axis3": (Fn(lambda x: torch.softmax(x, -1)), (2, 3, 4, 5)),
    # --- element-wise on two computed tensors (two branches of the same input)
    "max_branches": (Fn(lambda x, a, b: torch.maximum(a(x), b(x)), conv(3, 4, 3, seed=1), conv(3, 4, 3, seed=2)),
                     (1, 3, 6, 5)),
    "min_branches": (Fn(lambda x, a, b: torch.min(a(x), b(x)), conv(3, 4, 1, seed=3), conv(3, 4, 1, seed=4)),
                     (1, 3, 4, 4)),
    "sub_branches": (Fn(lambda x, a, b: a(x) - b(x), conv(3, 4, 3, seed=5), conv(3, 4, 3, seed=6)), (1, 3, 5, 5)),
    "div_branches": (Fn(lambda x, a, b: a(x) / (torch.abs(b(x)) + 1), conv(3, 4, 3, seed=7), conv(3, 4, 3, seed=8)),
                     (1, 3, 5, 5)),
    # --- count_include_pad=False average pooling where windows overhang a border unevenly
    "avgpool_excl_rect_ceil": (nn.AvgPool2d((3, 2), (2, 3), padding=1, ceil_mode=True, count_include_pad=False),
                               (1, 2, 8, 11)),
    "avgpool_excl_k2_ceil": (nn.AvgPool2d(2, 2, padding=1, ceil_mode=True, count_include_pad=False), (1, 2, 5, 6)),
}

#: Resizes with no exact stock-Caffe form: Caffe must refuse them naming the node; ONNX converts them.
CAFFE_REFUSES = {
    "bilinear_x1.5": (Fn(lambda x: F.interpolate(x, size=(6, 9), mode="bilinear")), (1, 2, 4, 6), "ratio 6/4 = 3/2"),
    "bilinear_align_x2": (nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True), (1, 2, 4, 5),
                          "align_corners"),
    "nearest_down": (Fn(lambda x: F.interpolate(x, size=(3, 2))), (1, 2, 6, 4), "downsampling"),
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


def _torch_case(module: nn.Module, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    module = module.eval()
    _randomise(module)
    x = np.random.default_rng(7).standard_normal(shape).astype(np.float32) * 2
    with torch.no_grad():
        return x, module(torch.from_numpy(x)).numpy()


@pytest.mark.parametrize("name", list(CAFFE_REFUSES))
def test_caffe_refuses_inexact_resize(name, tmp_path):
    module, shape, why = CAFFE_REFUSES[name]
    x, want = _torch_case(module, shape)
    atol = 2e-5 * (1 + float(np.abs(want).max()))
    graph = load(module, input_shape=shape, name="m")
    (node,) = [n for n in graph.nodes if n.op == "Resize"]
    ref = reference.run(graph, {next(iter(graph.inputs)): x.astype(np.float64)})[graph.outputs[0]]
    np.testing.assert_allclose(ref, want, rtol=0, atol=atol, err_msg="IR reference vs torch")
    for opset in (13, 18):
        res = convert(graph, "onnx", tmp_path / f"onnx{opset}", "m", EmitOptions(opset=opset))
        got = make_runner(locate(next(p for p in res.files if p.suffix == ".onnx")))(x)
        np.testing.assert_allclose(got.reshape(want.shape), want, rtol=0, atol=atol, err_msg=f"onnx {opset}")
    for dialect in ("bvlc", "ceil-mode"):
        with pytest.raises(BackendError) as ei:
            convert(graph, "caffe", tmp_path / dialect, "m", EmitOptions(dialect=dialect))
        msg = str(ei.value)
        assert f"'{node.name}'" in msg and why in msg and "--to onnx" in msg, msg
        assert not list((tmp_path / dialect).glob("m.*")), "a refused conversion must write nothing"


# --------------------------------------------------------------------------- IR-level cases
# What PyTorch cannot say but other frontends (ONNX, Caffe) bring: every Resize coordinate /
# nearest mode with an exact Caffe form, even LRN sizes, asymmetric count_include_pad=False pads.
# The reference is the float64 IR interpreter (the ONNX Resize/LRN definitions).
def _ir_single(op: str, shape: tuple[int, ...], **attrs):
    from xconv.ir import Graph, Node, SourceLoc, TensorType
    from xconv.ops import make_attrs
    return Graph("m", [Node(op, "n", ["x"], ["y"], make_attrs(op, **attrs), SourceLoc("test", "n"))],
                 {"x": TensorType(shape)}, ["y"])


IR_CASES = {
    "resize_linear_asymmetric_x2": ("Resize", (1, 2, 4, 5), dict(sizes=(8, 10), mode="linear",
                                                                 coordinate_transformation_mode="asymmetric")),
    "resize_linear_pytorch_half_pixel_x4": ("Resize", (1, 2, 3, 2), dict(
        sizes=(12, 8), mode="linear", coordinate_transformation_mode="pytorch_half_pixel")),
    "resize_nearest_round_floor_x3": ("Resize", (1, 2, 4, 3), dict(
        sizes=(12, 9), mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="round_prefer_floor")),
    "resize_nearest_half_pixel_ceil_x2": ("Resize", (2, 2, 3, 4), dict(
        sizes=(6, 8), mode="nearest", coordinate_transformation_mode="half_pixel", nearest_mode="ceil")),
    "resize_nearest_align_corners_x2": ("Resize", (1, 2, 4, 5), dict(
        sizes=(7, 9), mode="nearest", coordinate_transformation_mode="align_corners",
        nearest_mode="round_prefer_ceil")),
    "lrn_even4": ("LRN", (2, 7, 3, 4), dict(size=4, alpha=0.5, beta=0.75, bias=1.5)),
    "lrn_even2": ("LRN", (1, 5, 2, 3), dict(size=2, alpha=2.0, beta=0.5, bias=1.0)),
    "avgpool_excl_asym_pads": ("AveragePool", (1, 2, 7, 8), dict(
        kernel_shape=(3, 3), strides=(2, 2), pads=(0, 1, 1, 0), count_include_pad=False)),
    "avgpool_excl_asym_pads_ceil": ("AveragePool", (1, 2, 8, 9), dict(
        kernel_shape=(3, 2), strides=(2, 2), pads=(1, 0, 2, 1), ceil_mode=True, count_include_pad=False)),
}


@pytest.mark.parametrize("name", list(IR_CASES))
def test_ir_case_every_backend(name, tmp_path):
    op, shape, attrs = IR_CASES[name]
    graph = _ir_single(op, shape, **attrs)
    x = np.random.default_rng(11).standard_normal(shape).astype(np.float32) * 2
    want = reference.run(graph, {"x": x.astype(np.float64)})["y"]
    atol = 2e-5 * (1 + float(np.abs(want).max()))
    for target, opts in (("caffe", EmitOptions(dialect="bvlc")), ("caffe", EmitOptions(dialect="ceil-mode")),
                         ("onnx", EmitOptions(opset=13)), ("onnx", EmitOptions(opset=18))):
        res = convert(graph, target, tmp_path / f"{target}-{opts.dialect or opts.opset}", "m", opts)
        got = make_runner(locate(next(p for p in res.files if p.suffix in (".prototxt", ".onnx"))))(x)
        np.testing.assert_allclose(got.reshape(want.shape), want, rtol=0, atol=atol,
                                   err_msg=f"{target} {opts.dialect or opts.opset} vs IR reference")


def test_nearest_upsampling_is_a_bit_exact_copy(tmp_path):
    """Nearest upsampling is pixel replication: the Deconvolution adds x * 1 to zeros, exactly."""
    module, shape = CASES["nearest_x2x3"]
    x, want = _torch_case(module, shape)
    graph = load(module, input_shape=shape, name="m")
    res = convert(graph, "caffe", tmp_path, "m", EmitOptions(dialect="bvlc"))
    proto = next(p for p in res.files if p.suffix == ".prototxt")
    assert "Deconvolution" in proto.read_text()
    np.testing.assert_array_equal(make_runner(locate(proto))(x).reshape(want.shape), want)


# --------------------------------------------------------------------------- frontend paths
class _UpBlock(nn.Module):
    def __init__(self, mode: str, align_corners: bool | None) -> None:
        super().__init__()
        self.conv = conv(3, 4, 3, padding=1)
        self.up = nn.Upsample(scale_factor=2, mode=mode, align_corners=align_corners)

    def forward(self, x):
        return self.up(self.conv(x))


@pytest.mark.parametrize("capture", ["script", "trace"])
@pytest.mark.parametrize("mode,align", [("nearest", None), ("bilinear", False), ("bilinear", True)])
def test_torchscript_upsample(capture, mode, align):
    shape = (1, 3, 5, 4)
    m = _UpBlock(mode, align).eval()
    x = np.random.default_rng(5).standard_normal(shape).astype(np.float32)
    ts = torch.jit.script(m) if capture == "script" else torch.jit.trace(m, torch.from_numpy(x))
    graph = load(ts, input_shape=shape)
    (node,) = [n for n in graph.nodes if n.op == "Resize"]
    assert node.attrs["sizes"] == (10, 8)
    with torch.no_grad():
        want = m(torch.from_numpy(x)).numpy()
    got = reference.run(graph, {next(iter(graph.inputs)): x.astype(np.float64)})[graph.outputs[0]]
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-5 * (1 + float(np.abs(want).max())))


@pytest.mark.parametrize("module,shape,match", [
    (nn.LocalResponseNorm(4), (1, 6, 3, 3), r"localresponsenorm.*even size \(4\).*\[c-2, c\+1\]"),
    (Fn(lambda x: F.interpolate(x, scale_factor=2, mode="bicubic")), (1, 2, 3, 3), r"interpolate.*'bicubic'"),
    (Fn(lambda x: F.interpolate(x, size=(2, 3), mode="bilinear", antialias=True)), (1, 2, 4, 6),
     r"interpolate.*antialias=False"),
    (Fn(lambda x: F.interpolate(x, scale_factor=1.3)), (1, 2, 4, 5), r"interpolate.*recompute_scale_factor=True"),
])
def test_pytorch_forms_without_ir_form_are_named(module, shape, match):
    with pytest.raises(UnsupportedAttrError, match=match):
        load(module.eval(), input_shape=shape)


def test_scale_factor_recomputed_is_accepted():
    """scale_factor=1.3 with recompute_scale_factor=True samples like an ONNX Resize to the size."""
    module = Fn(lambda x: F.interpolate(x, scale_factor=1.3, mode="bilinear", recompute_scale_factor=True))
    x, want = _torch_case(module, (1, 2, 4, 5))
    graph = load(module, input_shape=(1, 2, 4, 5))
    got = reference.run(graph, {next(iter(graph.inputs)): x.astype(np.float64)})[graph.outputs[0]]
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-5 * (1 + float(np.abs(want).max())))
