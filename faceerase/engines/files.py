"""Anonymizing files in bulk: plan which input goes to which output, anonymize one file into an audit record,
write the audit report.

The one API of every engine that anonymizes files (the ``faceerase anonymize`` command, a Ray Data actor,
``datasets`` code): nothing here parses arguments, prints or keeps global state, and the settings are a frozen
:class:`JobOptions`. Given the same eraser, job and options, :func:`process_job` in another process writes
the bytes the CLI writes.
"""

from __future__ import annotations

import json
import os
import stat
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from faceerase.erase.edits import Edits
from faceerase.media.images import (IMAGE_EXTENSIONS, UNREADABLE_IMAGE_EXTENSIONS, check_single_frame,
                                    load_image_with_alpha, write_image)
from faceerase.media.metadata import allowed_exif
from faceerase.media.video import NO_VIDEO, VIDEO_EXTENSIONS, VideoOutput, anonymize_video, output_suffix
from faceerase.model.settings import NO_IMAGE

if TYPE_CHECKING:
    from faceerase.erase.masks import Region
    from faceerase.erase.pipeline import EraseResult, FaceEraser

KINDS = ("image", "video")
ANONYMIZED = "anonymized"
"""The ``status`` of the record of an anonymized file. Older reports say ``"ok"``: ``--resume`` appends to them
as to any report (it decides from the files' times, never from the report)."""
ANALYZED = "analyzed"
"""The ``status`` of the record of an image analysed with the method ``none``: its regions and threshold are
recorded, no output is written (``output`` is null)."""
VIDEO_EDITS = "edits (--regions) apply to images, not to videos"
"""Why a video with edits fails: a review names the regions of one image."""
UP_TO_DATE = "output up to date (--resume)"
"""The skip reason of a job whose output is not older than its input, with :attr:`JobOptions.resume`."""
NOT_REGULAR = "not a regular file"
"""Why a named pipe, socket, device (or a folder where a file is expected) is never opened: opening one can block
for ever, reading it never end; the detail says which it is."""
_SPECIAL_FILES = ((stat.S_ISFIFO, "named pipe"), (stat.S_ISSOCK, "socket"), (stat.S_ISCHR, "character device"),
                  (stat.S_ISBLK, "block device"), (stat.S_ISDIR, "folder"))


class PlanError(ValueError):
    """Inputs and output that cannot be run as given: an output would overwrite an input or another output, lie
    inside an input folder, or be of another kind than its input."""


@dataclass(frozen=True)
class FileJob:
    """One input file and where its anonymized copy goes."""

    source: Path
    destination: Path
    kind: str  # "image" or "video"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown job kind {self.kind!r}; choose one of {KINDS}")


@dataclass(frozen=True)
class Skip:
    """An input left alone on purpose: ``reason`` is counted in summaries, ``detail`` only reported."""

    path: Path
    reason: str
    detail: str = ""

    @property
    def message(self) -> str:
        """The reason with its detail, as the audit record states it."""
        return f"{self.reason} {self.detail}" if self.detail else self.reason


@dataclass
class Plan:
    """Every input a run sees: files to anonymize, files skipped with a reason, inputs failed up front."""

    jobs: list[FileJob] = field(default_factory=list)
    skips: list[Skip] = field(default_factory=list)
    problems: list[tuple[Path, str]] = field(default_factory=list)


@dataclass(frozen=True)
class JobOptions:
    """How :func:`process_job` treats each file; the eraser holds the model, batch size and settings (the temporal
    window of videos among them).

    ``max_pixels``: images of more pixels fail before they are decoded (None: the default of
    :func:`faceerase.media.images.load_image`). ``keep_metadata``: keep the allow-listed metadata of
    :mod:`faceerase.media.metadata` (else none). ``resume``: skip jobs whose output is up to date
    (:func:`is_up_to_date`). ``video``: how videos are encoded (codec, quality, audio kept or dropped).
    ``edits``: a person's review of some images (:class:`~faceerase.erase.edits.Edits`), by ``str(job.source)``
    (:func:`faceerase.engines.review.match_edits`); an image with edits is always erased again, even when resuming.
    """

    keep_metadata: bool = False
    max_pixels: int | None = None
    resume: bool = False
    video: VideoOutput = VideoOutput()
    edits: Mapping[str, Edits] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.max_pixels is not None and self.max_pixels < 1:
            raise ValueError(f"max_pixels must be a positive number of pixels or None, got {self.max_pixels}")


# --------------------------------------------------------------------------- planning

def file_kind(path: Path) -> str | None:
    """``"image"`` or ``"video"`` from the extension of ``path``; None for anything else."""
    suffix = path.suffix.lower()
    return "image" if suffix in IMAGE_EXTENSIONS else "video" if suffix in VIDEO_EXTENSIONS else None


def _unsupported(path: Path) -> str:
    """Why the file ``path`` cannot be anonymized (it is neither an image nor a video this library reads)."""
    suffix = path.suffix.lower()
    if suffix in UNREADABLE_IMAGE_EXTENSIONS:
        return f"unsupported image format {suffix!r}: convert it to JPEG or PNG first"
    return (f"unsupported format {suffix or '(no extension)'!r}; expected an image "
            f"({', '.join(sorted(IMAGE_EXTENSIONS))}) or a video")


def special_file(path: Path) -> str | None:
    """What ``path`` is (through links) when it is not a regular file: ``"named pipe"``, ``"socket"``, ...; None
    for a regular file, or one that cannot be looked at (reading it then says why)."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return None
    if stat.S_ISREG(mode):
        return None
    return next((name for is_kind, name in _SPECIAL_FILES if is_kind(mode)), "special file")


def _not_regular(kind: str) -> str:
    """The error of a special file: :data:`NOT_REGULAR` and the ``kind`` :func:`special_file` found."""
    return f"{NOT_REGULAR} ({kind})"


def _job(source: Path, destination: Path) -> FileJob:
    kind = file_kind(source)
    assert kind is not None  # callers plan only images and videos
    if file_kind(destination) != kind:
        raise PlanError(f"output {destination} must be {'an' if kind == 'image' else 'a'} {kind} like {source}")
    if kind == "video":
        destination = destination.with_suffix(output_suffix(destination))
    return FileJob(source, destination, kind)


def _is_within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _skip(entry: os.DirEntry) -> Skip | None:
    """Why a folder entry that is not a folder to walk is left alone; None for images, videos and unreadable
    images (those fail instead)."""
    path = Path(entry.path)
    if entry.name.startswith("."):
        return Skip(path, "hidden folder" if entry.is_dir() else "hidden file")
    if entry.is_dir():
        return Skip(path, "link to a folder (not followed)")
    if entry.is_symlink() and not path.exists():
        return Skip(path, "broken link")
    if not entry.is_file():
        kind = special_file(path)
        return Skip(path, NOT_REGULAR, f"({kind})" if kind else "")
    suffix = path.suffix.lower()
    if file_kind(path) is None and suffix not in UNREADABLE_IMAGE_EXTENSIONS:
        return Skip(path, "not an image or video", f"({suffix or 'no extension'})")
    return None


def scan_folder(folder: Path) -> tuple[list[Path], Plan]:
    """What ``folder`` holds, walked recursively in name order: its images and videos, and a plan without jobs
    of every other entry, skipped (hidden entries, links to folders, broken links, special files, other file
    types) or failed (unreadable images such as HEIC, folders that cannot be listed) with why. :func:`plan` and
    the folder source of ``faceerase anonymize-dataset`` see a folder through it."""
    media: list[Path] = []
    others = Plan()
    _scan(folder, others, media)
    return media, others


def _scan(folder: Path, found: Plan, media: list[Path]) -> None:
    """Walk ``folder`` in name order: images and videos go to ``media``, every other entry to ``found``."""
    try:
        with os.scandir(folder) as listing:
            entries = sorted(listing, key=lambda entry: entry.name)
    except OSError as error:
        found.problems.append((folder, f"cannot list folder: {error.strerror or error}"))
        return
    for entry in entries:
        path = Path(entry.path)
        if entry.is_dir(follow_symlinks=False) and not entry.name.startswith("."):
            _scan(path, found, media)
        elif (skip := _skip(entry)) is not None:
            found.skips.append(skip)
        elif file_kind(path) is not None:
            media.append(path)
        else:
            found.problems.append((path, _unsupported(path)))


def plan(paths: Sequence[Path], out: Path) -> Plan:
    """Map inputs to outputs under ``out``: every input and every entry of an input folder becomes a job, a skip
    or a problem.

    One folder is mirrored into ``out``; with several inputs each goes to ``out/<its name>``; a single file may
    have an image or video name as ``out``. Folders are walked in name order; hidden entries, links to folders,
    broken links, special files (named pipes, sockets, devices) and other file types are skipped; a special file
    named in ``paths`` fails without being opened. Videos whose container OpenCV cannot write get an ``.mp4``
    output. Raises :class:`PlanError` when an output would overwrite an input or another output,
    or land inside an input folder.
    """
    found = Plan()
    out_resolved = out.resolve()
    single_file_out = len(paths) == 1 and file_kind(out) is not None
    for path in paths:
        if not path.exists():
            found.problems.append((path, "no such file or folder"))
        elif path.is_dir():
            if _is_within(out_resolved, path.resolve()):
                raise PlanError(f"output {out} is inside the input folder {path}; choose another output folder")
            root = out if len(paths) == 1 else out / path.resolve().name
            media, others = scan_folder(path)
            found.skips += others.skips
            found.problems += others.problems
            if not media:
                found.problems.append((path, "folder has no images or videos" if others.skips or others.problems
                                       else "empty folder"))
            found.jobs += [_job(p, root / p.relative_to(path)) for p in media]
        elif (kind := special_file(path)) is not None:
            found.problems.append((path, _not_regular(kind)))
        elif file_kind(path) is None:
            found.problems.append((path, _unsupported(path)))
        else:
            found.jobs.append(_job(path, out if single_file_out else out / path.name))
    inputs = {job.source.resolve() for job in found.jobs}
    seen: dict[Path, Path] = {}
    for job in found.jobs:
        resolved = job.destination.resolve()
        if resolved in inputs:
            raise PlanError(f"output {job.destination} would overwrite an input; choose another output")
        if resolved in seen:
            raise PlanError(f"{job.source} and {seen[resolved]} would both be written to {job.destination}")
        seen[resolved] = job.source
    return found


def _same_file(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` name the same file, through links too (either may not exist yet)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return a.resolve() == b.resolve()


def is_input_or_output(path: Path, paths: Sequence[Path], todo: Plan) -> bool:
    """Whether ``path`` is one of the input ``paths`` or an input or output of ``todo``, through links too (a
    report written there would destroy it)."""
    seen = [*paths, *(s.path for s in todo.skips), *(p for p, _ in todo.problems),
            *(p for job in todo.jobs for p in (job.source, job.destination))]
    return any(_same_file(path, other) for other in seen)


# --------------------------------------------------------------------------- one file

def is_up_to_date(job: FileJob) -> bool:
    """Whether ``job``'s output exists and is not older than its input (resuming skips it)."""
    try:
        return job.destination.stat().st_mtime_ns >= job.source.stat().st_mtime_ns
    except FileNotFoundError:
        return False


def record_context(eraser: "FaceEraser", model: Mapping[str, Any]) -> dict[str, Any]:
    """What every record of an anonymized or failed file says about the run: ``model`` (how the caller names
    the model: id, revision, weights hash, backend) and the eraser's settings, whole."""
    return {"model": dict(model), "settings": eraser.settings.to_dict()}


def process_job(eraser: "FaceEraser", job: FileJob, options: JobOptions, context: Mapping[str, Any], *,
                on_frame: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Anonymize ``job``'s file into its destination, written atomically, and return its audit record.

    The record (JSON-serialisable, as the report writes it) has ``timestamp``, ``input``, ``output``, ``kind``,
    what was found (image: ``threshold``, ``regions``, ``n_regions``, ``face_estimate``; video: ``frames``, how they
    were encoded (``codec``, ``crf``, ``pixel_format``), ``audio``, ``warnings``, ``threshold_range``, ``n_regions``,
    ``face_estimate`` (both summed over the frames), ``frame_regions``), ``seconds``, the ``context`` of
    :func:`record_context` and ``status``: :data:`ANONYMIZED`; with the method ``none``, :data:`ANALYZED` (an image's
    regions and threshold, ``output`` null, nothing written; a video fails with
    :data:`~faceerase.media.video.NO_VIDEO`); ``"failed"`` with the ``error`` (the file is not a
    regular file, nor an image or video this library reads, or it cannot be written; nothing is left at the
    destination); or, with ``options.resume`` and an up-to-date output, ``"skipped"`` with the ``reason``
    :data:`UP_TO_DATE` and nothing else. The image's ``options.edits`` are applied (a kept region no longer found, a
    box outside the image, or edits for a video fail the file). ``on_frame(1)`` is called after each video frame
    (progress bars).
    """
    record: dict[str, Any] = {"input": str(job.source), "output": str(job.destination), "kind": job.kind}
    analyse_only = eraser.settings.method == NO_IMAGE  # no output: resuming never skips
    edits = options.edits.get(str(job.source))  # its time cannot tell whether an output has them: never skipped
    if options.resume and not analyse_only and edits is None and is_up_to_date(job):
        return stamped({**record, "status": "skipped", "reason": UP_TO_DATE})
    start = time.perf_counter()
    try:
        if (kind := special_file(job.source)) is not None:  # replaced since planning: never open it
            raise ValueError(_not_regular(kind))
        if edits is not None and job.kind == "video":
            raise ValueError(VIDEO_EDITS)
        if analyse_only:
            if job.kind == "video":  # before any folder is made (write_anonymized_video refuses it too)
                raise ValueError(NO_VIDEO)
            record.update(output=None, **_erase_image(eraser, job, options, edits))
        else:
            job.destination.parent.mkdir(parents=True, exist_ok=True)
            if job.kind == "image":
                record.update(_erase_image(eraser, job, options, edits))
            else:
                record.update(_erase_video(eraser, job, options, on_frame))
        outcome = {"status": ANALYZED if analyse_only else ANONYMIZED}
    except (ValueError, OSError, RuntimeError) as error:  # InvalidImageError and VideoError are ValueErrors
        outcome = {"status": "failed", "error": str(error) or type(error).__name__}
    record["seconds"] = round(time.perf_counter() - start, 3)
    return stamped({**record, **context, **outcome})


def skip_record(skip: Skip) -> dict[str, Any]:
    """The audit record of an input the plan skipped."""
    return stamped({"input": str(skip.path), "status": "skipped", "reason": skip.message})


def failure_record(path: Path, error: str) -> dict[str, Any]:
    """The audit record of an input that failed before any anonymizing (a problem of the plan)."""
    return stamped({"input": str(path), "status": "failed", "error": error})


def stamped(record: dict[str, Any]) -> dict[str, Any]:
    """``record`` with its ``timestamp`` (UTC, to the second) first, as every audit record has it."""
    return {"timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"), **record}


def region_records(regions: list["Region"]) -> list[dict[str, Any]]:
    """The regions as records list them: id, box, area, score, mean score, the estimated number of faces, source
    (``model`` or ``added`` by hand) and whether the region is erased (False: kept by hand)."""
    return [{"id": int(r.id), "box": [int(v) for v in r.box], "area": int(r.area), "score": round(float(r.score), 4),
             "mean_score": round(float(r.mean_score), 4), "faces": int(r.faces), "source": r.source,
             "erased": bool(r.erased)} for r in regions]


def image_findings(result: "EraseResult") -> dict[str, Any]:
    """What an image record says was found and done: ``threshold``, ``regions`` (:func:`region_records`),
    ``n_regions`` and ``face_estimate`` (of the erased regions) and ``edits`` (a person's review: the regions kept
    and added, empty lists when there was none). The app and the web page download the same object."""
    erased = [r for r in result.regions if r.erased]
    return {"threshold": round(float(result.threshold), 4), "regions": region_records(result.regions),
            "n_regions": len(erased), "face_estimate": sum(r.faces for r in erased),
            "edits": result.edits.to_record(result.regions)}


def _erase_image(eraser: "FaceEraser", job: FileJob, options: JobOptions, edits: Edits | None) -> dict[str, Any]:
    check_single_frame(job.source)
    pixels, alpha = load_image_with_alpha(job.source, max_pixels=options.max_pixels)
    result = eraser.postprocess(pixels, eraser.predict([pixels])[0], edits=edits)  # a bad edit fails the file
    if result.anonymized is not None:  # None: the method none writes nothing
        exif = allowed_exif(job.source) if options.keep_metadata else None
        write_image(result.anonymized, job.destination, exif=exif, alpha=alpha)
    return image_findings(result)


def _erase_video(eraser: "FaceEraser", job: FileJob, options: JobOptions,
                 on_frame: Callable[[int], None] | None) -> dict[str, Any]:
    summary = anonymize_video(eraser, job.source, job.destination, temporal_window=eraser.settings.temporal_window,
                              batch_size=eraser.batch_size, output=options.video, keep_metadata=options.keep_metadata,
                              on_frame=on_frame)
    frame_regions = [{"frame": i, "regions": region_records(r)} for i, r in enumerate(summary.regions) if r]
    return {"frames": summary.frames, "codec": summary.codec, "crf": summary.crf,
            "pixel_format": summary.pixel_format, "audio": summary.audio, "warnings": summary.warnings,
            "threshold_range": [round(min(summary.thresholds), 4), round(max(summary.thresholds), 4)],
            "n_regions": sum(len(r) for r in summary.regions),
            "face_estimate": sum(r.faces for frame in summary.regions for r in frame), "frame_regions": frame_regions}


# --------------------------------------------------------------------------- report

class AuditReport:
    """The audit report: a JSON Lines file of one record per input, each flushed as it is written."""

    def __init__(self, path: Path, *, append: bool = False):
        """Open ``path``, emptied unless ``append``; an :class:`OSError` names ``path``."""
        self.path = path
        try:
            self._file = path.open("a" if append else "w", encoding="utf-8")
        except OSError as error:
            raise OSError(f"cannot write the report {path}: {error.strerror or error}") from None

    def write(self, record: Mapping[str, Any]) -> None:
        """Append ``record`` as one line."""
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()

    def close(self) -> None:
        """Close the file."""
        self._file.close()

    def __enter__(self) -> "AuditReport":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
