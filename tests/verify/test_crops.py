"""Crop geometry of the seed's evaluation protocol (single, 12 and 144 crops),
checked against boxes computed by hand from the protocol's description, and
the resize filter against OpenCV's INTER_LINEAR pixel-centre convention."""
from __future__ import annotations

import numpy as np
import pytest

from xconv.verify.crops import (MULTI_SIZES, make_crops, multi_square, resize_linear, short_side_size, six, views)


def test_short_side_resize_truncates_the_long_side() -> None:
    # 500x375 with short side 256: long side floor(500 * 256 / 375) = floor(341.33) = 341
    assert short_side_size(500, 375, 256) == (341, 256)
    assert short_side_size(375, 500, 256) == (256, 341)
    assert short_side_size(333, 500, 256) == (256, 384)  # 500*256/333 = 384.38
    assert short_side_size(300, 300, 224) == (224, 224)


def test_single_crop_box() -> None:
    # 341x256 after the resize: x offset floor((341-224)/2) = 58, y offset floor((256-224)/2) = 16
    (v,) = views("single", 500, 375, 256, 224)
    assert v.source == ("short", 256) and v.box == (58, 16, 282, 240) and not v.mirror


def test_twelve_crop_boxes() -> None:
    vs = views("12", 500, 375, 256, 224)
    assert len(vs) == 12
    assert all(v.source == ("square", 256) for v in vs)
    # order: top-left, bottom-right, top-right, bottom-left, centre, whole square resized; then mirrored
    want = [(0, 0, 224, 224), (32, 32, 256, 256), (32, 0, 256, 224), (0, 32, 224, 256), (16, 16, 240, 240), None]
    assert [v.box for v in vs[:6]] == want and [v.box for v in vs[6:]] == want
    assert [v.mirror for v in vs] == [False] * 6 + [True] * 6


def test_144_crop_boxes() -> None:
    vs = views("144", 500, 375, 256, 224)
    assert len(vs) == 144 and MULTI_SIZES[224] == (256, 288, 320, 352)
    # the base image is 341x256; at short side 288 it is floor(341*288/256)=383 x 288
    assert short_side_size(341, 256, 288) == (383, 288)
    # squares at x = 0, 47, 94 (d = floor((383-288)/2) = 47; the third starts at 2d, not 383-288=95)
    assert [multi_square(383, 288, 288, j) for j in range(3)] == [(0, 0, 288, 288), (47, 0, 335, 288),
                                                                  (94, 0, 382, 288)]
    assert [v.source for v in vs[12:24]] == [("multi", 256, 1)] * 12
    assert six(288, 224)[:5] == [(0, 0, 224, 224), (64, 64, 288, 288), (64, 0, 288, 224), (0, 64, 224, 288),
                                 (32, 32, 256, 256)]
    with pytest.raises(ValueError):
        views("144", 500, 375, 256, 200)


def test_crops_are_exact_slices_when_no_resize_happens() -> None:
    """A 256x256 image at base 256: the 12 crops are plain slices and mirrors of it."""
    img = np.random.default_rng(0).uniform(0, 255, (256, 256, 3)).astype(np.float32)
    c = make_crops(img, "12", 256, 224)
    assert c.shape == (12, 224, 224, 3)
    np.testing.assert_array_equal(c[0], img[:224, :224])
    np.testing.assert_array_equal(c[1], img[32:, 32:])
    np.testing.assert_array_equal(c[2], img[:224, 32:])
    np.testing.assert_array_equal(c[3], img[32:, :224])
    np.testing.assert_array_equal(c[4], img[16:240, 16:240])
    np.testing.assert_array_equal(c[5], resize_linear(img, 224, 224))
    np.testing.assert_array_equal(c[6], img[:, ::-1][:224, :224])
    np.testing.assert_array_equal(c[10], img[:, ::-1][16:240, 16:240])
    (single,) = make_crops(img, "single", 256, 224)
    np.testing.assert_array_equal(single, img[16:240, 16:240])


def test_resize_linear_uses_pixel_centres() -> None:
    # OpenCV INTER_LINEAR: dst x samples src at (x + 0.5) * in/out - 0.5, clamped: [0, 10] -> [0, 2.5, 7.5, 10]
    a = np.array([[[0.0], [10.0]]], np.float32)
    np.testing.assert_allclose(resize_linear(a, 4, 1)[0, :, 0], [0.0, 2.5, 7.5, 10.0])
    # halving averages neighbour pairs (sample at 2x + 0.5)
    b = np.arange(8, dtype=np.float32).reshape(1, 8, 1)
    np.testing.assert_allclose(resize_linear(b, 4, 1)[0, :, 0], [0.5, 2.5, 4.5, 6.5])


def test_pil_path_crops_the_same_boxes() -> None:
    """The 8-bit PIL path (presets with pil-bilinear) cuts the same boxes: on a 256x256 image they are
    slices and mirrors, whatever the filter."""
    from PIL import Image
    arr = np.random.default_rng(1).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    c = make_crops(Image.fromarray(arr), "12", 256, 224, "pil-bilinear")
    img = arr.astype(np.float32)
    assert c.shape == (12, 224, 224, 3) and c.dtype == np.float32
    for k, (x0, y0) in enumerate([(0, 0), (32, 32), (32, 0), (0, 32), (16, 16)]):
        np.testing.assert_array_equal(c[k], img[y0:y0 + 224, x0:x0 + 224])
        np.testing.assert_array_equal(c[6 + k], img[:, ::-1][y0:y0 + 224, x0:x0 + 224])
    np.testing.assert_array_equal(c[5], np.asarray(Image.fromarray(arr).resize((224, 224), Image.BILINEAR),
                                                   np.float32))
    c144 = make_crops(Image.fromarray(arr), "144", 256, 224, "pil-bilinear")
    assert c144.shape == (144, 224, 224, 3)
