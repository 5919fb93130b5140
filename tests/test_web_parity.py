"""The page's JavaScript (web/*.js, run under Node) against the Python package on the same inputs: shared constants,
geometry, resampling, thresholds, masks and shapes, face estimates, every anonymization method, the post-processing,
and a person's review (kept and added regions) with its audit record."""

from __future__ import annotations

import importlib.util

import cv2
import numpy as np
import pytest
from web_node import NODE, JSError, call_js, js_constant, rgb, rgba, run_js

import faceerase
from faceerase.engines.files import image_findings
from faceerase.erase.edits import ADD_SHAPES, MIN_KEPT_IOU, Edits, added_shape, box_iou, clip_box
from faceerase.erase.fill import DEFAULT_METHOD, METHODS, anonymize, fill_from_border
from faceerase.erase.geometry import network_long_side, padding_for
from faceerase.erase.masks import MASK_SHAPES, estimate_faces, find_regions, refine_mask, shape_mask
from faceerase.erase.pipeline import FaceEraser
from faceerase.erase.thresholds import compute_threshold
from faceerase.media.images import load_image
from faceerase.model.settings import EraseSettings
from fixtures_app import REPO

pytestmark = pytest.mark.skipif(NODE is None, reason="node is missing (the page's modules run under Node)")

PAGE_METHODS = [m for m in METHODS if m not in ("inpaint_telea", "inpaint_ns", "image")]  # OpenCV's, no browser
# build; image: a picture file, a command-line method


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return load_image(REPO / "faceerase" / "examples" / "astronaut.jpg")


@pytest.fixture(scope="module")
def photo_mask(photo) -> np.ndarray:
    """Face-like regions on the photo: one filled at full resolution, one too large for it (reduced working
    resolution), a small one and one cut by the image border."""
    mask = np.zeros(photo.shape[:2], np.uint8)
    cv2.ellipse(mask, (220, 115), (48, 60), 10, 0, 360, 1, thickness=-1)
    cv2.ellipse(mask, (330, 330), (90, 120), -20, 0, 360, 1, thickness=-1)
    cv2.circle(mask, (60, 450), 9, 1, thickness=-1)
    cv2.circle(mask, (505, 20), 15, 1, thickness=-1)
    return mask.astype(bool)


def blobs(seed: int = 0) -> np.ndarray:
    """A float32 (90, 130) probability map: low noise and face-like blobs of several sizes."""
    yy, xx = np.mgrid[0:90, 0:130]
    prob = 0.05 * np.random.default_rng(seed).random((90, 130))
    for cy, cx, r in ((20, 25, 12), (60, 90, 20), (75, 20, 3), (30, 100, 6)):
        prob += 0.9 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
    return np.clip(prob, 0, 1).astype(np.float32)


def test_constants_js_is_generated_from_the_package():
    spec = importlib.util.spec_from_file_location("web_constants", REPO / "scripts" / "web_constants.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.TARGET.read_text() == script.render(), "run `python scripts/web_constants.py`"
    assert js_constant("constants.js", "METHODS") == list(METHODS)


def test_the_page_offers_the_python_methods_it_implements_and_the_default():
    assert js_constant("anonymize.js", "METHODS") == PAGE_METHODS
    assert js_constant("constants.js", "DEFAULT_METHOD") == EraseSettings().method == DEFAULT_METHOD
    assert DEFAULT_METHOD in PAGE_METHODS
    with pytest.raises(JSError, match="unknown method inpaint_telea"):
        call_js("anonymize.js", "anonymize", rgba(np.zeros((20, 20, 3), np.uint8)), np.ones((20, 20), bool),
                "inpaint_telea")


def test_geometry_matches():
    values = [0.5, 1.5, 2.5, -0.5, -2.5, 2.4999, 7.5000001, 1023.5]
    sizes = [(17, 31, 32), (64, 64, 32), (5, 300, 16), (480, 640, 32)]
    long_sides = [(480, 640, 320, False), (480, 640, 1024, False), (480, 640, 1024, True), (480, 640, 0, False)]
    results = run_js(*[("geometry.js", "roundHalfEven", [v]) for v in values],
                     *[("geometry.js", "paddingFor", list(s)) for s in sizes],
                     *[("geometry.js", "networkLongSide", list(s)) for s in long_sides])
    assert results[:len(values)] == [round(v) for v in values]
    assert results[len(values):-len(long_sides)] == [dict(zip(("ph", "pw", "mode"), padding_for(*s))) for s in sizes]
    assert results[-len(long_sides):] == [network_long_side(*s) for s in long_sides]


@pytest.mark.parametrize("mode, size", [("area", (37, 23)), ("area", (50, 30)), ("linear", (137, 211)),
                                        ("linear", (61, 40)), ("nearest", (190, 77)), ("nearest", (33, 21))])
def test_resize_matches_opencv(photo, mode, size):
    image = photo[100:200, 150:250]  # 100 x 100
    interpolation = {"area": cv2.INTER_AREA, "linear": cv2.INTER_LINEAR, "nearest": cv2.INTER_NEAREST}[mode]
    grey = image[..., 1].astype(np.float32) / 255
    pixels, values = run_js(("resize.js", "resizeImage", [rgba(image), *size, mode]),
                            ("resize.js", "resize", [grey, 100, 100, 1, *size, mode]))
    # OpenCV's 8-bit paths round fixed-point sums; the page's float sums differ from them by at most one level.
    np.testing.assert_allclose(rgb(pixels), cv2.resize(image, size, interpolation=interpolation), atol=1)
    np.testing.assert_allclose(values.reshape(size[::-1]), cv2.resize(grey, size, interpolation=interpolation),
                               atol=1e-5)


def test_thresholds_match():
    prob = blobs()
    constant = np.full(100, 0.2, np.float32)
    limits = {"floor": 0.3, "ceiling": 0.6, "value": 0.45}
    auto, seed, fixed, flat = run_js(("thresholds.js", "computeThreshold", [prob.ravel(), "auto", limits]),
                                     ("thresholds.js", "computeThreshold", [prob.ravel(), "seed", limits]),
                                     ("thresholds.js", "computeThreshold", [prob.ravel(), "fixed", limits]),
                                     ("thresholds.js", "computeThreshold", [constant, "seed", limits]))
    assert auto == pytest.approx(compute_threshold(prob, "auto", floor=0.3, ceiling=0.6), abs=1e-9)
    assert seed == pytest.approx(compute_threshold(prob, "seed"), abs=1e-6)
    assert fixed == compute_threshold(prob, "fixed", 0.45)
    assert flat == pytest.approx(compute_threshold(constant, "seed"), abs=1e-6)


def test_mask_clean_up_and_regions_match():
    prob = blobs()
    raw = prob > compute_threshold(prob, "auto", floor=0.3, ceiling=0.6)
    grown, ratio = run_js(("masks.js", "refineMask", [raw, 130, 90, {"dilation": 4, "minArea": 16, "dilationRatio": 0}]),
                          ("masks.js", "refineMask", [raw, 130, 90, {"dilation": 2, "minArea": 16,
                                                                     "dilationRatio": 0.3}]))
    expected = refine_mask(raw, dilation=4, min_area=16)
    np.testing.assert_array_equal(grown.reshape(raw.shape).astype(bool), expected)
    regions = call_js("masks.js", "findRegions", expected, prob, 130, 90)
    assert [r["box"] for r in regions] == [list(r.box) for r in find_regions(expected, prob)]
    assert [r["area"] for r in regions] == [r.area for r in find_regions(expected, prob)]
    # Exact distances in JS, OpenCV's 5x5 approximation in Python: the grown regions nearly coincide.
    ratio, python_ratio = ratio.reshape(raw.shape).astype(bool), refine_mask(raw, 2, 16, 0.3)
    assert (ratio & python_ratio).sum() / (ratio | python_ratio).sum() > 0.97


def test_mask_shapes_match():
    mask = np.zeros((160, 200), np.uint8)
    cv2.ellipse(mask, (50, 60), (30, 18), 35, 0, 360, 1, thickness=-1)  # tilted
    cv2.rectangle(mask, (120, 20), (170, 40), 1, thickness=-1)
    cv2.line(mask, (110, 150), (190, 100), 1, thickness=3)  # thin and diagonal
    mask[140, 20] = 1  # a single pixel
    mask = mask.astype(bool)
    shaped = dict(zip(MASK_SHAPES, run_js(*[("masks.js", "shapeMask", [mask, 200, 160, shape])
                                            for shape in MASK_SHAPES])))
    np.testing.assert_array_equal(shaped["predicted"].reshape(mask.shape).astype(bool), mask)
    np.testing.assert_array_equal(shaped["box"].reshape(mask.shape).astype(bool), shape_mask(mask, "box"))
    # The page rasterizes Python's ellipse itself (OpenCV draws it as a polygon): they differ on a few edge pixels.
    ellipse, expected = shaped["ellipse"].reshape(mask.shape).astype(bool), shape_mask(mask, "ellipse")
    assert not (mask & ~ellipse).any()
    assert (ellipse & expected).sum() / (ellipse | expected).sum() > 0.97
    assert abs(int(ellipse.sum()) - int(expected.sum())) < 0.02 * expected.sum()
    with pytest.raises(JSError, match="unknown mask shape star"):
        call_js("masks.js", "shapeMask", mask, 200, 160, "star")


def test_the_fill_from_the_border_matches():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (40, 50, 3)).astype(np.float64)
    hole = np.zeros((40, 50), bool)
    hole[8:30, 10:44] = True
    hole[25:40, 0:6] = True  # reaches the border
    for radius in (3, 6):
        js = call_js("anonymize.js", "fillFromBorder", image, hole, 50, 40, radius)
        values, depth = fill_from_border(image, hole, radius)
        np.testing.assert_allclose(js["values"].reshape(image.shape), values, rtol=0, atol=1e-9)
        np.testing.assert_array_equal(js["depth"].reshape(hole.shape), depth)
    assert depth.max() == 11 and (depth[~hole] == 0).all()
    grey = call_js("anonymize.js", "fillFromBorder", image, np.ones_like(hole), 50, 40, 3)
    np.testing.assert_array_equal(grey["values"].reshape(image.shape), fill_from_border(image, np.ones_like(hole), 3)[0])


@pytest.mark.parametrize("method", PAGE_METHODS)
def test_every_method_matches(photo, photo_mask, method):
    js = rgb(call_js("anonymize.js", "anonymize", rgba(photo), photo_mask, method, [200, 30, 10]))
    python = anonymize(photo, photo_mask, method, color=(200, 30, 10))
    np.testing.assert_array_equal(js[~photo_mask], photo[~photo_mask])
    difference = np.abs(js.astype(int) - python).max(axis=-1)
    if method == "blur":  # OpenCV's 8-bit Gaussian sums in fixed point, the page in floating point
        assert difference.max() <= 2 and difference.mean() < 0.5
    elif method == "fill":  # the same float64 values: a rounding apart where one lands on a half
        assert difference.max() <= 1 and (difference > 0).mean() < 1e-4
    else:
        assert difference.max() == 0


def test_the_page_fill_keeps_nothing_of_the_face(photo):
    """Two photos that differ only inside the mask come out the same: the fill reads no masked pixel."""
    mask = np.zeros((300, 300), np.uint8)
    cv2.ellipse(mask, (150, 160), (70, 95), 15, 0, 360, 1, thickness=-1)  # filled at a reduced resolution
    cv2.circle(mask, (25, 280), 12, 1, thickness=-1)
    mask = mask.astype(bool)
    faces = [photo[:300, 100:400].copy() for _ in range(2)]
    faces[0][mask] = np.random.default_rng(0).integers(0, 256, (mask.sum(), 3))
    faces[1][mask] = 255 - faces[0][mask]
    first, second = run_js(*[("anonymize.js", "anonymize", [rgba(face), mask, DEFAULT_METHOD]) for face in faces])
    np.testing.assert_array_equal(first["data"], second["data"])
    np.testing.assert_array_equal(rgb(first)[~mask], faces[0][~mask])


@pytest.mark.parametrize("method, shape, mode", [(DEFAULT_METHOD, "predicted", "auto"), ("mosaic", "box", "seed")])
def test_the_post_processing_matches(tiny_model, photo, method, shape, mode):
    photo = photo[:180, :260]
    prob = cv2.resize(blobs(2), (260, 180), interpolation=cv2.INTER_LINEAR)
    eraser = FaceEraser(tiny_model, backend="torch", device="cpu")
    python = eraser.postprocess(photo, prob, method=method, mask_shape=shape, threshold_mode=mode)
    settings = {key: getattr(eraser.settings, key) for key in ("threshold_floor", "threshold_ceiling", "dilation",
                                                                "min_area", "dilation_ratio")}
    js = call_js("pipeline.js", "postprocess", rgba(photo), prob.ravel(), settings,
                 {"thresholdMode": mode, "maskShape": shape, "method": method, "color": [0, 0, 0], "faces": True})
    assert js["threshold"] == pytest.approx(python.threshold, abs=1e-6)
    np.testing.assert_array_equal(js["mask"].reshape(prob.shape).astype(bool), python.mask)
    assert [r["box"] for r in js["regions"]] == [list(r.box) for r in python.regions]
    assert [r["faces"] for r in js["regions"]] == [r.faces for r in python.regions]
    difference = np.abs(rgb(js["anonymized"]).astype(int) - python.anonymized)
    assert difference.max() <= 1 and (difference > 0).mean() < 1e-4  # see test_every_method_matches


def cores() -> list[np.ndarray]:
    """Face cores (bool masks) with one, two and three peaks: touching discs at several distances, and seeded random
    unions of ellipses (symmetric shapes, where the peaks tie: the page must break the ties as OpenCV's float32
    arithmetic does)."""
    found = []
    for gap in (30, 38, 45, 52, 60):
        core = np.zeros((70, 150), np.uint8)
        for x in (40, 40 + gap, 40 + 2 * gap if gap < 45 else -99):
            cv2.circle(core, (x, 35), 24, 1, thickness=-1)
        found.append(core.astype(bool))
    rng = np.random.default_rng(3)
    for _ in range(30):
        core = np.zeros((int(rng.integers(8, 120)), int(rng.integers(8, 120))), np.uint8)
        for _ in range(int(rng.integers(1, 4))):
            h, w = core.shape
            cv2.ellipse(core, (int(rng.integers(0, w)), int(rng.integers(0, h))),
                        (int(rng.integers(2, 35)), int(rng.integers(2, 35))), float(rng.integers(0, 180)), 0, 360, 1,
                        thickness=-1)
        found.append(core.astype(bool))
    return found


def test_the_face_estimate_matches():
    shapes = cores()
    js = run_js(*[("masks.js", "estimateFaces", [core, core.shape[1], core.shape[0]]) for core in shapes])
    assert js == [estimate_faces(core) for core in shapes]
    assert {1, 2, 3} <= set(js)
    assert call_js("masks.js", "estimateFaces", np.zeros((5, 4), bool), 4, 5) == 1


def test_added_shapes_and_clipping_match():
    sizes = [(1, 1), (1, 6), (2, 2), (5, 3), (8, 13), (41, 26)]
    shaped = run_js(*[("edits.js", "addedShape", [w, h, shape]) for shape in ADD_SHAPES for w, h in sizes])
    expected = [added_shape(w, h, shape) for shape in ADD_SHAPES for w, h in sizes]
    for js, python in zip(shaped, expected):
        np.testing.assert_array_equal(js.reshape(python.shape).astype(bool), python)
    assert js_constant("constants.js", "ADD_SHAPES") == list(ADD_SHAPES)
    boxes = [(5, 5, 10, 8), (-4, 3, 10, 30), (25, 15, 20, 20), (0, 0, 30, 20)]
    clipped = run_js(*[("edits.js", "clipBox", [list(box), 30, 20]) for box in boxes],
                     ("edits.js", "clipBox", [[30, 0, 5, 5], 30, 20]),
                     ("edits.js", "addedShape", [3, 3, "star"]))
    assert clipped[:len(boxes)] == [list(clip_box(box, 30, 20)) for box in boxes]
    assert str(clipped[-2]) == "the added box [30,0,5,5] lies outside the 30x20 image"
    assert "unknown shape star of an added region" in str(clipped[-1])


def test_box_iou_and_the_kept_region_rule_match():
    pairs = [((0, 0, 10, 10), (20, 20, 5, 5)),  # disjoint
             ((0, 0, 10, 10), (10, 0, 10, 10)),  # touching: no pixel in common
             ((0, 0, 10, 10), (2, 3, 4, 5)),  # nested
             ((0, 0, 10, 10), (5, 5, 10, 10)),  # partial overlap
             ((176, 58, 98, 127), (159, 38, 132, 167)),  # a face, predicted and as an ellipse
             ((3, 4, 7, 9), (3, 4, 7, 9))]  # the same box
    ious = run_js(*[("edits.js", "boxIou", [list(a), list(b)]) for a, b in pairs])
    assert ious == [box_iou(a, b) for a, b in pairs]
    assert ious[:2] == [0, 0] and ious[-1] == 1 and 0 < ious[3] < MIN_KEPT_IOU < ious[4]
    assert js_constant("constants.js", "MIN_KEPT_IOU") == MIN_KEPT_IOU


def test_a_click_finds_the_region_under_it():
    mask = np.zeros((20, 30), bool)
    mask[2:6, 3:8] = mask[10:15, 20:28] = True
    prob = mask.astype(np.float32)
    regions = call_js("masks.js", "findRegions", mask, prob, 30, 20)
    edited = call_js("edits.js", "applyEdits", mask, prob, regions, 30, 20,
                     {"keep": [2], "add": [[18, 8, 8, 6]], "addShape": "ellipse"})
    at = [call_js("edits.js", "regionAt", edited["regions"], edited["labels"], 30, x, y)
          for x, y in ((4, 3), (21, 11), (27, 14), (25, 13), (0, 0))]
    # (21, 11) is in both the kept region 2 and the added ellipse 3, drawn over it; (25, 13) in its box, not in it
    assert at == [1, 3, 2, 2, 0]
    assert [(r["id"], r["source"], r["erased"]) for r in edited["regions"]] == [
        (1, "model", True), (2, "model", False), (3, "added", True)]
    with pytest.raises(JSError, match="no region 3, 7 to keep: the image has 2 regions"):
        call_js("edits.js", "applyEdits", mask, prob, regions, 30, 20, {"keep": [7, 3, 1]})
    with pytest.raises(JSError, match="a record lists the faces of each region"):  # found without their faces
        call_js("edits.js", "auditRecord", {"input": "x.png", "threshold": 0.5, "regions": edited["regions"]})


@pytest.fixture(scope="module")
def shipped_eraser() -> FaceEraser:
    return FaceEraser(faceerase.load_model())


REVIEWS = [  # photo, settings, kept ids, added boxes, their shape
    ("astronaut", {}, [1], [(350, 380, 81, 61)], "ellipse"),
    # a box over the kept region 5 (erased where they overlap) and one cut by the image border
    ("coffee", {"threshold_mode": "fixed", "threshold_value": 0.005}, [2, 5], [(240, 175, 40, 25), (-20, 380, 60, 40)],
     "box"),
    ("chelsea", {"threshold_mode": "fixed", "threshold_value": 0.002, "mask_shape": "box"}, [1, 4], [(140, 90, 41, 30)],
     "ellipse"),
]


@pytest.mark.slow  # the shipped model
@pytest.mark.parametrize("name, overrides, keep, add, add_shape", REVIEWS, ids=[r[0] for r in REVIEWS])
def test_a_review_is_applied_and_recorded_as_python_does(shipped_eraser, name, overrides, keep, add, add_shape):
    image = load_image(REPO / "faceerase" / "examples" / f"{name}.jpg")
    prob = shipped_eraser.predict([image])[0]
    python = shipped_eraser.postprocess(image, prob, keep=keep, add=add, add_shape=add_shape, method="solid",
                                        color=(255, 0, 255), **overrides)
    s = shipped_eraser.settings.updated(**overrides)
    settings = {key: getattr(s, key) for key in ("threshold_floor", "threshold_ceiling", "dilation", "min_area",
                                                 "dilation_ratio")}
    js = call_js("pipeline.js", "postprocess", rgba(image), prob.ravel(), settings,
                 {"thresholdMode": s.threshold_mode, "thresholdValue": s.threshold_value, "maskShape": s.mask_shape,
                  "method": "solid", "color": [255, 0, 255], "keep": keep, "add": [list(box) for box in add],
                  "addShape": add_shape, "faces": True})
    np.testing.assert_array_equal(js["mask"].reshape(prob.shape).astype(bool), python.mask)
    np.testing.assert_array_equal(rgb(js["anonymized"]), python.anonymized)
    fields = [(r["id"], r["box"], r["area"], r["faces"], r["source"], r["erased"]) for r in js["regions"]]
    assert fields == [(r.id, list(r.box), r.area, r.faces, r.source, r.erased) for r in python.regions]
    assert [r.id for r in python.regions if not r.erased] == keep
    assert len([r for r in python.regions if r.source == "added"]) == len(add)
    np.testing.assert_allclose([r["score"] for r in js["regions"]], [r.score for r in python.regions], rtol=0,
                               atol=1e-7)
    np.testing.assert_allclose([r["meanScore"] for r in js["regions"]], [r.mean_score for r in python.regions],
                               rtol=0, atol=1e-5)  # numpy sums float32 pairwise, the page in float64

    # The page's record is the package's, and the package applies it again.
    record = call_js("edits.js", "auditRecord", {"input": f"{name}.jpg", "threshold": js["threshold"],
                                                 "regions": js["regions"], "model": {}, "settings": {}})
    findings = image_findings(python)
    for region in record["regions"]:  # rounded from a float64 mean here, a float32 one in Python
        region["mean_score"] = pytest.approx(region["mean_score"], abs=1e-4)
    assert {key: record[key] for key in findings} == findings
    assert (record["input"], record["output"], record["kind"], record["status"]) == (
        f"{name}.jpg", None, "image", "anonymized")
    again = shipped_eraser.postprocess(image, prob, edits=Edits.from_record(record), method="solid", **overrides)
    np.testing.assert_array_equal(again.mask, python.mask)
