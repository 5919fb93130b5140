"""WIDER FACE as a ``datasets.Dataset`` (Hub or local official layout) and face masks from its boxes.

Rows follow the schema of the Hub dataset ``CUHK-CSE/wider_face`` (``image`` plus ``faces`` with ``bbox``
[x, y, w, h], ``blur``, ``expression``, ``illumination``, ``occlusion``, ``pose``, ``invalid``) and carry one
extra column, ``file_name``: the image path relative to the split's ``images`` folder for local folders
(``"0--Parade/0_Parade_marchingband_1_465.jpg"``) and the stored image path for Hub data. Image names are
unique in WIDER FACE, so ``Path(file_name).stem`` is the key to match the official easy/medium/hard lists.
``datasets`` is imported only by the loading functions: :func:`face_masks` works without it.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from faceerase.media.outputs import atomic_directory, remove_stale_temp_files
from faceerase.model.loading import is_local_source

if TYPE_CHECKING:
    import datasets

DEFAULT_SOURCE = "CUHK-CSE/wider_face"
WIDERFACE_ENV = "FACEERASE_WIDERFACE"
PARQUET_REVISION = "refs/convert/parquet"
# Bump when the cached Arrow layout changes so stale caches are rebuilt.
_CACHE_VERSION = "1"
# Column order of the official annotation file after x1 y1 w h.
_ANNOTATION_ATTRIBUTES = ("blur", "expression", "illumination", "invalid", "occlusion", "pose")
_SPLIT_DIRS = {"train": "train", "validation": "val", "val": "val"}


def wider_face_features() -> datasets.Features:
    """Features of :func:`load_wider_face`: those of the Hub dataset ``CUHK-CSE/wider_face`` plus ``file_name``."""
    import datasets

    faces = {
        "bbox": datasets.Sequence(datasets.Value("float32"), length=4),
        "blur": datasets.ClassLabel(names=["clear", "normal", "heavy"]),
        "expression": datasets.ClassLabel(names=["typical", "exaggerate"]),
        "illumination": datasets.ClassLabel(names=["normal", "exaggerate "]),
        "occlusion": datasets.ClassLabel(names=["no", "partial", "heavy"]),
        "pose": datasets.ClassLabel(names=["typical", "atypical"]),
        "invalid": datasets.Value("bool"),
    }
    return datasets.Features({"image": datasets.Image(), "faces": datasets.Sequence(faces),
                              "file_name": datasets.Value("string")})


class AnnotationError(ValueError):
    """The WIDER FACE annotation file is malformed (the message names the file and line)."""


def default_cache_dir() -> Path:
    """Root of FaceErase's caches: ``$FACEERASE_CACHE`` or ``~/.cache/faceerase``."""
    return Path(os.environ.get("FACEERASE_CACHE", Path.home() / ".cache" / "faceerase"))


def default_widerface_root() -> Path:
    """The local WIDER FACE folder (official layout) that ``train.py``, the benchmarks, ``scripts/make_pack.py`` and
    the tests use when none is given: ``$FACEERASE_WIDERFACE``, else ``../shared/widerface`` (relative to the
    working directory: beside a checkout, for commands run from its root)."""
    return Path(os.environ.get(WIDERFACE_ENV) or "../shared/widerface").expanduser()


def split_paths(root: str | Path, split: str) -> tuple[Path, Path]:
    """(images folder, annotation file) of ``split`` ("train", "validation" or "val") in a local folder."""
    if split not in _SPLIT_DIRS:
        raise ValueError(f"split must be one of {sorted(_SPLIT_DIRS)} for a local folder, got {split!r}")
    short = _SPLIT_DIRS[split]
    root = Path(root)
    return root / f"WIDER_{short}" / "images", root / "wider_face_split" / f"wider_face_{short}_bbx_gt.txt"


def parse_annotations(path: str | Path) -> list[tuple[str, np.ndarray]]:
    """Parse an official ``wider_face_*_bbx_gt.txt`` into ``[(file_name, int array (F, 10))]``.

    Columns are ``x1 y1 w h blur expression illumination invalid occlusion pose``; an image with no face
    has count 0 followed by one line of zeros and gets an empty (0, 10) array.

    Raises:
        AnnotationError: with the 1-based line number of the first malformed line.
    """
    path = Path(path)
    lines = path.read_text().splitlines()
    records: list[tuple[str, np.ndarray]] = []
    i = 0

    def fail(line_index: int, what: str) -> AnnotationError:
        shown = lines[line_index].strip() if line_index < len(lines) else "<end of file>"
        return AnnotationError(f"{path}:{line_index + 1}: {what}, got {shown!r}")

    def face_row(line_index: int) -> list[int]:
        if line_index >= len(lines):
            raise fail(line_index, "expected a face line of 10 integers")
        try:
            values = [int(v) for v in lines[line_index].split()]
        except ValueError:
            raise fail(line_index, "expected a face line of 10 integers") from None
        if len(values) != 10:
            raise fail(line_index, "expected a face line of 10 integers")
        return values

    while i < len(lines):
        name = lines[i].strip()
        if not name:
            i += 1
            continue
        if not name.lower().endswith((".jpg", ".jpeg", ".png")):
            raise fail(i, "expected an image file name")
        if i + 1 >= len(lines) or not lines[i + 1].strip().isdigit():
            raise fail(i + 1, f"expected the face count of {name}")
        count = int(lines[i + 1])
        rows = [face_row(i + 2 + k) for k in range(max(count, 1))]
        records.append((name, np.array(rows[:count], dtype=np.int64).reshape(count, 10)))
        i += 2 + max(count, 1)
    return records


def _faces_dict(rows: np.ndarray) -> dict[str, list]:
    faces: dict[str, list] = {"bbox": rows[:, :4].astype(np.float32).tolist()}
    for column, key in enumerate(_ANNOTATION_ATTRIBUTES, start=4):
        values = rows[:, column]
        faces[key] = values.astype(bool).tolist() if key == "invalid" else values.tolist()
    return faces


def _load_local(root: Path, split: str, cache_dir: Path | None) -> datasets.Dataset:
    import datasets

    images_dir, annotation_file = split_paths(root, split)
    if not annotation_file.is_file():
        raise FileNotFoundError(f"annotation file not found: {annotation_file} (expected the official layout)")
    digest = hashlib.sha256()
    for part in (_CACHE_VERSION, str(root.resolve()), split):
        digest.update(part.encode() + b"\0")
    digest.update(annotation_file.read_bytes())
    cache = (cache_dir or default_cache_dir()) / "wider_face" / digest.hexdigest()[:24]
    if (cache / "dataset_info.json").is_file():
        return datasets.load_from_disk(str(cache))

    records = parse_annotations(annotation_file)
    missing = [name for name, _ in records if not (images_dir / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} of {len(records)} images listed in {annotation_file} are missing under "
            f"{images_dir}; first: {', '.join(missing[:5])}")
    data = {
        "image": [str((images_dir / name).resolve()) for name, _ in records],
        "faces": [_faces_dict(rows) for _, rows in records],
        "file_name": [name for name, _ in records],
    }
    dataset = datasets.Dataset.from_dict(data, features=wider_face_features(), split=datasets.Split(split))
    remove_stale_temp_files([cache.parent])
    was_disabled = datasets.utils.are_progress_bars_disabled()
    datasets.utils.disable_progress_bars()
    try:
        with atomic_directory(cache) as tmp:  # an interrupted build leaves no half cache
            dataset.save_to_disk(str(tmp))
    except OSError:
        if not (cache / "dataset_info.json").is_file():
            raise
        # else another process finished the same cache first
    finally:
        if not was_disabled:
            datasets.utils.enable_progress_bars()
    return datasets.load_from_disk(str(cache))


def _hub_file_name(example: dict) -> dict:
    return {"file_name": example["image"]["path"] or ""}


def load_wider_face(source: str | Path = DEFAULT_SOURCE, split: str = "train", *, revision: str | None = None,
                    cache_dir: str | Path | None = None) -> datasets.Dataset:
    """Load a WIDER FACE split as a ``datasets.Dataset`` with the Hub schema plus ``file_name``.

    Args:
        source: a local folder in the official layout (``WIDER_<split>/images``, ``wider_face_split``) or a
            Hub dataset id. Hub ids load the Parquet conversion (``refs/convert/parquet``) unless ``revision``
            is given, since their ``main`` branch is a loading script that ``datasets>=4`` refuses.
        split: ``"train"`` or ``"validation"`` (``"val"`` is accepted for local folders).
        revision: Hub revision (ignored for local folders).
        cache_dir: where local folders are cached as Arrow (default :func:`default_cache_dir`); the cache key
            is the folder, the split and the annotation file's content, so a second load is a memory map.

    Raises:
        FileNotFoundError: the annotation file or listed images are missing (count and first names).
        AnnotationError: the annotation file is malformed (with its line number).
    """
    import datasets

    if is_local_source(source):
        path = Path(source).expanduser()
        if not path.is_dir():
            raise FileNotFoundError(f"WIDER FACE folder not found: {source}")
        return _load_local(path, split, Path(cache_dir) if cache_dir else None)
    dataset = datasets.load_dataset(str(source), split=split, revision=revision or PARQUET_REVISION,
                                    cache_dir=str(cache_dir) if cache_dir else None)
    decoded = dataset.cast_column("image", datasets.Image(decode=False))
    names = decoded.map(_hub_file_name, remove_columns=decoded.column_names)
    return dataset.add_column("file_name", names["file_name"])


def as_boxes(boxes: Iterable[Iterable[float]]) -> np.ndarray:
    """Boxes as a float64 (N, 4) array of ``[x, y, w, h]``."""
    return np.asarray(list(boxes), dtype=np.float64).reshape(-1, 4)


def invalid_flags(faces: Mapping[str, Any]) -> np.ndarray:
    """Bool (F,) of a row's ``faces["invalid"]`` (all False when absent): invalid faces are neither faces nor
    background, so recall does not count them and training ignores their pixels."""
    count, invalid = len(faces["bbox"]), faces.get("invalid")
    flags = np.zeros(count, bool) if invalid is None else np.asarray(invalid, dtype=bool).reshape(-1)
    if len(flags) != count:
        raise ValueError(f"{len(flags)} invalid flags for {count} face boxes")
    return flags


def _pixel_rects(boxes: np.ndarray, growth: float) -> np.ndarray:
    """Unclipped float pixel rectangles ``[x0, y0, x1, y1)``, at least 1 px, of boxes grown about their centres."""
    x, y, w, h = boxes.T
    cx, cy, w, h = x + w / 2, y + h / 2, w * growth, h * growth
    x0, y0 = np.floor(cx - w / 2), np.floor(cy - h / 2)
    return np.stack([x0, y0, np.maximum(np.ceil(cx + w / 2), x0 + 1), np.maximum(np.ceil(cy + h / 2), y0 + 1)], 1)


def _clip_rects(rects: np.ndarray, height: int, width: int) -> np.ndarray:
    x0, y0, x1, y1 = rects.T
    return np.stack([np.clip(x0, 0, width - 1), np.clip(y0, 0, height - 1), np.clip(x1, 1, width),
                     np.clip(y1, 1, height)], axis=1).astype(np.int64)


def pixel_bounds(boxes: Iterable[Iterable[float]], height: int, width: int, growth: float = 1.0) -> np.ndarray:
    """Integer pixel rectangles ``[x0, y0, x1, y1)`` of boxes ``[x, y, w, h]`` (pixels ``x .. x+w-1``) grown
    ``growth`` times about their centres: at least one pixel, clipped to the image (a box outside it gets the
    nearest edge pixel). The one box-to-pixels rule of evaluation, face masks and training validation."""
    return _clip_rects(_pixel_rects(as_boxes(boxes), growth), height, width)


def face_free_window(boxes: Iterable[Iterable[float]], height: int, width: int, size: int,
                     rng: np.random.Generator, *, growth: float = 2.0, tries: int = 50) -> tuple[int, int] | None:
    """The top-left corner (x, y) of a ``size`` x ``size`` window of a ``height`` x ``width`` image that overlaps
    no box grown ``growth`` times about its centre (give every annotated box, valid or not): a crop with no
    annotated face near it, for training against false positives. None when the window does not fit or ``tries``
    random positions all overlap a box."""
    if not 0 < size <= min(height, width):
        return None
    rects = pixel_bounds(boxes, height, width, growth)
    for _ in range(tries):
        x, y = int(rng.integers(0, width - size + 1)), int(rng.integers(0, height - size + 1))
        if not ((rects[:, 0] < x + size) & (rects[:, 2] > x) & (rects[:, 1] < y + size) & (rects[:, 3] > y)).any():
            return x, y
    return None


def face_masks(faces: Mapping[str, Any], height: int, width: int,
               shape: str = "box") -> tuple[np.ndarray, np.ndarray]:
    """Rasterize a row's ``faces`` into ``(target uint8 HxW in {0, 1}, ignore bool HxW)``.

    ``shape="box"`` fills each box's :func:`pixel_bounds` (the 2018 seed); ``"ellipse"`` fills the ellipse
    inscribed in the box. Faces marked ``invalid`` and zero-size boxes become ignore regions (their whole
    box, at least one pixel), which the loss skips instead of treating them as background; face pixels are
    never ignored, and boxes entirely outside the image draw nothing. Only ``faces["bbox"]`` and, when
    present, ``faces["invalid"]`` are read.
    """
    if shape not in ("box", "ellipse"):
        raise ValueError(f"shape must be 'box' or 'ellipse', got {shape!r}")
    target = np.zeros((height, width), np.uint8)
    ignore = np.zeros((height, width), np.uint8)
    boxes = as_boxes(faces["bbox"])
    rects = _pixel_rects(boxes, 1.0)
    inside = (rects[:, 0] < width) & (rects[:, 1] < height) & (rects[:, 2] > 0) & (rects[:, 3] > 0)
    ignored = invalid_flags(faces) | (boxes[:, 2] <= 0) | (boxes[:, 3] <= 0)
    for box, (x0, y0, x1, y1), is_inside, is_ignored in zip(boxes, _clip_rects(rects, height, width), inside,
                                                            ignored, strict=True):
        if not is_inside:
            continue
        if is_ignored:
            ignore[y0:y1, x0:x1] = 1
        elif shape == "box":
            target[y0:y1, x0:x1] = 1
        else:
            x, y, w, h = (float(v) for v in box)
            center = (round((x + w / 2) * 16), round((y + h / 2) * 16))
            axes = (max(round(w / 2 * 16), 8), max(round(h / 2 * 16), 8))
            cv2.ellipse(target, center, axes, 0, 0, 360, 1, thickness=-1, lineType=cv2.LINE_8, shift=4)
    return target, (ignore.astype(bool) & (target == 0))
