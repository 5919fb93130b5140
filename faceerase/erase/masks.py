"""Binary mask clean-up, region shapes and connected face regions."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

MASK_SHAPES = ("predicted", "ellipse", "box")
_NEIGHBOURS = np.ones((3, 3), np.uint8)


@dataclass(frozen=True)
class Region:
    """One connected region of a mask: bounding box, probabilities inside it and pixel area."""

    box: tuple[int, int, int, int]
    """(x, y, w, h) in pixels."""
    score: float
    """Highest face probability inside the region."""
    mean_score: float
    """Mean face probability inside the region."""
    area: int
    """Number of mask pixels in the region."""
    faces: int = 1
    """Estimated number of faces in the region (touching faces make one region): :func:`estimate_faces`."""
    id: int = 0
    """1-based number of the region in its image: the model's regions in raster order, then those added by hand
    (:mod:`faceerase.erase.edits`)."""
    source: str = "model"
    """``model`` (found by the network) or ``added`` (by a person reviewing the image)."""
    erased: bool = True
    """False for a model region a person kept un-erased (a false positive)."""


def refine_mask(mask: np.ndarray, dilation: int = 0, min_area: int = 0, dilation_ratio: float = 0.0) -> np.ndarray:
    """Drop connected regions smaller than ``min_area`` pixels, then grow each region.

    A region grows by ``dilation`` pixels (an elliptical structuring element of diameter ``2 * dilation + 1``),
    or, with ``dilation_ratio``, by the larger of ``dilation`` and ``dilation_ratio`` times the longer side of
    its bounding box (every pixel within that Euclidean distance of the region joins it).
    """
    mask = check_mask(mask)
    if dilation < 0 or min_area < 0 or dilation_ratio < 0:
        raise ValueError(f"dilation, min_area and dilation_ratio must be >= 0, got {dilation}, {min_area} "
                         f"and {dilation_ratio}")
    if not mask.any():
        return mask
    if min_area > 1 or dilation_ratio > 0:  # both need the regions
        n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.view(np.uint8), connectivity=8)
    if min_area > 1:
        keep = stats[:, cv2.CC_STAT_AREA] >= min_area
        keep[0] = False
        mask = keep[labels]
        if not mask.any():
            return mask
    if dilation_ratio > 0:
        radius = np.maximum(dilation, dilation_ratio * stats[:, [cv2.CC_STAT_WIDTH, cv2.CC_STAT_HEIGHT]].max(1))
        # Distance to the nearest mask pixel and that pixel's index (mask pixels are numbered in raster order).
        distance, nearest = cv2.distanceTransformWithLabels((~mask).view(np.uint8), cv2.DIST_L2, 5,
                                                            labelType=cv2.DIST_LABEL_PIXEL)
        region_of = np.concatenate([[0], labels[mask]])
        return distance <= radius[region_of[nearest]]
    if dilation > 0:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * dilation + 1, 2 * dilation + 1))
        mask = cv2.dilate(mask.view(np.uint8), kernel).view(bool)
    return mask


def shape_mask(mask: np.ndarray, shape: str = "predicted") -> np.ndarray:
    """Return the mask as predicted, or with each connected region replaced by the ellipse or the
    box around it. The result always contains the input mask."""
    mask = check_mask(mask)
    if shape not in MASK_SHAPES:
        raise ValueError(f"unknown mask shape {shape!r}; choose one of {MASK_SHAPES}")
    if shape == "predicted" or not mask.any():
        return mask.copy()
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.view(np.uint8), connectivity=8)
    out = np.zeros(mask.shape, np.uint8)
    for i in range(1, n):
        x, y, w, h = (int(v) for v in stats[i, :4])
        if shape == "box":
            out[y:y + h, x:x + w] = 1
        else:
            cv2.ellipse(out, _ellipse_around(labels[y:y + h, x:x + w] == i, x, y), 1, thickness=-1)
    return out.view(bool) | mask


def find_regions(mask: np.ndarray, prob: np.ndarray, threshold: float | None = None) -> list[Region]:
    """Connected regions (8-connectivity) of ``mask`` in raster order, numbered from 1, scored with ``prob``, each
    with its :func:`estimate_faces` of the core where ``prob`` > ``threshold`` (None: the whole region is its
    core)."""
    mask, prob = check_mask(mask), np.asarray(prob)
    if prob.shape != mask.shape:
        raise ValueError(f"prob shape {prob.shape} does not match mask shape {mask.shape}")
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.view(np.uint8), connectivity=8)
    regions = []
    for i in range(1, n):
        x, y, w, h = (int(v) for v in stats[i, :4])
        region = labels[y:y + h, x:x + w] == i
        inside = prob[y:y + h, x:x + w][region]
        core = region if threshold is None else region & (prob[y:y + h, x:x + w] > threshold)
        regions.append(Region(box=(x, y, w, h), score=float(inside.max()), mean_score=float(inside.mean()),
                              area=int(stats[i, cv2.CC_STAT_AREA]), faces=estimate_faces(core), id=i))
    return regions


def estimate_faces(core: np.ndarray) -> int:
    """An estimate of the faces in one region from its core (bool; the pixels above the threshold): the
    well-separated peaks of the distance to the core's edge. A face's core is a blob whose distance peak is its
    radius; touching faces make blobs joined by a narrower neck. Peaks count when they reach half the highest
    peak and lie at least the highest peak (one face radius) from a higher one, after smoothing by a quarter of
    it. At least 1: an estimate, not a detector (a region that is no face counts as one too)."""
    distance = cv2.distanceTransform(np.pad(core, 1).view(np.uint8), cv2.DIST_L2, 5)
    radius = float(distance.max())
    if radius == 0:
        return 1
    distance = cv2.GaussianBlur(distance, (0, 0), max(1.0, radius / 4))
    is_peak = (distance >= cv2.dilate(distance, _NEIGHBOURS)) & (distance > 0.5 * distance.max())
    ys, xs = np.nonzero(is_peak)
    kept: list[tuple[int, int]] = []
    for j in np.argsort(-distance[ys, xs], kind="stable"):
        if all((ys[j] - y) ** 2 + (xs[j] - x) ** 2 >= radius ** 2 for y, x in kept):
            kept.append((ys[j], xs[j]))
    return max(1, len(kept))


def check_mask(mask: np.ndarray) -> np.ndarray:
    """Return ``mask`` as a 2-D bool array; integer masks count non-zero pixels, float masks are
    rejected (threshold probabilities first)."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"a mask must be 2-D (H, W), got shape {mask.shape}")
    if mask.dtype == bool:
        return np.ascontiguousarray(mask)
    if np.issubdtype(mask.dtype, np.integer):
        return mask != 0
    raise ValueError(
        f"a mask must be bool or integer, got {mask.dtype}; threshold probability maps first")


def _ellipse_around(component: np.ndarray, x0: int, y0: int) -> tuple:
    """Rotated rectangle (OpenCV ellipse form) of the moment ellipse of ``component``, scaled to
    contain every pixel of it."""
    ys, xs = np.nonzero(component)
    points = np.stack([xs, ys], axis=1).astype(np.float64)
    center = points.mean(axis=0)
    cov = np.eye(2) / 12 + (np.cov(points.T, bias=True) if len(points) > 1 else 0)
    eigvals, eigvecs = np.linalg.eigh(cov)
    hull = cv2.convexHull(points.astype(np.float32)).reshape(-1, 2).astype(np.float64)
    offsets = np.array([[-0.5, -0.5], [-0.5, 0.5], [0.5, -0.5], [0.5, 0.5]])
    corners = (hull[:, None, :] + offsets).reshape(-1, 2)
    local = (corners - center) @ eigvecs / np.sqrt(eigvals)
    scale = np.sqrt((local**2).sum(axis=1).max())
    axes = 2 * scale * np.sqrt(eigvals)
    angle = np.degrees(np.arctan2(eigvecs[1, 0], eigvecs[0, 0]))
    return (float(center[0] + x0), float(center[1] + y0)), (float(axes[0]), float(axes[1])), float(angle)
