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


def make_crops(img: np.ndarray, protocol: str, base: int, crop: int, resize: str = "cv2-linear") -> np.ndarray:
    """All crops of one HWC float32 image as an array (n, crop, crop, C); each stage computed once."""
    rs = RESIZERS[resize]
    h, w = img.shape[:2]
    cache: dict[tuple, np.ndarray] = {}

    def stage(src: tuple) -> np.ndarray:
        if src in cache:
            return cache[src]
        if src[0] == "short":
            out = rs(img, *short_side_size(w, h, src[1]))
        elif src[0] == "square":
            out = rs(stage(("short", src[1])), src[1], src[1])
        else:  # ("multi", s, j)
            b = stage(("short", base))
            bh, bw = b.shape[:2]
            m = stage(("multi_full", src[1])) if ("multi_full", src[1]) in cache else None
            if m is None:
                m = rs(b, *short_side_size(bw, bh, src[1]))
                cache[("multi_full", src[1])] = m
            x0, y0, x1, y1 = multi_square(m.shape[1], m.shape[0], src[1], src[2])
            out = m[y0:y1, x0:x1]
        cache[src] = out
        return out

    crops = []
    for v in views(protocol, w, h, base, crop):
        s = stage(v.source)
        if v.mirror:
            key = v.source + ("mirror",)
            if key not in cache:
                cache[key] = np.ascontiguousarray(s[:, ::-1])
            s = cache[key]
        if v.box is None:
            crops.append(rs(s, crop, crop))
        else:
            x0, y0, x1, y1 = v.box
            if x1 > s.shape[1] or y1 > s.shape[0]:
                raise ValueError(f"crop {v.box} outside a {s.shape[1]}x{s.shape[0]} image (base {base} < crop {crop}?)")
            crops.append(s[y0:y1, x0:x1])
    return np.stack(crops)
