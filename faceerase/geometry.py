"""Image geometry shared by the network paths (torch and onnxruntime): padding to the size divisor."""

from __future__ import annotations


def padding_for(height: int, width: int, divisor: int) -> tuple[int, int, str]:
    """Bottom and right padding that make ``height`` x ``width`` multiples of ``divisor``, and the mode:
    ``reflect`` when the padding is smaller than the image, else ``replicate`` (repeat the edge)."""
    ph, pw = -height % divisor, -width % divisor
    return ph, pw, "reflect" if ph < height and pw < width else "replicate"
