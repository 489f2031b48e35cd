"""Labelled image sets and preprocessing.

An image set is a folder of images plus an optional labels file with lines
``name label`` (Caffe's ``val.txt`` style; label = class index in
sorted-synset order).  Preprocessing follows the model's metadata
(:class:`xconv.ir.ModelMeta`): resize the short side to ``resize`` keeping
the aspect ratio (bilinear), centre-crop ``crop``, scale pixels to
``value_range``, order channels as ``color_order``, then ``(x - mean) / std``.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputFileError, XconvError
from ..ir import ModelMeta

log = logging.getLogger(__name__)

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".webp", ".JPEG")


@dataclass
class ImageSet:
    paths: list[Path]
    labels: list[int | None]

    def __len__(self) -> int:
        return len(self.paths)


def read_labels(path: Path) -> dict[str, int]:
    """``name label`` lines (see :func:`xconv.verify.datasets.read_label_file`)."""
    from .datasets import read_label_file  # noqa: PLC0415
    return read_label_file(path)


def image_set(folder: str | Path, labels: str | Path | None = None, limit: int | None = None) -> ImageSet:
    folder = Path(folder)
    if not folder.is_dir():
        raise InputFileError(f"image folder '{folder}' does not exist")
    paths = sorted(p for p in folder.iterdir() if p.suffix in IMAGE_EXTS or p.suffix.lower() in IMAGE_EXTS)
    if not paths:
        raise InputFileError(f"no images in '{folder}'")
    lab: list[int | None] = [None] * len(paths)
    if labels is not None:
        table = read_labels(Path(labels))
        missing = [p.name for p in paths if p.name not in table]
        if missing:
            raise InputFileError(f"labels file '{labels}' has no label for {missing[:5]}"
                                 f"{' ...' if len(missing) > 5 else ''}")
        lab = [table[p.name] for p in paths]
    if limit is not None:
        paths, lab = paths[:limit], lab[:limit]
    return ImageSet(paths, lab)


def preprocess(path: Path, meta: ModelMeta, size: tuple[int, int]) -> np.ndarray:
    """One image -> CHW float32 as the model expects it."""
    try:
        from PIL import Image
    except ImportError as e:  # pragma: no cover
        raise XconvError("reading images needs Pillow (pip install pillow)") from e
    try:
        img = Image.open(path).convert("RGB")
    except OSError as e:
        raise InputFileError(f"cannot decode image '{path}': {e}") from e
    h, w = size
    if meta.resize:
        s = meta.resize
        iw, ih = img.size
        if iw <= ih:
            nw, nh = s, max(1, round(ih * s / iw))
        else:
            nw, nh = max(1, round(iw * s / ih)), s
        if (nw, nh) != img.size:
            img = img.resize((nw, nh), Image.BILINEAR)
    iw, ih = img.size
    if (iw, ih) != (w, h):
        if iw < w or ih < h:
            img = img.resize((max(w, iw), max(h, ih)), Image.BILINEAR)
            iw, ih = img.size
        left, top = (iw - w) // 2, (ih - h) // 2
        img = img.crop((left, top, left + w, top + h))
    x = np.asarray(img, dtype=np.float32)
    lo, hi = meta.value_range
    if (lo, hi) != (0.0, 255.0):
        x = x / 255.0 * (hi - lo) + lo
    if meta.color_order.upper() == "BGR":
        x = x[:, :, ::-1]
    x = (x - np.asarray(meta.mean, np.float32)) / np.asarray(meta.std, np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1), dtype=np.float32)


def random_batches(shape: tuple[int, ...], count: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((count,) + tuple(shape[1:])).astype(np.float32)
