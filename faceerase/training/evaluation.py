"""Anonymization quality on WIDER FACE: face recall by coverage, collateral masking, pixel IoU, speed.

A face counts as anonymized when at least :data:`COVERAGE_THRESHOLD` of its ground-truth box is
covered by the final binary mask. Recall is taken over the official easy/medium/hard face lists
(``eval_tools/ground_truth/wider_{easy,medium,hard}_val.mat``) when given, and always over all
valid faces. Collateral is the share of the image's pixels masked outside every face box grown
:data:`COLLATERAL_GROWTH` times about its centre. The metric functions are plain numpy so that any
system (FaceErase, a box detector drawing ellipses, an oracle) is scored by the same code.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from faceerase.erase.masks import check_mask
from faceerase.training.widerface import as_boxes, face_masks, invalid_flags, load_wider_face, pixel_bounds

if TYPE_CHECKING:
    import datasets

    from faceerase.erase.pipeline import FaceEraser

DIFFICULTIES = ("easy", "medium", "hard")
COVERAGE_THRESHOLD = 0.5
COLLATERAL_GROWTH = 1.5
LARGE_FACE_SIDE = 16
"""Short side (pixels) from which a face counts as large: training reports recall on large faces too."""

MaskFn = Callable[[np.ndarray], np.ndarray]


def load_difficulty_lists(ground_truth_dir: str | Path) -> dict[str, dict[str, list[int]]]:
    """Read the official WIDER FACE difficulty lists.

    Returns ``{"easy" | "medium" | "hard": {image stem: 0-based face indices}}``; the indices refer to
    the faces of that image in ground-truth file order (``wider_face_val_bbx_gt.txt``). Images with
    no face at a difficulty map to an empty list.
    """
    import scipy.io  # here: a third of a second to import, and only the val lists need it

    ground_truth_dir = Path(ground_truth_dir)
    lists: dict[str, dict[str, list[int]]] = {}
    for difficulty in DIFFICULTIES:
        path = ground_truth_dir / f"wider_{difficulty}_val.mat"
        if not path.is_file():
            raise FileNotFoundError(f"missing WIDER FACE difficulty list {path}")
        mat = scipy.io.loadmat(path)
        if "file_list" not in mat or "gt_list" not in mat:
            raise ValueError(f"{path} has no file_list/gt_list: not an official difficulty file")
        per_image: dict[str, list[int]] = {}
        for files, gts in zip(mat["file_list"][:, 0], mat["gt_list"][:, 0]):
            for name, gt in zip(files[:, 0], gts[:, 0]):
                per_image[str(np.ravel(name)[0])] = (np.asarray(gt).astype(int).ravel() - 1).tolist()
        lists[difficulty] = per_image
    return lists


def box_mask(boxes: Iterable[Iterable[float]], height: int, width: int, growth: float = 1.0) -> np.ndarray:
    """Boolean HxW mask of the union of boxes ``[x, y, w, h]`` grown ``growth`` times about their centres."""
    out = np.zeros((height, width), dtype=bool)
    for x0, y0, x1, y1 in pixel_bounds(boxes, height, width, growth):
        out[y0:y1, x0:x1] = True
    return out


def face_coverage(mask: np.ndarray, boxes: Iterable[Iterable[float]]) -> np.ndarray:
    """Share of each box ``[x, y, w, h]`` (pixels ``x .. x+w-1``) covered by the binary mask, in [0, 1].

    Boxes are clipped to the image and are at least one pixel wide and high.
    """
    mask = check_mask(mask)
    boxes = as_boxes(boxes)
    if len(boxes) == 0:
        return np.zeros(0)
    height, width = mask.shape
    integral = np.zeros((height + 1, width + 1), dtype=np.int64)
    integral[1:, 1:] = mask.cumsum(0, dtype=np.int64).cumsum(1)
    x0, y0, x1, y1 = pixel_bounds(boxes, height, width).T
    covered = integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0]
    return covered / ((x1 - x0) * (y1 - y0))


def coverage_recall(mask: np.ndarray, boxes: Iterable[Iterable[float]],
                    threshold: float = COVERAGE_THRESHOLD) -> float:
    """Share of the boxes whose coverage by the mask is at least ``threshold`` (NaN without boxes)."""
    coverage = face_coverage(mask, boxes)
    return float(np.mean(coverage >= threshold)) if coverage.size else float("nan")


def collateral(mask: np.ndarray, boxes: Iterable[Iterable[float]], growth: float = COLLATERAL_GROWTH) -> float:
    """Share of all image pixels that the mask covers outside every box grown ``growth`` times.

    Pass every annotated face, invalid ones included: masking them is not collateral damage.
    """
    mask = check_mask(mask)
    outside = ~box_mask(boxes, *mask.shape, growth=growth)
    return float(np.count_nonzero(mask & outside) / mask.size)


def pixel_iou_counts(mask: np.ndarray, truth: np.ndarray, ignore: np.ndarray | None = None) -> tuple[int, int]:
    """(intersection, union) pixel counts of two boolean masks, leaving out ``ignore`` pixels from the union."""
    mask, truth = check_mask(mask), check_mask(truth)
    union = mask | truth
    if ignore is not None:
        union &= ~check_mask(ignore)
    return int(np.count_nonzero(mask & truth)), int(np.count_nonzero(union))


def pixel_iou(mask: np.ndarray, truth: np.ndarray, ignore: np.ndarray | None = None) -> float:
    """Pixel IoU of two boolean masks outside ``ignore`` (see :func:`pixel_iou_counts`); 1.0 when both are empty."""
    intersection, union = pixel_iou_counts(mask, truth, ignore)
    return intersection / union if union else 1.0


def image_stem(example: Mapping[str, Any]) -> str | None:
    """File stem of a dataset example's image (``0_Parade_marchingband_1_465``), or None if unknown."""
    for key in ("file_name", "filename", "path"):
        if example.get(key):
            return Path(str(example[key])).stem
    filename = getattr(example.get("image"), "filename", None)
    return Path(filename).stem if filename else None


def height_group(min_height: int) -> str:
    """The recall group of the valid faces at least ``min_height`` pixels high (``"h>=10px"``)."""
    return f"h>={min_height}px"


def score_image(mask: np.ndarray, faces: Mapping[str, Any], stem: str | None = None,
                difficulty_lists: Mapping[str, Mapping[str, list[int]]] | None = None,
                min_height: int | None = None) -> dict[str, Any]:
    """Per-image scores of a final mask against WIDER FACE annotations (``faces`` = ``{"bbox", "invalid"}``).

    Returns ``covered`` / ``faces`` counts for ``all`` valid faces, for the valid faces at least
    ``min_height`` pixels high (group :func:`height_group`) when given, and for each difficulty whose list
    has this image, ``collateral`` (all faces, invalid included, count as faces), and the pixel-IoU
    ``intersection`` / ``union`` with the box ground truth of :func:`faceerase.training.widerface.face_masks` (invalid
    faces are ignored).
    """
    boxes = as_boxes(faces["bbox"])
    invalid = invalid_flags(faces)
    covered = face_coverage(mask, boxes) >= COVERAGE_THRESHOLD
    counts = {"all": (int(covered[~invalid].sum()), int((~invalid).sum()))}
    if min_height is not None:
        tall = ~invalid & (boxes[:, 3] >= min_height)
        counts[height_group(min_height)] = (int(covered[tall].sum()), int(tall.sum()))
    for difficulty, per_image in (difficulty_lists or {}).items():
        if stem is not None and stem in per_image:
            index = np.asarray(per_image[stem], dtype=int)
            if index.size and index.max() >= len(boxes):
                raise ValueError(f"{difficulty} list of {stem} refers to face {index.max()}, "
                                 f"but the image has {len(boxes)} faces")
            counts[difficulty] = (int(covered[index].sum()), int(index.size))
    truth, ignore = face_masks(faces, *np.shape(mask), shape="box")
    intersection, union = pixel_iou_counts(mask, truth.astype(bool), ignore)
    return {
        "covered": {k: v[0] for k, v in counts.items()},
        "faces": {k: v[1] for k, v in counts.items()},
        "collateral": collateral(mask, boxes),
        "intersection": intersection,
        "union": union,
    }


def aggregate(scores: list[dict[str, Any]]) -> dict[str, Any]:
    """Dataset metrics from :func:`score_image` results: face-weighted recall per group, mean
    collateral over images, pixel IoU of the summed counts."""
    covered: dict[str, int] = {}
    faces: dict[str, int] = {}
    for score in scores:
        for group, n in score["faces"].items():
            faces[group] = faces.get(group, 0) + n
            covered[group] = covered.get(group, 0) + score["covered"][group]
    union = sum(s["union"] for s in scores)
    return {
        "n_images": len(scores),
        "recall": {g: covered[g] / faces[g] if faces[g] else None for g in faces},
        "faces": faces,
        "collateral": float(np.mean([s["collateral"] for s in scores])) if scores else None,
        "pixel_iou": sum(s["intersection"] for s in scores) / union if union else None,
    }


def evaluate_masks(mask_fn: MaskFn, dataset: "datasets.Dataset | Iterable[Mapping[str, Any]]", *,
                   difficulty_lists: Mapping[str, Mapping[str, list[int]]] | None = None,
                   limit: int | None = None, progress: bool = True) -> dict[str, Any]:
    """Score any image -> boolean mask function on examples with ``image`` and ``faces``.

    ``s_per_image`` is the median wall time of ``mask_fn`` (image decoding excluded). Images missing
    from ``difficulty_lists`` only count towards the ``all`` recall.
    """
    total = len(dataset) if hasattr(dataset, "__len__") else None
    if limit is not None:
        total = limit if total is None else min(limit, total)
    scores, seconds = [], []
    for i, example in enumerate(tqdm(dataset, total=total, desc="evaluate", disable=not progress)):
        if limit is not None and i >= limit:
            break
        image = example["image"]
        image = np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image)
        start = time.perf_counter()
        mask = mask_fn(image)
        seconds.append(time.perf_counter() - start)
        if np.shape(mask) != image.shape[:2]:
            raise ValueError(f"mask shape {np.shape(mask)} does not match image {image.shape[:2]}")
        scores.append(score_image(mask, example["faces"], image_stem(example), difficulty_lists))
    report = aggregate(scores)
    report["s_per_image"] = statistics.median(seconds) if seconds else None
    report["coverage_threshold"] = COVERAGE_THRESHOLD
    report["collateral_growth"] = COLLATERAL_GROWTH
    return report


def evaluate(eraser: "FaceEraser", dataset: "datasets.Dataset | Iterable[Mapping[str, Any]]", *,
             difficulty_lists: Mapping[str, Mapping[str, list[int]]] | None = None,
             limit: int | None = None, progress: bool = True) -> dict[str, Any]:
    """Run a :class:`~faceerase.erase.pipeline.FaceEraser` on each example and score its final masks.

    Each image goes through ``eraser.predict`` (the network, timed on its own as
    ``s_network_per_image``) and ``eraser.postprocess`` (threshold, mask, anonymization);
    ``s_per_image`` is the median of the two together. Returns a JSON-serialisable dict:
    ``n_images``, ``recall`` ({"all", and "easy"/"medium"/"hard" with lists}), ``faces``,
    ``collateral``, ``pixel_iou``, ``s_per_image``, ``s_network_per_image``.
    """
    network_seconds: list[float] = []

    def mask_fn(image: np.ndarray) -> np.ndarray:
        start = time.perf_counter()
        prob = eraser.predict([image])[0]
        network_seconds.append(time.perf_counter() - start)
        return eraser.postprocess(image, prob).mask

    report = evaluate_masks(mask_fn, dataset, difficulty_lists=difficulty_lists, limit=limit,
                            progress=progress)
    report["s_network_per_image"] = statistics.median(network_seconds) if network_seconds else None
    return report


def evaluate_widerface(eraser: "FaceEraser", root: str | Path, split: str = "val", limit: int | None = None,
                       progress: bool = True) -> dict[str, Any]:
    """:func:`evaluate` on a local WIDER FACE folder (official layout) with the official difficulty
    lists from ``root/eval_tools/ground_truth`` when they exist (val only)."""
    ground_truth = Path(root) / "eval_tools" / "ground_truth"
    lists = load_difficulty_lists(ground_truth) if split == "val" and ground_truth.is_dir() else None
    return evaluate(eraser, load_wider_face(root, split), difficulty_lists=lists, limit=limit,
                    progress=progress)
