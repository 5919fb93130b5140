"""Decoded image sets for training, read from a WIDER FACE source or from a portable pack file.

A *pack* is one ``.npz`` (no pickle) holding, for each split it contains, the images as RGB JPEG resized to a
long side, with their boxes rescaled, so training runs where ``datasets`` is not installed. For split ``s``:

- ``s/jpeg``: uint8, all JPEG files concatenated; ``s/jpeg_offsets``: int64 (N + 1,) byte offsets;
- ``s/boxes``: float32 (F, 4) ``[x, y, w, h]`` in pack pixels; ``s/invalid``: bool (F,);
  ``s/box_offsets``: int64 (N + 1,) face offsets per image;
- ``s/sizes``: int32 (N, 2) ``(height, width)``; ``s/file_names``: str (N,);
- ``meta``: a JSON string (``format``, ``splits``, ``long_side``, ``quality``, ``source``).

Both sources decode to the same :class:`ImageSet`, so training has one code path after decoding;
:func:`faceerase.training.padded.pad_images` then turns an image set into device tensors.
"""

from __future__ import annotations

import io
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from faceerase.erase.geometry import network_long_side, resize_long_side
from faceerase.media.images import load_image
from faceerase.media.outputs import atomic_output
from faceerase.training.widerface import load_wider_face

PACK_FORMAT = "faceerase-pack-1"


@dataclass
class ImageSet:
    """Images (RGB uint8 HxWx3) with their face boxes (float32 (F, 4) x, y, w, h) and invalid flags."""

    images: list[np.ndarray]
    boxes: list[np.ndarray]
    invalid: list[np.ndarray]
    file_names: list[str]

    def __len__(self) -> int:
        return len(self.images)

    @property
    def num_faces(self) -> int:
        return sum(len(b) for b in self.boxes)

    def __add__(self, other: "ImageSet") -> "ImageSet":
        return ImageSet(self.images + other.images, self.boxes + other.boxes, self.invalid + other.invalid,
                        self.file_names + other.file_names)

    def head(self, n: int) -> "ImageSet":
        """The first ``n`` images."""
        return ImageSet(self.images[:n], self.boxes[:n], self.invalid[:n], self.file_names[:n])


def is_pack(source: str | Path) -> bool:
    """Whether ``source`` names a pack file (``*.npz``)."""
    return str(source).endswith(".npz")


def fit_long_side(image: np.ndarray, boxes: np.ndarray, long_side: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Downscale ``image`` so its long side is at most ``long_side`` (the network's long side for that input size,
    :func:`~faceerase.erase.geometry.network_long_side`, never upscaled; None keeps the image); boxes follow."""
    h, w = image.shape[:2]
    resized = resize_long_side(image, network_long_side(h, w, long_side or 0))
    if resized is image:
        return image, boxes
    sx, sy = resized.shape[1] / w, resized.shape[0] / h
    return resized, (boxes * np.array([sx, sy, sx, sy], np.float32)).astype(np.float32)


def _decode_jpeg(data: bytes | np.ndarray) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError("corrupt JPEG in pack")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _read_pack(path: Path, split: str, long_side: int | None, workers: int) -> ImageSet:
    with np.load(path, allow_pickle=False) as pack:
        meta = json.loads(str(pack["meta"]))
        if meta.get("format") != PACK_FORMAT:
            raise ValueError(f"{path} is not a {PACK_FORMAT} file (format {meta.get('format')!r})")
        if split not in meta["splits"]:
            raise KeyError(f"split {split!r} not in pack {path}; it holds {meta['splits']}")
        arrays = {k: pack[f"{split}/{k}"] for k in
                  ("jpeg", "jpeg_offsets", "boxes", "invalid", "box_offsets", "file_names")}
    jo, bo = arrays["jpeg_offsets"], arrays["box_offsets"]

    def decode(i: int) -> tuple[np.ndarray, np.ndarray]:
        image = _decode_jpeg(arrays["jpeg"][jo[i]:jo[i + 1]])
        return fit_long_side(image, arrays["boxes"][bo[i]:bo[i + 1]], long_side)

    with ThreadPoolExecutor(max(1, workers)) as pool:
        decoded = list(pool.map(decode, range(len(jo) - 1)))
    return ImageSet([d[0] for d in decoded], [d[1] for d in decoded],
                    [arrays["invalid"][bo[i]:bo[i + 1]] for i in range(len(bo) - 1)],
                    [str(n) for n in arrays["file_names"]])


def _read_dataset(source: str | Path, split: str, long_side: int | None, workers: int) -> ImageSet:
    import datasets

    dataset = load_wider_face(source, split).cast_column("image", datasets.Image(decode=False))

    def decode(i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
        row = dataset[i]
        data = row["image"]["bytes"] or Path(row["image"]["path"]).read_bytes()
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if image is None:  # not a format OpenCV reads: fall back to PIL
            from PIL import Image
            image = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))[..., ::-1]
        boxes = np.asarray(row["faces"]["bbox"], np.float32).reshape(-1, 4)
        image, boxes = fit_long_side(cv2.cvtColor(image, cv2.COLOR_BGR2RGB), boxes, long_side)
        return image, boxes, np.asarray(row["faces"]["invalid"], bool), row["file_name"]

    with ThreadPoolExecutor(max(1, workers)) as pool:
        rows = list(pool.map(decode, range(len(dataset))))
    return ImageSet(*(list(column) for column in zip(*rows, strict=True))) if rows else ImageSet([], [], [], [])


def load_image_set(source: str | Path, split: str = "train", *, long_side: int | None = 512,
                   workers: int = 4) -> ImageSet:
    """Decode a split of a pack file or a WIDER FACE source (local folder or Hub id) into an :class:`ImageSet`.

    Images are downscaled to ``long_side`` (``None`` keeps them as stored) with ``workers`` decoding threads.
    """
    if is_pack(source):
        return _read_pack(Path(source), split, long_side, workers)
    return _read_dataset(source, split, long_side, workers)


def load_negatives(folder: str | Path, *, long_side: int | None = 512, workers: int = 4) -> ImageSet:
    """Face-less photos (every JPEG/PNG under ``folder``) as an :class:`ImageSet` with no faces: crops of them
    teach the model that fur, animal faces and clutter are background."""
    folder = Path(folder)
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not paths:
        raise FileNotFoundError(f"no JPEG or PNG images under {folder}")

    def decode(path: Path) -> np.ndarray:
        return fit_long_side(load_image(path), np.zeros((0, 4), np.float32), long_side)[0]

    with ThreadPoolExecutor(max(1, workers)) as pool:
        images = list(pool.map(decode, paths))
    return ImageSet(images, [np.zeros((0, 4), np.float32)] * len(images), [np.zeros(0, bool)] * len(images),
                    [str(p.relative_to(folder)) for p in paths])


def write_pack(path: str | Path, source: str | Path, splits: tuple[str, ...] = ("train", "validation"), *,
               long_side: int = 512, quality: int = 82, workers: int = 4) -> dict:
    """Write ``splits`` of a WIDER FACE source to a pack file (see the module docstring); returns its meta."""
    arrays: dict[str, np.ndarray] = {}
    for split in splits:
        image_set = _read_dataset(source, split, long_side, workers)

        def encode(image: np.ndarray) -> bytes:
            ok, data = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
                                    [cv2.IMWRITE_JPEG_QUALITY, quality])
            if not ok:
                raise RuntimeError("JPEG encoding failed")
            return data.tobytes()

        with ThreadPoolExecutor(max(1, workers)) as pool:
            jpegs = list(pool.map(encode, image_set.images))
        arrays[f"{split}/jpeg"] = np.frombuffer(b"".join(jpegs), np.uint8)
        arrays[f"{split}/jpeg_offsets"] = np.cumsum([0] + [len(j) for j in jpegs], dtype=np.int64)
        arrays[f"{split}/boxes"] = np.concatenate(image_set.boxes or [np.zeros((0, 4))]).astype(np.float32)
        arrays[f"{split}/invalid"] = np.concatenate(image_set.invalid or [np.zeros(0)]).astype(bool)
        arrays[f"{split}/box_offsets"] = np.cumsum([0] + [len(b) for b in image_set.boxes], dtype=np.int64)
        arrays[f"{split}/sizes"] = np.array([im.shape[:2] for im in image_set.images], np.int32).reshape(-1, 2)
        arrays[f"{split}/file_names"] = np.array(image_set.file_names, dtype=str)
    meta = {"format": PACK_FORMAT, "splits": list(splits), "long_side": long_side, "quality": quality,
            "source": str(source)}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as tmp, open(tmp, "wb") as file:  # a file object: np.savez adds no ".npz"
        np.savez(file, meta=np.array(json.dumps(meta)), **arrays)
    return meta
