"""Which fill looks most natural: the candidate default fills side by side on 20 WIDER FACE val photos.

The photos: for each range of the largest valid face's longer side (16-32, 32-64, 64-128, 128-256, 256+ px), the
first 4 images (sorted by name) from 4 different events with at most 12 valid faces where the model finds a face.
Masks: the model's with its default settings (``FaceEraser``). The candidates, on the same masks:

- ``telea``, ``ns``: OpenCV's inpainting (``inpaint_telea``, the former default; ``inpaint_ns``);
- ``border``: the page's former fill: ``fill_from_border``, then ``radius**2`` sweeps relaxing each filled pixel
  towards the mean of its 4 neighbours (Jacobi sweeps here; the page swept in place, Gauss-Seidel);
- ``fill``: ``fill_from_border`` then a Gaussian blur of the filled pixels (``anonymize(..., "fill")``);
- ``fill_grain``: ``fill`` plus grey noise (fixed seed) as strong as the photo's grain around each region (the
  robust standard deviation of its high-pass within a ring around the region).

Writes ``results/fill_comparison.png``: two photos per row (in the order above, left then right), one column per
candidate, each tile the square around the photo's largest region (1.8 times its longer side); the original faces
are not shown. And
``results/fill_comparison.json``: the photos, their regions and each candidate's time. The findings are in
``results/fill_comparison.md``. The crops come from WIDER FACE (CC BY-NC-ND 4.0, non-commercial use).

    python benchmarks/fill_comparison.py --model hub
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from common import RESULTS, WIDERFACE, machine
from PIL import Image

from faceerase.erase.fill import _window, _working_scale, anonymize, fill_from_border
from faceerase.erase.pipeline import FaceEraser
from faceerase.training.widerface import parse_annotations

SIZE_RANGES = ((16, 32), (32, 64), (64, 128), (128, 256), (256, 10_000))
PER_RANGE = 4
MAX_FACES = 12
CROP = 1.8


def pick_photos(root: Path, eraser: FaceEraser) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(file name, image, mask) of the 20 photos (see the module docstring)."""
    picked = []
    for low, high in SIZE_RANGES:
        events: set[str] = set()
        for name, faces in sorted(parse_annotations(root / "wider_face_split" / "wider_face_val_bbx_gt.txt")):
            valid = faces[faces[:, 7] == 0]
            event = name.split("/")[0]
            if len(events) == PER_RANGE or event in events or not 0 < len(valid) <= MAX_FACES or \
                    not low <= valid[:, 2:4].max() < high:
                continue
            result = eraser(root / "WIDER_val" / "images" / name)
            if result.regions:
                events.add(event)
                picked.append((name, result.image, result.mask))
    return picked


def former_page_fill(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The page's fill before ``fill``: ``fill_from_border`` smoothed by ``radius**2`` Jacobi sweeps, in the crops and
    at the working resolution of ``fill``."""
    out = image.copy()
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.view(np.uint8), connectivity=8)
    for i in range(1, n):
        box = tuple(int(v) for v in stats[i, :4])
        scale, radius, margin = _working_scale(box)
        rows, cols = _window(box, margin, image.shape)
        crop, hole = image[rows, cols].astype(np.float64), mask[rows, cols]
        h, w = hole.shape
        if scale < 1:
            size = (round(w * scale), round(h * scale))
            crop = cv2.resize(crop, size, interpolation=cv2.INTER_AREA)
            hole = cv2.resize(hole.astype(np.float64), size, interpolation=cv2.INTER_AREA) > 0
        filled, _ = fill_from_border(crop, hole, radius)
        for _ in range(radius * radius):
            edges = np.pad(filled, ((1, 1), (1, 1), (0, 0)), mode="edge")
            mean = (edges[:-2, 1:-1] + edges[2:, 1:-1] + edges[1:-1, :-2] + edges[1:-1, 2:]) / 4
            filled[hole] = mean[hole]
        if scale < 1:
            filled = cv2.resize(filled, (w, h), interpolation=cv2.INTER_LINEAR)
        region = labels[rows, cols] == i
        out[rows, cols][region] = np.rint(filled).clip(0, 255).astype(np.uint8)[region]
    return out


def fill_with_grain(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``fill`` plus grey noise (seed 0) scaled, per region, to the robust standard deviation of the photo's high-pass
    (the image minus its Gaussian blur, sigma 1) in a ring around the region an eighth of its size wide."""
    out = anonymize(image, mask, "fill").astype(np.float64)
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float64)
    high_pass = grey - cv2.GaussianBlur(grey, (0, 0), 1.0)
    noise = np.random.default_rng(0).standard_normal(mask.shape)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.view(np.uint8), connectivity=8)
    for i in range(1, n):
        box = tuple(int(v) for v in stats[i, :4])
        rows, cols = _window(box, max(4, max(box[2:]) // 8), image.shape)
        ring, region = ~mask[rows, cols], labels[rows, cols] == i
        strength = 1.4826 * np.median(np.abs(high_pass[rows, cols][ring])) if ring.any() else 0.0
        out[rows, cols][region] += strength * noise[rows, cols][region][:, None]
    return np.rint(out).clip(0, 255).astype(np.uint8)


CANDIDATES: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "telea": lambda image, mask: anonymize(image, mask, "inpaint_telea"),
    "ns": lambda image, mask: anonymize(image, mask, "inpaint_ns"),
    "border": former_page_fill,
    "fill": lambda image, mask: anonymize(image, mask, "fill"),
    "fill_grain": fill_with_grain,
}


def largest_region(mask: np.ndarray) -> tuple[int, tuple[int, int, int, int]]:
    """The number of the mask's regions and the box (x, y, w, h) of the largest."""
    _, _, stats, _ = cv2.connectedComponentsWithStats(mask.view(np.uint8), connectivity=8)
    x, y, w, h, _ = stats[1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))]
    return len(stats) - 1, (int(x), int(y), int(w), int(h))


def regions(mask: np.ndarray) -> dict:
    """The number of the mask's regions, the longer side of the largest and the masked share of the photo."""
    count, (_, _, w, h) = largest_region(mask)
    return {"regions": count, "largest_region_px": max(w, h), "masked_%": round(100 * float(mask.mean()), 2)}


def face_crop(image: np.ndarray, mask: np.ndarray, tile: int) -> tuple[slice, slice]:
    """The square (clipped to the image) around the mask's largest region, CROP times its longer side."""
    x, y, w, h = largest_region(mask)[1]
    side = max(tile // 2, int(CROP * max(w, h)))
    x0 = int(np.clip(x + w // 2 - side // 2, 0, max(0, image.shape[1] - side)))
    y0 = int(np.clip(y + h // 2 - side // 2, 0, max(0, image.shape[0] - side)))
    return slice(y0, y0 + side), slice(x0, x0 + side)


def tile_of(pixels: np.ndarray, tile: int) -> np.ndarray:
    interpolation = cv2.INTER_AREA if max(pixels.shape[:2]) > tile else cv2.INTER_CUBIC
    return cv2.resize(pixels, (tile, tile), interpolation=interpolation)


def header(names: list[str], tile: int) -> np.ndarray:
    row = np.full((24, len(names) * tile, 3), 255, np.uint8)
    for k, name in enumerate(names):
        cv2.putText(row, name, (k * tile + 4, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="hub", help="model folder or Hub id")
    parser.add_argument("--root", type=Path, default=WIDERFACE)
    parser.add_argument("--tile", type=int, default=150, help="tile side in pixels (the PNG must stay under 2 MB)")
    args = parser.parse_args()

    eraser = FaceEraser(args.model, device="cpu")
    photos = pick_photos(args.root, eraser)
    seconds = dict.fromkeys(CANDIDATES, 0.0)
    strips = []  # per photo: its tiles side by side, 2-pixel white borders around each
    for _, image, mask in photos:
        crop = face_crop(image, mask, args.tile)
        tiles = []
        for name, erase in CANDIDATES.items():
            start = time.process_time()
            erased = erase(image, mask)
            seconds[name] += time.process_time() - start
            tiles.append(np.pad(tile_of(erased[crop], args.tile - 4), ((2, 2), (2, 2), (0, 0)), constant_values=255))
        strips.append(np.concatenate(tiles, axis=1))
    gap = np.full((strips[0].shape[0], 12, 3), 255, np.uint8)
    rows = [np.concatenate([strips[i], gap, strips[i + 1]], axis=1) for i in range(0, len(strips), 2)]
    titles = header(list(CANDIDATES), args.tile)
    rows.insert(0, np.concatenate([titles, gap[:titles.shape[0]], titles], axis=1))
    sheet = RESULTS / "fill_comparison.png"
    Image.fromarray(np.concatenate(rows, axis=0)).save(sheet, optimize=True)
    data = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": machine(), "model": args.model,
            "photos": [{"file_name": name, **regions(mask)} for name, _, mask in photos],
            "cpu_seconds_20_photos": {name: round(s, 2) for name, s in seconds.items()}}
    (RESULTS / "fill_comparison.json").write_text(json.dumps(data, indent=2) + "\n")
    print(json.dumps(data["cpu_seconds_20_photos"]), f"{sheet}: {sheet.stat().st_size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
