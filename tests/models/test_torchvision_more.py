"""More torchvision CNN classifiers, converted to Caffe (bvlc, real pycaffe)
and ONNX (onnxruntime) and compared with PyTorch on one real photo.

Unlike the golden zoo these run the source model live (it is the
reference); they cover the constructs of the remaining torchvision CNN
families: GoogLeNet's input transform and ceil-mode pools, AlexNet's
adaptive pool to 6x6, MNASNet, RegNet's grouped convs with SE, and
EfficientNet's SiLU + squeeze-excitation.  Transformer families (ViT,
Swin, MaxViT) and ConvNeXt use LayerNorm/GELU/attention, which have no
exact stock-Caffe form: they are checked to fail with the op list.
Tolerance: logits are spread to ~3 units; float32 reordering across a
deep net gives <= 1e-4 here, so atol 1e-3.
"""
from __future__ import annotations

import os

import numpy as np
import pytest

import zoo

os.environ.setdefault("GLOG_minloglevel", "2")

MODELS = {
    "googlenet": ({"aux_logits": False, "init_weights": True}, 224),
    "alexnet": ({}, 224),
    "mnasnet0_5": ({}, 224),
    "regnet_x_400mf": ({}, 224),
    "efficientnet_b0": ({}, 224),
    "resnet50": ({}, 224),
}


def _build(name: str, kw: dict, size: int):
    import torch

    from xconv.frontends.pytorch import import_torchvision
    tv = import_torchvision()
    torch.manual_seed(0)
    m = getattr(tv.models, name)(weights=None, **kw).eval()
    x = torch.from_numpy(zoo.torchvision_inputs(size, zoo.CALIBRATION))
    zoo.calibrate_bn(m, x, 1)
    fc = zoo.last_linear(m)
    with torch.no_grad():
        z = m(x)
        mu = z.mean(0)
        s = 3.0 / float((z - mu).std())
        fc.weight.mul_(s)
        if fc.bias is not None:
            fc.bias.copy_((fc.bias - mu) * s)
    return m


@pytest.mark.slow
@pytest.mark.parametrize("name", list(MODELS))
def test_torchvision_cnn(name, tmp_path):
    import torch

    from xconv.backend import EmitOptions
    from xconv.convert import convert
    from xconv.frontends.pytorch import load
    from xconv.verify.runners import locate, make_runner

    kw, size = MODELS[name]
    torch.set_num_threads(2)
    m = _build(name, kw, size)
    x = zoo.torchvision_inputs(size, zoo.PHOTOS[:1])
    with torch.no_grad():
        want = m(torch.from_numpy(x)).numpy()
    graph = load(m, input_shape=x.shape, name=name)
    for target, opts in (("caffe", EmitOptions(dialect="bvlc")), ("onnx", EmitOptions(opset=13))):
        res = convert(graph, target, tmp_path, name, opts)
        got = make_runner(locate(next(p for p in res.files if p.suffix in (".prototxt", ".onnx"))))(x)
        err = float(np.abs(got - want).max())
        assert got.argmax(1).tolist() == want.argmax(1).tolist(), target
        assert err <= 1e-3, f"{target}: max|dlogit| {err:.2e}"


@pytest.mark.parametrize("name", ["convnext_tiny", "vit_b_16"])
def test_transformer_families_report_unsupported_ops(name):
    from xconv.errors import UnsupportedOpError
    from xconv.frontends.pytorch import import_torchvision, load
    tv = import_torchvision()
    m = getattr(tv.models, name)(weights=None).eval()
    with pytest.raises(UnsupportedOpError) as ei:
        load(m, input_shape=(1, 3, 224, 224))
    assert "nn.LayerNorm" in ei.value.ops and "nn.GELU" in ei.value.ops, str(ei.value)
