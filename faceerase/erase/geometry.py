"""Image geometry shared by the network paths (torch and onnxruntime) and the training data: input size, resizing
and padding."""

from __future__ import annotations

import cv2
import numpy as np


def padding_for(height: int, width: int, divisor: int) -> tuple[int, int, str]:
    """Bottom and right padding that make ``height`` x ``width`` multiples of ``divisor``, and the mode:
    ``reflect`` when the padding is smaller than the image, else ``replicate`` (repeat the edge)."""
    ph, pw = -height % divisor, -width % divisor
    return ph, pw, "reflect" if ph < height and pw < width else "replicate"


def network_long_side(height: int, width: int, input_size: int, upscale: bool = False) -> int:
    """Long side of the network input for an image: ``input_size``, or the image's own long side when
    ``input_size`` is 0 or, without ``upscale``, larger than the image."""
    long_side = max(height, width)
    return input_size if input_size and (upscale or input_size < long_side) else long_side


def resize_long_side(image: np.ndarray, long_side: int) -> np.ndarray:
    """``image`` resized so that its long side is ``long_side`` (area averaging down, bilinear up); the image itself
    when it already is."""
    h, w = image.shape[:2]
    if max(h, w) == long_side:
        return image
    scale = long_side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
