"""TF-slim architectures as IR builders, recognised from checkpoint scopes.

Each family module registers :class:`ArchSpec` entries.  A checkpoint's
architecture is recognised by its top-level variable scope (``InceptionV4``,
``resnet_v2_101``, ``MobilenetV1`` ...), which slim's definitions fix; the
number of classes is read from the logits' shape (1000 or 1001).
"""
from __future__ import annotations

import importlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

from xconv.errors import XconvError
from xconv.ir import Graph, ModelMeta

from .layers import SlimNet

#: family modules, imported on first use (each registers its architectures)
FAMILIES = ("resnet", "vgg", "alexnet", "inception", "inception_v4", "inception_resnet_v2", "mobilenet")

# preprocessing presets (ModelMeta fields) of the slim model zoo
INCEPTION_PRE = dict(color_order="RGB", value_range=(0.0, 255.0), mean=(127.5,) * 3, std=(127.5,) * 3)
#: slim's inception preprocessing takes a central 87.5% crop, then resizes it to the input size;
#: the short-side resize before a centre crop that takes the same share of a square image:
CENTRAL_CROP_RESIZE = {224: 256, 299: 342}
VGG_PRE = dict(color_order="RGB", value_range=(0.0, 255.0), mean=(123.68, 116.78, 103.94), std=(1.0,) * 3)


@dataclass(frozen=True)
class ArchSpec:
    name: str                       # --arch name, e.g. "inception_v4"
    scope: str                      # top-level variable scope, e.g. "InceptionV4"
    build: Callable[[SlimNet], str]  # builds the net on SlimNet, returns the logits tensor (N, classes)
    input_size: int                 # default square input (224, 299 ...)
    bn_eps: float                   # the architecture's BatchNorm epsilon (slim arg_scope default)
    logits_var: str                 # a variable whose last dim is the number of classes
    preprocessing: Mapping[str, Any] = field(default_factory=dict)  # ModelMeta fields
    resize: int | None = None       # short side before the centre crop (None: crop = whole image)


ARCHS: dict[str, ArchSpec] = {}


def register(spec: ArchSpec) -> ArchSpec:
    if spec.name in ARCHS:
        raise ValueError(f"tf-slim arch {spec.name} registered twice")
    ARCHS[spec.name] = spec
    return spec


def _load_families() -> None:
    for fam in FAMILIES:
        try:
            importlib.import_module(f"{__name__}.{fam}")
        except ModuleNotFoundError as e:
            if e.name != f"{__name__}.{fam}":
                raise


def known() -> list[str]:
    _load_families()
    return sorted(ARCHS)


def detect(names: Iterable[str]) -> ArchSpec:
    """The architecture whose scope the checkpoint's variables live under."""
    _load_families()
    scopes = Counter(n.split("/", 1)[0] for n in names if "/" in n)
    by_scope = {a.scope: a for a in ARCHS.values()}
    hits = [by_scope[s] for s, _ in scopes.most_common() if s in by_scope]
    if not hits:
        top = ", ".join(f"{s} ({c})" for s, c in scopes.most_common(5)) or "none"
        raise XconvError(f"tf-slim: cannot recognise the architecture from the variable scopes ({top}); "
                         f"pass --arch, one of: {', '.join(known())}")
    return hits[0]


def get(name: str) -> ArchSpec:
    _load_families()
    try:
        return ARCHS[name]
    except KeyError:
        raise XconvError(f"tf-slim: unknown --arch '{name}'; known: {', '.join(known())}") from None


def build(spec: ArchSpec, weights: Mapping[str, Any], input_shape: tuple[int, ...] | None = None, *,
          source_file: str | None = None, drop_background: bool = False, name: str | None = None) -> Graph:
    """The IR of ``spec`` with ``weights`` (name -> array), NCHW input ``input_shape``."""
    shape = tuple(input_shape) if input_shape else (1, 3, spec.input_size, spec.input_size)
    net = SlimNet(weights, shape, bn_eps=spec.bn_eps, source_file=source_file)
    logits = spec.build(net)
    classes = net.shape(logits)[-1]
    offset = 1 if classes == 1001 else 0
    if drop_background:
        if classes != 1001:
            raise XconvError(f"tf-slim: --drop-background needs a 1001-class head; {spec.name} has {classes}")
        logits = drop_background_logit(net, logits)
        classes, offset = 1000, 0
    meta = ModelMeta(**dict(spec.preprocessing), crop=shape[2], resize=spec.resize, num_classes=classes,
                     background_offset=offset, source_framework="tf-slim", source_file=source_file or "")
    meta.extra["arch"] = spec.name
    return net.finish([logits], name or spec.name, meta)


def drop_background_logit(net: SlimNet, logits: str) -> str:
    """1000 classes from a 1001-class head, exactly: a Slice of logits 1..1000 (the passes leave
    it to the backends; dropping row 0 of the last layer's weights is equivalent)."""
    return net.b.add("Slice", [logits], name="drop_background", axis=1, start=1, end=1001)
