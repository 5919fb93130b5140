"""FaceErase: find every face with a U-Net and erase it (inpaint, blur, mosaic or fill)."""

from faceerase.anonymize import METHODS, anonymize
from faceerase.images import InvalidImageError, load_image
from faceerase.pipeline import EraseResult, FaceEraser, ModelLoadError, load_model, load_onnx_model
from faceerase.settings import EraseSettings
from faceerase.thresholds import THRESHOLD_MODES, compute_threshold

__all__ = [
    "EraseResult",
    "EraseSettings",
    "FaceEraser",
    "InvalidImageError",
    "METHODS",
    "ModelLoadError",
    "THRESHOLD_MODES",
    "anonymize",
    "compute_threshold",
    "load_image",
    "load_model",
    "load_onnx_model",
]
__version__ = "0.1.0"

# The PyTorch model and the training and dataset API, imported on first use: `import faceerase` loads neither torch
# nor `datasets` (the onnx backend needs neither).
_LAZY = {
    "FaceEraseUNet": "faceerase.model",
    "PRESETS": "faceerase.model",
    "load_wider_face": "faceerase.data",
    "face_masks": "faceerase.data",
    "TrainConfig": "faceerase.training",
    "train": "faceerase.training",
    "write_model_card": "faceerase.modelcard",
    "anonymize_dataset": "faceerase.hf_datasets",
}
__all__ += list(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'faceerase' has no attribute {name!r}")
