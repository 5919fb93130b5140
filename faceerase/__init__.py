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

# Training and dataset API, imported on first use so that `import faceerase` does not load `datasets`.
_LAZY = {
    "load_wider_face": "faceerase.data",
    "face_masks": "faceerase.data",
    "TrainConfig": "faceerase.training",
    "train": "faceerase.training",
    "write_model_card": "faceerase.modelcard",
}
__all__ += list(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'faceerase' has no attribute {name!r}")
