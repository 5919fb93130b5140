"""Batched training-crop augmentation on tensors (CPU or CUDA).

The decoded images are held on the device, padded to one size, with a per-pixel label map; each batch is
made by one ``affine_grid`` + ``grid_sample`` (bilinear for images, nearest for labels) that rescales
(log-uniform over a wide range), crops and flips all samples at once, then photometric jitter.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from faceerase.model.network import LUMA_WEIGHTS, to_grayscale
from faceerase.training.padded import LABEL_FACE, LABEL_IGNORE, LABEL_OUTSIDE, PaddedImages


class CropSampler:
    """Draws augmented training crops from a :class:`PaddedImages`, all on its device.

    Each call returns ``(images, target, ignore)``: float images (B, in_channels, S, S) in [0, 1], float
    target (B, 1, S, S) in {0, 1} and a bool ignore map (B, 1, S, S) covering ignore regions and everything
    outside the image. Samples are rescaled by a log-uniform factor in ``scale_range`` (relative to the
    stored resolution; images drawn uniformly, or in proportion to ``weights``), cropped at a random position
    overlapping the image, flipped with probability 0.5, and jittered in brightness, contrast and saturation
    (grayscale with probability ``grayscale_p``).
    """

    def __init__(self, padded: PaddedImages, *, crop_size: int = 256, scale_range: tuple[float, float] = (0.4, 2.5),
                 flip: bool = True, jitter: float = 0.3, grayscale_p: float = 0.1, in_channels: int = 3,
                 weights: torch.Tensor | None = None, seed: int = 0):
        self.padded = padded
        self.weights = None if weights is None else weights.to(padded.images.device, torch.float)
        self.crop_size = crop_size
        self.scale_range = scale_range
        self.flip = flip
        self.jitter = jitter
        self.grayscale_p = grayscale_p
        self.in_channels = in_channels
        self.device = padded.images.device
        self.generator = torch.Generator(self.device).manual_seed(seed)

    def _uniform(self, n: int, low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(n, generator=self.generator, device=self.device)

    def _thetas(self, index: torch.Tensor) -> torch.Tensor:
        """Affine matrices (B, 2, 3) mapping normalized crop coordinates to normalized padded coordinates."""
        b, c = index.shape[0], self.crop_size
        _, _, height, width = self.padded.images.shape
        lo, hi = self.scale_range
        scale = torch.exp(self._uniform(b, math.log(lo), math.log(hi)))
        size = self.padded.sizes[index].to(scale.dtype) * scale[:, None]  # scaled (h, w)
        # Crop origin in scaled pixels: anywhere that keeps crop and image overlapping as much as possible.
        low = torch.minimum(size - c, torch.zeros_like(size))
        high = torch.maximum(size - c, torch.zeros_like(size))
        origin = low + (high - low) * torch.rand(b, 2, generator=self.generator, device=self.device)
        theta = torch.zeros(b, 2, 3, device=self.device)
        ax = c / (scale * width)
        if self.flip:
            ax = torch.where(torch.rand(b, generator=self.generator, device=self.device) < 0.5, -ax, ax)
        theta[:, 0, 0] = ax
        theta[:, 0, 2] = (c + 2 * origin[:, 1]) / (scale * width) - 1
        theta[:, 1, 1] = c / (scale * height)
        theta[:, 1, 2] = (c + 2 * origin[:, 0]) / (scale * height) - 1
        return theta

    def _jitter(self, images: torch.Tensor) -> torch.Tensor:
        """Brightness, contrast and saturation (or grayscale) as one per-sample 3x3 colour matrix + offset."""
        b, j = images.shape[0], self.jitter
        brightness, contrast = self._uniform(b, 1 - j, 1 + j), self._uniform(b, 1 - j, 1 + j)
        saturation = self._uniform(b, 1 - j, 1 + j)
        saturation = torch.where(self._uniform(b, 0, 1) < self.grayscale_p, 0.0, saturation)
        weights = images.new_tensor(LUMA_WEIGHTS)
        # saturation: s x + (1 - s) gray(x); brightness b and contrast c around the mean gray m: c b x + (1 - c) b m
        matrix = saturation[:, None, None] * torch.eye(3, device=images.device) + (
            1 - saturation)[:, None, None] * weights.expand(3, 3)
        matrix = matrix * (contrast * brightness)[:, None, None]
        mean_gray = images.mean((2, 3)) @ weights
        offset = (1 - contrast) * brightness * mean_gray
        out = torch.einsum("bij,bjn->bin", matrix, images.flatten(2)).view_as(images) + offset[:, None, None, None]
        return out.clamp_(0, 1)

    @torch.no_grad()
    def __call__(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.weights is None:
            index = torch.randint(len(self.padded), (batch_size,), generator=self.generator, device=self.device)
        else:
            index = torch.multinomial(self.weights, batch_size, replacement=True, generator=self.generator)
        theta = self._thetas(index)
        grid = F.affine_grid(theta, [batch_size, 1, self.crop_size, self.crop_size], align_corners=False)
        images = F.grid_sample(self.padded.images[index].float(), grid, mode="bilinear",
                               padding_mode="zeros", align_corners=False)
        labels = F.grid_sample(self.padded.labels[index].float(), grid, mode="nearest",
                               padding_mode="zeros", align_corners=False).round_().to(torch.uint8)
        images = images.div_(255).clamp_(0, 1)
        if self.jitter or self.grayscale_p:
            images = self._jitter(images)
        if self.in_channels == 1:
            images = to_grayscale(images)
        target = (labels == LABEL_FACE).float()
        ignore = (labels == LABEL_OUTSIDE) | (labels == LABEL_IGNORE)
        return images.contiguous(), target, ignore
