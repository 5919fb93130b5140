"""Image sets padded into device tensors with per-pixel labels: the form that augmentation
(:mod:`faceerase.training.augment`) and validation read."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from faceerase.training.pack import ImageSet
from faceerase.training.widerface import face_masks

# Label map values: outside the image (padding), background, face, ignore region.
LABEL_OUTSIDE, LABEL_BACKGROUND, LABEL_FACE, LABEL_IGNORE = 0, 1, 2, 3


@dataclass
class PaddedImages:
    """Images padded into one tensor with their label maps, and their face boxes.

    ``images`` uint8 (N, 3, H, W); ``labels`` uint8 (N, 1, H, W) with the ``LABEL_*`` values; ``sizes`` long
    (N, 2) (height, width) of each image, all on one device; ``boxes`` float32 (F, 4) ``[x, y, w, h]`` and
    ``invalid`` bool (F,) per image, as in the :class:`ImageSet`, on the host.
    """

    images: torch.Tensor
    labels: torch.Tensor
    sizes: torch.Tensor
    boxes: list[np.ndarray]
    invalid: list[np.ndarray]

    def __len__(self) -> int:
        return self.images.shape[0]


def pad_images(image_set: ImageSet, *, shape: str = "box", multiple: int = 1,
                device: str | torch.device = "cpu") -> PaddedImages:
    """Pad an :class:`ImageSet` into a :class:`PaddedImages` on ``device`` (sides rounded up to ``multiple``),
    labelled by :func:`~faceerase.training.widerface.face_masks` with target ``shape``."""
    if not len(image_set):
        raise ValueError("empty image set")
    height = math.ceil(max(im.shape[0] for im in image_set.images) / multiple) * multiple
    width = math.ceil(max(im.shape[1] for im in image_set.images) / multiple) * multiple
    n = len(image_set)
    images = torch.zeros((n, 3, height, width), dtype=torch.uint8)
    labels = torch.zeros((n, 1, height, width), dtype=torch.uint8)
    for i, (image, boxes, invalid) in enumerate(zip(image_set.images, image_set.boxes, image_set.invalid, strict=True)):
        h, w = image.shape[:2]
        # contiguous and writable (a copy for read-only decoded arrays: torch warns about those)
        images[i, :, :h, :w] = torch.from_numpy(np.require(image, requirements=("C", "W"))).permute(2, 0, 1)
        target, ignore = face_masks({"bbox": boxes, "invalid": invalid}, h, w, shape)
        label = LABEL_BACKGROUND + target * (LABEL_FACE - LABEL_BACKGROUND)
        label[ignore] = LABEL_IGNORE
        labels[i, 0, :h, :w] = torch.from_numpy(label)
    sizes = torch.tensor([im.shape[:2] for im in image_set.images], dtype=torch.long)
    return PaddedImages(images.to(device), labels.to(device), sizes.to(device), list(image_set.boxes),
                        list(image_set.invalid))
