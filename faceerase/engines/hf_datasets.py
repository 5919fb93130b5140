"""Anonymize the images of a Hugging Face ``datasets.Dataset``: every face erased, every row audited, no row lost.

:func:`anonymize_dataset` runs :class:`~faceerase.erase.pipeline.FaceEraser` over an ``Image`` column with
``Dataset.map`` and adds the audit columns of :data:`AUDIT_COLUMNS`. Privacy comes first:

- A row whose image cannot be erased (corrupt, truncated, empty, over the pixel limit, missing, of several frames
  as an animated GIF or a multi-page TIFF, or failing in the network) keeps no image: its image becomes None, its
  status ``failed`` and its error says why (a multi-frame image's is the error ``faceerase anonymize`` gives its
  file). The row itself stays, with every other column untouched, so the output has as many rows, in the same
  order, as the input.
- Output images are re-encoded from the anonymized pixels, RGB, with no metadata (no EXIF, GPS, XMP, ICC or
  thumbnails; the EXIF orientation is applied to the pixels): JPEG stays JPEG (quality 95, as ``faceerase
  anonymize`` writes), every other format becomes PNG. Their stored ``path`` is None: the original file's path can
  carry names, and an image stored as a path to a local file would still be the original, un-erased file.

:func:`open_source` (with the files of a folder left out of the dataset, and why) or :func:`load_source`, and
:func:`save_result` read and write what ``faceerase anonymize-dataset`` works on.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import datasets
import huggingface_hub
import numpy as np
from datasets.packaged_modules.imagefolder.imagefolder import ImageFolder

from faceerase.engines.files import ANONYMIZED, Plan, Skip, file_kind, scan_folder
from faceerase.erase.masks import Region
from faceerase.erase.pipeline import EraseResult, EraserSpec, FaceEraser
from faceerase.media.images import (IMAGE_EXTENSIONS, InvalidImageError, check_single_frame, default_max_pixels,
                                    encode_image, load_image)
from faceerase.media.outputs import atomic_directory, check_folder_can_be_created, remove_stale_temp_files
from faceerase.model.loading import is_local_source
from faceerase.model.settings import NO_IMAGE

logger = logging.getLogger(__name__)

REGIONS = "faceerase_regions"
"""Audit column: the erased face regions, each ``{x, y, w, h, area, score, mean_score}`` (box in pixels)."""
THRESHOLD = "faceerase_threshold"
"""Audit column: the probability threshold the row's mask was cut at (None when the row failed)."""
MODEL = "faceerase_model"
"""Audit column: the model's folder or Hub repo id (its ``name_or_path``)."""
WEIGHTS = "faceerase_weights_sha256"
"""Audit column: the fingerprint of the model's weights (``FaceEraseUNet.weights_sha256``)."""
STATUS = "faceerase_status"
"""Audit column: :data:`ANONYMIZED` or :data:`FAILED`."""
ERROR = "faceerase_error"
"""Audit column: why the row failed (None when it was anonymized)."""
AUDIT_COLUMNS = (REGIONS, THRESHOLD, MODEL, WEIGHTS, STATUS, ERROR)
FAILED = "failed"

# Rows per Arrow record batch written by the map: encoded images are large (datasets writes image datasets in
# row groups of 100 too).
_WRITER_BATCH_SIZE = 100
# What one image can raise while it is erased (InvalidImageError is a ValueError); anything else is a bug.
_ROW_ERRORS = (ValueError, OSError, RuntimeError)


class DatasetError(ValueError):
    """A dataset, column or source that cannot be anonymized as given; the message says why."""


class PushError(RuntimeError):
    """The anonymized dataset was saved but could not be pushed to the Hub; the message says why."""


def audit_features() -> datasets.Features:
    """The features of the audit columns :func:`anonymize_dataset` adds."""
    region = {"x": datasets.Value("int32"), "y": datasets.Value("int32"), "w": datasets.Value("int32"),
              "h": datasets.Value("int32"), "area": datasets.Value("int64"), "score": datasets.Value("float32"),
              "mean_score": datasets.Value("float32")}
    return datasets.Features({REGIONS: datasets.List(region), THRESHOLD: datasets.Value("float32"),
                              MODEL: datasets.Value("string"), WEIGHTS: datasets.Value("string"),
                              STATUS: datasets.Value("string"), ERROR: datasets.Value("string")})


def anonymize_dataset(
    dataset: datasets.Dataset | datasets.DatasetDict,
    image_column: str = "image",
    *,
    model: str | Path | None = None,
    revision: str | None = None,
    max_pixels: int | None = None,
    num_proc: int | None = None,
    **eraser_options: Any,
) -> datasets.Dataset | datasets.DatasetDict:
    """Erase the faces in ``image_column`` of every row; a :class:`~datasets.DatasetDict` has each split erased.

    Args:
        dataset: a dataset (or dataset dict) whose ``image_column`` is an ``Image`` feature.
        model: a model folder or Hub repo id, as :class:`~faceerase.erase.pipeline.FaceEraser` loads it (None: the
            embedded model). Each worker process loads it once (see ``num_proc``), so it is a name, not a model.
        revision: Hub revision of ``model``.
        max_pixels: images of more pixels fail before they are decoded (default:
            :func:`~faceerase.media.images.default_max_pixels`).
        num_proc: worker processes of ``Dataset.map`` (None: this process). Each worker loads the model once,
            keeps it for all its batches, runs torch on one thread and onnxruntime on its share of the cores
            (``threads`` overrides it).
        **eraser_options: :class:`~faceerase.erase.pipeline.FaceEraser`'s keyword arguments: ``settings`` (an
            :class:`~faceerase.model.settings.EraseSettings`) and the fields that override it (``input_size``,
            ``threshold_mode``, ``method``, ``dilation``...), ``device``, ``backend``, ``batch_size``...; settings
            left out come from the model's ``inference.json``. ``batch_size`` (default 8) is also the number of
            rows per map batch.

    Returns:
        A new dataset with the same rows in the same order, the other columns untouched, the images anonymized
        (RGB, re-encoded without metadata or path; None for failed rows) and the :data:`AUDIT_COLUMNS` added.
        The counts of anonymized and failed rows are logged (logger ``faceerase.engines.hf_datasets``);
        :func:`status_counts` returns them.

    Raises:
        DatasetError: the column is missing, is not an ``Image`` feature, or the audit columns already exist; the
            method is ``none`` (no image to write).
        ModelLoadError: the model does not load. ValueError or TypeError: an invalid eraser option.
    """
    if isinstance(dataset, datasets.DatasetDict):
        splits = dict(dataset)
    elif isinstance(dataset, datasets.Dataset):
        splits = {str(dataset.split) if dataset.split is not None else "dataset": dataset}
    else:
        streaming = isinstance(dataset, (datasets.IterableDataset, datasets.IterableDatasetDict))
        raise DatasetError(f"expected a datasets.Dataset or DatasetDict, got {type(dataset).__name__}"
                           + (" (streaming is not supported: load it without streaming=True)" * streaming))
    for name, split in splits.items():
        _check_columns(split, image_column, f"split {name!r}" if isinstance(dataset, datasets.DatasetDict)
                       else "the dataset")
    row_eraser = _RowEraser.create(image_column, model, revision, max_pixels, num_proc, eraser_options)
    done = {name: row_eraser.run(split, name) for name, split in splits.items()}
    return datasets.DatasetDict(done) if isinstance(dataset, datasets.DatasetDict) else done.popitem()[1]


def status_counts(dataset: datasets.Dataset) -> dict[str, int]:
    """How many rows of an anonymized dataset are :data:`ANONYMIZED` and :data:`FAILED`."""
    if STATUS not in dataset.column_names:
        raise DatasetError(f"the dataset has no {STATUS!r} column: it was not made by anonymize_dataset")
    counts = Counter(dataset.select_columns(STATUS)[STATUS])
    return {ANONYMIZED: counts[ANONYMIZED], FAILED: counts[FAILED]}


def _check_columns(dataset: datasets.Dataset, image_column: str, where: str) -> None:
    if image_column not in dataset.column_names:
        raise DatasetError(f"{where} has no column {image_column!r}; its columns are {dataset.column_names} "
                           "(choose the image column with image_column=)")
    feature = dataset.features[image_column]
    if not isinstance(feature, datasets.Image):
        raise DatasetError(f"column {image_column!r} of {where} is {feature}, not an Image feature; cast it first, "
                           f"e.g. dataset.cast_column({image_column!r}, datasets.Image()) for paths or bytes")
    present = [name for name in AUDIT_COLUMNS if name in dataset.column_names]
    if present:
        raise DatasetError(f"{where} already has the audit column(s) {present}: it was anonymized before; "
                           "remove them (dataset.remove_columns) to anonymize it again")


# --------------------------------------------------------------------------- workers

# The processes that called anonymize_dataset; any other process running the map is one of its workers.
_CALLER_PIDS: set[int] = set()


def _eraser_for(spec: EraserSpec) -> FaceEraser:
    """The eraser of ``spec`` in this process; its model loads on the first batch a process sees, then comes from
    the cache of loaded models (:func:`faceerase.model.runners.load`, which keeps a process's models apart from those
    a forked worker inherits)."""
    if os.getpid() not in _CALLER_PIDS and "torch" in sys.modules:
        # A worker. Forked after its parent ran torch, it would hang in its first multi-threaded torch operation
        # (GNU OpenMP's thread pool does not survive a fork); one thread each also keeps the workers from
        # competing for the cores.
        sys.modules["torch"].set_num_threads(1)
    return spec.build()


@dataclass(frozen=True)
class _RowEraser:
    """The map function: a batch of ``Image(decode=False)`` values in, anonymized images and audit columns out.
    Small to pickle, and part of ``map``'s cache fingerprint (the weights' fingerprint in ``spec`` makes a changed
    model folder miss the cache)."""

    spec: EraserSpec
    model_id: str
    image_column: str
    max_pixels: int
    num_proc: int | None

    @classmethod
    def create(cls, image_column: str, model: str | Path | None, revision: str | None, max_pixels: int | None,
               num_proc: int | None, options: dict[str, Any]) -> _RowEraser:
        """Build the eraser here once, to fail early and fingerprint the model's weights, which every worker's
        eraser must have. In this process (``num_proc`` None or 0) the map runs on its model; otherwise it is
        built on the CPU only to check the options, and each worker builds its own (a forked worker cannot use
        CUDA once its parent has)."""
        if model is not None and not isinstance(model, (str, Path)):
            raise TypeError(f"model must be a model folder or Hub repo id (workers load it themselves), "
                            f"got {type(model).__name__}")
        _CALLER_PIDS.add(os.getpid())
        spec = EraserSpec.of(model, revision=revision, **options)
        if spec.settings.method == NO_IMAGE:
            raise DatasetError(f"the method {NO_IMAGE} writes no images: choose another method for a dataset")
        in_process = not num_proc
        if not in_process and spec.threads is None:  # the workers share the cores
            spec = replace(spec, threads=max(1, (os.cpu_count() or 1) // num_proc))
        eraser = (spec if in_process else replace(spec, device="cpu")).build()
        limit = default_max_pixels() if max_pixels is None else max_pixels
        return cls(spec.pinned_to(eraser), str(eraser.identity["id"]), image_column, limit, num_proc)

    def run(self, dataset: datasets.Dataset, name: str) -> datasets.Dataset:
        """Anonymize ``dataset`` (its columns already checked) and log its counts; ``name`` names it in logs."""
        features = datasets.Features({**dataset.features, **audit_features()})
        result = (dataset.with_format(None)
                  .cast_column(self.image_column, datasets.Image(decode=False))
                  .map(self, input_columns=self.image_column, batched=True, batch_size=self.spec.batch_size,
                       features=features, num_proc=self.num_proc, writer_batch_size=_WRITER_BATCH_SIZE,
                       desc=f"Erasing faces ({name})"))
        counts = status_counts(result)
        log = logger.warning if counts[FAILED] else logger.info
        log("%s: %d rows, %d anonymized, %d failed (image set to None, reason in %s)",
            name, len(result), counts[ANONYMIZED], counts[FAILED], ERROR)
        return result

    def __call__(self, values: list[dict[str, Any] | None]) -> dict[str, list]:
        decoded = [self._decode(value) for value in values]
        arrays = [item for item in decoded if isinstance(item, np.ndarray)]
        erased = iter(_erase(_eraser_for(self.spec), arrays) if arrays else [])
        out: dict[str, list] = {self.image_column: [], **{name: [] for name in AUDIT_COLUMNS}}
        for value, item in zip(values, decoded, strict=True):
            outcome = next(erased) if isinstance(item, np.ndarray) else item
            if isinstance(outcome, EraseResult):
                fmt = "JPEG" if _is_jpeg(value) else "PNG"
                image = {"bytes": encode_image(outcome.anonymized, fmt), "path": None}
                row = {REGIONS: [_region(r) for r in outcome.regions], THRESHOLD: float(outcome.threshold),
                       STATUS: ANONYMIZED, ERROR: None}
            else:
                image, row = None, {REGIONS: None, THRESHOLD: None, STATUS: FAILED, ERROR: outcome}
            row.update({self.image_column: image, MODEL: self.model_id, WEIGHTS: self.spec.weights_sha256})
            for name, column in out.items():
                column.append(row[name])
        return out

    def _decode(self, value: dict[str, Any] | None) -> np.ndarray | str:
        """The row's RGB pixels, or why there are none."""
        if value is None or (value.get("bytes") is None and value.get("path") is None):
            return "the row has no image"
        source = bytes(value["bytes"]) if value.get("bytes") is not None else Path(value["path"])
        try:
            check_single_frame(source)  # as faceerase anonymize fails the file
            return load_image(source, max_pixels=self.max_pixels)
        except InvalidImageError as error:
            return str(error)


def _erase(eraser: FaceEraser, arrays: list[np.ndarray]) -> list[EraseResult | str]:
    """Each image erased, or why it could not be: one image failing the batch's network pass is found by
    erasing the batch's images one by one."""
    try:
        return list(eraser.erase_batch(arrays))
    except _ROW_ERRORS:
        results: list[EraseResult | str] = []
        for array in arrays:
            try:
                results.append(eraser(array))
            except _ROW_ERRORS as error:
                results.append(str(error) or type(error).__name__)
        return results


def _is_jpeg(value: dict[str, Any]) -> bool:
    """Whether the stored image (bytes, else the file at its path) is a JPEG."""
    if value.get("bytes") is not None:
        head = bytes(value["bytes"][:3])
    else:
        with open(value["path"], "rb") as handle:
            head = handle.read(3)
    return head == b"\xff\xd8\xff"


def _region(region: Region) -> dict[str, Any]:
    x, y, w, h = region.box
    return {"x": x, "y": y, "w": w, "h": h, "area": region.area, "score": region.score,
            "mean_score": region.mean_score}


# --------------------------------------------------------------------------- sources and results

VIDEO_LEFT_OUT = "a video: the dataset holds images only; anonymize videos with faceerase anonymize"
"""Why a video in a folder source fails: it becomes no row."""
IMAGEFOLDER_LEFT_OUT = ("not read by the imagefolder builder: outside the split folders, or missing from the "
                        "metadata file")
"""Why an image of a folder source that the ``imagefolder`` builder placed in no split fails."""
OTHER_SPLIT = "in another split"
"""Why an image of a folder source that belongs to a split other than the one anonymized is skipped."""
# Files the imagefolder builder reads as the rows' extra columns: used, so not left out.
_METADATA_FILES = frozenset(ImageFolder.METADATA_FILENAMES)


@dataclass
class Source:
    """What ``faceerase anonymize-dataset SOURCE`` anonymizes: one split, and the files of a folder source left
    out of it, as a plan without jobs whose skips and problems (failed) say why, as ``faceerase anonymize``
    accounts for its inputs (empty for a saved or Hub dataset)."""

    dataset: datasets.Dataset
    left_out: Plan


def open_source(source: str | Path, split: str | None = None, *, config: str | None = None,
                revision: str | None = None, cache_dir: str | Path | None = None) -> Source:
    """Open one split of what ``faceerase anonymize-dataset SOURCE`` anonymizes.

    ``source`` is a folder written by ``save_to_disk`` (a dataset or a dataset dict), any other local folder, or a
    Hugging Face Hub dataset id (``config`` and ``revision`` select its configuration and revision). ``split`` may
    be left out when the source has a single split.

    A folder is seen as ``faceerase anonymize`` sees it (:func:`faceerase.engines.files.scan_folder`): its images become
    the rows, read with the ``imagefolder`` builder (split subfolders, and a ``metadata.csv`` or ``.jsonl`` for
    extra columns); every other entry is left out, skipped or failed with why: hidden entries and other file
    types are skipped, HEIC and other unreadable images, videos and images the builder placed in no split fail,
    images of other splits are skipped.

    ``cache_dir`` is where loading copies the originals: the ``imagefolder`` builder's Arrow tables, a Hub
    dataset's downloaded files (``cache_dir/hub``) and its Arrow copy. Give a folder you remove once the split is
    anonymized (the command does); None leaves them in the ``datasets`` and Hub caches.

    Raises:
        DatasetError: the source does not exist, cannot be read, holds no image, or has no such split (the message
            says which splits it has).
    """
    path = Path(source).expanduser()
    if is_local_source(source):
        if not path.exists():
            raise DatasetError(f"no such folder: {path}")
        if config is not None or revision is not None:
            raise DatasetError(f"config and revision select a Hub dataset's files; {path} is a local folder")
        if not path.is_dir():
            raise DatasetError(f"{path} is a file; SOURCE is a Hub dataset id, a folder written by save_to_disk "
                               "or a folder of images")
        if (path / datasets.config.DATASETDICT_JSON_FILENAME).is_file() or \
                (path / datasets.config.DATASET_STATE_JSON_FILENAME).is_file():
            return Source(_saved_split(path, split), Plan())
        return _folder_source(path, split, cache_dir)
    return Source(_hub_split(str(source), split, config, revision, cache_dir), Plan())


def load_source(source: str | Path, split: str | None = None, *, config: str | None = None,
                revision: str | None = None, cache_dir: str | Path | None = None) -> datasets.Dataset:
    """The split of :func:`open_source` alone."""
    return open_source(source, split, config=config, revision=revision, cache_dir=cache_dir).dataset


def _folder_source(path: Path, split: str | None, cache_dir: str | Path | None) -> Source:
    """The rows of the images the scan of ``path`` found, as the ``imagefolder`` builder reads them into
    ``split``; every other entry of ``path`` in ``left_out``."""
    media, left_out = scan_folder(path)
    left_out.skips = [skip for skip in left_out.skips if skip.path.name not in _METADATA_FILES]
    left_out.problems += [(file, VIDEO_LEFT_OUT) for file in media if file_kind(file) == "video"]
    images = {os.path.abspath(file): file for file in media if file_kind(file) == "image"}
    if not images:
        raise DatasetError(f"cannot read {path} as a folder of images: it holds no image file "
                           f"({', '.join(sorted(IMAGE_EXTENSIONS))})")
    try:
        splits = datasets.load_dataset("imagefolder", data_dir=str(path),
                                       cache_dir=None if cache_dir is None else str(cache_dir))
    except (OSError, ValueError) as error:
        raise DatasetError(f"cannot read {path} as a folder of images: {error}") from None
    chosen = _pick_split(list(splits), split, str(path))
    rows: list[int] = []
    for name, part in splits.items():
        stored = part.select_columns("image").cast_column("image", datasets.Image(decode=False))["image"]
        for index, value in enumerate(stored):
            file = images.pop(os.path.abspath(value["path"]), None)
            if file is None:  # a file the scan left out already (an icon, say): no row
                continue
            if name == chosen:
                rows.append(index)
            else:
                left_out.skips.append(Skip(file, OTHER_SPLIT, f"({name!r})"))
    left_out.problems += [(file, IMAGEFOLDER_LEFT_OUT) for file in images.values()]
    dataset = splits[chosen]
    return Source(dataset if len(rows) == len(dataset) else dataset.select(rows), left_out)


def _hub_split(source: str, split: str | None, config: str | None, revision: str | None,
               cache_dir: str | Path | None) -> datasets.Dataset:
    where = repr(source) + (f" (config {config!r})" if config else "")
    cache = None if cache_dir is None else str(cache_dir)
    try:
        with _hub_downloads_in(cache_dir):
            names = [split] if split is not None else \
                datasets.get_dataset_split_names(source, config, revision=revision, cache_dir=cache)
            if len(names) == 1:
                return datasets.load_dataset(source, config, split=names[0], revision=revision, cache_dir=cache)
    except (OSError, ValueError) as error:
        raise DatasetError(f"cannot load the Hub dataset {where} (and it is no local folder): {error}") from None
    raise DatasetError(f"the Hub dataset {where} has the splits {names}; choose one with split= (--split)")


@contextlib.contextmanager
def _hub_downloads_in(cache_dir: str | Path | None) -> Iterator[None]:
    """Within the block, downloads from the Hub that name no cache folder (``datasets`` names none) go to
    ``cache_dir/hub`` instead of the Hub cache (``HF_HUB_CACHE``); None leaves them there."""
    if cache_dir is None:
        yield
        return
    default = huggingface_hub.constants.HF_HUB_CACHE
    huggingface_hub.constants.HF_HUB_CACHE = str(Path(cache_dir) / "hub")
    try:
        yield
    finally:
        huggingface_hub.constants.HF_HUB_CACHE = default


def _saved_split(path: Path, split: str | None) -> datasets.Dataset:
    try:
        loaded = datasets.load_from_disk(str(path))
    except (OSError, ValueError) as error:
        raise DatasetError(f"cannot read the saved dataset {path}: {error}") from None
    if isinstance(loaded, datasets.DatasetDict):
        return loaded[_pick_split(list(loaded), split, str(path))]
    if split is not None and loaded.split is not None and str(loaded.split) != split:
        raise DatasetError(f"{path} holds the split {str(loaded.split)!r}, not {split!r}")
    return loaded


def _pick_split(names: list[str], split: str | None, where: str) -> str:
    """``split``, or the only one of ``names`` when it is None."""
    if split is None:
        if len(names) != 1:
            raise DatasetError(f"{where} has the splits {names}; choose one with split= (--split)")
        return names[0]
    if split not in names:
        raise DatasetError(f"{where} has no split {split!r}; its splits are {names}")
    return split


def check_output(output: str | Path) -> Path:
    """``output`` as a path, once sure that :func:`save_result` can save there: it is a new or empty folder that
    can be created (its parent is created). Check it before anonymizing anything.

    Raises:
        DatasetError: ``output`` exists and is not an empty folder, or cannot be created.
    """
    output = Path(output).expanduser()
    if output.exists() and not (output.is_dir() and not any(output.iterdir())):
        raise DatasetError(f"the output {output} already exists; choose a new folder or remove it")
    try:
        check_folder_can_be_created(output)
    except OSError as error:
        raise DatasetError(str(error)) from None
    return output


def save_result(dataset: datasets.Dataset | datasets.DatasetDict, output: str | Path, *,
                push_to_hub: str | None = None, private: bool = True, token: str | None = None) -> None:
    """Save an anonymized dataset with ``save_to_disk`` into ``output`` (a new or empty folder), then, with
    ``push_to_hub``, push it to that Hub dataset repo (a dataset under its split name), private unless
    ``private`` is False: the other columns may still hold personal data.

    Raises:
        DatasetError: ``output`` exists and is not an empty folder, or cannot be created (:func:`check_output`).
        PushError: the push failed (offline, no token, no access...); the saved copy is kept.
    """
    output = check_output(output)
    remove_stale_temp_files([output.parent])
    with atomic_directory(output) as tmp:  # an interrupted save leaves no half dataset under the output's name
        dataset.save_to_disk(str(tmp))
    if push_to_hub is None:
        return
    try:
        if isinstance(dataset, datasets.DatasetDict):
            dataset.push_to_hub(push_to_hub, private=private, token=token)
        else:
            split = str(dataset.split) if dataset.split is not None else None
            dataset.push_to_hub(push_to_hub, split=split, private=private, token=token)
    except (OSError, ValueError) as error:
        raise PushError(f"could not push to the Hub dataset repo {push_to_hub!r}: {error} "
                        f"(the anonymized dataset is saved in {output})") from None
