"""ONNX export of a FaceEraseUNet and an onnxruntime runner with the same ``predict_proba`` contract.

The exported graph maps float images (B, C, H, W) in [0, 1], H and W multiples of the model's size divisor (batch,
height and width dynamic), to face probabilities (B, H, W). The model's config, size divisor, input channels and
inference settings travel in the file's metadata (``faceerase.*`` keys), so a runner needs nothing else; so do
the fingerprint of the weights it was exported from and that of the tensors the graph holds
(:mod:`faceerase.model.fingerprint`), which the runner checks before it runs anything.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from faceerase.model.fingerprint import onnx_weights_sha256
from faceerase.model.loading import ModelLoadError, OnnxUnavailableError
from faceerase.model.runners import predict_proba
from faceerase.model.settings import DEFAULT_SETTINGS, InferenceSettings

if TYPE_CHECKING:
    import onnx

OPSET = 17
GRAPH_FINGERPRINT = "faceerase.onnx_weights_sha256"
"""Metadata key of :func:`~faceerase.model.fingerprint.onnx_weights_sha256` of the exported graph."""
CPU_PROVIDER = "CPUExecutionProvider"


def execution_providers() -> list[str]:
    """The onnxruntime execution providers of this installation (:data:`CPU_PROVIDER` among them); none without
    onnxruntime."""
    try:
        import onnxruntime
    except ImportError:
        return []
    return onnxruntime.get_available_providers()


def check_provider(provider: str) -> None:
    """Raise :class:`ValueError`, naming the available ones, unless ``provider`` is one of
    :func:`execution_providers`."""
    available = execution_providers()
    if provider not in available:
        raise ValueError(f"unknown execution provider {provider!r}; available: "
                         f"{', '.join(available) or 'none (onnxruntime is not installed)'}")


class OnnxExportError(RuntimeError):
    """The model cannot be exported to ONNX; the message says which operation failed."""


def export_onnx(model, path: str | Path | None = None, *, opset: int = OPSET) -> bytes:
    """Export ``model`` (a :class:`~faceerase.model.network.FaceEraseUNet`) to ONNX; returns the file's bytes and writes
    them to ``path`` when given.

    Raises:
        OnnxExportError: an operation of the model has no ONNX equivalent at ``opset``.
    """
    import onnx
    import torch

    class Probabilities(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, images):
            return torch.sigmoid(self.net(images))[:, 0]

    model = model.eval()
    d = model.size_divisor
    example = torch.rand(1, model.in_channels, 2 * d, 3 * d)
    buffer = io.BytesIO()
    try:  # the exporter prints graphs and tracer warnings: keep them off the user's terminal
        with _stdout_silenced(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(Probabilities(model).eval(), (example,), buffer, input_names=["images"],
                              output_names=["probabilities"], opset_version=opset, dynamo=False,
                              dynamic_axes={"images": {0: "batch", 2: "height", 3: "width"},
                                            "probabilities": {0: "batch", 1: "height", 2: "width"}})
    except Exception as e:  # torch raises several unrelated types for unsupported operators
        reason = next((line.strip() for line in str(e).splitlines() if line.strip()), type(e).__name__)
        raise OnnxExportError(f"cannot export this model to ONNX opset {opset}: {reason}") from None
    proto = onnx.load_from_string(buffer.getvalue())
    metadata = {"faceerase.config": json.dumps(model.hub_config, default=list),
                "faceerase.weights_sha256": model.weights_sha256(),
                GRAPH_FINGERPRINT: onnx_weights_sha256(proto),
                "faceerase.size_divisor": str(d), "faceerase.in_channels": str(model.in_channels)}
    if model.inference_settings is not None:
        metadata["faceerase.inference_settings"] = json.dumps(asdict(model.inference_settings))
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    data = proto.SerializeToString()
    if path is not None:
        Path(path).write_bytes(data)
    return data


@contextlib.contextmanager
def _stdout_silenced():
    """Silence file descriptor 1 (the exporter's C++ side prints whole graphs when it fails)."""
    sys.stdout.flush()
    saved, devnull = os.dup(1), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


class OnnxFaceModel:
    """Runs an exported FaceErase model with onnxruntime; needs neither torch nor the weights file.

    It is a :class:`~faceerase.model.runners.Runner` and offers what :class:`~faceerase.erase.pipeline.FaceEraser` uses
    of a model (:attr:`settings`, :meth:`weights_sha256`, :attr:`name_or_path`), so an eraser can run on it alone.

    Args:
        source: path of a ``.onnx`` file written by :func:`export_onnx`, or its bytes.
        threads: intra-op threads (None: onnxruntime's default, one per core).
        provider: the onnxruntime execution provider, one of :func:`execution_providers` (None: the CPU's); the
            CPU runs what it does not support.

    Raises:
        ValueError: ``source`` is not a FaceErase ONNX model, or ``provider`` is not available.
        OnnxUnavailableError: the file has no fingerprint of its graph (an older export), so its
            weights cannot be checked; export it again.
        ModelLoadError: its weights are not those it was exported with (the file was edited).
    """

    #: The folder or Hub repo id (and revision) :func:`~faceerase.model.loading.load_onnx_model` loaded it from.
    name_or_path: str | None = None
    revision: str | None = None

    def __init__(self, source: str | Path | bytes, *, threads: int | None = None, provider: str | None = None):
        import onnx
        import onnxruntime as ort

        provider = provider or CPU_PROVIDER
        check_provider(provider)

        data = source if isinstance(source, bytes) else Path(source).read_bytes()  # checked and run: one read
        proto = onnx.load_from_string(data)
        meta = {entry.key: entry.value for entry in proto.metadata_props}
        if "faceerase.size_divisor" not in meta:
            raise ValueError("not a FaceErase ONNX model (no faceerase.size_divisor metadata)")
        _check_weights(proto, meta, "the ONNX model" if isinstance(source, bytes) else str(source))
        options = ort.SessionOptions()
        # Idle intra-op threads sleep instead of spinning: spinning keeps burning the cores that the rest of the
        # pipeline (and a browser or other processes on the machine) need between runs. Webcam frames at 320 px:
        # 36 instead of 55 ms of CPU a frame for 2 ms more wall time; 1024-px photos: the same within noise.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(data, options, providers=list(dict.fromkeys([provider, CPU_PROVIDER])))
        self.size_divisor = int(meta["faceerase.size_divisor"])
        self.in_channels = int(meta["faceerase.in_channels"])
        self._weights_sha256 = meta.get("faceerase.weights_sha256")
        settings = meta.get("faceerase.inference_settings")
        self.inference_settings = InferenceSettings(**json.loads(settings)) if settings else None

    @property
    def settings(self) -> InferenceSettings:
        """:attr:`inference_settings`, or :data:`~faceerase.model.settings.DEFAULT_SETTINGS` when the file has none."""
        return self.inference_settings or DEFAULT_SETTINGS

    def weights_sha256(self) -> str | None:
        """Fingerprint of the weights it was exported from (:mod:`faceerase.model.fingerprint`), from its metadata."""
        return self._weights_sha256

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """Face probabilities (B, H, W) of a prepared batch (B, :attr:`in_channels`, H, W), H and W multiples of
        :attr:`size_divisor` (the :class:`~faceerase.model.runners.Runner` protocol)."""
        return self.session.run(None, {"images": images})[0]

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        """Face probabilities (B, H, W) for float32 images (B, 1 or 3, H, W) in [0, 1] of any size, prepared as
        for every runner (:func:`faceerase.model.runners.predict_proba`)."""
        return predict_proba(self, images)


def _check_weights(proto: onnx.ModelProto, meta: dict[str, str], name: str) -> None:
    """Raise unless the tensors of ``proto`` (the model ``name``) have the fingerprint its export wrote."""
    expected = meta.get(GRAPH_FINGERPRINT)
    if expected is None:
        raise OnnxUnavailableError(f"{name} carries no fingerprint of its own weights (an older export), so they "
                                   f"cannot be checked; export it again with `faceerase export-onnx`", stale=True)
    if onnx_weights_sha256(proto) != expected:
        raise ModelLoadError(f"{name} was edited after export: its weights do not match the fingerprint written "
                             f"at export; do not use it, export the model again with `faceerase export-onnx`")
