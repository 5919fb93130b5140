"""Anonymization quality of FaceErase models on a WIDER FACE split, over input sizes and threshold modes.

Every (model, input size, threshold) combination is one row, scored by ``faceerase.training.evaluation.evaluate``:
recall (easy/medium/hard with the official lists on val, and over all valid faces), collateral, pixel
IoU, median seconds per image (whole pipeline and network alone).

    python benchmarks/quality.py --model hub --input-size 640 1024 --threshold auto 0.5
    python benchmarks/quality.py --model runs/live preset:live --limit 50 --name smoke

``--model`` takes model folders or Hub ids (``faceerase.erase.pipeline.load_model``) or ``preset:NAME``
(untrained weights: only useful to check the plumbing). Writes ``results/quality_<name>.{json,md}``.
"""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path

from common import WIDERFACE, machine, markdown_table, write_results

from faceerase.erase.pipeline import FaceEraser, load_model
from faceerase.model.network import FaceEraseUNet
from faceerase.training.evaluation import evaluate, load_difficulty_lists
from faceerase.training.widerface import load_wider_face

COLUMNS = ["model", "input_size", "extra_scales", "threshold", "easy", "medium", "hard", "all", "collateral_%", "pixel_iou",
           "s_per_image", "s_network_per_image", "n_images"]


def threshold_options(text: str) -> dict:
    """``auto`` / ``seed`` or a probability (fixed mode) as FaceEraser keyword arguments."""
    if text in ("auto", "seed"):
        return {"threshold_mode": text}
    return {"threshold_mode": "fixed", "threshold_value": float(text)}


def build_model(name: str) -> FaceEraseUNet:
    if name.startswith("preset:"):
        return FaceEraseUNet.from_preset(name.split(":", 1)[1]).eval()
    return load_model(name, device="cpu")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", nargs="+", required=True, help="model folders, Hub ids or preset:NAME")
    parser.add_argument("--input-size", nargs="+", type=int, default=None,
                        help="long sides; 0 = original (default: the model's inference.json)")
    parser.add_argument("--single-pass", action="store_true", help="no extra scales (default: the model's)")
    parser.add_argument("--threshold", nargs="+", default=["auto"], help="auto, seed or a fixed probability")
    parser.add_argument("--root", type=Path, default=WIDERFACE, help="WIDER FACE folder (official layout)")
    parser.add_argument("--split", default="val", choices=("train", "val"))
    parser.add_argument("--limit", type=int, default=None, help="first N images only")
    parser.add_argument("--name", default="latest", help="results/quality_<name>.{json,md}")
    args = parser.parse_args()

    dataset = load_wider_face(args.root, args.split)
    ground_truth = args.root / "eval_tools" / "ground_truth"
    lists = load_difficulty_lists(ground_truth) if args.split == "val" and ground_truth.is_dir() else None
    started = time.strftime("%Y-%m-%d %H:%M")
    runs, rows = [], []
    for name in args.model:
        model = build_model(name)
        for size, threshold in itertools.product(args.input_size or [None], args.threshold):
            eraser = FaceEraser(model, device="cpu", input_size=size, extra_scales=() if args.single_pass else None,
                                **threshold_options(threshold))
            report = evaluate(eraser, dataset, difficulty_lists=lists, limit=args.limit)
            scales = list(eraser.settings.extra_scales)
            runs.append({"model": name, "input_size": eraser.input_size, "extra_scales": scales,
                         "threshold": threshold, "backend": eraser.backend, **report})
            rows.append({"model": name, "input_size": eraser.input_size or "original", "extra_scales": scales,
                         "threshold": threshold,
                         **report["recall"], "collateral_%": 100 * report["collateral"],
                         **{k: report[k] for k in ("pixel_iou", "s_per_image", "s_network_per_image",
                                                   "n_images")}})
    data = {"date": started, "machine": machine(), "split": args.split, "runs": runs}
    markdown = (f"# FaceErase quality on WIDER FACE {args.split}\n\nMeasured {started} on "
                f"{data['machine']['cpu_cores_available']} CPU cores. Recall: share of faces whose box is >= 50% "
                "covered by the final mask (easy/medium/hard: official lists); collateral: masked share of "
                "the image outside all face boxes grown 1.5x; s/img: median seconds per image.\n\n"
                + markdown_table(rows, COLUMNS))
    write_results(f"quality_{args.name}", data, markdown)


if __name__ == "__main__":
    main()
