"""Settings: how a model is best run (:class:`InferenceSettings`, its ``inference.json``) and everything a user can
set about erasing (:class:`EraseSettings`, the one settings type of the library, the CLI, the app, Ray and
``datasets``).

The calibrated settings belong to the weights (a model trained at another scale wants another input size; a sharper
model wants another threshold floor), so they live in the model folder as ``inference.json``, written by ``faceerase
calibrate`` (:mod:`faceerase.training.calibration`) from *train* images. A model folder without the file runs with
:data:`DEFAULT_SETTINGS` (a warning says so once).

An :class:`EraseSettings` holds every user-visible setting. Its calibrated fields (those of
:class:`InferenceSettings`) may be None: "the model's", filled in by :meth:`EraseSettings.resolved`. Each field
carries its help, group, choices and command-line flag in its metadata: the CLI builds its options and the app
its controls from them, and :meth:`EraseSettings.__post_init__` is the one place values are checked.
"""

from __future__ import annotations

import json
import types
import typing
import warnings
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from faceerase.erase.fill import BLUR_SIGMA_FRACTION, DEFAULT_METHOD, METHODS, MOSAIC_BLOCKS, check_strengths
from faceerase.erase.masks import MASK_SHAPES
from faceerase.erase.thresholds import AUTO_CEILING, AUTO_FLOOR, THRESHOLD_MODES
from faceerase.media.images import MIN_SIDE

SETTINGS_NAME = "inference.json"
GROUPS = ("network", "threshold", "mask", "fill", "video")
"""The groups of :class:`EraseSettings` fields, in the order the CLI's help and the app show them."""
NO_IMAGE = "none"
"""The ``method`` that erases nothing and writes no image: the regions and the threshold are found and recorded
(an audit of what would be erased), the output is left out."""


@dataclass(frozen=True)
class InferenceSettings:
    """How to run a model: the calibrated part of :class:`EraseSettings` (see its fields for their meaning), saved
    as the model folder's ``inference.json``; ``source`` says where the values come from (a calibration command,
    or ``defaults``) and is informational."""

    input_size: int = 1024
    upscale: bool = False
    extra_scales: tuple[float, ...] = ()
    live_input_size: int = 320
    threshold_floor: float = AUTO_FLOOR
    threshold_ceiling: float = AUTO_CEILING
    dilation: int = 8
    dilation_ratio: float = 0.0
    min_area: int = 16
    source: str = field(default="defaults", compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "extra_scales", tuple(float(s) for s in self.extra_scales))
        EraseSettings(**self.values())  # the checks of EraseSettings, the one place settings are checked

    def values(self) -> dict[str, Any]:
        """The settings without ``source``: the calibrated fields of :class:`EraseSettings`."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "source"}

    def save(self, folder: str | Path) -> Path:
        """Write ``inference.json`` into ``folder``; returns its path."""
        path = Path(folder) / SETTINGS_NAME
        path.write_text(json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8")
        return path

    @classmethod
    def from_file(cls, path: str | Path) -> "InferenceSettings":
        """Read an ``inference.json``; unknown keys are an error (a newer format), missing keys take defaults.

        Raises:
            ValueError: the file is not valid JSON or holds invalid or unknown settings.
        """
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as e:
            raise ValueError(f"{path} is not valid JSON: {e}") from None
        if not isinstance(data, dict):
            raise ValueError(f"{path} must hold a JSON object")
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"{path} has unknown settings {sorted(unknown)}")
        try:
            return cls(**data)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{path}: {e}") from None


# --------------------------------------------------------------------------- parsing text (CLI, app)

def parse_threshold(text: str) -> dict[str, Any]:
    """``auto``, ``seed`` or a probability in (0, 1) (``fixed``) as the fields ``threshold_mode`` and
    ``threshold_value``; :class:`ValueError` otherwise."""
    if text in THRESHOLD_MODES and text != "fixed":
        return {"threshold_mode": text, "threshold_value": None}
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"expected auto, seed or a number in (0, 1), got {text!r}") from None
    if not 0.0 < value < 1.0:
        raise ValueError(f"a fixed threshold must be in (0, 1), got {value}")
    return {"threshold_mode": "fixed", "threshold_value": value}


def parse_scales(text: str) -> tuple[float, ...]:
    """Comma-separated scales (``0.5,0.25``); empty or ``none``: no extra scale."""
    parts = [part.strip() for part in text.split(",") if part.strip()]
    if parts == ["none"]:
        return ()
    try:
        return tuple(float(part) for part in parts)
    except ValueError:
        raise ValueError(f"expected comma-separated numbers (or none), got {text!r}") from None


def parse_color(text: str) -> tuple[int, int, int]:
    """An RGB colour as ``R,G,B`` (0-255 each) or ``#RRGGBB``."""
    text = text.strip()
    try:
        if text.startswith("#") and len(text) == 7:
            return tuple(int(text[i:i + 2], 16) for i in (1, 3, 5))
        values = tuple(int(part) for part in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3:
        raise ValueError(f"expected a colour as R,G,B or #RRGGBB, got {text!r}")
    return values


# --------------------------------------------------------------------------- the settings

def _setting(default: Any, help: str, group: str, **extra: Any) -> Any:
    """An :class:`EraseSettings` field with its help and group, and optionally ``choices``, ``minimum``,
    ``flag`` (the CLI option; default ``--field-name``, None: set through another option), ``metavar`` and
    ``parse`` (text to value; a dict sets several fields)."""
    return field(default=default, metadata={"help": help, "group": group, **extra})


_SIZE_HELP = "larger images are shrunk to it, smaller ones enlarged only with upscale; 0 keeps each image's size"


@dataclass(frozen=True)
class EraseSettings:
    """Every user-visible setting of erasing, immutable and picklable.

    The calibrated fields (those of :class:`InferenceSettings`) default to None: the model's value, filled in by
    :meth:`resolved`; an eraser's :attr:`~faceerase.erase.pipeline.FaceEraser.settings` are resolved. Every value is
    checked here, at construction (:class:`ValueError` says which and why). ``to_dict`` gives the JSON form the
    audit report records.
    """

    # network
    input_size: int | None = _setting(None, "long side (px) of the network input; " + _SIZE_HELP, "network",
                                      metavar="PX")
    upscale: bool | None = _setting(None, "also enlarge images smaller than the input size (off: textures look like "
                                          "faces the model never saw at that scale)", "network")
    extra_scales: tuple[float, ...] | None = _setting(
        None, "further network passes at the input size times each scale (e.g. 0.5 for faces larger than the "
              "training crops); the map is the pixel-wise maximum of all passes", "network", metavar="S[,S...]",
        parse=parse_scales)
    live_input_size: int | None = _setting(None, "long side (px) of the network input for live camera frames, one "
                                                 "pass (a real-time budget)", "network", metavar="PX")
    # threshold
    threshold_mode: str = _setting("auto", "auto: Otsu's threshold clamped to [threshold floor, threshold ceiling]; "
                                           "seed: the 2018 rule; fixed: a given probability", "threshold",
                                   choices=THRESHOLD_MODES, flag="--threshold", metavar="auto|seed|FLOAT",
                                   parse=parse_threshold)
    threshold_value: float | None = _setting(None, "the probability of the fixed threshold", "threshold", flag=None)
    threshold_floor: float | None = _setting(None, "lowest auto threshold: a map with nothing above it masks "
                                                   "nothing", "threshold", metavar="P")
    threshold_ceiling: float | None = _setting(None, "highest auto threshold", "threshold", metavar="P")
    # mask
    dilation: int | None = _setting(None, "pixels every mask region grows by", "mask", minimum=0, metavar="PX")
    dilation_ratio: float | None = _setting(None, "each region also grows by this fraction of its box's longer side "
                                                  "(the larger growth applies)", "mask", minimum=0, metavar="R")
    min_area: int | None = _setting(None, "regions of fewer pixels are dropped before growing", "mask", minimum=0,
                                    metavar="PX")
    mask_shape: str = _setting("predicted", "the predicted mask, or an ellipse or box per region", "mask",
                               choices=MASK_SHAPES)
    # fill
    method: str = _setting(DEFAULT_METHOD, "how faces are erased (image: the --replace-with picture; none: no output "
                                           "image, only the audit record of the regions)", "fill",
                           choices=(*METHODS, NO_IMAGE))
    color: tuple[int, int, int] = _setting((0, 0, 0), "the fill colour of the solid method", "fill",
                                           metavar="R,G,B", parse=parse_color)
    mosaic_blocks: int = _setting(MOSAIC_BLOCKS, "the mosaic method's blocks along each region's longer side; fewer "
                                                 "is coarser", "fill", minimum=1, flag="--mosaic-size",
                                  metavar="BLOCKS")
    blur_strength: float = _setting(BLUR_SIGMA_FRACTION, "the blur method's Gaussian sigma as a fraction of each "
                                                         "region's longer side; larger is blurrier", "fill",
                                    metavar="F")
    replace_with: str | None = _setting(None, "the image method's picture (a file), scaled into each region's box and "
                                              "shown where the mask is set", "fill", metavar="IMAGE")
    draw_boxes: bool = _setting(False, "after erasing, draw each region's box and score (its highest face "
                                       "probability) on the output, for checking", "fill")
    # video
    temporal_window: int = _setting(3, "videos and cameras: mask the maximum probability of the last N frames, so "
                                       "that a face missed once does not flash (1: off)", "video", minimum=1,
                                    metavar="N")

    def __post_init__(self) -> None:
        if self.extra_scales is not None:
            object.__setattr__(self, "extra_scales", tuple(float(s) for s in self.extra_scales))
        object.__setattr__(self, "color", tuple(self.color))
        for f in fields(self):
            value, choices, minimum = getattr(self, f.name), f.metadata.get("choices"), f.metadata.get("minimum")
            if choices is not None and value not in choices:
                raise ValueError(f"unknown {f.name} {value!r}; choose one of {choices}")
            if minimum is not None and value is not None and not value >= minimum:
                raise ValueError(f"{f.name} must be >= {minimum}, got {value}")
        for name in ("input_size", "live_input_size"):
            size = getattr(self, name)
            if size is not None and size != 0 and not size >= MIN_SIDE:
                raise ValueError(f"{name} must be 0 (native size) or at least {MIN_SIDE}, got {size}")
        if self.extra_scales is not None and any(not 0 < s < 4 for s in self.extra_scales):
            raise ValueError(f"extra_scales must lie in (0, 4), got {self.extra_scales}")
        if self.threshold_mode == "fixed" and self.threshold_value is None:
            raise ValueError("threshold_mode 'fixed' needs threshold_value in [0, 1]")
        if self.threshold_value is not None and not 0 <= self.threshold_value <= 1:
            raise ValueError(f"threshold_value must be in [0, 1], got {self.threshold_value}")
        floor, ceiling = self.threshold_floor, self.threshold_ceiling
        if any(v is not None and not 0 <= v <= 1 for v in (floor, ceiling)) or (
                floor is not None and ceiling is not None and floor > ceiling):
            raise ValueError(f"need 0 <= threshold_floor <= threshold_ceiling <= 1, got {floor} and {ceiling}")
        if len(self.color) != 3 or any(not 0 <= c <= 255 for c in self.color):
            raise ValueError(f"color must be three RGB values in 0-255, got {self.color!r}")
        check_strengths(self.mosaic_blocks, self.blur_strength)

    def updated(self, **overrides: Any) -> EraseSettings:
        """These settings with the ``overrides`` that are not None; an unknown name is a :class:`TypeError`."""
        return replace(self, **{name: value for name, value in overrides.items() if value is not None})

    def resolved(self, model: InferenceSettings) -> EraseSettings:
        """These settings with each calibrated one left at None taken from ``model``. A threshold floor given
        without a ceiling raises the model's ceiling to it (and a ceiling given alone lowers the floor)."""
        values = {name: value for name, value in model.values().items() if getattr(self, name) is None}
        if "threshold_ceiling" in values and self.threshold_floor is not None:
            values["threshold_ceiling"] = max(self.threshold_floor, model.threshold_ceiling)
        if "threshold_floor" in values and self.threshold_ceiling is not None:
            values["threshold_floor"] = min(self.threshold_ceiling, model.threshold_floor)
        return replace(self, **values)

    def live(self) -> EraseSettings:
        """The settings of live camera frames: one network pass at :attr:`live_input_size`."""
        return replace(self, input_size=self.live_input_size, extra_scales=())

    def group(self, name: str) -> dict[str, Any]:
        """The fields of one of :data:`GROUPS` and their values."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.metadata["group"] == name}

    def to_dict(self) -> dict[str, Any]:
        """Every setting, JSON-ready (tuples as lists); ``EraseSettings(**d)`` reads it back."""
        return {name: list(value) if isinstance(value, tuple) else value for name, value in asdict(self).items()}


def setting_kind(name: str) -> type:
    """The type of the :class:`EraseSettings` field ``name`` besides None: int, float, bool, str or tuple."""
    hint = typing.get_type_hints(EraseSettings)[name]
    if isinstance(hint, types.UnionType):
        hint = next(arg for arg in typing.get_args(hint) if arg is not type(None))
    return typing.get_origin(hint) or hint


def format_setting(value: Any) -> str:
    """A setting's value as text that :func:`parse_setting` reads back (a switch: on or off; no scales: none)."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, tuple):
        return ",".join(f"{v:g}" for v in value) or "none"
    return f"{value:g}" if isinstance(value, float) else str(value)


def parse_setting(name: str, text: str) -> dict[str, Any]:
    """The fields that ``text`` sets, for the setting ``name`` as the CLI and the app take it (its field's
    ``parse``, else its type), checked by :class:`EraseSettings`.

    Raises:
        ValueError: the text is no such value, or not a valid one (the message says why).
    """
    kind = setting_kind(name)
    parse = next(f for f in fields(EraseSettings) if f.name == name).metadata.get("parse")
    if parse is not None:
        value = parse(text)
    elif kind is bool:
        value = {"on": True, "true": True, "off": False, "false": False}.get(text.strip().lower())
        if value is None:
            raise ValueError(f"expected on or off, got {text!r}")
    else:
        try:
            value = kind(text)
        except ValueError:
            raise ValueError(f"expected {'an integer' if kind is int else 'a number'}, got {text!r}") from None
    values = value if isinstance(value, dict) else {name: value}
    EraseSettings(**values)
    return values


DEFAULT_SETTINGS = InferenceSettings()
"""Used for models saved without ``inference.json`` (the values calibrated for the interim model)."""


def warn_defaults(where: str) -> None:
    """Say (once per model) that ``where`` has no settings and the defaults apply."""
    warnings.warn(f"{where} has no {SETTINGS_NAME}: using the default inference settings "
                  f"(input {DEFAULT_SETTINGS.input_size} px, threshold floor {DEFAULT_SETTINGS.threshold_floor}, "
                  f"dilation {DEFAULT_SETTINGS.dilation} px)", UserWarning, stacklevel=3)
