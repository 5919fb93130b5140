"""The ``draw_boxes`` overlay: each region's box and score drawn on an already erased image, for checking what was
found. It is drawn after erasing, so it shows nothing of a face."""

from __future__ import annotations

import cv2
import numpy as np

from faceerase.erase.masks import Region

BOX_COLOR = (0, 255, 0)
"""RGB colour of the boxes and their scores."""
KEPT_COLOR = (255, 160, 0)
"""RGB colour of a region a person kept un-erased (:mod:`faceerase.erase.edits`), labelled ``kept``."""


def draw_regions(image: np.ndarray, regions: list[Region]) -> np.ndarray:
    """A copy of ``image`` (RGB uint8) with each region's bounding box outlined and its score (``0.93``; ``kept``
    in :data:`KEPT_COLOR` for a region a person kept un-erased) written inside the box's top-left corner; pixels
    away from the outlines and labels are unchanged."""
    out = image.copy()
    thickness = max(1, round(max(image.shape[:2]) / 500))
    for region in regions:
        x, y, w, h = region.box
        color, label = (BOX_COLOR, f"{region.score:.2f}") if region.erased else (KEPT_COLOR, "kept")
        cv2.rectangle(out, (x, y), (x + w - 1, y + h - 1), color, thickness)
        scale = max(0.3, min(1.0, w / 120))
        (text_w, text_h), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
        cv2.putText(out, label, (x + thickness + 1, y + thickness + 1 + text_h),
                    cv2.FONT_HERSHEY_SIMPLEX, scale, color, thickness, cv2.LINE_AA)
    return out
