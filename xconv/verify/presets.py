"""Preprocessing presets: decoder/interpolation, colour order, value range,
mean/std, base (short side) and crop size.

The seed model zoo's families (its table's evaluation settings, BGR pixels
0..255 read and resized as with OpenCV):

=============== ================================ ============================ ==========================
family          mean (B, G, R)                   std                          base -> crop
=============== ================================ ============================ ==========================
resnet-v2       102.98, 115.947, 122.772         1                            256 -> 224, 320 -> 320
resnext (air)   103.52, 116.28, 123.675          57.375, 57.12, 58.395        256 -> 224, 320 -> 320
inception       128                              128                          320 -> 299, 395 -> 395
xception        128                              128                          320 -> 299, 395 -> 395
dpn             104, 117, 124                    59.88                        256 -> 224, 320 -> 320
senet           104, 117, 123                    1                            256 -> 224, 320 -> 320
=============== ================================ ============================ ==========================

The larger variant is the family name with ``-320`` (``-395`` for
inception/xception).  Framework defaults: ``torchvision`` (RGB in [0, 1],
ImageNet mean/std, 256 -> 224, PIL bilinear), ``tf-slim-inception`` (RGB in
[-1, 1], 342 -> 299), ``tf-slim-vgg`` (RGB mean subtraction, 256 -> 224),
``efficientnet-lite`` (RGB, (x - 127.5) / 128, 224 -> 224), ``keras-caffe``,
``keras-tf``, ``gluon``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ..errors import XconvError
from ..ir import ModelMeta


@dataclass(frozen=True)
class Preset:
    name: str
    color_order: str = "RGB"
    value_range: tuple[float, float] = (0.0, 255.0)
    mean: tuple[float, ...] = (0.0, 0.0, 0.0)
    std: tuple[float, ...] = (1.0, 1.0, 1.0)
    base: int = 256
    crop: int = 224
    resize: str = "pil-bilinear"  # or "cv2-linear" (OpenCV INTER_LINEAR geometry, no antialiasing)
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["value_range"], d["mean"], d["std"] = list(self.value_range), list(self.mean), list(self.std)
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Preset":
        known = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in known}
        for k in ("value_range", "mean", "std"):
            if k in kw:
                kw[k] = tuple(float(x) for x in kw[k])
        return cls(**kw)

    def with_overrides(self, **kw: Any) -> "Preset":
        kw = {k: v for k, v in kw.items() if v is not None}
        for k in ("mean", "std", "value_range"):
            if k in kw:
                v = tuple(float(x) for x in kw[k])
                kw[k] = v * 3 if len(v) == 1 and k != "value_range" else v
        return dataclasses.replace(self, **kw) if kw else self


def _seed(name: str, mean: tuple[float, ...], std: tuple[float, ...], sizes: tuple[tuple[int, int], ...],
          big: str) -> dict[str, Preset]:
    out = {}
    for i, (b, c) in enumerate(sizes):
        n = name if i == 0 else f"{name}-{big}"
        out[n] = Preset(n, "BGR", (0.0, 255.0), mean, std, b, c, "cv2-linear",
                        notes=f"seed model zoo, {name} family: {b} -> {c}")
    return out


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PRESETS: dict[str, Preset] = {
    **_seed("resnet-v2", (102.98, 115.947, 122.772), (1.0, 1.0, 1.0), ((256, 224), (320, 320)), "320"),
    **_seed("resnext", (103.52, 116.28, 123.675), (57.375, 57.12, 58.395), ((256, 224), (320, 320)), "320"),
    **_seed("inception", (128.0,) * 3, (128.0,) * 3, ((320, 299), (395, 395)), "395"),
    **_seed("xception", (128.0,) * 3, (128.0,) * 3, ((320, 299), (395, 395)), "395"),
    **_seed("dpn", (104.0, 117.0, 124.0), (59.88,) * 3, ((256, 224), (320, 320)), "320"),
    **_seed("senet", (104.0, 117.0, 123.0), (1.0, 1.0, 1.0), ((256, 224), (320, 320)), "320"),
    "torchvision": Preset("torchvision", "RGB", (0.0, 1.0), IMAGENET_MEAN, IMAGENET_STD, 256, 224, "pil-bilinear",
                          notes="torchvision IMAGENET1K_V1 transforms"),
    "gluon": Preset("gluon", "RGB", (0.0, 1.0), IMAGENET_MEAN, IMAGENET_STD, 256, 224, "pil-bilinear",
                    notes="gluon model zoo convention"),
    "tf-slim-inception": Preset("tf-slim-inception", "RGB", (-1.0, 1.0), (0.0,) * 3, (1.0,) * 3, 342, 299,
                                "pil-bilinear", notes="inception_preprocessing: central 87.5% then resize"),
    "tf-slim-vgg": Preset("tf-slim-vgg", "RGB", (0.0, 255.0), (123.68, 116.78, 103.94), (1.0,) * 3, 256, 224,
                          "pil-bilinear", notes="vgg_preprocessing (aspect-preserving resize to 256)"),
    "efficientnet-lite": Preset("efficientnet-lite", "RGB", (0.0, 255.0), (127.5,) * 3, (128.0,) * 3, 224, 224,
                                "pil-bilinear", notes="EfficientNet-Lite: (x - 127.5) / 128"),
    "keras-caffe": Preset("keras-caffe", "BGR", (0.0, 255.0), (103.939, 116.779, 123.68), (1.0,) * 3, 256, 224,
                          "pil-bilinear", notes="keras.applications 'caffe' mode (VGG, ResNet v1)"),
    "keras-tf": Preset("keras-tf", "RGB", (-1.0, 1.0), (0.0,) * 3, (1.0,) * 3, 256, 224, "pil-bilinear",
                       notes="keras.applications 'tf' mode (Inception, Xception, MobileNet, ResNet v2)"),
}


def get(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise XconvError(f"unknown preset '{name}'; known: {', '.join(sorted(PRESETS))}") from None


def from_meta(meta: ModelMeta, input_hw: tuple[int, int] | None = None) -> Preset:
    """The preset a converted model carries: ``meta.extra['preset']`` when set, else one made from its
    preprocessing metadata (crop = the model's input size)."""
    if isinstance(meta.extra.get("preset"), dict):
        return Preset.from_json(meta.extra["preset"])
    crop = meta.crop or (input_hw[0] if input_hw else 224)
    base = meta.resize or crop
    return Preset("model-metadata", meta.color_order, tuple(meta.value_range), tuple(meta.mean), tuple(meta.std),
                  int(base), int(crop), "pil-bilinear", notes="from the converted model's metadata")
