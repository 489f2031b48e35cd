"""Test-model recipes shared by the golden generator and the zoo parity tests.

Models come from torchvision (code this project did not write), with random
weights made non-trivial the way the field notes ask: random BatchNorm
statistics and affine parameters, and a classifier rescaled so that logits
on the test photos spread over a few units (otherwise every photo lands in
one class and top-1 agreement proves nothing).
"""
from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import numpy as np

ZOO = {
    # name: (input size, photos)
    "resnet18": 224,
    "resnext50_32x4d": 224,
    "wide_resnet50_2": 224,
    "densenet121": 224,
    "inception_v3": 299,
    "mobilenet_v2": 224,
    "mobilenet_v3_large": 224,
    "squeezenet1_1": 224,
    "vgg16_bn": 224,
    "shufflenet_v2_x1_0": 224,
}
PHOTOS = ("imagenet_00_243.jpg", "imagenet_05_853.jpg")
# photos that set BatchNorm statistics and the logit scale of the test models
CALIBRATION = tuple(f"imagenet_{i:02d}_{lab}.jpg" for i, lab in
                    enumerate((243, 559, 438, 990, 949, 853, 609, 609)))
GOLDEN = Path(__file__).resolve().parent.parent / "golden"


def photo_dir() -> Path:
    spec = importlib.util.find_spec("foolbox")
    assert spec is not None and spec.submodule_search_locations, "foolbox==3.3.4 (data only) is part of `make setup`"
    return Path(list(spec.submodule_search_locations)[0]) / "data"


def photo_label(name: str) -> int:
    m = re.match(r"imagenet_\d+_(\d+)\.", name)
    assert m
    return int(m.group(1))


def torchvision_inputs(size: int, names=PHOTOS) -> np.ndarray:
    """Photos preprocessed by torchvision's own transforms (independent of xconv)."""
    from PIL import Image

    from xconv.frontends.pytorch import import_torchvision
    tv = import_torchvision()
    T = tv.transforms
    tf = T.Compose([T.Resize(int(size * 256 / 224)), T.CenterCrop(size), T.ToTensor(),
                    T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
    d = photo_dir()
    return np.stack([tf(Image.open(d / n).convert("RGB")).numpy() for n in names]).astype(np.float32)


def center_photos(size: int, names) -> np.ndarray:
    """Photos as float32 NHWC RGB pixels (0..255): short side resized to round(size/0.875) with
    PIL bilinear, then the centre ``size`` crop (PIL + numpy only; the Keras and MXNet test zoos
    normalise these their own way)."""
    from PIL import Image

    d = photo_dir()
    short = int(round(size / 0.875))
    out = []
    for n in names:
        im = Image.open(d / n).convert("RGB")
        w, h = im.size
        if w <= h:
            nw, nh = short, max(short, int(round(h * short / w)))
        else:
            nw, nh = max(short, int(round(w * short / h))), short
        im = im.resize((nw, nh), Image.BILINEAR)
        left, top = (nw - size) // 2, (nh - size) // 2
        im = im.crop((left, top, left + size, top + size))
        out.append(np.asarray(im, dtype=np.float32))
    return np.stack(out)


def calibrate_bn(model, x, seed: int) -> None:
    """Non-trivial, realistic BatchNorm statistics.

    Running statistics are first measured on real photos (a train-mode pass
    with a cumulative average), then perturbed at random (mean shifted by up
    to ~0.2 std, variance scaled by 0.5..2, random affine parameters).  Purely
    random statistics make deep random nets collapse every photo onto the
    same features, which would let a broken early layer pass unnoticed.
    """
    import torch
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in bns:
            c = m.num_features
            if m.affine:
                m.weight.copy_(torch.rand(c, generator=g) + 0.5)
                m.bias.copy_(torch.randn(c, generator=g) * 0.2)
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the calibration pass
        model.train()
        model(x)
        model.eval()
        for m in bns:
            c = m.num_features
            std = m.running_var.sqrt()
            m.running_mean.add_(torch.randn(c, generator=g) * 0.2 * std)
            m.running_var.mul_(torch.rand(c, generator=g) * 1.5 + 0.5)


def last_linear(model):
    import torch
    last = None
    for m in model.modules():
        if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)):
            last = m
    return last


def build(name: str, seed: int = 0):
    """torchvision ``name`` with random weights, non-trivial BN, spread logits, in eval mode."""
    import torch

    from xconv.frontends.pytorch import import_torchvision
    tv = import_torchvision()
    torch.manual_seed(seed)
    kw = {"aux_logits": False, "init_weights": True} if name == "inception_v3" else {}
    model = getattr(tv.models, name)(weights=None, **kw).eval()
    size = ZOO[name]
    x = torch.from_numpy(torchvision_inputs(size, CALIBRATION))
    calibrate_bn(model, x, seed + 1)
    fc = last_linear(model)
    with torch.no_grad():
        z = model(x)
        mu = z.mean(0)
        sd = (z - mu).std()
        s = 3.0 / float(sd) if float(sd) > 0 else 1.0
        fc.weight.mul_(s)
        if fc.bias is not None:
            b = (fc.bias - mu.reshape(fc.bias.shape)) * s if isinstance(fc, torch.nn.Linear) else fc.bias * s
            fc.bias.copy_(b)
    return model
