"""Erase masked regions of an image: inpaint, blur, mosaic or solid fill.

Each connected region is processed in a crop around it with a strength scaled to its size (the
longer side of its bounding box); only mask pixels of the output differ from the input.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from faceerase.masks import check_mask

METHODS = ("inpaint_telea", "inpaint_ns", "blur", "mosaic", "solid")

BLUR_SIGMA_FRACTION = 0.25
"""Default ``blur_strength``: the Gaussian sigma as a fraction of the region size (the blur spans the whole face)."""
MOSAIC_BLOCKS = 6
"""Default ``mosaic_blocks``: mosaic blocks along the longer side of a region."""
INPAINT_RADIUS_FRACTION = 1 / 16
"""Inpainting radius as a fraction of the region size (at the working resolution)."""
INPAINT_MAX_SIDE = 128
"""Regions larger than this are inpainted at a reduced resolution and the fill upscaled."""

_INPAINT_FLAGS = {"inpaint_telea": cv2.INPAINT_TELEA, "inpaint_ns": cv2.INPAINT_NS}


def anonymize(
    image: np.ndarray,
    mask: np.ndarray,
    method: str = "inpaint_telea",
    *,
    color: tuple[int, int, int] = (0, 0, 0),
    mosaic_blocks: int = MOSAIC_BLOCKS,
    blur_strength: float = BLUR_SIGMA_FRACTION,
) -> np.ndarray:
    """Return a copy of ``image`` (RGB uint8, H x W x 3) with the ``mask`` pixels (bool H x W)
    erased by ``method`` (one of :data:`METHODS`); ``color`` is the RGB fill of ``solid``, ``mosaic_blocks``
    the blocks of ``mosaic`` along a region's longer side (fewer: coarser), ``blur_strength`` the Gaussian sigma
    of ``blur`` as a fraction of a region's longer side (larger: blurrier)."""
    if not (isinstance(image, np.ndarray) and image.dtype == np.uint8
            and image.ndim == 3 and image.shape[2] == 3):
        shape = getattr(image, "shape", None)
        raise ValueError(f"image must be an RGB uint8 array (H, W, 3), got {shape} "
                         f"{getattr(image, 'dtype', type(image).__name__)}")
    mask = check_mask(mask)
    if mask.shape != image.shape[:2]:
        raise ValueError(f"mask shape {mask.shape} does not match image size {image.shape[:2]}")
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {METHODS}")
    check_strengths(mosaic_blocks, blur_strength)
    out = image.copy()
    if method == "solid":
        out[mask] = _check_color(color)
        return out
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.view(np.uint8), connectivity=8)
    for i in range(1, n):
        box = tuple(int(v) for v in stats[i, :4])
        if method == "blur":
            rows, cols, erased = _blur(image, box, blur_strength)
        elif method == "mosaic":
            rows, cols, erased = _mosaic(image, box, mosaic_blocks)
        else:
            rows, cols, erased = _inpaint(image, mask, box, _INPAINT_FLAGS[method])
        region = labels[rows, cols] == i
        out[rows, cols][region] = erased[region]
    return out


def check_strengths(mosaic_blocks: int, blur_strength: float) -> None:
    """Raise :class:`ValueError` unless ``mosaic_blocks`` is a whole number >= 1 and ``blur_strength`` > 0."""
    if isinstance(mosaic_blocks, bool) or not isinstance(mosaic_blocks, (int, np.integer)) or mosaic_blocks < 1:
        raise ValueError(f"mosaic_blocks must be a whole number >= 1, got {mosaic_blocks!r}")
    if not blur_strength > 0:
        raise ValueError(f"blur_strength must be > 0, got {blur_strength!r}")


def _check_color(color) -> np.ndarray:
    values = np.asarray(color)
    if values.shape != (3,) or not np.issubdtype(values.dtype, np.number) or \
            values.min() < 0 or values.max() > 255:
        raise ValueError(f"color must be three RGB values in 0-255, got {color!r}")
    return values.round().astype(np.uint8)


def _window(box: tuple[int, int, int, int], margin: int, shape: tuple[int, ...]) -> tuple[slice, slice]:
    x, y, w, h = box
    return (slice(max(0, y - margin), min(shape[0], y + h + margin)),
            slice(max(0, x - margin), min(shape[1], x + w + margin)))


def _resize(image: np.ndarray, width: int, height: int, interpolation: int) -> np.ndarray:
    return cv2.resize(image, (max(1, width), max(1, height)), interpolation=interpolation)


def _blur(image: np.ndarray, box: tuple[int, int, int, int], strength: float):
    sigma = max(2.0, strength * max(box[2:]))
    rows, cols = _window(box, math.ceil(3 * sigma), image.shape)
    crop = image[rows, cols]
    h, w = crop.shape[:2]
    factor = max(1.0, sigma / 4)
    small = _resize(crop, round(w / factor), round(h / factor), cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), sigma / factor, borderType=cv2.BORDER_REFLECT)
    return rows, cols, _resize(small, w, h, cv2.INTER_LINEAR)


def _mosaic(image: np.ndarray, box: tuple[int, int, int, int], blocks: int):
    block = max(2, math.ceil(max(box[2:]) / blocks))
    rows, cols = _window(box, 0, image.shape)
    crop = image[rows, cols]
    h, w = crop.shape[:2]
    small = _resize(crop, math.ceil(w / block), math.ceil(h / block), cv2.INTER_AREA)
    return rows, cols, _resize(small, w, h, cv2.INTER_NEAREST)


def _inpaint(image: np.ndarray, mask: np.ndarray, box: tuple[int, int, int, int], flag: int):
    size = max(box[2:])
    scale = min(1.0, INPAINT_MAX_SIDE / size)
    radius = max(3, round(size * scale * INPAINT_RADIUS_FRACTION))
    rows, cols = _window(box, math.ceil((2 * radius + 2) / scale), image.shape)
    crop, hole = image[rows, cols], mask[rows, cols].view(np.uint8)
    if scale == 1.0:
        return rows, cols, cv2.inpaint(crop, hole, radius, flag)
    h, w = crop.shape[:2]
    sw, sh = round(w * scale), round(h * scale)
    small_hole = _resize(hole.astype(np.float32), sw, sh, cv2.INTER_AREA) > 0
    small = cv2.inpaint(_resize(crop, sw, sh, cv2.INTER_AREA), small_hole.view(np.uint8), radius, flag)
    return rows, cols, _resize(small, w, h, cv2.INTER_LINEAR)
