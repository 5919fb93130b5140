"""Image geometry shared by the network paths (torch and onnxruntime): input size and padding."""

from __future__ import annotations


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
