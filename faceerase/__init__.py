"""FaceErase: find every face with a U-Net and erase it (inpaint, blur, mosaic or fill)."""

from faceerase.anonymize import METHODS, anonymize
from faceerase.images import InvalidImageError, load_image
from faceerase.model import PRESETS, FaceEraseUNet
from faceerase.pipeline import EraseResult, FaceEraser, ModelLoadError, load_model
from faceerase.thresholds import THRESHOLD_MODES, compute_threshold

__all__ = [
    "EraseResult",
    "FaceEraseUNet",
    "FaceEraser",
    "InvalidImageError",
    "METHODS",
    "ModelLoadError",
    "PRESETS",
    "THRESHOLD_MODES",
    "anonymize",
    "compute_threshold",
    "load_image",
    "load_model",
]
__version__ = "0.1.0"
