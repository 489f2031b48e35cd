"""Evaluation crops: single centre crop, 12-crop and 144-crop, with the
geometry of the seed model zoo's evaluation script (``evaluation_cls.py``):

* every image is first resized so its short side is ``base`` and its long
  side ``floor(long * base / short)``;
* **single**: the centre ``crop`` square, offset ``floor((W - crop) / 2)``;
* **12-crop**: that image resized to a ``base`` x ``base`` square; from the
  square and from its horizontal mirror, six views each, in this order:
  top-left, bottom-right, top-right, bottom-left and centre ``crop``
  squares, and the whole square resized to ``crop``;
* **144-crop**: for short sides 256/288/320/352 (crop 224; other crops scale
  the sizes, see :data:`MULTI_SIZES`), the short-side-``base`` image is
  resized again to that short side; three squares of that size are taken
  along the long side at offsets 0, d and 2d with ``d = floor((L - S) / 2)``,
  and each square and its mirror give the six views above.

Scores are the models' softmax outputs averaged over an image's crops.

Geometry is given by pure functions (:func:`views`) that tests check against
hand-computed boxes; :func:`make_crops` executes it on an HWC float32 image.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

PROTOCOLS = {"single": 1, "12": 12, "144": 144}
# the seed script's short-side lists for 144-crop, by crop size
MULTI_SIZES = {224: (256, 288, 320, 352), 235: (270, 300, 330, 360), 299: (320, 352, 384, 416),
               320: (352, 384, 416, 448)}


def short_side_size(w: int, h: int, s: int) -> tuple[int, int]:
    """(new w, new h) with the short side ``s``: ``floor(side * s / short)`` for both sides."""
    short = min(w, h)
    return (w * s // short, h * s // short)


def center_offset(size: int, crop: int) -> int:
    return (size - crop) // 2


@dataclass(frozen=True)
class View:
    """One crop: from the image at stage ``source`` (see :func:`views`), the box
    ``(x0, y0, x1, y1)``, or the whole of it resized (``box is None``), mirrored or not."""

    source: tuple
    box: tuple[int, int, int, int] | None
    mirror: bool


def six(square: int, crop: int) -> list[tuple[int, int, int, int] | None]:
    """The over-sample boxes of a ``square`` x ``square`` image, in the seed's order."""
    o = square - crop
    c = center_offset(square, crop)
    return [(0, 0, crop, crop), (o, o, square, square), (o, 0, square, crop), (0, o, crop, square),
            (c, c, c + crop, c + crop), None]


def views(protocol: str, w: int, h: int, base: int, crop: int) -> list[View]:
    """The crops of a ``w`` x ``h`` image.  ``View.source`` names the image a view is cut from:

    * ``("short", base)``: the decoded image resized to short side ``base``;
    * ``("square", base)``: that image resized to ``base`` x ``base``;
    * ``("multi", S, j)``: the short-``base`` image resized to short side ``S``,
      then its ``j``-th square (``S`` x ``S``) along the long side.
    """
    if protocol == "single":
        bw, bh = short_side_size(w, h, base)
        x, y = center_offset(bw, crop), center_offset(bh, crop)
        return [View(("short", base), (x, y, x + crop, y + crop), False)]
    if protocol == "12":
        return [View(("square", base), b, m) for m in (False, True) for b in six(base, crop)]
    if protocol == "144":
        if crop not in MULTI_SIZES:
            raise ValueError(f"144-crop is defined for crop sizes {sorted(MULTI_SIZES)}, not {crop}")
        out = []
        for s in MULTI_SIZES[crop]:
            for j in range(3):
                out.extend(View(("multi", s, j), b, m) for m in (False, True) for b in six(s, crop))
        return out
    raise ValueError(f"unknown crop protocol {protocol!r} (one of {list(PROTOCOLS)})")


def multi_square(w: int, h: int, s: int, j: int) -> tuple[int, int, int, int]:
    """Box of the ``j``-th ``s`` x ``s`` square of a ``w`` x ``h`` image whose short side is ``s``."""
    yy, xx = (h - s) // 2, (w - s) // 2
    return (xx * j, yy * j, xx * j + s, yy * j + s)


# --------------------------------------------------------------------------- resizing
def resize_linear(img: np.ndarray, w: int, h: int) -> np.ndarray:
    """Bilinear resize of an HWC float32 image with OpenCV's INTER_LINEAR geometry
    (pixel centres: ``src = (dst + 0.5) * scale - 0.5``, clamped at the borders; no
    antialiasing), computed in float32."""
    ih, iw = img.shape[:2]
    if (iw, ih) == (w, h):
        return img

    def axis(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        src = (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5
        src = np.clip(src, 0, n_in - 1)
        i0 = np.floor(src).astype(np.int64)
        i1 = np.minimum(i0 + 1, n_in - 1)
        return i0, i1, (src - i0).astype(np.float32)

    y0, y1, fy = axis(ih, h)
    x0, x1, fx = axis(iw, w)
    rows = img[y0] * (1 - fy)[:, None, None] + img[y1] * fy[:, None, None]
    return np.ascontiguousarray(rows[:, x0] * (1 - fx)[None, :, None] + rows[:, x1] * fx[None, :, None])


def resize_pil(img: np.ndarray, w: int, h: int) -> np.ndarray:
    """PIL's bilinear resize (antialiased when shrinking), per channel in float32 ('F' mode)."""
    from PIL import Image  # noqa: PLC0415
    if img.shape[1] == w and img.shape[0] == h:
        return img
    chans = [np.asarray(Image.fromarray(np.ascontiguousarray(img[:, :, c]), mode="F").resize((w, h), Image.BILINEAR))
             for c in range(img.shape[2])]
    return np.stack(chans, axis=2)


RESIZERS: dict[str, Callable[[np.ndarray, int, int], np.ndarray]] = {"cv2-linear": resize_linear,
                                                                     "pil-bilinear": resize_pil}


class _NumpyOps:
    """Stages as HWC float32 arrays, resized by ``resize``."""

    def __init__(self, resize: Callable[[np.ndarray, int, int], np.ndarray]) -> None:
        self.resize = resize

    @staticmethod
    def size(a: np.ndarray) -> tuple[int, int]:
        return a.shape[1], a.shape[0]

    @staticmethod
    def box(a: np.ndarray, b: tuple[int, int, int, int]) -> np.ndarray:
        return a[b[1]:b[3], b[0]:b[2]]

    @staticmethod
    def mirror(a: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(a[:, ::-1])

    @staticmethod
    def array(a: np.ndarray) -> np.ndarray:
        return a


class _PilOps:
    """Stages as 8-bit PIL images (PIL's C resize, rounded to 8 bits like torchvision's pipeline)."""

    @staticmethod
    def resize(im, w: int, h: int):  # noqa: ANN001, ANN205
        from PIL import Image  # noqa: PLC0415
        return im if im.size == (w, h) else im.resize((w, h), Image.BILINEAR)

    @staticmethod
    def size(im) -> tuple[int, int]:  # noqa: ANN001
        return im.size

    @staticmethod
    def box(im, b: tuple[int, int, int, int]):  # noqa: ANN001, ANN205
        return im.crop(b)

    @staticmethod
    def mirror(im):  # noqa: ANN001, ANN205
        from PIL import Image  # noqa: PLC0415
        return im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)

    @staticmethod
    def array(im) -> np.ndarray:  # noqa: ANN001
        return np.asarray(im, dtype=np.float32)


def make_crops(img, protocol: str, base: int, crop: int, resize: str = "cv2-linear") -> np.ndarray:  # noqa: ANN001
    """All crops of one image as an array (n, crop, crop, C) float32; each stage computed once.

    ``img``: an HWC float32 array, or for ``resize="pil-bilinear"`` an 8-bit RGB PIL image (then every
    resize runs in PIL on 8-bit data, as torchvision's transforms do).
    """
    if isinstance(img, np.ndarray):
        ops = _NumpyOps(RESIZERS[resize]) if resize != "pil-bilinear" else _NumpyOps(resize_pil)
    else:
        ops = _PilOps()
    w, h = ops.size(img)
    cache: dict[tuple, object] = {}

    def stage(src: tuple):  # noqa: ANN202
        if src in cache:
            return cache[src]
        if src[0] == "short":
            out = ops.resize(img, *short_side_size(w, h, src[1]))
        elif src[0] == "square":
            out = ops.resize(stage(("short", src[1])), src[1], src[1])
        elif src[0] == "multi_full":
            b = stage(("short", base))
            out = ops.resize(b, *short_side_size(*ops.size(b), src[1]))
        elif src[0] == "multi":
            m = stage(("multi_full", src[1]))
            out = ops.box(m, multi_square(*ops.size(m), src[1], src[2]))
        else:
            raise ValueError(src)
        cache[src] = out
        return out

    crops = []
    for v in views(protocol, w, h, base, crop):
        s = stage(v.source)
        if v.mirror:
            key = v.source + ("mirror",)
            if key not in cache:
                cache[key] = ops.mirror(s)
            s = cache[key]
        if v.box is None:
            crops.append(ops.array(ops.resize(s, crop, crop)))
        else:
            sw, sh = ops.size(s)
            if v.box[2] > sw or v.box[3] > sh:
                raise ValueError(f"crop {v.box} outside a {sw}x{sh} image (base {base} < crop {crop}?)")
            crops.append(ops.array(ops.box(s, v.box)))
    return np.stack(crops)
