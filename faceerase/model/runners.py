"""Runners: a model's network behind one protocol (a batch of images in, face probabilities out), its PyTorch and
onnxruntime implementations, the one preparation of images both share, and the one cache of loaded models.

A :class:`Runner` takes float images (N, C, H, W) in [0, 1] whose sides are multiples of its ``size_divisor`` and
returns probabilities (N, H, W): :class:`TorchRunner` runs a :class:`~faceerase.model.network.FaceEraseUNet`,
:class:`~faceerase.model.onnx_model.OnnxFaceModel` its ONNX export. :func:`predict_proba` prepares images of any size
for either (the channels the network takes, padding to the divisor, the probabilities cropped back);
``FaceEraseUNet.predict_proba`` and ``OnnxFaceModel.predict_proba`` are that function on their own runner.

:func:`load` picks the backend and loads a model and its runner, through one cache of this process: a model
folder or Hub repo is loaded once per runtime (backend, device, threads, execution provider) and revision, and
again when the files of its folder change; an in-memory PyTorch model is exported to ONNX once per model object.
This module imports neither torch nor onnxruntime: the onnx backend on an up-to-date ``model.onnx`` runs without
torch.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import threading
import warnings
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from faceerase.erase.geometry import padding_for
from faceerase.media.images import LUMA_WEIGHTS
from faceerase.model import loading
from faceerase.model.loading import ModelLoadError, OnnxUnavailableError, load_model, load_onnx_model, select_device

if TYPE_CHECKING:
    import torch

    from faceerase.model.network import FaceEraseUNet
    from faceerase.model.onnx_model import OnnxFaceModel

BACKENDS = ("auto", "torch", "onnx")
MAX_NAMED = 2
"""Models loaded by name that the cache keeps per process, the least recently used dropped first."""


class Runner(Protocol):
    """A model's network: float32 images (N, :attr:`in_channels`, H, W) in [0, 1], H and W multiples of
    :attr:`size_divisor`, in; face probabilities (N, H, W) float32 out. :func:`predict_proba` runs it on images
    of any size."""

    size_divisor: int
    in_channels: int

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """Face probabilities of a prepared batch."""
        ...


def predict_proba(runner: Runner, images: np.ndarray) -> np.ndarray:
    """Face probabilities (N, H, W) float32 of float images (N, 1 or 3, H, W) in [0, 1] of any size, the one
    preparation of every network input: RGB becomes luma for a grayscale network (a gray image is repeated for
    an RGB one), the batch is padded at the bottom and right to the runner's size divisor (mirrored, or the edge
    repeated where the padding is not smaller than the image: :func:`~faceerase.erase.geometry.padding_for`), and the
    probabilities are cropped back."""
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"expected a (N, 1 or 3, H, W) array, got shape {images.shape}")
    if images.shape[1] == 3 and runner.in_channels == 1:
        images = np.tensordot(images, np.array(LUMA_WEIGHTS, np.float32), axes=([1], [0]))[:, None]
    elif images.shape[1] == 1 and runner.in_channels == 3:
        images = np.repeat(images, 3, axis=1)
    h, w = images.shape[-2:]
    ph, pw, mode = padding_for(h, w, runner.size_divisor)
    if ph or pw:
        images = np.pad(images, ((0, 0), (0, 0), (0, ph), (0, pw)), mode="reflect" if mode == "reflect" else "edge")
    return runner(np.ascontiguousarray(images))[:, :h, :w]


class TorchRunner:
    """A :class:`~faceerase.model.network.FaceEraseUNet` as a :class:`Runner`, on the device its weights are on."""

    def __init__(self, model: FaceEraseUNet):
        self.model = model
        self.size_divisor, self.in_channels = model.size_divisor, model.in_channels

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """Face probabilities (N, H, W) of a prepared batch (N, C, H, W)."""
        import torch

        device = next(self.model.parameters()).device
        with torch.inference_mode():
            logits = self.model(torch.from_numpy(images).to(device))[:, 0]
            return torch.sigmoid(logits.float()).cpu().numpy()


@dataclass(eq=False)
class LoadedModel:
    """A model ready to run: ``model`` names the weights and holds their calibrated settings (a FaceEraseUNet, or
    on the torch-free path the OnnxFaceModel itself), ``runner`` runs them on ``backend``; ``device`` is the torch
    device of a PyTorch model (None without one)."""

    model: FaceEraseUNet | OnnxFaceModel
    runner: Runner
    backend: str
    device: torch.device | None

    @cached_property
    def weights_sha256(self) -> str | None:
        """The fingerprint of the weights (:mod:`faceerase.model.fingerprint`), computed once."""
        return self.model.weights_sha256()


def load(model: FaceEraseUNet | OnnxFaceModel | str | Path | None = None, *, revision: str | None = None,
         backend: str = "auto", device: str | torch.device | None = None, threads: int | None = None,
         execution_provider: str | None = None) -> LoadedModel:
    """The model and its runner, from the cache of this process.

    Args:
        model: a model, an OnnxFaceModel, a model folder or Hub repo id, or None (the embedded model).
        revision: the Hub revision of a repo id.
        backend: ``torch``; ``onnx`` (onnxruntime on the CPU, or ``execution_provider``: a folder's or repo's
            ``model.onnx`` when it was exported from its weights, loaded without torch; else the PyTorch model
            exported in memory, once per model object; the same probabilities within 1e-5); or ``auto``: ``onnx``
            when the network runs on the CPU and onnxruntime is installed (1.8-2.7x faster on 2 cores,
            benchmarks/results/model_speed_hub.md), else ``torch``. Without a GPU driver, ``auto`` decides without
            importing torch.
        device: the torch device (None: CUDA when available, else the CPU); the onnx backend runs on the CPU.
        threads: onnxruntime's threads (None: one per core).
        execution_provider: an onnxruntime execution provider (None: the CPU's); given, ``auto`` means ``onnx``.

    Raises:
        ValueError: an unknown backend or provider, or settings that do not go together.
        ModelLoadError: the model does not load.
    """
    from faceerase.model.onnx_model import OnnxFaceModel, check_provider

    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {BACKENDS}")
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    if execution_provider is not None:
        if backend == "torch":
            raise ValueError("execution_provider is for the onnx backend; got backend 'torch'")
        check_provider(execution_provider)
        backend = "onnx"
    if backend == "auto":
        backend = _auto_backend(model, device)
    if backend == "onnx" and device is not None and str(device) != "cpu":
        raise ValueError(f"the onnx backend runs on the CPU; got device {device!r} (use backend='torch')")
    if backend == "torch" and isinstance(model, OnnxFaceModel):
        raise ValueError("an OnnxFaceModel runs only on the onnx backend")
    if model is None or isinstance(model, (str, Path)):
        key = (str(model) if model is not None else None, revision, _files_stamp(model), backend,
               None if device is None else str(device), threads, execution_provider)
        return _CACHE.named(key, lambda: _load_named(model, revision, backend, device, threads, execution_provider))
    if isinstance(model, OnnxFaceModel):
        return LoadedModel(model, model, "onnx", None)
    if backend == "onnx":
        model = model.to("cpu").eval()
        return LoadedModel(model, _CACHE.onnx_runner(model, threads, execution_provider), "onnx", select_device("cpu"))
    torch_device = select_device(device)
    model = model.to(torch_device).eval()
    return LoadedModel(model, TorchRunner(model), "torch", torch_device)


def _load_named(model: str | Path | None, revision: str | None, backend: str, device: str | torch.device | None,
                threads: int | None, provider: str | None) -> LoadedModel:
    """Load ``model`` by name: on the onnx backend its ``model.onnx`` when up to date (no torch), else its weights
    exported in memory."""
    if backend == "onnx":
        try:
            runner = load_onnx_model(model, revision=revision, threads=threads, provider=provider)
            return LoadedModel(runner, runner, "onnx", None)
        except OnnxUnavailableError:  # none, or a stale one (which onnx_runner reports): export the weights
            net = load_model(model, revision=revision, device="cpu")
            return LoadedModel(net, _CACHE.onnx_runner(net, threads, provider), "onnx", select_device("cpu"))
    torch_device = select_device(device)
    net = load_model(model, revision=revision, device=torch_device)
    return LoadedModel(net, TorchRunner(net), "torch", torch_device)


def _files_stamp(model: str | Path | None) -> tuple | None:
    """The name, time and size of each file of a local model folder (the embedded one for None), so that a changed
    folder is loaded again; None for a Hub repo id."""
    folder = Path(model).expanduser() if model is not None else loading.DEFAULT_MODEL_DIR
    if not folder.is_dir():
        return None
    return tuple((path.name, stat.st_mtime_ns, stat.st_size) for path in sorted(folder.iterdir()) if path.is_file()
                 for stat in [path.stat()])


class _RunnerCache:
    """The loaded models of this process, under one lock (models may be loaded by concurrent threads, a web
    server's requests, and ``torch.onnx.export`` fails when two run at once).

    Two kinds of entries, by what decides their lifetime: models loaded by name (folder or repo id), the
    :data:`MAX_NAMED` most recently used; and the onnxruntime runners of in-memory PyTorch models, one per model
    object, thread count and provider, for as long as the model lives. Entries are keyed by process: a forked
    child inherits its parent's, whose onnxruntime and torch thread pools do not exist in it; it loads its own
    and never runs nor drops the inherited ones.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._named: OrderedDict[tuple, LoadedModel] = OrderedDict()
        self._onnx: weakref.WeakKeyDictionary[FaceEraseUNet, dict[tuple, OnnxFaceModel]] = \
            weakref.WeakKeyDictionary()

    def named(self, key: Hashable, make: Callable[[], LoadedModel]) -> LoadedModel:
        """The entry of ``key`` in this process, made by ``make`` when there is none."""
        key = (os.getpid(), key)
        with self._lock:
            if key not in self._named:
                self._named[key] = make()
                mine = [k for k in self._named if k[0] == key[0]]
                for old in mine[:-MAX_NAMED]:
                    del self._named[old]
            self._named.move_to_end(key)
            return self._named[key]

    def onnx_runner(self, model: FaceEraseUNet, threads: int | None, provider: str | None) -> OnnxFaceModel:
        """An onnxruntime runner for a PyTorch model: the ``model.onnx`` of the folder or repo it was loaded from
        when it was exported from these weights, else ``model`` exported now (once per model object)."""
        from faceerase.model.onnx_model import OnnxFaceModel, export_onnx

        with self._lock:
            runners = self._onnx.setdefault(model, {})
            key = (os.getpid(), threads, provider)
            if key not in runners:
                runner = None
                if model.name_or_path is not None:
                    try:
                        runner = load_onnx_model(model.name_or_path, revision=model.revision, threads=threads,
                                                 provider=provider)
                    except OnnxUnavailableError as e:
                        if e.stale:
                            warnings.warn(f"{e}; exporting the model again meanwhile", UserWarning, stacklevel=4)
                    except ModelLoadError:
                        pass  # unreadable, or the repo is unreachable: export instead
                if runner is not None and runner.weights_sha256() != model.weights_sha256():
                    runner = None  # the weights were changed in memory since loading
                runners[key] = runner or OnnxFaceModel(export_onnx(model), threads=threads, provider=provider)
            return runners[key]


_CACHE = _RunnerCache()


def _installed(package: str) -> bool:
    return importlib.util.find_spec(package) is not None


def _auto_backend(model: object, device: str | torch.device | None) -> str:
    """``onnx`` when the network will run on the CPU and onnxruntime is installed, else ``torch``; torch is
    imported only to ask whether CUDA is there, and only when a GPU driver is (:func:`_gpu_driver_present`)."""
    from faceerase.model.onnx_model import OnnxFaceModel

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
