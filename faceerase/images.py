"""Image loading: any supported input becomes an RGB uint8 array, or a clear error."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

MIN_SIDE = 16

ImageSource = str | Path | bytes | Image.Image | np.ndarray


class InvalidImageError(ValueError):
    """The input cannot be used as an image; the message says why."""


def load_image(source: ImageSource) -> np.ndarray:
    """Return ``source`` as a contiguous RGB uint8 array of shape (H, W, 3).

    Accepts a file path, encoded bytes, a PIL image or a numpy array. Files and PIL images get
    their EXIF orientation applied; grayscale, palette, CMYK and 16-bit images are converted;
    transparent images are composited over white. Arrays may be (H, W), (H, W, 1), (H, W, 3)
    or (H, W, 4), uint8 or float in [0, 1]. Images with a side under :data:`MIN_SIDE` pixels are
    rejected. Raises :class:`InvalidImageError` for anything unusable.
    """
    if isinstance(source, np.ndarray):
        rgb = _from_array(source)
    elif isinstance(source, Image.Image):
        rgb = _from_pil(source, "the PIL image")
    elif isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise InvalidImageError("the image data is empty (0 bytes)")
        rgb = _decode(io.BytesIO(bytes(source)), "the image data")
    elif isinstance(source, (str, Path)):
        path = Path(source)
        if not path.exists():
            raise InvalidImageError(f"no such file: {path}")
        if not path.is_file():
            raise InvalidImageError(f"not a file: {path}")
        if path.stat().st_size == 0:
            raise InvalidImageError(f"{path} is empty (0 bytes)")
        with path.open("rb") as f:
            rgb = _decode(f, str(path))
    else:
        raise InvalidImageError(
            f"unsupported image type {type(source).__name__}; "
            "pass a path, bytes, a PIL image or a numpy array")
    h, w = rgb.shape[:2]
    if min(h, w) < MIN_SIDE:
        raise InvalidImageError(
            f"image is {w}x{h} pixels; at least {MIN_SIDE} pixels per side are needed")
    return np.ascontiguousarray(rgb)


def _decode(stream, name: str) -> np.ndarray:
    try:
        image = Image.open(stream)
    except Image.DecompressionBombError as e:
        raise InvalidImageError(
            f"{name} is too large to decode safely ({e}). If the file is trusted, raise "
            "PIL.Image.MAX_IMAGE_PIXELS") from None
    except UnidentifiedImageError:
        raise InvalidImageError(f"{name} is not a recognised image format") from None
    except Exception as e:
        raise InvalidImageError(f"{name} is truncated or corrupt: {e}") from None
    with image:
        return _from_pil(image, name)


def _from_pil(image: Image.Image, name: str) -> np.ndarray:
    try:
        image.load()
        image = ImageOps.exif_transpose(image)
    except Exception as e:  # decoders raise OSError, SyntaxError, ValueError, struct.error...
        raise InvalidImageError(f"{name} is truncated or corrupt: {e}") from None
    mode = image.mode
    if mode.startswith("I"):
        return _from_array(np.clip(np.asarray(image) / 65535.0, 0.0, 1.0))
    if mode == "F":
        return _from_array(np.asarray(image))
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in image.info):
        return _from_array(np.asarray(image.convert("RGBA")))
    return np.asarray(image.convert("RGB"))


def _from_array(array: np.ndarray) -> np.ndarray:
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        raise InvalidImageError(
            f"expected an array of shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), "
            f"got {array.shape}")
    if np.issubdtype(array.dtype, np.floating):
        if array.size and not (np.isfinite(array).all() and array.min() >= 0 and array.max() <= 1):
            raise InvalidImageError("float images must hold finite values in [0, 1]")
        array = np.rint(array * 255).astype(np.uint8)
    elif array.dtype != np.uint8:
        raise InvalidImageError(
            f"unsupported array dtype {array.dtype}; use uint8 (0-255) or float (0-1)")
    if array.shape[2] == 1:
        return np.repeat(array, 3, axis=2)
    if array.shape[2] == 4:
        alpha = array[:, :, 3:].astype(np.float32) / 255
        return np.rint(array[:, :, :3] * alpha + 255 * (1 - alpha)).astype(np.uint8)
    return array
