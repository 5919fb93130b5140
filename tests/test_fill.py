"""Every fill method on a synthetic face: mask pixels change substantially, the rest stays."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

import faceerase
from faceerase.erase.fill import DEFAULT_METHOD, METHODS, MOSAIC_BLOCKS, anonymize
from faceerase.erase.masks import shape_mask
from faceerase.media.images import load_image
from faceerase.model.settings import EraseSettings

REPLACEMENT = load_image(Path(faceerase.__file__).parent / "examples" / "coffee.jpg")
"""The ``image`` method's picture (a real photo; the other methods ignore it)."""


def _diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a.astype(np.int16) - b.astype(np.int16)).max(axis=-1)


@pytest.mark.parametrize("method", METHODS)
def test_mask_pixels_change_and_others_do_not(method, face_image, face_mask):
    out = anonymize(face_image, face_mask, method, replacement=REPLACEMENT)
    assert out.dtype == np.uint8 and out.shape == face_image.shape
    np.testing.assert_array_equal(out[~face_mask], face_image[~face_mask])
    assert _diff(out, face_image)[face_mask].mean() > 40
    assert face_image is not out


@pytest.mark.parametrize("method", ["blur", "mosaic"])
def test_blur_and_mosaic_destroy_the_fine_texture(method, face_image, face_mask):
    out = anonymize(face_image, face_mask, method)
    inner = cv2.erode(face_mask.view(np.uint8), np.ones((7, 7), np.uint8)).view(bool)
    detail = lambda img: np.abs(cv2.Laplacian(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), cv2.CV_32F))[inner].mean()
    assert detail(out) < 0.1 * detail(face_image)


@pytest.mark.parametrize("method", ["fill", "inpaint_telea", "inpaint_ns", "solid", "image"])
def test_fill_methods_keep_nothing_of_the_face(method):
    """Two images that differ only inside the mask come out the same: every erased pixel is computed from pixels
    outside the mask (a large region, filled at a reduced resolution, and a small one)."""
    rng = np.random.default_rng(0)
    h, w = 600, 500
    yy, xx = np.mgrid[0:h, 0:w]
    background = np.stack([xx % 256, yy % 256, (xx + yy) % 256], axis=-1).astype(np.uint8)
    mask = np.zeros((h, w), np.uint8)
    cv2.ellipse(mask, (250, 300), (150, 220), 10, 0, 360, 1, thickness=-1)
    cv2.circle(mask, (60, 60), 20, 1, thickness=-1)
    mask = mask.astype(bool)
    face_a, face_b = background.copy(), background.copy()
    face_a[mask] = rng.integers(0, 256, (mask.sum(), 3))
    face_b[mask] = 255 - face_a[mask]
    out_a, out_b = (anonymize(face, mask, method, replacement=REPLACEMENT) for face in (face_a, face_b))
    np.testing.assert_array_equal(out_a, out_b)
    np.testing.assert_array_equal(out_a[~mask], background[~mask])


@pytest.mark.parametrize("method", ["fill", "inpaint_telea"])
def test_fills_continue_the_surroundings(method, face_image, face_mask):
    out = anonymize(face_image, face_mask, method)
    background = np.array([40 + 60 // 3, 90 + 50 // 2, 170])
    assert np.abs(out[50, 60].astype(int) - background).max() < 30


def test_the_default_fill_is_smooth_where_telea_streaks():
    """Left half dark, right half light around a round hole: Telea carries the colours in straight streaks to a sharp
    seam; the default fill changes gradually (no step between neighbouring pixels) and mixes the two near the middle."""
    image = np.full((200, 200, 3), 40, np.uint8)
    image[:, 100:] = 220
    mask = np.zeros((200, 200), np.uint8)
    cv2.circle(mask, (100, 100), 60, 1, thickness=-1)
    mask = mask.astype(bool)
    steps = {}
    for method in ("fill", "inpaint_telea"):
        out = anonymize(image, mask, method)[..., 0].astype(int)
        steps[method] = np.abs(np.diff(out, axis=1))[mask[:, 1:] & mask[:, :-1]].max()
        if method == "fill":
            assert 80 < out[100, 100] < 180
    assert steps["fill"] <= 12 < steps["inpaint_telea"]


def test_the_default_method_is_defined_once():
    assert DEFAULT_METHOD == EraseSettings().method == "fill" and DEFAULT_METHOD in METHODS


def test_solid_colour():
    image = np.full((20, 20, 3), 100, np.uint8)
    mask = np.zeros((20, 20), bool)
    mask[5:10, 5:10] = True
    out = anonymize(image, mask, "solid", color=(255, 0, 10))
    assert (out[mask] == (255, 0, 10)).all() and (out[~mask] == 100).all()
    assert (anonymize(image, mask, "solid")[mask] == 0).all()
    with pytest.raises(ValueError, match="three RGB values"):
        anonymize(image, mask, "solid", color=(300, 0, 0))


@pytest.mark.parametrize("method", METHODS)
def test_empty_mask_returns_an_unchanged_copy(method, face_image):
    out = anonymize(face_image, np.zeros(face_image.shape[:2], bool), method, replacement=REPLACEMENT)
    np.testing.assert_array_equal(out, face_image)


def test_the_image_method_scales_the_picture_into_each_region_box():
    image = np.full((300, 400, 3), 100, np.uint8)
    mask = np.zeros((300, 400), bool)
    mask[20:80, 30:150] = True  # a full box: the whole picture, scaled to 120 x 60
    cv2.circle(mask.view(np.uint8), (300, 200), 50, 1, thickness=-1)  # a disc: the picture inside the circle
    out = anonymize(image, mask, "image", replacement=REPLACEMENT)
    expected = cv2.resize(REPLACEMENT, (120, 60), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(out[20:80, 30:150], expected)
    disc = cv2.resize(REPLACEMENT, (101, 101), interpolation=cv2.INTER_AREA)
    inside = mask[150:251, 250:351]
    np.testing.assert_array_equal(out[150:251, 250:351][inside], disc[inside])
    np.testing.assert_array_equal(out[~mask], image[~mask])


def test_the_image_method_needs_an_rgb_picture(face_image, face_mask):
    with pytest.raises(ValueError, match="needs a replacement picture"):
        anonymize(face_image, face_mask, "image")
    with pytest.raises(ValueError, match="RGB uint8"):
        anonymize(face_image, face_mask, "image", replacement=REPLACEMENT[..., 0])


@pytest.mark.parametrize("size", [30, 240])
def test_mosaic_and_blur_strength_scale_with_region_size(size):
    yy, xx = np.mgrid[0:400, 0:400] * 255 // 399
    noise = np.random.default_rng(0).integers(0, 256, (400, 400))
    image = np.stack([xx, yy, noise], axis=-1).astype(np.uint8)
    mask = np.zeros((400, 400), bool)
    mask[100:100 + size, 100:100 + size] = True
    mosaic = anonymize(image, mask, "mosaic")[mask]
    assert len(np.unique(mosaic[:, :2], axis=0)) == MOSAIC_BLOCKS**2
    blurred = anonymize(image, mask, "blur")[mask]
    assert blurred[:, 2].std() < 0.1 * image[mask][:, 2].std()


def test_region_shapes_reach_the_corners_of_the_mask(face_image, face_mask):
    boxed = shape_mask(face_mask, "box")
    out = anonymize(face_image, boxed, "solid")
    ys, xs = np.nonzero(face_mask)
    assert (out[ys.min():ys.max() + 1, xs.min():xs.max() + 1] == 0).all()


@pytest.mark.parametrize("image, mask, method, message", [
    (np.zeros((20, 20, 3), np.uint8), np.zeros((20, 21), bool), "blur", "does not match image size"),
    (np.zeros((20, 20, 3), np.uint8), np.zeros((20, 20), np.float32), "blur", "bool or integer"),
    (np.zeros((20, 20), np.uint8), np.zeros((20, 20), bool), "blur", "RGB uint8"),
    (np.zeros((20, 20, 3), np.float32), np.zeros((20, 20), bool), "blur", "RGB uint8"),
    (np.zeros((20, 20, 3), np.uint8), np.zeros((20, 20), bool), "smear", "unknown method"),
])
def test_bad_inputs(image, mask, method, message):
    with pytest.raises(ValueError, match=message):
        anonymize(image, mask, method)
