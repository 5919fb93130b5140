"""Mask clean-up, region shapes and region lists on crafted masks."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from faceerase.erase.masks import Region, check_mask, find_regions, refine_mask, shape_mask


def _blobs() -> np.ndarray:
    mask = np.zeros((60, 80), bool)
    mask[10:30, 5:25] = True
    mask[40:43, 60:63] = True
    mask[50, 10] = True
    return mask


def test_min_area_drops_small_regions_only():
    mask = _blobs()
    refined = refine_mask(mask, min_area=10)
    assert refined[10:30, 5:25].all()
    assert refined.sum() == 400
    assert refine_mask(mask, min_area=9).sum() == 409
    np.testing.assert_array_equal(refine_mask(mask), mask)


def test_dilation_grows_by_the_radius():
    mask = np.zeros((40, 40), bool)
    mask[20, 20] = True
    grown = refine_mask(mask, dilation=3)
    ys, xs = np.nonzero(grown)
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == (17, 23, 17, 23)
    assert not grown[17, 17]


def test_min_area_is_applied_before_dilation():
    assert not refine_mask(_blobs(), dilation=5, min_area=10)[50, 10]


def test_box_shape_fills_each_bounding_box():
    mask = np.zeros((50, 50), bool)
    cv2.line(mask.view(np.uint8), (5, 5), (20, 30), 1)
    mask[40:45, 40:42] = True
    boxed = shape_mask(mask, "box")
    assert boxed[5:31, 5:21].all() and boxed[40:45, 40:42].all()
    assert boxed.sum() == 26 * 16 + 10


def test_ellipse_shape_covers_the_region_tightly_and_follows_its_orientation():
    mask = np.zeros((120, 120), np.uint8)
    cv2.ellipse(mask, (60, 60), (40, 12), 35, 0, 360, 1, thickness=-1)
    mask = mask.astype(bool)
    ellipse = shape_mask(mask, "ellipse")
    assert ellipse[mask].all()
    assert ellipse.sum() < 1.35 * mask.sum()
    square = np.zeros((60, 60), bool)
    square[20:40, 20:40] = True
    around = shape_mask(square, "ellipse")
    assert around[square].all() and 400 < around.sum() < 700


def test_ellipse_of_a_single_pixel_and_a_line():
    mask = np.zeros((30, 30), bool)
    mask[3, 3] = True
    mask[20, 5:25] = True
    out = shape_mask(mask, "ellipse")
    assert out[mask].all() and out.sum() < 100


def test_predicted_shape_is_a_copy_and_empty_masks_stay_empty():
    mask = _blobs()
    out = shape_mask(mask, "predicted")
    np.testing.assert_array_equal(out, mask)
    assert out is not mask
    assert not shape_mask(np.zeros((20, 20), bool), "ellipse").any()


def test_find_regions_boxes_scores_and_areas():
    mask = _blobs()
    prob = np.zeros(mask.shape, np.float32)
    prob[10:30, 5:25] = 0.5
    prob[12, 7] = 0.9
    prob[40:43, 60:63] = 0.7
    regions = find_regions(mask, prob)
    assert [r.box for r in regions] == [(5, 10, 20, 20), (60, 40, 3, 3), (10, 50, 1, 1)]
    assert [r.area for r in regions] == [400, 9, 1]
    assert regions[0].score == pytest.approx(0.9)
    assert regions[0].mean_score == pytest.approx((399 * 0.5 + 0.9) / 400)
    assert regions[1].score == pytest.approx(0.7) and regions[2].score == 0.0
    assert all(isinstance(v, int) for v in regions[0].box)
    assert find_regions(np.zeros((10, 10), bool), np.zeros((10, 10), np.float32)) == []
    assert isinstance(regions[0], Region)


def test_diagonal_pixels_are_one_region():
    mask = np.eye(20, dtype=bool)
    assert len(find_regions(mask, mask.astype(np.float32))) == 1


def test_mask_validation():
    np.testing.assert_array_equal(check_mask(np.array([[0, 255], [1, 0]], np.uint8)),
                                  [[False, True], [True, False]])
    with pytest.raises(ValueError, match="threshold probability maps first"):
        check_mask(np.zeros((4, 4), np.float32))
    with pytest.raises(ValueError, match="2-D"):
        refine_mask(np.zeros((4, 4, 1), bool))
    with pytest.raises(ValueError, match="unknown mask shape"):
        shape_mask(np.zeros((4, 4), bool), "circle")
    with pytest.raises(ValueError, match=">= 0"):
        refine_mask(np.zeros((4, 4), bool), dilation=-1)
    with pytest.raises(ValueError, match="does not match"):
        find_regions(np.zeros((4, 4), bool), np.zeros((4, 5), np.float32))


# ------------------------------------------------------------ estimated faces per region (issue 19, item 5)

def _discs(*circles: tuple[int, int, int], shape=(120, 200)) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    for x, y, r in circles:
        cv2.circle(mask, (x, y), r, 1, thickness=-1)
    return mask.view(bool)


@pytest.mark.parametrize("circles, faces", [
    ([(60, 60, 30)], 1),
    ([(60, 60, 30), (115, 60, 30)], 2),  # two heads that touch: one region
    ([(50, 60, 25), (95, 60, 25), (140, 60, 25)], 3),
    ([(60, 60, 30), (80, 60, 30)], 1),  # overlapping by two thirds: one blob
])
def test_touching_faces_are_counted_in_one_region(circles, faces):
    mask = _discs(*circles)
    regions = find_regions(mask, mask.astype(np.float32))
    assert len(regions) == 1 and regions[0].faces == faces


def test_an_elongated_face_counts_once_and_the_estimate_uses_the_core_above_the_threshold():
    mask = np.zeros((200, 200), np.uint8)
    cv2.ellipse(mask, (100, 100), (40, 60), 0, 0, 360, 1, thickness=-1)
    assert find_regions(mask.view(bool), mask.astype(np.float32))[0].faces == 1
    # Grown far, the mask of two faces is one round blob; the probabilities above the threshold still show two.
    prob = _discs((60, 60, 30), (125, 60, 30), shape=(140, 220)).astype(np.float32)
    grown = refine_mask(prob > 0.5, dilation=30)
    assert find_regions(grown, prob)[0].faces == 1 and find_regions(grown, prob, 0.5)[0].faces == 2
