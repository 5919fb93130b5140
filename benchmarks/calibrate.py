"""Calibrate a model's inference settings on WIDER FACE *train* and face-less negatives; write ``inference.json``.

The network runs once per image and scale (the model's input size, and half of it for the optional second
pass); every candidate (extra scale, auto-threshold floor, dilation, dilation ratio) is then scored on the same
probability maps with the evaluation metrics: recall of valid faces at >= 50% box coverage and collateral
outside the boxes grown 1.5x on train images, and the masked share of face-less photos (``--negatives``).
The chosen setting has the highest recall among those whose train collateral stays within
``--max-collateral`` (default 0.94%: what deface 1.5's own masks measure on val, results/deface_compare.md)
and whose face-less photos are masked by at most ``--max-negative`` on average; when no setting is that clean,
the limits double until one is. Val is never looked at, so val numbers measured afterwards stay honest.

    python benchmarks/calibrate.py --model hub --images 200 --name hub --write
"""

from __future__ import annotations

import argparse
import itertools
import shlex
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
from common import WIDERFACE, machine, markdown_table, write_results
from tqdm import tqdm

from faceerase.data import load_wider_face
from faceerase.evaluation import aggregate, image_stem, score_image
from faceerase.geometry import network_long_side
from faceerase.images import load_image
from faceerase.masks import refine_mask
from faceerase.pipeline import FaceEraser
from faceerase.thresholds import compute_threshold

COLUMNS = ["extra_scales", "floor", "dilation", "dilation_ratio", "all", "collateral_%", "negatives_%",
           "pixel_iou"]
NEGATIVES = WIDERFACE.parent / "negatives" / "images"


def predict_maps(eraser: FaceEraser, image: np.ndarray, extra: float) -> tuple[np.ndarray, np.ndarray]:
    """The single-pass map at the model's input size and the map with the ``extra`` pass."""
    full = eraser.predict([image], input_size=eraser.input_size)[0]
    base = network_long_side(*image.shape[:2], eraser.input_size, eraser.settings.upscale)
    return full, np.maximum(full, eraser.predict([image], input_size=round(base * extra))[0])


def mask_of(prob: np.ndarray, floor: float, ceiling: float, dilation: int, ratio: float, min_area: int):
    threshold = compute_threshold(prob, "auto", floor=floor, ceiling=max(floor, ceiling))
    return refine_mask(prob > threshold, dilation, min_area, ratio)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="model folder or Hub id")
    parser.add_argument("--root", type=Path, default=WIDERFACE)
    parser.add_argument("--negatives", type=Path, default=NEGATIVES, help="folder of face-less photos")
    parser.add_argument("--images", type=int, default=200, help="random train images (seed 0)")
    parser.add_argument("--negative-images", type=int, default=100, help="random face-less photos (seed 0)")
    parser.add_argument("--input-size", type=int, default=1024)
    parser.add_argument("--extra-scale", type=float, default=0.5, help="candidate second pass (x input size)")
    parser.add_argument("--floors", type=float, nargs="+", default=[0.3, 0.4, 0.5, 0.6])
    parser.add_argument("--ceiling", type=float, default=0.6)
    parser.add_argument("--dilations", type=int, nargs="+", default=[0, 2, 4, 8])
    parser.add_argument("--ratios", type=float, nargs="+", default=[0.0, 0.1, 0.2])
    parser.add_argument("--min-area", type=int, default=16)
    parser.add_argument("--live-input-size", type=int, default=320, help="recorded for the webcam")
    parser.add_argument("--max-collateral", type=float, default=0.0094, help="as a fraction of the image")
    parser.add_argument("--max-negative", type=float, default=0.005, help="mean masked share of face-less photos")
    parser.add_argument("--name", default="latest", help="results/calibration_<name>.{json,md}")
    parser.add_argument("--write", action="store_true", help="write the chosen settings to MODEL/inference.json")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    dataset = load_wider_face(args.root, "train")
    picked = sorted(rng.choice(len(dataset), size=min(args.images, len(dataset)), replace=False).tolist())
    negatives = sorted(args.negatives.glob("*.jpg"))
    negatives = [negatives[i] for i in sorted(rng.choice(len(negatives), min(args.negative_images, len(negatives)),
                                                         replace=False).tolist())]
    eraser = FaceEraser(args.model, device="cpu", input_size=args.input_size, extra_scales=())
    faces, clean = [], []
    for i in tqdm(picked, desc="predict train"):
        example = dataset[i]
        faces.append((example, *predict_maps(eraser, np.asarray(example["image"].convert("RGB")), args.extra_scale)))
    for path in tqdm(negatives, desc="predict negatives"):
        clean.append(predict_maps(eraser, load_image(path), args.extra_scale))

    rows = []
    grid = itertools.product((False, True), args.floors, args.dilations, args.ratios)
    for extra, floor, dilation, ratio in tqdm(list(grid), desc="score"):
        post = (floor, args.ceiling, dilation, ratio, args.min_area)
        scores = [score_image(mask_of(maps[extra], *post), example["faces"], image_stem(example))
                  for example, *maps in faces]
        report = aggregate(scores)
        masked = np.mean([mask_of(maps[extra], *post).mean() for maps in clean]) if clean else 0.0
        rows.append({"extra_scales": [args.extra_scale] if extra else [], "floor": floor, "dilation": dilation,
                     "dilation_ratio": ratio, "all": report["recall"]["all"],
                     "collateral_%": 100 * report["collateral"], "negatives_%": 100 * float(masked),
                     "pixel_iou": report["pixel_iou"]})
    limit, negative_limit = 100 * args.max_collateral, 100 * args.max_negative
    while not [r for r in rows if r["collateral_%"] <= limit and r["negatives_%"] <= negative_limit]:
        limit, negative_limit = 2 * limit, 2 * negative_limit
    allowed = [r for r in rows if r["collateral_%"] <= limit and r["negatives_%"] <= negative_limit]
    best = max(allowed, key=lambda r: (round(r["all"], 3), -r["collateral_%"]))
    command = "python " + shlex.join(["benchmarks/calibrate.py", *sys.argv[1:]])
    settings = replace(eraser.model.settings, input_size=args.input_size, extra_scales=tuple(best["extra_scales"]),
                       live_input_size=args.live_input_size, threshold_floor=best["floor"],
                       threshold_ceiling=max(best["floor"], args.ceiling), dilation=best["dilation"],
                       dilation_ratio=best["dilation_ratio"], min_area=args.min_area, source=command)
    started = time.strftime("%Y-%m-%d %H:%M")
    data = {"date": started, "machine": machine(), "model": args.model, "split": "train", "command": command,
            "n_images": len(faces), "n_negatives": len(clean), "limits_used_%": [limit, negative_limit],
            "best": best, "settings": asdict(settings), "rows": rows}
    markdown = (f"# Inference calibration of `{args.model}` on WIDER FACE train\n\n"
                f"Measured {started} with `{command}`: {len(faces)} random train images (seed 0) at "
                f"{args.input_size} px and {len(clean)} face-less photos, minimum region area {args.min_area} px, "
                f"auto threshold (Otsu clamped to [floor, {args.ceiling}]). Recall over all valid faces (>= 50% box "
                f"coverage); collateral outside the boxes grown 1.5x; negatives: mean masked share of the face-less "
                f"photos.\n\n" + markdown_table(rows, COLUMNS)
                + f"\nLimits used: collateral {limit:.2f}%, negatives {negative_limit:.2f}% (doubled from "
                f"{100 * args.max_collateral:.2f}% / {100 * args.max_negative:.2f}% until a setting met them).\n\n"
                f"Chosen: {best}\n")
    write_results(f"calibration_{args.name}", data, markdown)
    if args.write:
        print(f"wrote {settings.save(args.model)}")


if __name__ == "__main__":
    main()
