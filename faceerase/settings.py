"""Per-model inference settings: how a trained model is best run and its probabilities turned into masks.

They belong to the weights (a model trained at another scale wants another input size; a sharper model wants
another threshold floor), so they live in the model folder as ``inference.json``, written by
``benchmarks/calibrate.py`` from *train* images, and are read by :class:`~faceerase.pipeline.FaceEraser`, the CLI
and the app as their defaults. A model folder without the file runs with :data:`DEFAULT_SETTINGS` (a warning
says so once).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from faceerase.thresholds import AUTO_CEILING, AUTO_FLOOR

SETTINGS_NAME = "inference.json"


@dataclass(frozen=True)
class InferenceSettings:
    """How to run a model.

    Attributes:
        input_size: long side (px) of the network input; 0 keeps the native size.
        upscale: also enlarge images smaller than ``input_size`` (off: they run at their own size; upscaling
            makes textures look like faces the model never saw at that scale).
        extra_scales: further network passes at ``input_size * s`` (e.g. 0.5 for faces larger than the crops
            seen in training); the probability map is the pixel-wise maximum over all passes.
        live_input_size: long side for live camera frames (real-time budget).
        threshold_floor, threshold_ceiling: the ``auto`` threshold (Otsu) is clamped to this range.
        dilation: pixels every mask region grows by.
        dilation_ratio: each region also grows by this fraction of its bounding box's longer side
            (the larger of the two growths applies).
        min_area: regions smaller than this many pixels are dropped before growing.
        source: where the values come from (a calibration command, or ``defaults``); informational.
    """

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
        if self.input_size < 0 or self.live_input_size < 0:
            raise ValueError("input sizes must be >= 0 (0: native size)")
        if any(not 0 < s < 4 for s in self.extra_scales):
            raise ValueError(f"extra_scales must lie in (0, 4), got {self.extra_scales}")
        if not 0 <= self.threshold_floor <= self.threshold_ceiling <= 1:
            raise ValueError("need 0 <= threshold_floor <= threshold_ceiling <= 1, got "
                             f"{self.threshold_floor} and {self.threshold_ceiling}")
        if self.dilation < 0 or self.dilation_ratio < 0 or self.min_area < 0:
            raise ValueError("dilation, dilation_ratio and min_area must be >= 0")

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


DEFAULT_SETTINGS = InferenceSettings()
"""Used for models saved without ``inference.json`` (the values calibrated for the interim model)."""


def warn_defaults(where: str) -> None:
    """Say (once per model) that ``where`` has no settings and the defaults apply."""
    warnings.warn(f"{where} has no {SETTINGS_NAME}: using the default inference settings "
                  f"(input {DEFAULT_SETTINGS.input_size} px, threshold floor {DEFAULT_SETTINGS.threshold_floor}, "
                  f"dilation {DEFAULT_SETTINGS.dilation} px)", UserWarning, stacklevel=3)
