"""One fingerprint of a model's weights, computed the same way with or without torch.

SHA-256 over the tensors in name order: each name, then the tensor's raw bytes. The CLI's audit report records it,
and an ONNX export carries it, so the torch-free path can tell whether a ``model.onnx`` still matches the
``model.safetensors`` beside it by reading that file with numpy alone.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

import numpy as np


def weights_sha256(tensors: Mapping[str, np.ndarray]) -> str:
    """SHA-256 of named arrays (a state dict as numpy), independent of their order and of the file format."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(tensors[name]).tobytes())
    return digest.hexdigest()


def file_weights_sha256(path: str | Path) -> str:
    """:func:`weights_sha256` of a ``.safetensors`` file's tensors, read with numpy (no torch needed)."""
    from safetensors.numpy import load_file

    return weights_sha256(load_file(str(path)))
