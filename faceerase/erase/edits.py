"""A person's review of an erased image: model regions kept un-erased (false positives) and regions added (faces the
model missed), applied to the mask without running the network again.

Region ids are 1-based positions in the model's region list (:func:`~faceerase.erase.masks.find_regions`: the
connected components of the final mask in raster order); added regions take the ids after them. The audit record's
``edits`` object (``{"kept": [{"id", "box"}], "added": [{"id", "box", "shape"}]}``) is what :meth:`Edits.to_record`
writes and :meth:`Edits.from_record` reads, so that a review recorded by the app, the web page or a report is applied
again in bulk (``faceerase anonymize --regions``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import cv2
import numpy as np

from faceerase.erase.masks import Region

ADD_SHAPES = ("ellipse", "box")
"""Shapes of an added region: the ellipse inscribed in its box (the default), or the box itself."""
MIN_KEPT_IOU = 0.5
"""A kept region whose box overlaps the one recorded at review by less than this (intersection over union) is not
the region the reviewer saw: the edits were made with another model or settings."""

Box = tuple[int, int, int, int]
"""(x, y, w, h) in pixels of the original image."""


@dataclass(frozen=True)
class Added:
    """A region added by hand: its box and shape."""

    box: Box
    shape: str = "ellipse"

    def __post_init__(self) -> None:
        if self.shape not in ADD_SHAPES:
            raise ValueError(f"unknown shape {self.shape!r} of an added region; choose one of {ADD_SHAPES}")
        if len(self.box) != 4 or self.box[2] < 1 or self.box[3] < 1:
            raise ValueError(f"an added box is (x, y, w, h) with w and h >= 1, got {tuple(self.box)}")


@dataclass(frozen=True)
class Edits:
    """What a person changed: the ids of model regions to keep un-erased and the regions to add.

    ``kept_boxes`` (optional, one per kept id) are the boxes those regions had when they were reviewed:
    :func:`apply_edits` refuses a kept id whose region is no longer there.
    """

    keep: tuple[int, ...] = ()
    add: tuple[Added, ...] = ()
    kept_boxes: tuple[Box, ...] = ()

    def __post_init__(self) -> None:
        if any(not isinstance(i, (int, np.integer)) or isinstance(i, bool) or i < 1 for i in self.keep):
            raise ValueError(f"kept region ids are whole numbers from 1, got {list(self.keep)}")
        if self.kept_boxes and len(self.kept_boxes) != len(self.keep):
            raise ValueError("give one recorded box per kept region, or none")

    def __bool__(self) -> bool:
        return bool(self.keep or self.add)

    @classmethod
    def of(cls, keep: Iterable[int] = (), add: Iterable[Sequence[int]] = (), add_shape: str = "ellipse") -> Edits:
        """Edits from region ids to keep and boxes (x, y, w, h) to add, each shaped ``add_shape``."""
        return cls(keep=tuple(int(i) for i in keep),
                   add=tuple(Added(_box(box), add_shape) for box in add))

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Edits:
        """The edits of an audit record's ``edits`` object, or of a whole record (its ``edits`` key); a
        :class:`ValueError` says what is malformed."""
        edits = record.get("edits", record) if isinstance(record, Mapping) else None
        if not isinstance(edits, Mapping):
            raise ValueError("the edits must be an object with 'kept' and 'added' lists")
        kept, added = edits.get("kept", []), edits.get("added", [])
        if not isinstance(kept, list) or not isinstance(added, list):
            raise ValueError("the edits' 'kept' and 'added' must be lists")
        try:
            keep = tuple(int(entry["id"]) for entry in kept)
            boxes = tuple(_box(entry["box"]) for entry in kept if "box" in entry)
            add = tuple(Added(_box(entry["box"]), entry.get("shape", "ellipse")) for entry in added)
        except (KeyError, TypeError) as error:
            raise ValueError(f"malformed edits: each kept region needs an 'id' (and its 'box'), each added one a "
                             f"'box' [x, y, w, h] ({type(error).__name__}: {error})") from None
        return cls(keep=keep, add=add, kept_boxes=boxes if len(boxes) == len(keep) else ())

    def to_record(self, regions: Sequence[Region]) -> dict[str, list[dict[str, Any]]]:
        """The audit record's ``edits`` object for ``regions`` (the result's, edits applied)."""
        return {"kept": [{"id": r.id, "box": list(r.box)} for r in regions if r.source == "model" and not r.erased],
                "added": [{"id": r.id, "box": list(r.box), "shape": a.shape}
                          for r, a in zip([r for r in regions if r.source == "added"], self.add)]}


def apply_edits(mask: np.ndarray, prob: np.ndarray, regions: list[Region],
                edits: Edits) -> tuple[np.ndarray, list[Region]]:
    """The mask and regions after ``edits``: the pixels of each kept region (its connected component of ``mask``)
    left un-erased, then each added shape erased (even over a kept region).

    ``regions`` are :func:`~faceerase.erase.masks.find_regions` of ``mask``; the result lists them (kept ones with
    ``erased`` False) and then the added ones. A :class:`ValueError` names a kept id that does not exist, a kept
    region no longer at its recorded box, or an added box outside the image.
    """
    if not edits:
        return mask, regions
    height, width = mask.shape
    unknown = sorted(set(edits.keep) - set(range(1, len(regions) + 1)))
    if unknown:
        raise ValueError(f"no region {', '.join(map(str, unknown))} to keep: the image has {len(regions)} "
                         f"region{'s' * (len(regions) != 1)}")
    for region_id, box in zip(edits.keep, edits.kept_boxes):
        found = regions[region_id - 1].box
        if box_iou(found, box) < MIN_KEPT_IOU:
            raise ValueError(f"region {region_id} is at {list(found)}, not at {list(box)} where it was reviewed: the "
                             f"edits were made with another model or settings; review this image again")
    out = mask.copy()
    if edits.keep:
        _, labels = cv2.connectedComponents(mask.view(np.uint8), connectivity=8)  # the labels of find_regions
        out[np.isin(labels, list(edits.keep))] = False
        kept = set(edits.keep)
        regions = [replace(r, erased=r.id not in kept) for r in regions]
    added = []
    for number, entry in enumerate(edits.add, start=len(regions) + 1):
        x, y, w, h = clip_box(entry.box, width, height)
        inside = added_shape(w, h, entry.shape)
        out[y:y + h, x:x + w] |= inside
        values = prob[y:y + h, x:x + w][inside]
        added.append(Region(box=(x, y, w, h), score=float(values.max()), mean_score=float(values.mean()),
                            area=int(inside.sum()), faces=1, id=number, source="added"))
    return out, regions + added


def added_shape(width: int, height: int, shape: str = "ellipse") -> np.ndarray:
    """The pixels (bool, ``height`` x ``width``) of an added region in its box: every pixel for ``box``; for
    ``ellipse``, the pixels whose centre lies in the ellipse inscribed in the box (the web page draws the same)."""
    if shape == "box":
        return np.ones((height, width), bool)
    if shape != "ellipse":
        raise ValueError(f"unknown shape {shape!r} of an added region; choose one of {ADD_SHAPES}")
    cols = (np.arange(width) + 0.5 - width / 2) / (width / 2)
    rows = (np.arange(height) + 0.5 - height / 2) / (height / 2)
    return rows[:, None] ** 2 + cols[None, :] ** 2 <= 1


def clip_box(box: Box, width: int, height: int) -> Box:
    """``box`` cut to a ``width`` x ``height`` image; a :class:`ValueError` when no pixel of it is inside."""
    x, y, w, h = box
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, width), min(y + h, height)
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"the added box {list(box)} lies outside the {width}x{height} image")
    return x0, y0, x1 - x0, y1 - y0


def box_iou(a: Box, b: Box) -> float:
    """Intersection over union of two (x, y, w, h) boxes."""
    w = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    h = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    inter = max(w, 0) * max(h, 0)
    return inter / (a[2] * a[3] + b[2] * b[3] - inter) if inter else 0.0


def _box(value: Any) -> Box:
    """A box from a sequence of four whole numbers (floats from a UI are rounded)."""
    if isinstance(value, (str, bytes)) or len(value) != 4:
        raise ValueError(f"a box is [x, y, w, h], got {value!r}")
    return tuple(int(round(float(v))) for v in value)  # type: ignore[return-value]
