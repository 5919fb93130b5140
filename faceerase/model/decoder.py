"""The U-Net decoder, built from an encoder's channels and strides alone."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from faceerase.model.encoders import ConvBlock

UPSAMPLE_MODES = ("transpose", "nearest")


class DecoderBlock(nn.Module):
    """Upsample ×2, concatenate the skip feature, then a :class:`ConvBlock`.

    ``transpose`` upsamples with a learned 2x2 transposed convolution to ``cout`` channels (the original
    U-Net); ``nearest`` repeats pixels and lets the convolutions mix (cheaper, as in most pretrained-encoder
    U-Nets).
    """

    def __init__(self, cin: int, cskip: int, cout: int, upsample: str = "transpose", separable: bool = False,
                 bn_after_relu: bool = False):
        super().__init__()
        if upsample not in UPSAMPLE_MODES:
            raise ValueError(f"upsample must be one of {UPSAMPLE_MODES}, got {upsample!r}")
        self.up = nn.ConvTranspose2d(cin, cout, 2, stride=2) if upsample == "transpose" else None
        cin = cout if self.up is not None else cin
        self.conv = ConvBlock(cin + cskip, cout, separable, bn_after_relu)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.up(x) if self.up is not None else F.interpolate(x, size=skip.shape[-2:], mode="nearest")
        return self.conv(torch.cat([x, skip], dim=1))


class UNetDecoder(nn.Module):
    """Decoder blocks from the deepest encoder feature up, one per entry of ``channels``.

    Args:
        encoder_channels: channels of the encoder features, shallow to deep.
        encoder_strides: their strides; consecutive strides must differ by a factor of 2.
        channels: output channels of each decoder block, deep to shallow; ``len(channels)`` blocks use that
            many skip features, so the output stride is ``encoder_strides[-1 - len(channels)]``.
        upsample, separable, bn_after_relu: see :class:`DecoderBlock` and :class:`ConvBlock`.
    """

    def __init__(self, encoder_channels: Sequence[int], encoder_strides: Sequence[int], channels: Sequence[int],
                 upsample: str = "transpose", separable: bool = False, bn_after_relu: bool = False):
        super().__init__()
        n = len(channels)
        if not 1 <= n < len(encoder_channels):
            raise ValueError(f"the decoder needs 1 to {len(encoder_channels) - 1} blocks for this encoder, got {n}")
        if any(b != 2 * a for a, b in zip(encoder_strides, encoder_strides[1:])):
            raise ValueError(f"encoder strides must double at each level, got {tuple(encoder_strides)}")
        blocks, cin = [], encoder_channels[-1]
        for i, cout in enumerate(channels):
            blocks.append(DecoderBlock(cin, encoder_channels[-2 - i], cout, upsample, separable, bn_after_relu))
            cin = cout
        self.blocks = nn.ModuleList(blocks)
        self.out_channels = cin
        self.output_stride = encoder_strides[-1 - n]

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = features[-1]
        for i, block in enumerate(self.blocks):
            x = block(x, features[-2 - i])
        return x
