"""FaceErase: find every face with a U-Net and erase it (inpaint, blur, mosaic or fill)."""

from faceerase.model import PRESETS, FaceEraseUNet

__all__ = ["FaceEraseUNet", "PRESETS"]
__version__ = "0.1.0"
