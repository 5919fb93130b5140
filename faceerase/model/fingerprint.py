"""One fingerprint of a model's weights, computed the same way with or without torch.

SHA-256 over the tensors in name order: each name, then the tensor's raw bytes. The CLI's audit report records it,
and an ONNX export carries it, so the torch-free path can tell whether a ``model.onnx`` still matches the
``model.safetensors`` beside it by reading that file with numpy alone. The export folds and renames tensors
(batch norms into convolutions), so it also carries the same fingerprint of the tensors its graph holds
(:func:`onnx_weights_sha256`), which loading recomputes: an edited weight is never run.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import onnx


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


def onnx_weights_sha256(model: onnx.ModelProto) -> str:
    """:func:`weights_sha256` of the tensors an ONNX graph holds: its initializers by name, and the tensor
    attributes of its nodes (constants such as the input normalization) as ``<outputs>:<attribute>``.

    Raises:
        ValueError: two of these tensors have one name (no export writes that; one of them would go unchecked).
    """
    from onnx import AttributeProto, numpy_helper

    named = [(tensor.name, tensor) for tensor in model.graph.initializer]
    named += [(f"{','.join(node.output)}:{attribute.name}", attribute.t) for node in model.graph.node
              for attribute in node.attribute if attribute.type == AttributeProto.TENSOR]
    tensors = {name: numpy_helper.to_array(tensor) for name, tensor in named}
    if len(tensors) != len(named):
        raise ValueError("the graph gives two tensors the same name")
    return weights_sha256(tensors)
