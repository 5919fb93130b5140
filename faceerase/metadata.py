"""What ``--keep-metadata`` keeps: an allow-list of harmless tags, never anything that can carry a picture.

Images keep only the EXIF tags below, rebuilt into a fresh EXIF block: no MakerNote (cameras store
previews of the original photo there), no IFD1 thumbnail, no XMP, no ICC profile, no other APP segment,
no GPS position, no serial numbers or owner names, no orientation (it is applied to the pixels).
Videos keep only the container tags below; GPS ``location`` tags and every stream other than the
anonymized video and the audio (cover art, subtitles, telemetry) are dropped.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from numbers import Real
from pathlib import Path

from PIL import ExifTags, Image

IMAGE_TAGS = ("Make", "Model", "Software", "DateTime", "Artist", "Copyright", "ImageDescription")
EXIF_TAGS = ("DateTimeOriginal", "DateTimeDigitized", "OffsetTime", "OffsetTimeOriginal", "OffsetTimeDigitized",
             "SubsecTime", "SubsecTimeOriginal", "SubsecTimeDigitized", "ExposureTime", "FNumber",
             "ExposureProgram", "ISOSpeedRatings", "ShutterSpeedValue", "ApertureValue", "BrightnessValue",
             "ExposureBiasValue", "MaxApertureValue", "MeteringMode", "LightSource", "Flash", "FocalLength",
             "ExposureMode", "WhiteBalance", "DigitalZoomRatio", "FocalLengthIn35mmFilm", "SceneCaptureType",
             "LensSpecification", "LensMake", "LensModel")
VIDEO_TAGS = ("title", "artist", "copyright", "date", "creation_time", "make", "model", "description")

_IMAGE_IDS = {ExifTags.Base[name].value for name in IMAGE_TAGS}
_EXIF_IDS = {ExifTags.Base[name].value for name in EXIF_TAGS}


def describe_kept() -> str:
    """One sentence for ``--help`` listing what ``--keep-metadata`` keeps."""
    return (f"keep only harmless metadata: EXIF {', '.join(IMAGE_TAGS + EXIF_TAGS)}; video tags "
            f"{', '.join(VIDEO_TAGS)}. Never GPS, thumbnails, previews, MakerNote, XMP, ICC or serial numbers "
            f"(default: strip all metadata)")


def _is_plain(value: object) -> bool:
    """Text or numbers (or a tuple of numbers): values that cannot smuggle binary data such as a JPEG."""
    if isinstance(value, tuple):
        return all(isinstance(v, Real) for v in value)
    return isinstance(value, (str, Real))


def allowed_exif(source: Path) -> bytes | None:
    """A fresh EXIF block with only the allow-listed tags of ``source``; None when it has none of them."""
    with Image.open(source) as image:  # TIFF reads sub-IFDs from the open file
        exif = image.getexif()
        main = {tag: value for tag, value in exif.items() if tag in _IMAGE_IDS and _is_plain(value)}
        sub = {tag: value for tag, value in exif.get_ifd(ExifTags.IFD.Exif).items()
               if tag in _EXIF_IDS and _is_plain(value)}
    if not main and not sub:
        return None
    kept = Image.Exif()
    kept.update(main)
    if sub:
        kept.get_ifd(ExifTags.IFD.Exif).update(sub)
    return kept.tobytes()


def allowed_video_tags(source: Path) -> dict[str, str]:
    """The allow-listed container tags of ``source`` (empty when ffprobe is not on PATH)."""
    ffprobe = shutil.which("ffprobe")
    if ffprobe is None:
        return {}
    result = subprocess.run([ffprobe, "-v", "error", "-show_entries", "format_tags", "-of", "json", str(source)],
                            capture_output=True, text=True)
    try:
        tags = json.loads(result.stdout or "{}").get("format", {}).get("tags", {})
    except json.JSONDecodeError:
        return {}
    return {key.lower(): value for key, value in tags.items() if key.lower() in VIDEO_TAGS}
