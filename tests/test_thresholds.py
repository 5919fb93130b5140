"""Threshold strategies on crafted probability maps."""

from __future__ import annotations

import numpy as np
import pytest

from faceerase.erase.thresholds import AUTO_CEILING, AUTO_FLOOR, OTSU_BINS, compute_threshold, unit_histogram


def _map(background: float, face: float | None, noise: float = 0.02, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    prob = np.full((64, 80), background, np.float32)
    if face is not None:
        prob[20:44, 30:50] = face
    return np.clip(prob + rng.normal(0, noise, prob.shape), 0, 1).astype(np.float32)


def test_seed_is_histogram_bin_edge_six():
    prob = _map(0.1, 0.9)
    expected = prob.min() + 0.6 * (prob.max() - prob.min())
    assert compute_threshold(prob, "seed") == pytest.approx(expected, abs=1e-6)
    assert compute_threshold(prob, "seed") == float(np.histogram(prob)[1][6])


def test_fixed_returns_the_value_and_validates_it():
    prob = _map(0.1, 0.9)
    assert compute_threshold(prob, "fixed", 0.42) == pytest.approx(0.42)
    with pytest.raises(ValueError, match="needs a value"):
        compute_threshold(prob, "fixed")
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match=r"in \[0, 1\]"):
            compute_threshold(prob, "fixed", bad)


def test_auto_splits_a_clear_face_between_the_clusters():
    prob = _map(0.1, 0.9)
    threshold = compute_threshold(prob, "auto")
    assert AUTO_FLOOR <= threshold <= AUTO_CEILING
    mask = prob > threshold
    assert mask[20:44, 30:50].all() and mask.sum() == 24 * 20


def test_auto_is_clamped_to_the_ceiling_for_a_confident_map():
    prob = _map(0.7, 0.99, noise=0.005)
    assert compute_threshold(prob, "auto") == pytest.approx(AUTO_CEILING)


def test_face_less_map_auto_masks_nothing_but_seed_masks_something():
    prob = _map(0.05, 0.2, noise=0.03)
    auto = compute_threshold(prob, "auto")
    assert auto >= AUTO_FLOOR and not (prob > auto).any()
    seed = compute_threshold(prob, "seed")
    assert (prob > seed).sum() > 0


def test_auto_floor_parameter():
    prob = _map(0.05, 0.45)
    assert (prob > compute_threshold(prob, "auto")).any()
    assert not (prob > compute_threshold(prob, "auto", floor=0.6)).any()


def test_constant_map():
    prob = np.full((32, 32), 0.8, np.float32)
    assert compute_threshold(prob, "auto") == pytest.approx(AUTO_FLOOR)
    assert compute_threshold(prob, "seed") == pytest.approx(0.9)


@pytest.mark.parametrize("prob, mode, message", [
    (np.full((8, 8), 0.5, np.float32), "magic", "unknown threshold mode"),
    (np.zeros((0, 0), np.float32), "auto", "non-empty float array"),
    (np.zeros((8, 8), np.uint8), "seed", "non-empty float array"),
    (np.full((8, 8), np.nan, np.float32), "auto", "NaN"),
    (np.full((8, 8), 3.0, np.float32), "auto", r"probabilities in \[0, 1\]"),
])
def test_bad_inputs(prob, mode, message):
    with pytest.raises(ValueError, match=message):
        compute_threshold(prob, mode)



def test_the_histogram_of_otsu_counts_exactly_as_numpy_does_at_every_bin_edge():
    edges = np.arange(OTSU_BINS + 1, dtype=np.float32) / OTSU_BINS
    below = np.nextafter(edges, np.float32(-1))[1:]  # just under each edge but 0
    above = np.nextafter(edges, np.float32(2))[:-1]  # just over each edge but 1
    rng = np.random.default_rng(0)
    values = np.concatenate([edges, below, above, rng.random(5000, dtype=np.float32), [1.0, 1.0, 0.0]])
    prob = values.astype(np.float32).reshape(1, -1)
    expected = np.histogram(prob, bins=OTSU_BINS, range=(0.0, 1.0))[0]
    assert np.array_equal(unit_histogram(prob), expected)  # OpenCV's path
    assert np.array_equal(unit_histogram(prob.astype(np.float64)), expected)  # NumPy's path
    assert compute_threshold(prob) == compute_threshold(prob.astype(np.float64))
