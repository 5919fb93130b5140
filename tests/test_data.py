"""WIDER FACE loading, face masks, packs and batched augmentation, on a small fixture written here."""

from __future__ import annotations

from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from PIL import Image

from faceerase.training import widerface
from faceerase.training.augment import CropSampler
from faceerase.training.pack import ImageSet, fit_long_side, load_image_set, write_pack
from faceerase.training.padded import pad_images
from faceerase.training.widerface import (WIDERFACE_ENV, AnnotationError, default_widerface_root, face_free_window,
                                          face_masks, invalid_flags, load_wider_face, pixel_bounds,
                                          wider_face_features)

SHARED = default_widerface_root()  # $FACEERASE_WIDERFACE, else ../shared/widerface

# name -> (size (w, h), faces [x, y, w, h, blur, expression, illumination, invalid, occlusion, pose])
TRAIN = {
    "0--Parade/0_Parade_a_1.jpg": ((160, 120), [[20, 30, 40, 44, 0, 0, 0, 0, 1, 0],
                                                [100, 20, 30, 36, 2, 1, 0, 0, 0, 1]]),
    "0--Parade/0_Parade_a_2.jpg": ((128, 128), [[50, 40, 36, 40, 1, 0, 1, 0, 2, 0], [5, 5, 20, 20, 0, 0, 0, 1, 0, 0]]),
    "1--Handshaking/1_Handshaking_b_3.jpg": ((140, 100), []),
    "1--Handshaking/1_Handshaking_b_4.jpg": ((120, 150), [[30, 60, 48, 50, 0, 0, 0, 0, 0, 0],
                                                          [90, 10, 0, 12, 0, 0, 0, 0, 0, 0]]),
}
VAL = {
    "0--Parade/0_Parade_v_5.jpg": ((150, 110), [[40, 30, 44, 40, 0, 0, 0, 0, 0, 0]]),
    "1--Handshaking/1_Handshaking_v_6.jpg": ((130, 130), [[10, 70, 34, 36, 0, 0, 0, 0, 0, 0]]),
}


def _write_split(root: Path, short: str, split: dict, seed: int) -> None:
    rng = np.random.default_rng(seed)
    lines = []
    for name, ((w, h), faces) in split.items():
        # Textured dark background with bright face boxes: real JPEG pixels that a tiny model can learn.
        pixels = rng.integers(0, 90, (h, w, 3), dtype=np.uint8)
        for x, y, fw, fh, *_ in faces:
            pixels[y:y + fh, x:x + fw] = (230, 190, 160)
        path = root / f"WIDER_{short}" / "images" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(path, quality=95)
        lines += [name, str(len(faces))]
        lines += [" ".join(map(str, face)) + " " for face in faces] or ["0 0 0 0 0 0 0 0 0 0 "]
    (root / "wider_face_split").mkdir(parents=True, exist_ok=True)
    (root / "wider_face_split" / f"wider_face_{short}_bbx_gt.txt").write_text("\n".join(lines) + "\n")


def make_wider_fixture(root: Path) -> Path:
    """Write a tiny WIDER FACE folder (official layout: JPEGs + annotation files) under ``root``."""
    _write_split(root, "train", TRAIN, 0)
    _write_split(root, "val", VAL, 1)
    return root


@pytest.fixture(scope="module")
def wider(tmp_path_factory) -> Path:
    return make_wider_fixture(tmp_path_factory.mktemp("wider"))


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("FACEERASE_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def test_local_folder_loads_as_dataset_with_hub_schema(wider):
    ds = load_wider_face(wider, "train")
    assert isinstance(ds, datasets.Dataset) and len(ds) == 4
    assert ds.features == wider_face_features()
    assert ds.features["faces"]["blur"].feature.names == ["clear", "normal", "heavy"]
    assert ds.features["faces"]["invalid"].feature.dtype == "bool"
    row = ds[0]
    assert row["file_name"] == "0--Parade/0_Parade_a_1.jpg"
    assert row["image"].size == (160, 120)
    assert row["faces"]["bbox"] == [[20, 30, 40, 44], [100, 20, 30, 36]]
    assert row["faces"]["blur"] == [0, 2] and row["faces"]["occlusion"] == [1, 0] and row["faces"]["pose"] == [0, 1]
    assert ds[1]["faces"]["invalid"] == [False, True]
    assert ds[2]["faces"]["bbox"] == []  # the 0-face image (count 0 + a line of zeros)
    assert len(load_wider_face(wider, "validation")) == 2


def test_second_load_hits_the_cache(wider, monkeypatch):
    first = load_wider_face(wider, "val")
    monkeypatch.setattr(widerface, "parse_annotations", lambda *_: pytest.fail("cache was not used"))
    second = load_wider_face(wider, "val")
    assert second.cache_files == first.cache_files and second[1]["file_name"] == first[1]["file_name"]


def test_missing_images_are_reported_before_any_work(wider, tmp_path):
    root = make_wider_fixture(tmp_path / "broken")
    for name in list(TRAIN)[:3]:
        (root / "WIDER_train" / "images" / name).unlink()
    with pytest.raises(FileNotFoundError, match=r"3 of 4 images .* first: 0--Parade/0_Parade_a_1.jpg"):
        load_wider_face(root, "train", cache_dir=tmp_path / "cache")
    assert not any((tmp_path / "cache").glob("wider_face/*"))


@pytest.mark.parametrize("text, line", [
    ("a/x.jpg\n1\n1 2 3 4 0 0 0 0 0 0\nb/y.jpg\ntwo\n", 5),
    ("a/x.jpg\n2\n1 2 3 4 0 0 0 0 0 0\n1 2 3 0 0 0 0 0 0\n", 4),
    ("a/x.jpg\n2\n1 2 3 4 0 0 0 0 0 0\n", 4),
    ("1 2 3 4 0 0 0 0 0 0\n", 1),
])
def test_malformed_annotation_names_the_line(tmp_path, text, line):
    make_wider_fixture(tmp_path)
    (tmp_path / "wider_face_split" / "wider_face_val_bbx_gt.txt").write_text(text)
    with pytest.raises(AnnotationError, match=rf"wider_face_val_bbx_gt.txt:{line}:"):
        load_wider_face(tmp_path, "validation", cache_dir=tmp_path / "cache")


def test_face_masks_boxes_ellipses_and_ignore_regions():
    faces = {"bbox": [[2, 2, 10, 8], [20, 4, 6, 6], [30, 10, 0, 5]], "invalid": [False, True, False]}
    target, ignore = face_masks(faces, 24, 40, "box")
    assert target.dtype == np.uint8 and ignore.dtype == bool
    assert target.sum() == 80 and target[2:10, 2:12].all()
    assert ignore[4:10, 20:26].all() and ignore[10:15, 30].all()  # invalid face and zero-width box
    assert ignore.sum() == 36 + 5 and not (ignore & (target > 0)).any()
    ellipse, _ = face_masks(faces, 24, 40, "ellipse")
    assert 0.6 * 80 < ellipse.sum() < 80 and ellipse[6, 7] and not ellipse[2, 2]
    with pytest.raises(ValueError):
        face_masks(faces, 24, 40, "circle")


def test_pixel_bounds_and_face_masks_at_the_image_edges():
    boxes = [[-4, 2, 10, 6], [12.5, 4.2, 2, 0], [50, 5, 8, 8], [18, 18, 5, 5]]
    np.testing.assert_array_equal(pixel_bounds(boxes, 20, 20), [[0, 2, 6, 8], [12, 4, 15, 5], [19, 5, 20, 13],
                                                                [18, 18, 20, 20]])
    np.testing.assert_array_equal(pixel_bounds([[8, 8, 4, 2]], 20, 20, growth=2), [[6, 7, 14, 11]])
    target, ignore = face_masks({"bbox": boxes}, 20, 20)
    # clipped faces are drawn, the zero-height box is ignored, the box right of the image draws nothing
    assert target[2:8, 0:6].all() and target[18:, 18:].all() and target.sum() == 36 + 4
    assert ignore.sum() == 3 and ignore[4, 12:15].all()
    with pytest.raises(ValueError, match="2 invalid flags for 4 face boxes"):
        invalid_flags({"bbox": boxes, "invalid": [True, False]})


def test_a_face_free_window_keeps_clear_of_every_grown_box():
    rng = np.random.default_rng(0)
    boxes = [[20, 20, 10, 10], [70, 60, 8, 12]]
    grown = pixel_bounds(boxes, 100, 100, growth=2.0)
    for _ in range(200):
        x, y = face_free_window(boxes, 100, 100, 30, rng)
        window = np.zeros((100, 100), bool)
        window[y:y + 30, x:x + 30] = True
        assert not any(window[y0:y1, x0:x1].any() for x0, y0, x1, y1 in grown)
    assert face_free_window([[0, 0, 100, 100]], 100, 100, 30, rng) is None  # a face fills the image
    assert face_free_window([], 100, 80, 81, rng) is None  # the window does not fit
    x, y = face_free_window([], 100, 80, 80, rng)  # no box: any position that fits (80 wide, 100 high)
    assert x == 0 and 0 <= y <= 20


def test_pack_roundtrip_matches_the_folder(wider, tmp_path):
    path = tmp_path / "fixture.npz"
    meta = write_pack(path, wider, ("train", "validation"), long_side=96, quality=90, workers=1)
    assert meta["splits"] == ["train", "validation"] and meta["long_side"] == 96
    assert [p.name for p in tmp_path.iterdir()] == ["fixture.npz"]  # written through a temporary file
    from_pack = load_image_set(path, "train", long_side=None, workers=1)
    from_folder = load_image_set(wider, "train", long_side=96, workers=1)
    assert from_pack.file_names == from_folder.file_names
    for a, b, boxes_a, boxes_b in zip(from_pack.images, from_folder.images, from_pack.boxes, from_folder.boxes,
                                      strict=True):
        assert a.shape == b.shape and max(a.shape[:2]) == 96
        assert np.abs(a.astype(int) - b.astype(int)).mean() < 6
        np.testing.assert_allclose(boxes_a, boxes_b)
    assert [inv.tolist() for inv in from_pack.invalid] == [inv.tolist() for inv in from_folder.invalid]
    assert len(load_image_set(path, "validation", workers=1)) == 2
    with pytest.raises(KeyError):
        load_image_set(path, "test")


def test_fit_long_side_downscales_only():
    image, boxes = np.zeros((60, 80, 3), np.uint8), np.array([[8, 6, 40, 20]], np.float32)
    assert fit_long_side(image, boxes, 100)[0] is image and fit_long_side(image, boxes, None)[0] is image
    small, scaled = fit_long_side(image, boxes, 40)
    assert small.shape == (30, 40, 3)
    np.testing.assert_allclose(scaled, [[4, 3, 20, 10]])


def test_shared_widerface_validation_has_411_rows():
    if not SHARED.is_dir():
        pytest.skip(f"WIDER FACE not found at {SHARED} (set {WIDERFACE_ENV} to its folder)")
    ds = load_wider_face(SHARED, "validation")
    assert len(ds) == 411 and ds[0]["file_name"] == "0--Parade/0_Parade_marchingband_1_465.jpg"


def _rectangles() -> ImageSet:
    images, boxes = [], []
    for i in range(3):
        image = np.zeros((90 + 10 * i, 130, 3), np.uint8)
        box = np.array([[20 + 15 * i, 25, 40, 30]], np.float32)
        image[25:55, 20 + 15 * i:60 + 15 * i] = 255
        images.append(image)
        boxes.append(box)
    return ImageSet(images, boxes, [np.zeros(1, bool)] * 3, ["r0", "r1", "r2"])


def test_augmentation_shapes_ranges_and_alignment():
    padded = pad_images(_rectangles())
    sampler = CropSampler(padded, crop_size=48, scale_range=(0.3, 3.0), jitter=0, grayscale_p=0, seed=1)
    images, target, ignore = sampler(96)
    assert images.shape == (96, 3, 48, 48) and target.shape == ignore.shape == (96, 1, 48, 48)
    assert images.dtype == torch.float32 and ignore.dtype == torch.bool
    assert 0 <= images.min() and images.max() <= 1 and set(target.unique().tolist()) <= {0.0, 1.0}
    bright = images[:, :1] > 0.5
    # Across rescales and flips, the bright rectangle and the face mask coincide (up to resampling edges).
    mismatch = (bright != (target > 0)) & ~ignore
    assert mismatch.float().mean() < 0.01 and target.mean() > 0.05
    assert ignore.any()  # crops reaching past small rescaled images are ignored, not background
    gray = CropSampler(padded, crop_size=32, in_channels=1, seed=2)(4)[0]
    assert gray.shape == (4, 1, 32, 32) and 0 <= gray.min() and gray.max() <= 1


def test_augmentation_flips_and_is_seeded():
    padded = pad_images(_rectangles())
    a = CropSampler(padded, crop_size=32, seed=3)(8)[0]
    b = CropSampler(padded, crop_size=32, seed=3)(8)[0]
    assert torch.equal(a, b)
    no_flip = CropSampler(padded, crop_size=64, scale_range=(1, 1), flip=False, jitter=0, grayscale_p=0, seed=4)
    flip = CropSampler(padded, crop_size=64, scale_range=(1, 1), jitter=0, grayscale_p=0, seed=4)
    _, t0, _ = no_flip(64)
    _, t1, _ = flip(64)
    # Rectangles start left of centre: flipping moves face mass to the right half in some crops.
    right = lambda t: t[..., 32:].sum() / t.sum()  # noqa: E731
    assert right(t1) > right(t0) + 0.05
