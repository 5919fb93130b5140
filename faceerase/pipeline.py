"""End-to-end face erasing: load a model, predict face probabilities, threshold, mask, anonymize.

torch is imported only on the PyTorch backend: with ``backend="onnx"`` and a model folder or repo that ships an
up-to-date ``model.onnx``, erasing needs onnxruntime, OpenCV and numpy alone.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import threading
import warnings
import weakref
from dataclasses import dataclass, replace
from pathlib import Path

from typing import TYPE_CHECKING

import cv2
import numpy as np
from PIL import Image

from faceerase.anonymize import BLUR_SIGMA_FRACTION, METHODS, MOSAIC_BLOCKS, anonymize, check_strengths
from faceerase.geometry import network_long_side, resize_long_side
from faceerase.hub import (  # noqa: F401  (re-exported: the loading API is also reachable from here)
    CONFIG_NAME, DEFAULT_MODEL_DIR, DEFAULT_REPO_ID, ONNX_NAME, WEIGHTS_NAME, ModelLoadError, OnnxUnavailableError,
    load_model, load_onnx_model, select_device)
from faceerase.images import MIN_SIDE, ImageSource, load_image
from faceerase.masks import MASK_SHAPES, Region, find_regions, refine_mask, shape_mask
from faceerase.onnx_model import OnnxFaceModel, check_provider
from faceerase.settings import DEFAULT_SETTINGS, InferenceSettings
from faceerase.thresholds import THRESHOLD_MODES, compute_threshold

if TYPE_CHECKING:
    import torch

    from faceerase.model import FaceEraseUNet

BACKENDS = ("auto", "torch", "onnx")


@dataclass(frozen=True)
class EraseOptions:
    """Post-processing settings: threshold, mask clean-up and shape, anonymization; the one home of their defaults.

    ``threshold_mode`` is one of :data:`~faceerase.thresholds.THRESHOLD_MODES` (the threshold it gives for an image
    is :attr:`EraseResult.threshold`). The defaults of the threshold range, dilation and minimum area are
    :data:`DEFAULT_SETTINGS`'; :class:`FaceEraser` takes them from its model's :class:`InferenceSettings` instead.
    """

    threshold_mode: str = "auto"
    threshold_value: float | None = None
    method: str = "inpaint_telea"
    dilation: int = DEFAULT_SETTINGS.dilation
    dilation_ratio: float = DEFAULT_SETTINGS.dilation_ratio
    min_area: int = DEFAULT_SETTINGS.min_area
    threshold_floor: float = DEFAULT_SETTINGS.threshold_floor
    threshold_ceiling: float = DEFAULT_SETTINGS.threshold_ceiling
    mask_shape: str = "predicted"
    color: tuple[int, int, int] = (0, 0, 0)
    mosaic_blocks: int = MOSAIC_BLOCKS
    blur_strength: float = BLUR_SIGMA_FRACTION

    def __post_init__(self) -> None:
        for name, value, allowed in (("threshold_mode", self.threshold_mode, THRESHOLD_MODES),
                                     ("method", self.method, METHODS),
                                     ("mask_shape", self.mask_shape, MASK_SHAPES)):
            if value not in allowed:
                raise ValueError(f"unknown {name} {value!r}; choose one of {allowed}")
        if self.threshold_mode == "fixed" and self.threshold_value is None:
            raise ValueError("threshold_mode 'fixed' needs threshold_value in [0, 1]")
        if self.threshold_value is not None and not 0 <= self.threshold_value <= 1:
            raise ValueError(f"threshold_value must be in [0, 1], got {self.threshold_value}")
        if self.dilation < 0 or self.min_area < 0 or self.dilation_ratio < 0:
            raise ValueError("dilation, dilation_ratio and min_area must be >= 0")
        if not 0 <= self.threshold_floor <= self.threshold_ceiling <= 1:
            raise ValueError("need 0 <= threshold_floor <= threshold_ceiling <= 1")
        check_strengths(self.mosaic_blocks, self.blur_strength)


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
    anonymized: np.ndarray
    """Output image, RGB uint8 (H, W, 3)."""


class FaceEraser:
    """Find faces with a :class:`~faceerase.model.FaceEraseUNet` (or its ONNX export) and erase them.

    Args:
        model: a model, an :class:`~faceerase.onnx_model.OnnxFaceModel`, a local folder or Hub repo id for
            :func:`load_model` / :func:`load_onnx_model`, or None (default: the embedded model).
        revision: Hub revision (branch, tag or commit) when ``model`` is a repo id.
        device: torch device; None picks CUDA when available, else CPU. The onnx backend runs on the CPU.
        input_size: the long side each image is resized to for the network (both down and up),
            0 for the native size. Probabilities come back at the original size.
        extra_scales: further passes at ``input_size`` times each scale; the map is their maximum.
        batch_size: images per network pass (equal network input sizes are batched together).
        threads: onnxruntime's threads for the network (None: one per core); give each of several processes
            sharing a machine its share of the cores.
        execution_provider: the onnxruntime execution provider of the onnx backend, one of
            :func:`~faceerase.onnx_model.execution_providers` (None: the CPU's); given, ``auto`` picks ``onnx``.
        backend: ``torch``; ``onnx`` (onnxruntime, on the CPU unless ``execution_provider``: the ``model.onnx``
            of the folder or repo when it was exported from its weights, loaded without torch; else the model
            exported in memory once per model object; same probabilities within 1e-5); or ``auto`` (default):
            ``onnx`` on the CPU when onnxruntime is installed (its network 1.8-2.7x faster on 2 cores,
            benchmarks/results/model_speed_hub.md), else ``torch``. Without a GPU driver, ``auto`` decides without
            importing torch.
        threshold_mode, threshold_value, method, dilation, dilation_ratio, min_area, threshold_floor,
            threshold_ceiling, mask_shape, color, mosaic_blocks, blur_strength: the fields of :attr:`options`
            (:class:`EraseOptions`; :func:`~faceerase.anonymize.anonymize` says what the last three do),
            overridable per call of :meth:`postprocess`.

    Every setting left at None comes from the model's :class:`InferenceSettings` (``inference.json`` in its
    folder, else :data:`DEFAULT_SETTINGS`) or from :class:`EraseOptions`' defaults; :attr:`settings` and
    :attr:`options` hold the resolved values.
    """

    def __init__(
        self,
        model: FaceEraseUNet | OnnxFaceModel | str | Path | None = None,
        *,
        revision: str | None = None,
        device: str | torch.device | None = None,
        input_size: int | None = None,
        extra_scales: tuple[float, ...] | None = None,
        threshold_mode: str | None = None,
        threshold_value: float | None = None,
        method: str | None = None,
        dilation: int | None = None,
        dilation_ratio: float | None = None,
        min_area: int | None = None,
        threshold_floor: float | None = None,
        threshold_ceiling: float | None = None,
        mask_shape: str | None = None,
        color: tuple[int, int, int] | None = None,
        mosaic_blocks: int | None = None,
        blur_strength: float | None = None,
        batch_size: int = 8,
        backend: str = "auto",
        threads: int | None = None,
        execution_provider: str | None = None,
    ):
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; choose one of {BACKENDS}")
        if input_size is not None and input_size != 0 and input_size < MIN_SIDE:
            raise ValueError(f"input_size must be 0 (native size) or at least {MIN_SIDE}, got {input_size}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        if execution_provider is not None:
            if backend == "torch":
                raise ValueError("execution_provider is for the onnx backend; got backend 'torch'")
            check_provider(execution_provider)
            backend = "onnx"
        post = {"threshold_mode": threshold_mode, "threshold_value": threshold_value, "method": method,
                "mask_shape": mask_shape, "color": None if color is None else tuple(color),
                "mosaic_blocks": mosaic_blocks, "blur_strength": blur_strength}
        post = {name: value for name, value in post.items() if value is not None}
        EraseOptions(**post)  # invalid options fail here, before the model loads
        if backend == "auto":
            backend = _auto_backend(model, device)
        self.backend = backend
        #: The torch device of the PyTorch model; None when the eraser runs on a ``model.onnx`` alone.
        self.device = None
        #: The model the eraser runs: a FaceEraseUNet, or an OnnxFaceModel on the torch-free path.
        self.model: FaceEraseUNet | OnnxFaceModel
        self._onnx: OnnxFaceModel | None = None
        if backend == "onnx":
            if device is not None and str(device) != "cpu":
                raise ValueError(f"the onnx backend runs on the CPU; got device {device!r} (use backend='torch')")
            self.model = _onnx_model(model, revision, threads, execution_provider)
            if isinstance(self.model, OnnxFaceModel):
                self._onnx = self.model
            else:
                self.device = select_device("cpu")
                self._onnx = _onnx_runner(self.model, threads, execution_provider)
        else:
            if isinstance(model, OnnxFaceModel):
                raise ValueError("an OnnxFaceModel runs only on the onnx backend")
            self.device = select_device(device)
            self.model = _torch_model(model, revision, self.device)
        given = {"input_size": input_size, "extra_scales": extra_scales, "dilation": dilation,
                 "dilation_ratio": dilation_ratio, "min_area": min_area, "threshold_floor": threshold_floor,
                 "threshold_ceiling": threshold_ceiling}
        overrides = {k: v for k, v in given.items() if v is not None}
        if threshold_floor is not None and threshold_ceiling is None:
            overrides["threshold_ceiling"] = max(threshold_floor, self.model.settings.threshold_ceiling)
        self.settings: InferenceSettings = replace(self.model.settings, **overrides)
        self.batch_size = batch_size
        s = self.settings
        self.options = EraseOptions(dilation=s.dilation, dilation_ratio=s.dilation_ratio, min_area=s.min_area,
                                    threshold_floor=s.threshold_floor, threshold_ceiling=s.threshold_ceiling, **post)

    @property
    def input_size(self) -> int:
        """Long side of the network input (0: native size)."""
        return self.settings.input_size

    def predict(self, images: list[ImageSource], *, input_size: int | None = None) -> list[np.ndarray]:
        """Face probabilities, float32 (H, W) at each image's original size: the maximum over the passes at
        ``input_size`` (default: :attr:`input_size`) and its :attr:`extra_scales`."""
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

    def postprocess(self, image: ImageSource, prob: np.ndarray, **overrides) -> EraseResult:
        """Threshold, clean up, shape and anonymize without running the network; ``overrides``
        replace fields of :attr:`options` for this call only."""
        options = replace(self.options, **overrides)
        image = load_image(image)
        prob = np.asarray(prob, dtype=np.float32)
        if prob.shape != image.shape[:2]:
            raise ValueError(f"probability map shape {prob.shape} does not match image size "
                             f"{image.shape[:2]}")
        threshold = compute_threshold(prob, options.threshold_mode, options.threshold_value,
                                      floor=options.threshold_floor, ceiling=options.threshold_ceiling)
        mask = refine_mask(prob > threshold, options.dilation, options.min_area, options.dilation_ratio)
        mask = shape_mask(mask, options.mask_shape)
        return EraseResult(
            image=image, probabilities=prob, threshold=threshold, mask=mask,
            regions=find_regions(mask, prob),
            anonymized=anonymize(image, mask, options.method, color=options.color,
                                 mosaic_blocks=options.mosaic_blocks, blur_strength=options.blur_strength))

    def __call__(self, image: ImageSource) -> EraseResult:
        """Erase the faces of one image."""
        return self.erase_batch([image])[0]

    def erase_batch(self, images: list[ImageSource]) -> list[EraseResult]:
        """Erase the faces of several images, batching the network passes."""
        arrays = _load_all(images)
        return [self.postprocess(image, prob) for image, prob in zip(arrays, self.predict(arrays))]

    def _network(self, batch: np.ndarray) -> np.ndarray:
        """Probabilities (B, H, W) of a uint8 (B, H, W, 3) batch, with the chosen backend."""
        if self._onnx is not None:
            images = np.ascontiguousarray(batch.transpose(0, 3, 1, 2), dtype=np.float32)  # the one float copy
            images /= 255
            return self._onnx.predict_proba(images)
        import torch

        images = torch.from_numpy(batch).to(self.device).permute(0, 3, 1, 2).float().div_(255)
        return self.model.predict_proba(images).float().cpu().numpy()

    @staticmethod
    def _network_input(image: np.ndarray, input_size: int, extra_scale: float = 1.0,
                       upscale: bool = False) -> np.ndarray:
        h, w = image.shape[:2]
        target = round(network_long_side(h, w, input_size, upscale) * extra_scale)
        return resize_long_side(image, max(target, MIN_SIDE))


def _installed(package: str) -> bool:
    return importlib.util.find_spec(package) is not None


def _auto_backend(model: object, device: str | torch.device | None) -> str:
    """``onnx`` when the network will run on the CPU and onnxruntime is installed, else ``torch``; torch is
    imported only to ask whether CUDA is there, and only when a GPU driver is (:func:`_gpu_driver_present`)."""
    if not _installed("onnxruntime"):
        return "torch"
    if isinstance(model, OnnxFaceModel):
        return "onnx"
    if device is None:
        if not _installed("torch") or not _gpu_driver_present():
            return "onnx"
        return "onnx" if select_device().type == "cpu" else "torch"
    return "onnx" if str(device) == "cpu" else "torch"


_GPU_DRIVER_FILES = ("/proc/driver/nvidia/version", "/dev/nvidiactl", "/dev/kfd", "/dev/dxg")
"""Files that exist on Linux when an NVIDIA (CUDA), AMD (ROCm) or WSL GPU driver is loaded."""


def _gpu_driver_present() -> bool:
    """Whether torch could find a CUDA device here, without importing torch (5 s): False on macOS and on Linux
    without a GPU driver (no :data:`_GPU_DRIVER_FILES`), True elsewhere (torch then answers)."""
    if sys.platform == "darwin":
        return False
    if sys.platform.startswith("linux"):
        return any(os.path.exists(path) for path in _GPU_DRIVER_FILES)
    return True


def _torch_model(model: FaceEraseUNet | str | Path | None, revision: str | None,
                 device: torch.device) -> FaceEraseUNet:
    """``model`` on ``device`` in eval mode, loading it first when it is a folder, a repo id or None."""
    if model is None or isinstance(model, (str, Path)):
        return load_model(model, revision=revision, device=device)
    return model.to(device).eval()


def _onnx_model(model: FaceEraseUNet | OnnxFaceModel | str | Path | None, revision: str | None,
                threads: int | None, provider: str | None) -> FaceEraseUNet | OnnxFaceModel:
    """For the onnx backend: the ``model.onnx`` of a folder or repo when it is up to date (no torch), else the
    PyTorch model on the CPU, for :func:`_onnx_runner` to export."""
    if not (model is None or isinstance(model, (str, Path))):
        return model if isinstance(model, OnnxFaceModel) else model.to("cpu").eval()
    try:
        return load_onnx_model(model, revision=revision, threads=threads, provider=provider)
    except OnnxUnavailableError:  # none, or a stale one (which _onnx_runner reports): export the weights
        return load_model(model, revision=revision, device="cpu")


# One onnxruntime session per model object, thread count and execution provider (the export takes seconds; erasers
# at other sizes share it), made under a lock: erasers may be built by concurrent threads (a web server's requests),
# and torch.onnx.export fails when two run at once.
_ONNX_RUNNERS: weakref.WeakKeyDictionary[FaceEraseUNet, dict[tuple[int | None, str | None], OnnxFaceModel]] = \
    weakref.WeakKeyDictionary()
_ONNX_LOCK = threading.Lock()


def _onnx_runner(model: FaceEraseUNet, threads: int | None, provider: str | None) -> OnnxFaceModel:
    """An onnxruntime runner for a PyTorch model: the ``model.onnx`` of the folder or repo it was loaded from
    when it was exported from these weights, else ``model`` exported now (once per model object)."""
    from faceerase.onnx_model import export_onnx

    with _ONNX_LOCK:
        runners = _ONNX_RUNNERS.setdefault(model, {})
        key = (threads, provider)
        if key not in runners:
            runner = None
            if model.name_or_path is not None:
                try:
                    runner = load_onnx_model(model.name_or_path, revision=model.revision, threads=threads,
                                             provider=provider)
                except OnnxUnavailableError as e:
                    if e.stale:
                        warnings.warn(f"{e}; exporting the model again meanwhile", UserWarning, stacklevel=3)
                except ModelLoadError:
                    pass  # unreadable, or the repo is unreachable: export instead
            if runner is not None and runner.weights_sha256() != model.weights_sha256():
                runner = None  # the weights were changed in memory since loading
            runners[key] = runner or OnnxFaceModel(export_onnx(model), threads=threads, provider=provider)
        return runners[key]


def _load_all(images: list[ImageSource]) -> list[np.ndarray]:
    if isinstance(images, (np.ndarray, str, Path, bytes, Image.Image)):
        raise TypeError("expected a list of images; wrap a single image in a list")
    return [load_image(image) for image in images]
