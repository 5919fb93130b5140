"""What ``--keep-metadata`` keeps: an allow-list of harmless tags, never anything that can carry a picture.

Images keep only the EXIF tags below, rebuilt into a fresh EXIF block, and only values of the kind and size
each tag allows (short printable text, one number or a few): a value beyond its bound is dropped whole, so that no
tag carries a picture packed into a long array or string. No MakerNote (cameras store previews of the original
photo there), no IFD1 thumbnail, no XMP, no ICC profile, no other APP segment, no GPS position, no serial numbers
or owner names, no orientation (it is applied to the pixels). Videos keep only the container tags below, as short
printable text; GPS ``location`` tags and every stream other than the anonymized video and the audio (cover art,
subtitles, telemetry) are dropped.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Mapping
from numbers import Real
from pathlib import Path

from PIL import ExifTags, Image

NAME, FREE_TEXT, DATE_TIME, OFFSET, SUBSECONDS = 64, 256, 19, 6, 9
"""Longest text kept, in characters: names (make, model, software, lens), free text (artist, copyright,
description), date-times and time offsets (EXIF 2.32's fixed counts 20 and 7, less the closing NUL), fractions
of a second."""

IMAGE_TAGS: dict[str, tuple[type, int]] = {
    "Make": (str, NAME), "Model": (str, NAME), "Software": (str, NAME), "DateTime": (str, DATE_TIME),
    "Artist": (str, FREE_TEXT), "Copyright": (str, FREE_TEXT), "ImageDescription": (str, FREE_TEXT)}
"""IFD0 tags kept: ``(str, n)`` text of at most n printable ASCII characters, ``(Real, n)`` at most n numbers."""
EXIF_TAGS: dict[str, tuple[type, int]] = {
    "DateTimeOriginal": (str, DATE_TIME), "DateTimeDigitized": (str, DATE_TIME), "OffsetTime": (str, OFFSET),
    "OffsetTimeOriginal": (str, OFFSET), "OffsetTimeDigitized": (str, OFFSET), "SubsecTime": (str, SUBSECONDS),
    "SubsecTimeOriginal": (str, SUBSECONDS), "SubsecTimeDigitized": (str, SUBSECONDS),
    "ExposureTime": (Real, 1), "FNumber": (Real, 1), "ExposureProgram": (Real, 1),
    "ISOSpeedRatings": (Real, 3), "ShutterSpeedValue": (Real, 1), "ApertureValue": (Real, 1),
    "BrightnessValue": (Real, 1), "ExposureBiasValue": (Real, 1), "MaxApertureValue": (Real, 1),
    "MeteringMode": (Real, 1), "LightSource": (Real, 1), "Flash": (Real, 1), "FocalLength": (Real, 1),
    "ExposureMode": (Real, 1), "WhiteBalance": (Real, 1), "DigitalZoomRatio": (Real, 1),
    "FocalLengthIn35mmFilm": (Real, 1), "SceneCaptureType": (Real, 1), "LensSpecification": (Real, 4),
    "LensMake": (str, NAME), "LensModel": (str, NAME)}
"""Exif sub-IFD tags kept, bounded as :data:`IMAGE_TAGS`: counts as EXIF 2.32 defines them (ISO: a few values)."""
VIDEO_TAGS: dict[str, int] = {"title": FREE_TEXT, "artist": FREE_TEXT, "copyright": FREE_TEXT, "date": NAME,
                              "creation_time": NAME, "make": NAME, "model": NAME, "description": FREE_TEXT}
"""Container tags kept, with the longest text kept of each."""

_IMAGE_BOUNDS = {ExifTags.Base[name].value: bound for name, bound in IMAGE_TAGS.items()}
_EXIF_BOUNDS = {ExifTags.Base[name].value: bound for name, bound in EXIF_TAGS.items()}


def describe_kept() -> str:
    """One sentence for ``--help`` listing what ``--keep-metadata`` keeps."""
    return (f"keep only harmless metadata: EXIF {', '.join([*IMAGE_TAGS, *EXIF_TAGS])}; video tags "
            f"{', '.join(VIDEO_TAGS)}, as short text or a number or a few each. Never GPS, thumbnails, previews, "
            f"MakerNote, XMP, ICC or serial numbers (default: strip all metadata)")


def _is_text(value: object, limit: int) -> bool:
    """Printable ASCII of at most ``limit`` characters: text that cannot smuggle binary data such as a JPEG."""
    return isinstance(value, str) and len(value) <= limit and value.isascii() and value.isprintable()


def _fits(value: object, bound: tuple[type, int]) -> bool:
    """Whether a tag's ``value`` is of the kind and within the size its ``bound`` allows (see :data:`IMAGE_TAGS`)."""
    kind, limit = bound
    if kind is str:
        return _is_text(value, limit)
    values = value if isinstance(value, tuple) else (value,)
    return 0 < len(values) <= limit and all(isinstance(v, Real) and not isinstance(v, bool) for v in values)


def _kept(tags: Mapping[int, object], bounds: Mapping[int, tuple[type, int]]) -> dict[int, object]:
    """The allow-listed ``tags`` whose values fit their bounds; any other is dropped whole, never truncated."""
    return {tag: value for tag, value in tags.items() if tag in bounds and _fits(value, bounds[tag])}


def allowed_exif(source: Path) -> bytes | None:
    """A fresh EXIF block with only the allow-listed tags of ``source`` that fit their bounds; None when it has
    none of them."""
    with Image.open(source) as image:  # TIFF reads sub-IFDs from the open file
        exif = image.getexif()
        main = _kept(exif, _IMAGE_BOUNDS)
        sub = _kept(exif.get_ifd(ExifTags.IFD.Exif), _EXIF_BOUNDS)
    if not main and not sub:
        return None
    kept = Image.Exif()
    kept.update(main)
    if sub:
        kept.get_ifd(ExifTags.IFD.Exif).update(sub)
    return kept.tobytes()


def allowed_video_tags(source: Path) -> dict[str, str]:
    """The allow-listed container tags of ``source`` within their lengths (empty when ffprobe is not on PATH)."""
    ffprobe = shutil.which("ffprobe")
    if ffprobe is None:
        return {}
    result = subprocess.run([ffprobe, "-v", "error", "-show_entries", "format_tags", "-of", "json", str(source)],
                            capture_output=True, text=True)
    try:
        tags = json.loads(result.stdout or "{}").get("format", {}).get("tags", {})
    except json.JSONDecodeError:
        return {}
    return {key.lower(): value for key, value in tags.items()
            if key.lower() in VIDEO_TAGS and _is_text(value, VIDEO_TAGS[key.lower()])}
