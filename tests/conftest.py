"""Shared fixtures: a tiny untrained model (and its saved folder) and a synthetic face image."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from faceerase.model import FaceEraseUNet

FACE_CENTER, FACE_AXES = (60, 50), (26, 34)


@pytest.fixture
def tiny_model() -> FaceEraseUNet:
    """The ``live`` preset shrunk to 4 base channels and depth 2, seeded, in eval mode."""
    torch.manual_seed(0)
    return FaceEraseUNet.from_preset("live", base_channels=4, depth=2).eval()


@pytest.fixture
def tiny_model_dir(tiny_model, tmp_path):
    """``tiny_model`` saved with ``save_pretrained`` (config.json + model.safetensors)."""
    folder = tmp_path / "tiny-model"
    tiny_model.save_pretrained(folder)
    return folder


@pytest.fixture
def face_mask() -> np.ndarray:
    """Bool (100, 120) mask of the face ellipse in :func:`face_image`."""
    mask = np.zeros((100, 120), np.uint8)
    cv2.ellipse(mask, FACE_CENTER, FACE_AXES, 0, 0, 360, 1, thickness=-1)
    return mask.astype(bool)


@pytest.fixture
def face_image(face_mask) -> np.ndarray:
    """RGB uint8 (100, 120) image: a smooth bluish background and a face-like ellipse with a
    fine two-tone skin texture (identity detail that erasing must destroy), eyes and a mouth."""
    h, w = face_mask.shape
    yy, xx = np.mgrid[0:h, 0:w]
    image = np.stack([40 + xx // 3, 90 + yy // 2, 170 + 0 * xx], axis=-1).astype(np.uint8)
    checker = ((yy // 3 + xx // 3) % 2).astype(bool)
    image[face_mask & checker] = (235, 190, 160)
    image[face_mask & ~checker] = (120, 70, 50)
    cx, cy = FACE_CENTER
    for ex in (cx - 11, cx + 11):
        cv2.circle(image, (ex, cy - 8), 4, (20, 20, 20), thickness=-1)
    cv2.ellipse(image, (cx, cy + 16), (10, 4), 0, 0, 360, (150, 20, 30), thickness=-1)
    return image
