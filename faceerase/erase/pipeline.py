"""End-to-end face erasing: load a model, predict face probabilities, threshold, mask, anonymize.

:class:`FaceEraser` runs a model's :class:`~faceerase.model.runners.Runner` (loaded by
:func:`faceerase.model.runners.load`) with one :class:`~faceerase.model.settings.EraseSettings`; :class:`EraserSpec` is
how another process (a Ray actor, a ``datasets`` worker) builds the same eraser. torch is imported only on the PyTorch
backend: with ``backend="onnx"`` and a model folder or repo that ships an up-to-date ``model.onnx``, erasing needs
onnxruntime, OpenCV and numpy alone.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
from PIL import Image

from faceerase.erase.edits import Edits, apply_edits
from faceerase.erase.fill import anonymize
from faceerase.erase.geometry import network_long_side, resize_long_side
from faceerase.model.loading import (  # noqa: F401  (re-exported: the loading API is also reachable from here)
    CONFIG_NAME, DEFAULT_MODEL_DIR, DEFAULT_REPO_ID, ONNX_NAME, WEIGHTS_NAME, ModelLoadError, OnnxUnavailableError,
    load_model, load_onnx_model, select_device)
from faceerase.erase.masks import Region, find_regions, refine_mask, shape_mask
from faceerase.erase.overlay import draw_regions
from faceerase.erase.thresholds import compute_threshold
from faceerase.media.images import MIN_SIDE, ImageSource, load_image
from faceerase.model.runners import load, predict_proba
from faceerase.model.settings import NO_IMAGE, EraseSettings

if TYPE_CHECKING:
    import torch

    from faceerase.model.network import FaceEraseUNet
    from faceerase.model.onnx_model import OnnxFaceModel


@dataclass
class EraseResult:
    """Everything one image went through, all at the original resolution."""

    image: np.ndarray
    """Input image, RGB uint8 (H, W, 3), EXIF orientation applied."""
    probabilities: np.ndarray
    """Face probabilities, float32 (H, W)."""
    threshold: float
    mask: np.ndarray
    """Final erased mask, bool (H, W)."""
    regions: list[Region]
    """The model's regions (a kept one with ``erased`` False), then those added by hand."""
    anonymized: np.ndarray | None
    """Output image, RGB uint8 (H, W, 3), with the region boxes drawn on it with ``draw_boxes``; None with the
    method ``none`` (no image)."""
    edits: Edits = Edits()
    """The review applied (:mod:`faceerase.erase.edits`); empty when none was."""


class FaceEraser:
    """Find faces with a :class:`~faceerase.model.network.FaceEraseUNet` (or its ONNX export) and erase them.

    Args:
        model: a model, an :class:`~faceerase.model.onnx_model.OnnxFaceModel`, a local folder or Hub repo id for
            :func:`load_model` / :func:`load_onnx_model`, or None (default: the embedded model).
        settings: how to erase (:class:`~faceerase.model.settings.EraseSettings`); its calibrated settings left at None
            come from the model's ``inference.json`` (else :data:`~faceerase.model.settings.DEFAULT_SETTINGS`).
        revision: Hub revision (branch, tag or commit) when ``model`` is a repo id.
        device, backend, threads, execution_provider: where and how the network runs: see
            :func:`faceerase.model.runners.load` (``backend`` ``auto``, the default: onnxruntime on the CPU when it is
            installed, else PyTorch).
        batch_size: images per network pass (equal network input sizes are batched together).
        **overrides: fields of :class:`~faceerase.model.settings.EraseSettings` (``input_size``, ``threshold_mode``,
            ``method``, ``dilation``, ...) replacing those of ``settings``; None leaves one as it is.

    Invalid settings raise :class:`ValueError` before the model loads, and so does the ``image`` method's picture
    (``replace_with``) when it cannot be read. :attr:`settings` holds the resolved
    settings, every one of them set; :attr:`identity` names the model in reports.
    """

    def __init__(self, model: FaceEraseUNet | OnnxFaceModel | str | Path | None = None, *,
                 settings: EraseSettings | None = None, revision: str | None = None,
                 device: str | torch.device | None = None, batch_size: int = 8, backend: str = "auto",
                 threads: int | None = None, execution_provider: str | None = None, **overrides: Any):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        requested = (settings or EraseSettings()).updated(**overrides)  # invalid settings fail before loading
        _replacement_of(requested)
        self._loaded = load(model, revision=revision, backend=backend, device=device, threads=threads,
                            execution_provider=execution_provider)
        #: The model the eraser runs: a FaceEraseUNet, or an OnnxFaceModel on the torch-free path.
        self.model: FaceEraseUNet | OnnxFaceModel = self._loaded.model
        #: Its network: a :class:`~faceerase.model.runners.Runner` (the model itself, or its ONNX export, on ``onnx``).
        self.runner = self._loaded.runner
        #: ``torch`` or ``onnx``.
        self.backend: str = self._loaded.backend
        #: The torch device of the PyTorch model; None when the eraser runs on a ``model.onnx`` alone.
        self.device = self._loaded.device
        #: The settings, resolved against the model's calibrated ones.
        self.settings: EraseSettings = requested.resolved(self.model.settings)
        self.batch_size = batch_size

    @property
    def input_size(self) -> int:
        """Long side of the network input (0: native size)."""
        return self.settings.input_size

    @property
    def identity(self) -> dict[str, Any]:
        """The model as audit records name it: ``id`` (folder or repo), ``revision``, ``weights_sha256``,
        ``backend``."""
        return {"id": self.model.name_or_path, "revision": self.model.revision,
                "weights_sha256": self._loaded.weights_sha256, "backend": self.backend}

    def with_settings(self, settings: EraseSettings) -> FaceEraser:
        """An eraser on the same model and runner with ``settings`` (resolved against the model's)."""
        other = copy.copy(self)
        other.settings = settings.resolved(self.model.settings)
        return other

    def predict(self, images: list[ImageSource], *, input_size: int | None = None) -> list[np.ndarray]:
        """Face probabilities, float32 (H, W) at each image's original size: the maximum over the passes at
        ``input_size`` (default: :attr:`input_size`) and the settings' extra scales."""
        arrays = _load_all(images)
        size = self.input_size if input_size is None else input_size
        probs: list[np.ndarray | None] = [None] * len(arrays)
        for scale in (1.0, *self.settings.extra_scales):
            inputs = [self._network_input(image, size, scale, self.settings.upscale) for image in arrays]
            groups: dict[tuple[int, int], list[int]] = {}
            for i, x in enumerate(inputs):
                groups.setdefault(x.shape[:2], []).append(i)
            for indices in groups.values():
                for start in range(0, len(indices), self.batch_size):
                    chunk = indices[start:start + self.batch_size]
                    out = self._network(np.stack([inputs[i] for i in chunk]))
                    for i, p in zip(chunk, out):
                        h, w = arrays[i].shape[:2]
                        if p.shape != (h, w):  # in place from here: no further full-size copies
                            p = cv2.resize(p, (w, h), interpolation=cv2.INTER_LINEAR)
                        p = np.ascontiguousarray(p, dtype=np.float32)
                        np.clip(p, 0, 1, out=p)  # onnxruntime's sigmoid can return 1.0000001
                        probs[i] = p if probs[i] is None else np.maximum(probs[i], p, out=probs[i])
        return probs

    def postprocess(self, image: ImageSource, prob: np.ndarray, *, keep: Sequence[int] = (),
                    add: Sequence[Sequence[int]] = (), add_shape: str = "ellipse", edits: Edits | None = None,
                    **overrides: Any) -> EraseResult:
        """Threshold, clean up, shape and anonymize without running the network; ``overrides`` replace fields
        of :attr:`settings` for this call only.

        A review is applied with ``keep`` (ids of the model's regions to leave un-erased), ``add`` (boxes
        (x, y, w, h) to erase too, each shaped ``add_shape``: ``ellipse`` or ``box``), or ``edits`` (an
        :class:`~faceerase.erase.edits.Edits`, e.g. read from an audit record): see
        :func:`~faceerase.erase.edits.apply_edits`, whose :class:`ValueError` names an unknown region or a box
        outside the image.
        """
        if edits is None:
            edits = Edits.of(keep, add, add_shape)
        elif keep or add:
            raise ValueError("give either edits or keep/add, not both")
        s = self.settings.updated(**overrides)
        image = load_image(image)
        prob = np.asarray(prob, dtype=np.float32)
        if prob.shape != image.shape[:2]:
            raise ValueError(f"probability map shape {prob.shape} does not match image size "
                             f"{image.shape[:2]}")
        threshold = compute_threshold(prob, s.threshold_mode, s.threshold_value, floor=s.threshold_floor,
                                      ceiling=s.threshold_ceiling)
        mask = refine_mask(prob > threshold, s.dilation, s.min_area, s.dilation_ratio)
        mask = shape_mask(mask, s.mask_shape)
        regions = find_regions(mask, prob, threshold)
        mask, regions = apply_edits(mask, prob, regions, edits)
        anonymized = None
        if s.method != NO_IMAGE:
            anonymized = anonymize(image, mask, s.method, color=s.color, mosaic_blocks=s.mosaic_blocks,
                                   blur_strength=s.blur_strength, replacement=_replacement_of(s))
            if s.draw_boxes:
                anonymized = draw_regions(anonymized, regions)
        return EraseResult(image=image, probabilities=prob, threshold=threshold, mask=mask, regions=regions,
                           anonymized=anonymized, edits=edits)

    def __call__(self, image: ImageSource) -> EraseResult:
        """Erase the faces of one image."""
        return self.erase_batch([image])[0]

    def erase_batch(self, images: list[ImageSource]) -> list[EraseResult]:
        """Erase the faces of several images, batching the network passes."""
        arrays = _load_all(images)
        return [self.postprocess(image, prob) for image, prob in zip(arrays, self.predict(arrays))]

    def _network(self, batch: np.ndarray) -> np.ndarray:
        """Probabilities (B, H, W) of a uint8 (B, H, W, 3) batch, with the runner."""
        images = np.ascontiguousarray(batch.transpose(0, 3, 1, 2), dtype=np.float32)  # the one float copy
        images /= 255
        return predict_proba(self.runner, images)

    @staticmethod
    def _network_input(image: np.ndarray, input_size: int, extra_scale: float = 1.0,
                       upscale: bool = False) -> np.ndarray:
        h, w = image.shape[:2]
        target = round(network_long_side(h, w, input_size, upscale) * extra_scale)
        return resize_long_side(image, max(target, MIN_SIDE))


@dataclass(frozen=True)
class EraserSpec:
    """How to build a :class:`FaceEraser`, picklable, so that another process (a Ray actor, a ``datasets`` worker)
    builds the eraser this one would: ``model`` (a folder or Hub repo id; None: the embedded model) and the other
    fields are :class:`FaceEraser`'s arguments.

    ``weights_sha256``, when given, is the fingerprint the model's weights must have: :meth:`build` refuses a model
    changed since (a folder rewritten while a run goes on).
    """

    model: str | None = None
    revision: str | None = None
    settings: EraseSettings = EraseSettings()
    backend: str = "auto"
    device: str | None = None
    threads: int | None = None
    execution_provider: str | None = None
    batch_size: int = 8
    weights_sha256: str | None = None

    def eraser_options(self) -> dict[str, Any]:
        """:class:`FaceEraser`'s keyword arguments (all but the model)."""
        return {"settings": self.settings, "revision": self.revision, "backend": self.backend,
                "device": self.device, "threads": self.threads, "execution_provider": self.execution_provider,
                "batch_size": self.batch_size}

    def build(self) -> FaceEraser:
        """The eraser (its model loaded once per process: :func:`faceerase.model.runners.load`).

        Raises:
            ModelLoadError: the model does not load. ValueError: settings that do not go together.
            RuntimeError: the weights are not those of ``weights_sha256``.
        """
        eraser = FaceEraser(self.model, **self.eraser_options())
        if self.weights_sha256 is not None and eraser.identity["weights_sha256"] != self.weights_sha256:
            raise RuntimeError(f"the weights of {self.model} changed while the run was going on")
        return eraser

    @classmethod
    def of(cls, model: str | Path | None = None, **options: Any) -> EraserSpec:
        """The spec of ``FaceEraser(model, **options)`` for a model folder or Hub repo id: ``options`` are its
        keyword arguments (``settings``, the settings' fields overriding it, ``device``, ``backend``...); an
        unknown one is a :class:`TypeError`, an invalid setting a :class:`ValueError`."""
        runtime = {f.name for f in fields(cls)} - {"model", "settings", "weights_sha256"}
        settings = (options.pop("settings", None) or EraseSettings()).updated(
            **{name: value for name, value in options.items() if name not in runtime})
        return cls(model=None if model is None else str(model), settings=settings,
                   **{name: value for name, value in options.items() if name in runtime})

    def pinned_to(self, eraser: FaceEraser) -> EraserSpec:
        """This spec with what ``eraser`` (built from it) resolved: the settings, and the fingerprint of the
        weights, which every eraser built from the result then checks."""
        return replace(self, settings=eraser.settings, weights_sha256=eraser.identity["weights_sha256"])


def _replacement_of(settings: EraseSettings) -> np.ndarray | None:
    """The ``image`` method's picture of ``settings`` (None for the other methods); a :class:`ValueError` when
    there is none or it cannot be read."""
    if settings.method != "image":
        return None
    if not settings.replace_with:
        raise ValueError("the method image needs replace_with, the picture put over each face (--replace-with IMAGE)")
    return _replacement(settings.replace_with)


@functools.lru_cache(maxsize=4)
def _replacement(path: str) -> np.ndarray:
    """The picture at ``path``, read once per process (read-only); a :class:`ValueError` says why it cannot be."""
    try:
        picture = load_image(Path(path))
    except (ValueError, OSError) as error:
        raise ValueError(f"cannot read the replacement image {path}: {error}") from None
    picture.flags.writeable = False
    return picture


def _load_all(images: list[ImageSource]) -> list[np.ndarray]:
    if isinstance(images, (np.ndarray, str, Path, bytes, Image.Image)):
        raise TypeError("expected a list of images; wrap a single image in a list")
    return [load_image(image) for image in images]
