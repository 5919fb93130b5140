"""The shipped model on the bundled example photos and on the fixed 40-image val sample of the regression tests.

Prints (and writes to ``results/examples_<name>.{json,md}``) the numbers that ``tests/test_shipped_model.py``
turns into floors and ceilings: the astronaut's face coverage and collateral, the masked share of the
face-less examples, and recall / collateral on every 10th val image (0, 10, ..., 390).

    python benchmarks/examples.py --model hub --name hub
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from common import REPO, WIDERFACE, machine, markdown_table, write_results

from faceerase.erase.pipeline import FaceEraser
from faceerase.training.evaluation import collateral, evaluate, face_coverage, load_difficulty_lists
from faceerase.training.widerface import load_wider_face

EXAMPLES = REPO / "faceerase" / "examples"
ASTRONAUT_FACE = [175, 60, 93, 105]  # x, y, w, h, as in tests/test_shipped_model.py
VAL_SAMPLE = range(0, 400, 10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="hub", help="model folder or Hub id")
    parser.add_argument("--root", type=Path, default=WIDERFACE)
    parser.add_argument("--name", default="latest", help="results/examples_<name>.{json,md}")
    args = parser.parse_args()

    eraser = FaceEraser(args.model, device="cpu")
    rows = []
    for path in sorted(EXAMPLES.glob("*.jpg")):
        result = eraser(path)
        row = {"image": path.name, "masked_%": 100 * float(result.mask.mean()), "regions": len(result.regions),
               "threshold": result.threshold}
        if path.name == "astronaut.jpg":
            row["face_coverage"] = float(face_coverage(result.mask, [ASTRONAUT_FACE])[0])
            row["collateral_%"] = 100 * collateral(result.mask, [ASTRONAUT_FACE])
        rows.append(row)
    dataset = load_wider_face(args.root, "val").select(VAL_SAMPLE)
    sample = evaluate(eraser, dataset, difficulty_lists=load_difficulty_lists(args.root / "eval_tools" / "ground_truth"),
                      progress=False)
    started = time.strftime("%Y-%m-%d %H:%M")
    data = {"date": started, "machine": machine(), "model": args.model, "settings": str(eraser.settings),
            "examples": rows, "val_sample": sample}
    recall = sample["recall"]
    markdown = (f"# `{args.model}` on the bundled examples and the 40-image val sample\n\nMeasured {started}, "
                f"the model's default settings ({eraser.settings}, auto threshold).\n\n"
                + markdown_table(rows, ["image", "masked_%", "regions", "threshold", "face_coverage", "collateral_%"])
                + f"\nVal sample (every 10th of the 411 images): easy {recall['easy']:.3f}, medium "
                f"{recall['medium']:.3f}, hard {recall['hard']:.3f}, collateral {100 * sample['collateral']:.2f}%.\n")
    write_results(f"examples_{args.name}", data, markdown)


if __name__ == "__main__":
    main()
