"""Loading FaceErase models: a local folder or a Hugging Face Hub repo, with one-line errors; the files of a model
folder; the embedded default model.

A model folder holds ``config.json`` + ``model.safetensors`` (``FaceEraseUNet.save_pretrained``), optionally
``inference.json`` (:mod:`faceerase.model.settings`), ``model.onnx`` (``faceerase export-onnx``) and ``README.md`` (the
card). :func:`load_model` gives the PyTorch model; :func:`load_onnx_model` gives the ``model.onnx`` runner without
importing torch. torch is imported only by the functions that need it.
"""

from __future__ import annotations

import contextlib
import json
import socket
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from huggingface_hub import constants, hf_hub_download, try_to_load_from_cache
from huggingface_hub.errors import (EntryNotFoundError, HFValidationError, LocalEntryNotFoundError,
                                    RemoteEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError)
from huggingface_hub.utils import validate_repo_id
from safetensors import SafetensorError

from faceerase.model.fingerprint import file_weights_sha256
from faceerase.model.settings import SETTINGS_NAME, InferenceSettings, warn_defaults

if TYPE_CHECKING:
    import torch

    from faceerase.model.network import FaceEraseUNet
    from faceerase.model.onnx_model import OnnxFaceModel

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
ONNX_NAME = "model.onnx"


def _embedded_model_dir() -> Path:
    """The checkout's ``hub/`` beside the package (a checkout or an editable install), else the copy of it that a
    wheel carries as package data (``faceerase/default_model/``, see pyproject.toml)."""
    package = Path(__file__).resolve().parents[1]  # faceerase/, above this subpackage
    checkout = package.parent / "hub"
    return checkout if (checkout / CONFIG_NAME).is_file() else package / "default_model"


DEFAULT_MODEL_DIR = _embedded_model_dir()
DEFAULT_REPO_ID = "faceerase/faceerase-unet"


def is_local_source(source: str | Path) -> bool:
    """Whether ``source`` names a local file or folder rather than a Hugging Face Hub repo id (a model's or a
    dataset's): a ``Path``, an existing path, or text only a path can be: starting with ``.``, ``/``, ``~`` or
    ``\\``, ending with a separator, or with more than one ``/`` (a Hub id is ``name`` or ``owner/name``)."""
    text = str(source)
    return (isinstance(source, Path) or Path(text).expanduser().exists() or text.startswith((".", "/", "~", "\\"))
            or text.endswith(("/", "\\")) or text.count("/") > 1)


class ModelLoadError(RuntimeError):
    """A model could not be loaded; the message says why and what to do."""


class OnnxUnavailableError(ModelLoadError):
    """The model has no usable ``model.onnx``: none was published, or it was exported from other weights or by an
    older FaceErase that wrote no fingerprint of its graph (:attr:`stale`). Export it with ``faceerase export-onnx``.
    """

    def __init__(self, message: str, *, stale: bool = False):
        super().__init__(message)
        self.stale = stale


def select_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` as a torch device; None picks CUDA when available, else CPU."""
    import torch

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
    name_or_path = _default_source(name_or_path, WEIGHTS_NAME)
    if is_local_source(name_or_path):
        model = _load_local(Path(name_or_path).expanduser())
    else:
        model = _load_hub(str(name_or_path), revision)
    return model.to(select_device(device)).eval()


def load_onnx_model(name_or_path: str | Path | None = None, *, revision: str | None = None,
                    threads: int | None = None, provider: str | None = None) -> OnnxFaceModel:
    """Load the ``model.onnx`` of a model folder or Hub repo as an onnxruntime runner, without torch.

    ``name_or_path`` and ``revision`` are as for :func:`load_model` (None: the embedded model); ``threads`` and
    ``provider`` as for :class:`~faceerase.model.onnx_model.OnnxFaceModel`. The runner's
    settings are the ``inference.json`` beside the file when there is one (as :func:`load_model`'s are), else
    those embedded in the file. The weights the file holds must be those it was exported with, and when
    ``model.safetensors`` lies beside it, its fingerprint must be the one the file was exported from.

    Raises:
        OnnxUnavailableError: there is no ``model.onnx``, it was exported from other weights, or by an older
            FaceErase that wrote no fingerprint of its graph.
        ModelLoadError: the folder or repo cannot be read, the file is not a FaceErase ONNX model, or its weights
            were edited after export.
    """
    from faceerase.model.onnx_model import OnnxFaceModel

    source = _default_source(name_or_path, ONNX_NAME)
    where = str(source) + (f" (revision {revision})" if revision else "")
    offline = None if is_local_source(source) else _offline_reason()
    onnx_path = _model_file(source, ONNX_NAME, revision, offline)
    if onnx_path is None:
        raise OnnxUnavailableError(f"{where} has no {ONNX_NAME} (write one with `faceerase export-onnx {source}`)")
    try:
        runner = OnnxFaceModel(onnx_path, threads=threads, provider=provider)
    except ModelLoadError:  # an edited file, or one whose weights cannot be checked
        raise
    except Exception as e:  # onnx and onnxruntime raise their own types for unreadable files
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelLoadError(f"{onnx_path} is not a readable FaceErase ONNX model: {reason}") from None
    weights = _model_file(source, WEIGHTS_NAME, revision, offline)
    if weights is not None:
        try:
            fingerprint = file_weights_sha256(weights)
        except SafetensorError as e:
            raise ModelLoadError(f"the weights of {where} are unreadable (corrupt {WEIGHTS_NAME}?): {e}") from None
        if fingerprint != runner.weights_sha256():
            raise OnnxUnavailableError(f"{onnx_path} was not exported from these weights ({WEIGHTS_NAME} beside it); "
                                       f"refresh it with `faceerase export-onnx {source}`", stale=True)
    settings = read_settings(source, revision, offline)
    if settings is not None:
        runner.inference_settings = settings
    elif runner.inference_settings is None:
        warn_defaults(str(source))
    runner.name_or_path, runner.revision = str(source), revision
    return runner


def _default_source(name_or_path: str | Path | None, needed: str) -> str | Path:
    """``name_or_path``, or for None the embedded folder when it holds ``needed``, else the default Hub repo."""
    if name_or_path is not None:
        return name_or_path
    return DEFAULT_MODEL_DIR if (DEFAULT_MODEL_DIR / needed).is_file() else DEFAULT_REPO_ID


def read_settings(source: str | Path, revision: str | None = None, offline: str | None = None,
                  **download: Any) -> InferenceSettings | None:
    """The ``inference.json`` of a model folder or Hub repo (as :func:`_model_file` finds it), or None when it has
    none; the one place both :func:`load_model` and :func:`load_onnx_model` read it.

    Raises:
        ValueError: the file holds invalid settings. ModelLoadError: the folder or repo cannot be read.
    """
    path = _model_file(source, SETTINGS_NAME, revision, offline, **download)
    return None if path is None else InferenceSettings.from_file(path)


def _model_file(source: str | Path, name: str, revision: str | None, offline: str | None,
                **download: Any) -> Path | None:
    """Path of the file ``name`` of a model folder or Hub repo (downloaded, with ``download`` as more arguments of
    ``hf_hub_download``, or from the cache alone when ``offline`` says why the Hub cannot be reached), or None when
    it has none."""
    if is_local_source(source):
        folder = Path(source).expanduser()
        if not folder.is_dir():
            raise ModelLoadError(f"no model folder at {folder}")
        return folder / name if (folder / name).is_file() else None
    repo_id = str(source)
    with _hub_errors(repo_id, revision, offline):
        try:
            return Path(hf_hub_download(repo_id, name, revision=revision, local_files_only=offline is not None,
                                        **download))
        except (EntryNotFoundError, LocalEntryNotFoundError):
            if offline and not isinstance(try_to_load_from_cache(repo_id, CONFIG_NAME, revision=revision,
                                                                 cache_dir=download.get("cache_dir")), str):
                raise  # nothing of the repo is cached: _hub_errors says so
            return None


def _offline_reason() -> str | None:
    """Why the Hugging Face Hub cannot be reached now, so that models load from the cache at once instead of
    retrying for half a minute: ``HF_HUB_OFFLINE`` is set, or the Hub's host name does not resolve (no network).
    None when it may be reachable (also behind a proxy, which resolves the name itself)."""
    if constants.is_offline_mode():
        return "HF_HUB_OFFLINE is set"
    if {"https", "all"} & urllib.request.getproxies().keys():
        return None
    host = urlparse(constants.ENDPOINT).hostname
    try:
        socket.getaddrinfo(host, 443)
    except (OSError, UnicodeError):
        return f"{host} cannot be resolved: no network?"
    return None




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
    where = repo_id + (f" (revision {revision})" if revision else "")
    offline = _offline_reason()
    with _hub_errors(repo_id, revision, offline):
        try:
            return _from_pretrained(repo_id, where, revision=revision, local_files_only=offline is not None)
        except RemoteEntryNotFoundError:
            raise ModelLoadError(f"Hub repo {where} has no {WEIGHTS_NAME}") from None


@contextlib.contextmanager
def _hub_errors(repo_id: str, revision: str | None, offline: str | None = None) -> Iterator[None]:
    """Turn the Hub client's errors about ``repo_id`` into one-line :class:`ModelLoadError` s; ``offline`` is
    why the Hub cannot be reached (:func:`_offline_reason`), when files come from the cache alone."""
    try:
        validate_repo_id(repo_id)
    except HFValidationError:
        raise ModelLoadError(
            f"{repo_id!r} is neither a local model folder nor a valid Hugging Face Hub repo id") from None
    where = repo_id + (f" (revision {revision})" if revision else "")
    try:
        yield
    except RepositoryNotFoundError:
        raise ModelLoadError(
            f"Hub repo {repo_id} not found (or it is private or gated: log in with `hf auth login`)") from None
    except RevisionNotFoundError:
        raise ModelLoadError(f"Hub repo {repo_id} has no revision {revision!r}") from None
    except OSError as e:
        if offline and isinstance(e, LocalEntryNotFoundError):
            raise ModelLoadError(
                f"could not download {where} from the Hugging Face Hub offline ({offline}) and it is not in the "
                "Hugging Face cache: download it once with a network, or pass a local model folder") from None
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelLoadError(
            f"could not download {where} from the Hugging Face Hub ({reason}). Check the "
            "connection, set HF_HUB_OFFLINE=1 to use a cached copy, or pass a local model folder") from None


def _from_pretrained(name: str, where: str, **kwargs) -> FaceEraseUNet:
    from faceerase.model.network import FaceEraseUNet

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
