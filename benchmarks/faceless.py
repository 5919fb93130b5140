"""The independent face-less check: scikit-image's bundled sample photos with no human face, never trained or
calibrated on. Reports the share of each photo that FaceErase's default pipeline masks, beside deface 1.5's mask
(CenterFace at threshold 0.2, ellipse in the box grown 1.3x, as benchmarks/deface_compare.py draws it).

    python benchmarks/faceless.py --model hub --name hub
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import skimage.data
from common import machine, markdown_table, write_results
from deface.centerface import CenterFace
from deface_compare import deface_mask

from faceerase.erase.pipeline import FaceEraser

# Every sample that ships inside scikit-image (no download) and shows no human face (astronaut and camera do).
PHOTOS = ("brick", "cat", "cell", "checkerboard", "clock", "coffee", "coins", "colorwheel", "grass", "gravel",
          "horse", "hubble_deep_field", "immunohistochemistry", "logo", "microaneurysms", "moon", "page", "retina",
          "rocket", "text")


def rgb(image: np.ndarray) -> np.ndarray:
    """A scikit-image sample as RGB uint8 (grey, boolean and RGBA ones converted)."""
    image = np.asarray(image)
    if image.dtype == bool:
        image = image.astype(np.uint8) * 255
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, -1)
    return np.ascontiguousarray(image[..., :3])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="hub", help="model folder or Hub id")
    parser.add_argument("--name", default="latest", help="results/faceless_<name>.{json,md}")
    args = parser.parse_args()
    eraser = FaceEraser(args.model, device="cpu")
    centerface = CenterFace(in_shape=None, backend="onnxrt")
    rows = []
    for name in PHOTOS:
        image = rgb(getattr(skimage.data, name)())
        result = eraser(image)
        dets, _ = centerface(image, threshold=0.2)
        rows.append({"photo": name, "size": f"{image.shape[1]}x{image.shape[0]}",
                     "faceerase_%": 100 * float(result.mask.mean()), "regions": len(result.regions),
                     "deface_%": 100 * float(deface_mask(dets, *image.shape[:2], 1.3).mean())})
    summary = {key: {"mean": float(np.mean([r[key] for r in rows])), "max": float(max(r[key] for r in rows))}
               for key in ("faceerase_%", "deface_%")}
    started = time.strftime("%Y-%m-%d %H:%M")
    data = {"date": started, "machine": machine(), "model": args.model, "rows": rows, "summary": summary}
    markdown = (f"# Face-less photos: scikit-image's samples (never trained or calibrated on)\n\n"
                f"Measured {started}, `{args.model}` with its default settings, deface 1.5 at threshold 0.2. "
                f"Masked share of each photo.\n\n" + markdown_table(rows, list(rows[0]))
                + f"\nFaceErase: {summary['faceerase_%']['mean']:.2f}% on average, at most "
                f"{summary['faceerase_%']['max']:.2f}%; deface: {summary['deface_%']['mean']:.2f}% on average, at "
                f"most {summary['deface_%']['max']:.2f}%.\n")
    write_results(f"faceless_{args.name}", data, markdown)


if __name__ == "__main__":
    main()
