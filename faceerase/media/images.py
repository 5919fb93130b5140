"""Image files: any supported input becomes an RGB uint8 array, or a clear error; results are written atomically
with no metadata but an allow-listed EXIF block, and with the input's transparency in the formats that hold it."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from faceerase.media.outputs import atomic_output

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"})
"""Extensions of the image files this library reads and writes."""
UNREADABLE_IMAGE_EXTENSIONS = frozenset({".heic", ".heif", ".avif", ".dng", ".cr2", ".cr3", ".nef", ".arw", ".raf",
                                         ".orf", ".rw2"})
"""Images that may show faces but that this library cannot read: they must fail, never vanish."""
MIN_SIDE = 16
"""Images with a side shorter than this are refused."""
MAX_PIXELS = 40_000_000
"""Default limit on the pixels (width x height) of an image to decode: a 40-megapixel photo decodes to 120 MB
of RGB and a few times that while it is anonymized; larger uploads cost minutes and gigabytes."""
MAX_PIXELS_ENV = "FACEERASE_MAX_PIXELS"
"""Environment variable that replaces :data:`MAX_PIXELS` as the default limit."""
LUMA_WEIGHTS = (0.299, 0.587, 0.114)
"""RGB weights of the grey image that one-channel models see (ITU-R BT.601 luma)."""
ALPHA_FORMATS = frozenset({"PNG", "WEBP", "TIFF"})
"""PIL formats whose files keep an alpha channel given to :func:`write_image`; the others are composited over
white."""

ImageSource = str | Path | bytes | Image.Image | np.ndarray


class InvalidImageError(ValueError):
    """The input cannot be used as an image; the message says why."""


def default_max_pixels() -> int:
    """The default pixel limit of :func:`load_image`: ``$FACEERASE_MAX_PIXELS`` if set, else :data:`MAX_PIXELS`."""
    text = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not text:
        return MAX_PIXELS
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"{MAX_PIXELS_ENV} must be a positive whole number of pixels, got {text!r}")
    return value


def load_image(source: ImageSource, *, max_pixels: int | None = None) -> np.ndarray:
    """Return ``source`` as a contiguous RGB uint8 array of shape (H, W, 3).

    Accepts a file path, encoded bytes, a PIL image or a numpy array. Files and PIL images get
    their EXIF orientation applied; grayscale, palette, CMYK and 16-bit images are converted;
    transparent images are composited over white. Arrays may be (H, W), (H, W, 1), (H, W, 3)
    or (H, W, 4), uint8 or float in [0, 1]. Images with a side under :data:`MIN_SIDE` pixels are
    rejected, and so are files, bytes and PIL images of more than ``max_pixels`` pixels (default:
    :func:`default_max_pixels`), before they are decoded; arrays, already in memory, have no limit.
    Raises :class:`InvalidImageError` for anything unusable.
    """
    return _load(source, max_pixels, keep_alpha=False)


def load_image_with_alpha(source: ImageSource, *, max_pixels: int | None = None
                          ) -> tuple[np.ndarray, np.ndarray | None]:
    """``source`` as :func:`load_image` loads it, but transparent images are not composited: their RGB channels as
    stored (what transparent pixels hide is anonymized too), and their alpha channel, uint8 (H, W); the alpha
    is None for an opaque image."""
    pixels = _load(source, max_pixels, keep_alpha=True)
    if pixels.shape[2] == 3:
        return pixels, None
    return np.ascontiguousarray(pixels[:, :, :3]), np.ascontiguousarray(pixels[:, :, 3])


def _load(source: ImageSource, max_pixels: int | None, keep_alpha: bool) -> np.ndarray:
    """:func:`load_image`; with ``keep_alpha`` a transparent image is RGBA (H, W, 4), not composited."""
    limit = default_max_pixels() if max_pixels is None else max_pixels
    if isinstance(source, np.ndarray):
        rgb = _from_array(source, keep_alpha)
    elif isinstance(source, Image.Image):
        rgb = _from_pil(source, "the PIL image", limit, keep_alpha=keep_alpha)
    elif isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise InvalidImageError("the image data is empty (0 bytes)")
        rgb = _decode(io.BytesIO(bytes(source)), "the image data", limit, keep_alpha)
    elif isinstance(source, (str, Path)):
        path = Path(source)
        if not path.exists():
            raise InvalidImageError(f"no such file: {path}")
        if not path.is_file():
            raise InvalidImageError(f"not a file: {path}")
        if path.stat().st_size == 0:
            raise InvalidImageError(f"{path} is empty (0 bytes)")
        with path.open("rb") as f:
            rgb = _decode(f, str(path), limit, keep_alpha)
    else:
        raise InvalidImageError(
            f"unsupported image type {type(source).__name__}; "
            "pass a path, bytes, a PIL image or a numpy array")
    h, w = rgb.shape[:2]
    if min(h, w) < MIN_SIDE:
        raise InvalidImageError(
            f"image is {w}x{h} pixels; at least {MIN_SIDE} pixels per side are needed")
    return np.ascontiguousarray(rgb)


def _decode(stream, name: str, max_pixels: int, keep_alpha: bool) -> np.ndarray:
    try:
        image = Image.open(stream)
    except Image.DecompressionBombError:  # PIL's own guard, at 2 x PIL.Image.MAX_IMAGE_PIXELS
        pil_limit = 2 * Image.MAX_IMAGE_PIXELS
        if max_pixels < pil_limit:
            raise InvalidImageError(_too_large(f"{name} has over {pil_limit:,} pixels", max_pixels)) from None
        raise InvalidImageError(
            f"{name} has over {pil_limit:,} pixels, more than PIL decodes (2 x PIL.Image.MAX_IMAGE_PIXELS) "
            f"whatever the limit of {max_pixels:,} pixels") from None
    except UnidentifiedImageError:
        raise InvalidImageError(f"{name} is not a recognised image format") from None
    except Exception as e:
        raise InvalidImageError(f"{name} is truncated or corrupt: {e}") from None
    with image:
        return _from_pil(image, name, max_pixels, own=True, keep_alpha=keep_alpha)


def _too_large(what: str, max_pixels: int) -> str:
    """The message for an image over the pixel limit: ``what`` it is, the limit and how to raise it."""
    return (f"{what}, over the limit of {max_pixels:,} pixels; raise the limit with max_pixels "
            f"(--max-pixels of the faceerase command and of app.py) or the {MAX_PIXELS_ENV} environment variable")


def _from_pil(image: Image.Image, name: str, max_pixels: int, own: bool = False, keep_alpha: bool = False
              ) -> np.ndarray:
    """RGB array of ``image`` (RGBA for a transparent one with ``keep_alpha``), rotated upright; an image decoded
    here (``own``) is rotated in place, uncopied."""
    width, height = image.size
    if width * height > max_pixels:
        raise InvalidImageError(_too_large(f"{name} is {width}x{height} = {width * height:,} pixels", max_pixels))
    try:
        image.load()
        image = ImageOps.exif_transpose(image, in_place=own) or image
    except Exception as e:  # decoders raise OSError, SyntaxError, ValueError, struct.error...
        raise InvalidImageError(f"{name} is truncated or corrupt: {e}") from None
    mode = image.mode
    if mode.startswith("I"):
        return _from_array(np.clip(np.asarray(image) / 65535.0, 0.0, 1.0))
    if mode == "F":
        return _from_array(np.asarray(image))
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in image.info):
        return _from_array(np.asarray(image.convert("RGBA")), keep_alpha)
    return np.asarray(image if mode == "RGB" else image.convert("RGB"))


def _from_array(array: np.ndarray, keep_alpha: bool = False) -> np.ndarray:
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
    if array.shape[2] == 4 and not keep_alpha:
        alpha = array[:, :, 3:].astype(np.float32) / 255
        return np.rint(array[:, :, :3] * alpha + 255 * (1 - alpha)).astype(np.uint8)
    return array


def check_single_frame(source: Path | bytes) -> None:
    """Raise :class:`InvalidImageError` when the image file or encoded bytes ``source`` hold several frames
    (animated GIF, PNG or WebP, multi-page TIFF): only the first would be anonymized. A JPEG's extra MPF images
    (previews, depth maps) do not count: they are dropped. An image that does not open passes; :func:`load_image`
    then says why."""
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as image:
            frames = 1 if image.format == "MPO" else getattr(image, "n_frames", 1)
    except Exception:  # noqa: BLE001 - decoders raise many types; load_image reports them clearly
        return
    if frames > 1:
        raise InvalidImageError(f"unsupported: multi-frame image ({frames} frames); only single-frame images "
                                f"are anonymized")


def write_image(pixels: np.ndarray, destination: Path, *, exif: bytes | None = None,
                alpha: np.ndarray | None = None) -> None:
    """Encode RGB uint8 ``pixels`` to ``destination`` atomically, with no metadata other than ``exif``; the
    format comes from its extension, one of :data:`IMAGE_EXTENSIONS` (JPEG and WebP at quality 95). ``alpha``
    (uint8 (H, W)) is kept by the :data:`ALPHA_FORMATS`; the others get ``pixels`` composited over white."""
    suffix = destination.suffix.lower()
    if suffix not in IMAGE_EXTENSIONS:
        raise ValueError(f"cannot write an image to {destination}: its extension must be one of "
                         f"{', '.join(sorted(IMAGE_EXTENSIONS))}")
    with atomic_output(destination) as tmp:  # an encoder error, too, names the destination
        tmp.write_bytes(encode_image(pixels, Image.registered_extensions()[suffix], exif=exif, alpha=alpha))


def encode_image(pixels: np.ndarray, fmt: str, *, exif: bytes | None = None,
                 alpha: np.ndarray | None = None) -> bytes:
    """RGB uint8 ``pixels`` encoded as the PIL format ``fmt`` (``"JPEG"``, ``"PNG"``, ...) with no metadata other
    than ``exif``: JPEG and WebP at quality 95. ``alpha`` is kept as in :func:`write_image`."""
    if alpha is not None:
        rgba = np.dstack([pixels, alpha])
        pixels = rgba if fmt in ALPHA_FORMATS else _from_array(rgba)
    options: dict[str, Any] = {"quality": 95} if fmt in ("JPEG", "WEBP") else {}
    if exif:
        options["exif"] = exif
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt, **options)
    return buffer.getvalue()
