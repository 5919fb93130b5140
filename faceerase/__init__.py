"""FaceErase: find every face with a U-Net and erase it (inpaint, blur, mosaic or fill)."""

from faceerase.erase.fill import METHODS, anonymize
from faceerase.erase.pipeline import EraseResult, FaceEraser, ModelLoadError, load_model, load_onnx_model
from faceerase.erase.thresholds import THRESHOLD_MODES, compute_threshold
from faceerase.media.images import InvalidImageError, load_image
from faceerase.model.settings import EraseSettings

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
    "FaceEraseUNet": "faceerase.model.network",
    "PRESETS": "faceerase.model.network",
    "load_wider_face": "faceerase.training.widerface",
    "face_masks": "faceerase.training.widerface",
    "TrainConfig": "faceerase.training.loop",
    "train": "faceerase.training.loop",
    "write_model_card": "faceerase.training.card",
    "anonymize_dataset": "faceerase.engines.hf_datasets",
}
__all__ += list(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'faceerase' has no attribute {name!r}")
