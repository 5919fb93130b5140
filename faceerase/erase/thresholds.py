"""Threshold strategies that turn a face-probability map into a binary mask (``prob > threshold``)."""

from __future__ import annotations

import cv2
import numpy as np

THRESHOLD_MODES = ("auto", "seed", "fixed")
AUTO_FLOOR = 0.3  # the defaults (also of faceerase.model.settings); a calibrated model carries its own
AUTO_CEILING = 0.6


def compute_threshold(
    prob: np.ndarray, mode: str = "auto", value: float | None = None, floor: float = AUTO_FLOOR,
    ceiling: float = AUTO_CEILING,
) -> float:
    """Return the threshold for ``prob`` (values in [0, 1]); pixels strictly above it are face.

    ``seed``: the 2018 rule, bin edge 6 of ``np.histogram(prob)`` (10 bins), i.e.
    ``min + 0.6 * (max - min)``; it always marks the relatively brightest part of the map.
    ``fixed``: ``value`` (required, in [0, 1]; ignored by the other modes).
    ``auto``: Otsu's threshold of the probability histogram clamped to
    ``[floor, max(floor, ceiling)]``, so a map with no probability above ``floor`` (no face)
    masks nothing.
    """
    prob = np.asarray(prob)
    if prob.size == 0 or not np.issubdtype(prob.dtype, np.floating):
        raise ValueError(f"prob must be a non-empty float array, got {prob.dtype} of shape {prob.shape}")
    if not np.isfinite(prob).all():
        raise ValueError("prob contains NaN or infinite values")
    if prob.min() < 0 or prob.max() > 1:
        raise ValueError("prob must hold probabilities in [0, 1]")
    if mode == "seed":
        return float(np.histogram(prob)[1][6])
    if mode == "fixed":
        if value is None:
            raise ValueError("threshold mode 'fixed' needs a value in [0, 1]")
        return _unit(value, "threshold value")
    if mode == "auto":
        floor = _unit(floor, "floor")
        return float(min(max(_otsu(prob), floor), max(_unit(ceiling, "ceiling"), floor)))
    raise ValueError(f"unknown threshold mode {mode!r}; choose one of {THRESHOLD_MODES}")


def _unit(value: float, name: str) -> float:
    value = float(value)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value}")
    return value


OTSU_BINS = 256


def unit_histogram(prob: np.ndarray) -> np.ndarray:
    """The counts of ``np.histogram(prob, OTSU_BINS, range=(0, 1))`` for values in [0, 1], float64; float32 maps
    go through OpenCV, 2-5x faster and the same counts: the edges k/256 and v * 256 are exact in binary, and a
    257th bin [1, 1 + 1/256) takes the 1.0 values that the last bin holds. OpenCV returns float32 counts, exact
    below 2**24 pixels; larger maps go through NumPy."""
    if prob.dtype != np.float32 or prob.size >= 2 ** 24:
        return np.histogram(prob, bins=OTSU_BINS, range=(0.0, 1.0))[0].astype(np.float64)
    counts = cv2.calcHist([np.ascontiguousarray(prob)], [0], None, [OTSU_BINS + 1],
                          [0.0, (OTSU_BINS + 1) / OTSU_BINS]).ravel().astype(np.float64)
    counts[OTSU_BINS - 1] += counts[OTSU_BINS]
    return counts[:OTSU_BINS]


def _otsu(prob: np.ndarray) -> float:
    """Otsu's threshold on [0, 1] over :data:`OTSU_BINS` bins: the middle of the best plateau (an empty gap
    between two clusters scores the same everywhere); 0 when fewer than two bins are populated."""
    hist = unit_histogram(prob)
    edges = np.linspace(0.0, 1.0, OTSU_BINS + 1)
    centers = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist)[:-1]
    w1 = hist.sum() - w0
    m0 = np.cumsum(hist * centers)[:-1]
    m1 = (hist * centers).sum() - m0
    valid = (w0 > 0) & (w1 > 0)
    if not valid.any():
        return 0.0
    between = np.zeros_like(w0)
    between[valid] = w0[valid] * w1[valid] * (m0[valid] / w0[valid] - m1[valid] / w1[valid]) ** 2
    best = np.flatnonzero(between >= between.max() * (1 - 1e-9))
    return float((edges[1 + best[0]] + edges[1 + best[-1]]) / 2)
