"""Evaluation metrics on crafted cases with known answers, the official difficulty lists, and evaluate()."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from faceerase.training.evaluation import (aggregate, box_mask, collateral, coverage_recall, evaluate_masks,
                                           face_coverage, height_group, load_difficulty_lists, pixel_iou, score_image)
from faceerase.training.widerface import WIDERFACE_ENV, default_widerface_root

WIDERFACE = default_widerface_root()  # $FACEERASE_WIDERFACE, else ../shared/widerface
GROUND_TRUTH = WIDERFACE / "eval_tools" / "ground_truth"


def test_mask_covering_one_of_two_boxes_gives_recall_half():
    mask = np.zeros((100, 200), bool)
    mask[10:30, 20:40] = True
    boxes = [[20, 10, 20, 20], [120, 50, 30, 30]]
    np.testing.assert_allclose(face_coverage(mask, boxes), [1.0, 0.0])
    assert coverage_recall(mask, boxes) == 0.5


def test_coverage_exactly_half_counts_just_below_does_not():
    mask = np.zeros((50, 50), bool)
    mask[10:20, 10:15] = True  # left half of a 10x10 box
    box = [[10, 10, 10, 10]]
    assert face_coverage(mask, box)[0] == 0.5
    assert coverage_recall(mask, box) == 1.0
    mask[10, 14] = False  # 49 of 100 pixels
    assert coverage_recall(mask, box) == 0.0


def test_coverage_clips_boxes_and_handles_degenerate_ones():
    mask = np.ones((20, 20), bool)
    mask[:, 10:] = False
    # half outside the image (left part covered), zero-width box on a masked pixel, no boxes
    np.testing.assert_allclose(face_coverage(mask, [[-10, 0, 20, 10], [5, 5, 0, 0]]), [1.0, 1.0])
    assert face_coverage(mask, []).shape == (0,)
    assert np.isnan(coverage_recall(mask, []))


def test_metrics_take_the_masks_of_masks_check_mask():
    mask = np.zeros((20, 20), np.uint8)
    mask[:10, :10] = 255  # integer masks: non-zero pixels are masked
    assert face_coverage(mask, [[0, 0, 10, 10]])[0] == 1.0
    for metric in (lambda m: face_coverage(m, [[0, 0, 10, 10]]), lambda m: collateral(m, []),
                   lambda m: pixel_iou(m, m)):
        with pytest.raises(ValueError, match="threshold probability maps first"):
            metric(mask / 255.0)


def test_collateral_of_known_rectangle_outside_grown_boxes():
    mask = np.zeros((100, 100), bool)
    box = [40, 40, 20, 20]  # grown 1.5x about its centre: x, y in [35, 65)
    mask[35:65, 35:65] = True  # inside the grown box: no collateral
    assert collateral(mask, [box]) == 0.0
    mask[0:10, 0:20] = True  # 200 px outside
    assert collateral(mask, [box]) == pytest.approx(200 / 10_000)
    mask[34, 35:65] = True  # one row just outside the grown box: 30 px more
    assert collateral(mask, [box]) == pytest.approx(230 / 10_000)
    assert collateral(mask, []) == pytest.approx(mask.mean())


def test_box_mask_growth_about_centre():
    grown = box_mask([[10, 20, 4, 8]], 50, 50, growth=1.5)
    ys, xs = np.nonzero(grown)
    assert (xs.min(), xs.max() + 1, ys.min(), ys.max() + 1) == (9, 15, 18, 30)


def test_pixel_iou_ignores_invalid_faces():
    faces = {"bbox": [[0, 0, 10, 10], [20, 20, 10, 10]], "invalid": [False, True]}
    mask = box_mask(faces["bbox"], 40, 40)  # the valid face and the invalid one, exactly
    assert score_image(mask, faces)["intersection"] == score_image(mask, faces)["union"] == 100
    truth = box_mask(faces["bbox"][:1], 40, 40)
    assert pixel_iou(mask, truth) == 0.5
    assert pixel_iou(mask, truth, ignore=box_mask(faces["bbox"][1:], 40, 40)) == 1.0
    assert pixel_iou(np.zeros((5, 5), bool), np.zeros((5, 5), bool)) == 1.0


def test_score_and_aggregate_weight_recall_by_faces():
    faces = {"bbox": [[0, 0, 10, 10], [20, 0, 10, 10], [40, 0, 10, 10]], "invalid": [False, False, True]}
    mask = box_mask([[0, 0, 10, 10]], 20, 60)
    lists = {"easy": {"a": [0]}, "hard": {"a": [0, 1]}}
    first = score_image(mask, faces, "a", lists)
    assert first["covered"] == {"all": 1, "easy": 1, "hard": 1}
    assert first["faces"] == {"all": 2, "easy": 1, "hard": 2}
    second = score_image(np.zeros((20, 60), bool), faces, "not-in-lists", lists)
    assert second["faces"] == {"all": 2}
    report = aggregate([first, second])
    assert report["recall"] == {"all": 0.25, "easy": 1.0, "hard": 0.5}
    assert report["n_images"] == 2 and report["collateral"] == 0.0
    with pytest.raises(ValueError, match="refers to face"):
        score_image(mask, faces, "a", {"easy": {"a": [5]}})


def test_min_height_group_counts_only_valid_faces_that_high():
    faces = {"bbox": [[0, 0, 8, 9], [20, 0, 10, 10], [40, 0, 12, 12], [60, 0, 30, 30]],
             "invalid": [False, False, False, True]}
    mask = box_mask([[0, 0, 8, 9], [40, 0, 12, 12]], 40, 100)
    score = score_image(mask, faces, min_height=10)
    group = height_group(10)
    assert (score["covered"][group], score["faces"][group]) == (1, 2)  # the 9-px face and the invalid one left out
    assert (score["covered"]["all"], score["faces"]["all"]) == (2, 3)
    assert group not in score_image(mask, faces)["faces"]


def _write_official_mat(path: Path, events: dict[str, dict[str, list[int]]]) -> None:
    """A difficulty file in the official structure: (E, 1) cells of (n, 1) cells."""
    file_list = np.empty((len(events), 1), dtype=object)
    gt_list = np.empty((len(events), 1), dtype=object)
    event_list = np.empty((len(events), 1), dtype=object)
    for e, (event, images) in enumerate(events.items()):
        event_list[e, 0] = event
        file_list[e, 0] = np.empty((len(images), 1), dtype=object)
        gt_list[e, 0] = np.empty((len(images), 1), dtype=object)
        for i, (stem, indices) in enumerate(images.items()):
            file_list[e, 0][i, 0] = stem
            gt_list[e, 0][i, 0] = np.asarray(indices, dtype=np.uint8).reshape(-1, 1)
    scipy.io.savemat(path, {"file_list": file_list, "gt_list": gt_list, "event_list": event_list})


def test_difficulty_lists_from_small_official_mat(tmp_path):
    for difficulty, extra in (("easy", []), ("medium", [3]), ("hard", [3, 4])):
        _write_official_mat(tmp_path / f"wider_{difficulty}_val.mat", {
            "0--Parade": {"0_Parade_a_1": [1, 2] + extra, "0_Parade_b_2": []},
            "1--Handshaking": {"1_Handshaking_c_3": [1]},
        })
    lists = load_difficulty_lists(tmp_path)
    assert lists["easy"] == {"0_Parade_a_1": [0, 1], "0_Parade_b_2": [], "1_Handshaking_c_3": [0]}
    assert lists["hard"]["0_Parade_a_1"] == [0, 1, 2, 3]
    (tmp_path / "wider_hard_val.mat").unlink()
    with pytest.raises(FileNotFoundError, match="wider_hard_val.mat"):
        load_difficulty_lists(tmp_path)


def _present_val_stems() -> set[str]:
    return {p.stem for p in (WIDERFACE / "WIDER_val" / "images").glob("*/*.jpg")}


@pytest.mark.skipif(not GROUND_TRUTH.is_dir(), reason=f"WIDER FACE not found at {WIDERFACE} (set {WIDERFACE_ENV})")
def test_difficulty_lists_from_real_files():
    lists = load_difficulty_lists(GROUND_TRUTH)
    stems = _present_val_stems()
    assert len(stems) == 411
    counts = {d: sum(len(lists[d][s]) for s in stems) for d in lists}
    assert counts == {"easy": 911, "medium": 1727, "hard": 4665}
    assert all(len(per_image) == 3226 for per_image in lists.values())
    # indices refer to the faces in ground-truth file order: the .mat boxes match the text file
    boxes = _val_boxes_from_text()
    mat = scipy.io.loadmat(GROUND_TRUTH / "wider_face_val.mat")
    for files, bbx in zip(mat["file_list"][:, 0], mat["face_bbx_list"][:, 0]):
        for name, mat_boxes in zip(files[:, 0], bbx[:, 0]):
            stem = str(np.ravel(name)[0])
            if stem in boxes:
                np.testing.assert_array_equal(mat_boxes, boxes[stem])
                assert max(lists["hard"][stem], default=-1) < len(boxes[stem])


def _val_boxes_from_text() -> dict[str, np.ndarray]:
    lines = (WIDERFACE / "wider_face_split" / "wider_face_val_bbx_gt.txt").read_text().split("\n")
    boxes, i = {}, 0
    while i < len(lines) and lines[i].strip():
        stem, n = Path(lines[i].strip()).stem, int(lines[i + 1])
        rows = [list(map(int, line.split()[:4])) for line in lines[i + 2:i + 2 + n]]
        boxes[stem] = np.asarray(rows, dtype=np.int32).reshape(-1, 4)
        i += 2 + max(n, 1)
    return boxes


def _fixture_dataset() -> list[dict]:
    """Three small synthetic examples in the WIDER FACE schema, with a file name."""
    from PIL import Image

    rng = np.random.default_rng(0)
    examples = []
    for k, faces in enumerate([
        {"bbox": [[10, 10, 20, 24], [60, 30, 16, 16]], "invalid": [False, False]},
        {"bbox": [[5, 40, 30, 30], [70, 5, 8, 8]], "invalid": [False, True]},
        {"bbox": [], "invalid": []},
    ]):
        pixels = rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)
        examples.append({"image": Image.fromarray(pixels), "faces": faces, "file_name": f"img_{k}.jpg"})
    return examples


def test_oracle_masks_through_the_metric_path_give_exact_recall():
    dataset = _fixture_dataset()
    truth = {ex["file_name"]: ex["faces"]["bbox"] for ex in dataset}
    masks = iter([box_mask(truth["img_0.jpg"][:1], 96, 128),  # first face only
                  box_mask(truth["img_1.jpg"], 96, 128),  # both (one invalid)
                  np.zeros((96, 128), bool)])
    lists = {"easy": {"img_0": [0, 1], "img_1": [0]}, "medium": {"img_0": [1]}, "hard": {}}
    report = evaluate_masks(lambda image: next(masks), dataset, difficulty_lists=lists, progress=False)
    assert report["recall"] == {"all": 2 / 3, "easy": 2 / 3, "medium": 0.0}
    assert report["faces"] == {"all": 3, "easy": 3, "medium": 1}
    assert report["n_images"] == 3 and report["collateral"] == 0.0
    assert report["pixel_iou"] == pytest.approx((20 * 24 + 30 * 30) / (20 * 24 + 16 * 16 + 30 * 30))
    json.dumps(report)


def _tiny_eraser():
    import torch

    from faceerase.erase.pipeline import FaceEraser
    from faceerase.model.network import FaceEraseUNet

    torch.manual_seed(0)
    model = FaceEraseUNet(base_channels=4, depth=2).eval()
    return FaceEraser(model, device="cpu", input_size=64)


def _check_report(report: dict, n_images: int) -> None:
    assert report["n_images"] == n_images
    assert set(report["recall"]) >= {"all"}
    assert all(r is None or 0.0 <= r <= 1.0 for r in report["recall"].values())
    assert 0.0 <= report["collateral"] <= 1.0
    assert report["pixel_iou"] is None or 0.0 <= report["pixel_iou"] <= 1.0
    assert 0.0 < report["s_network_per_image"] <= report["s_per_image"]
    assert json.loads(json.dumps(report)) == report


def test_evaluate_runs_a_real_eraser_end_to_end():
    from faceerase.training.evaluation import evaluate

    lists = {"easy": {"img_0": [0]}, "medium": {"img_0": [0, 1]}, "hard": {"img_0": [0, 1], "img_1": [0]}}
    report = evaluate(_tiny_eraser(), _fixture_dataset(), difficulty_lists=lists, limit=2, progress=False)
    _check_report(report, 2)
    assert set(report["recall"]) == {"all", "easy", "medium", "hard"}
    assert report["faces"] == {"all": 3, "easy": 1, "medium": 2, "hard": 3}


@pytest.mark.slow
@pytest.mark.skipif(not GROUND_TRUTH.is_dir(), reason=f"WIDER FACE not found at {WIDERFACE} (set {WIDERFACE_ENV})")
def test_evaluate_widerface_on_two_real_images():
    from faceerase.training.evaluation import evaluate_widerface

    report = evaluate_widerface(_tiny_eraser(), WIDERFACE, split="val", limit=2, progress=False)
    _check_report(report, 2)
    assert set(report["recall"]) == {"all", "easy", "medium", "hard"}
