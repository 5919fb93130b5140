"""Loading FaceErase models: a local folder or a Hugging Face Hub repo, with one-line errors; the files of a model
folder; the embedded default model.

A model folder holds ``config.json`` + ``model.safetensors`` (``FaceEraseUNet.save_pretrained``), optionally
``inference.json`` (:mod:`faceerase.settings`), ``model.onnx`` (``faceerase export-onnx``) and ``README.md`` (the card).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from huggingface_hub import hf_hub_download
from huggingface_hub.errors import (HFValidationError, RemoteEntryNotFoundError, RepositoryNotFoundError,
                                    RevisionNotFoundError)
from huggingface_hub.utils import validate_repo_id
from safetensors import SafetensorError

from faceerase.model import FaceEraseUNet

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent.parent / "hub"
DEFAULT_REPO_ID = "faceerase/faceerase-unet"
WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
ONNX_NAME = "model.onnx"


class ModelLoadError(RuntimeError):
    """A model could not be loaded; the message says why and what to do."""


def select_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` as a torch device; None picks CUDA when available, else CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def load_model(
    name_or_path: str | Path | None = None,
    *,
    revision: str | None = None,
    device: str | torch.device | None = None,
) -> FaceEraseUNet:
    """Load a :class:`FaceEraseUNet` in eval mode on ``device`` (see :func:`select_device`).

    ``name_or_path`` is a local folder holding ``config.json`` and ``model.safetensors`` (as
    written by ``save_pretrained``) or a Hugging Face Hub repo id (``revision`` selects a branch,
    tag or commit). None uses :data:`DEFAULT_MODEL_DIR` when it holds weights, else
    :data:`DEFAULT_REPO_ID`. Raises :class:`ModelLoadError` with a one-line reason.
    """
    if name_or_path is None:
        has_weights = (DEFAULT_MODEL_DIR / WEIGHTS_NAME).is_file()
        name_or_path = DEFAULT_MODEL_DIR if has_weights else DEFAULT_REPO_ID
    if _is_local(name_or_path):
        model = _load_local(Path(name_or_path).expanduser())
    else:
        model = _load_hub(str(name_or_path), revision)
    return model.to(select_device(device)).eval()


def _is_local(name_or_path: str | Path) -> bool:
    text = str(name_or_path)
    return (isinstance(name_or_path, Path) or Path(text).exists()
            or text.startswith((".", "/", "~", "\\")) or text.endswith(("/", "\\")))


def _load_local(folder: Path) -> FaceEraseUNet:
    if not folder.is_dir():
        raise ModelLoadError(f"no model folder at {folder}")
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        if not (folder / name).is_file():
            raise ModelLoadError(
                f"{folder} has no {name}; a model folder needs {CONFIG_NAME} and {WEIGHTS_NAME} "
                "(as written by FaceEraseUNet.save_pretrained)")
    try:
        json.loads((folder / CONFIG_NAME).read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise ModelLoadError(f"{folder / CONFIG_NAME} is not valid JSON: {e}") from None
    return _from_pretrained(str(folder), str(folder))


def _load_hub(repo_id: str, revision: str | None) -> FaceEraseUNet:
    try:
        validate_repo_id(repo_id)
    except HFValidationError:
        raise ModelLoadError(
            f"{repo_id!r} is neither a local model folder nor a valid Hugging Face Hub repo id") from None
    where = repo_id + (f" (revision {revision})" if revision else "")
    try:
        return _from_pretrained(repo_id, where, revision=revision)
    except RepositoryNotFoundError:
        raise ModelLoadError(
            f"Hub repo {repo_id} not found (or it is private or gated: log in with `hf auth login`)") from None
    except RevisionNotFoundError:
        raise ModelLoadError(f"Hub repo {repo_id} has no revision {revision!r}") from None
    except RemoteEntryNotFoundError:
        raise ModelLoadError(f"Hub repo {where} has no {WEIGHTS_NAME}") from None
    except OSError as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelLoadError(
            f"could not download {where} from the Hugging Face Hub ({reason}). Check the "
            "connection, set HF_HUB_OFFLINE=1 to use a cached copy, or pass a local model folder") from None


def _from_pretrained(name: str, where: str, **kwargs) -> FaceEraseUNet:
    try:
        return FaceEraseUNet.from_pretrained(name, strict=True, **kwargs)
    except SafetensorError as e:
        raise ModelLoadError(f"the weights of {where} are unreadable (corrupt {WEIGHTS_NAME}?): {e}") from None
    except (TypeError, ValueError) as e:
        raise ModelLoadError(f"the config of {where} is invalid: {e}") from None
    except RuntimeError as e:
        text = str(e).strip() or type(e).__name__
        if "Error(s) in loading state_dict" not in text:  # not a mismatch: say what failed
            raise ModelLoadError(f"could not load {where}: {text.splitlines()[0]}") from None
        detail = next((line.strip() for line in text.splitlines()[1:] if line.strip()), text)
        raise ModelLoadError(
            f"the weights of {where} do not match its config ({detail.rstrip('.')}); "
            f"{CONFIG_NAME} and {WEIGHTS_NAME} come from different models") from None


def onnx_file(model: FaceEraseUNet) -> Path | None:
    """The ``model.onnx`` shipped beside the model's weights, if any."""
    source = model.name_or_path
    if source is None:
        return None
    if Path(source).is_dir():
        path = Path(source) / ONNX_NAME
        return path if path.is_file() else None
    try:
        return Path(hf_hub_download(source, ONNX_NAME, revision=model.revision))
    except (OSError, ValueError, RemoteEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError):
        return None  # not published, or not reachable: export instead
