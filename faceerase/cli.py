"""The ``faceerase`` command: ``anonymize`` images, folders, videos or a webcam; ``evaluate`` on WIDER FACE.

Exit codes: 0 every input was anonymized or skipped with a reason (hidden, not an image or video, ...),
1 some input failed (each reported on one line, the run goes on; unsupported images such as HEIC or
animated GIF fail), 2 usage error (bad option, output or report that would overwrite an input, model that
does not load).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import numpy as np
from PIL import Image
from tqdm import tqdm

from faceerase.anonymize import METHODS
from faceerase.images import MAX_PIXELS, MAX_PIXELS_ENV, InvalidImageError, load_image
from faceerase.masks import MASK_SHAPES
from faceerase.metadata import allowed_exif, describe_kept
from faceerase.outputs import atomic_output, remove_stale_temp_files
from faceerase.video import (DEFAULT_TEMPORAL_WINDOW, VIDEO_EXTENSIONS, TemporalMax, VideoError, anonymize_frames,
                             anonymize_video, check_frame_count, open_writer, output_suffix, probe_video, read_frames)

if TYPE_CHECKING:
    from faceerase.pipeline import FaceEraser

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"})
# Images that may show faces but that this tool cannot read: they fail (exit code 1), never vanish.
UNREADABLE_IMAGE_EXTENSIONS = frozenset({".heic", ".heif", ".avif", ".dng", ".cr2", ".cr3", ".nef", ".arw", ".raf",
                                         ".orf", ".rw2"})


class UsageError(Exception):
    """A command line that cannot be run as given (exit code 2)."""


@dataclass(frozen=True)
class Job:
    """One input file and where its anonymized copy goes."""

    source: Path
    destination: Path
    kind: str  # "image" or "video"


@dataclass(frozen=True)
class Skip:
    """An input left alone on purpose: ``reason`` is counted in the summary, ``detail`` only reported."""

    path: Path
    reason: str
    detail: str = ""

    @property
    def message(self) -> str:
        return f"{self.reason} {self.detail}" if self.detail else self.reason


@dataclass
class Plan:
    """Every input a run sees: files to anonymize, files skipped with a reason, inputs failed up front."""

    jobs: list[Job] = field(default_factory=list)
    skips: list[Skip] = field(default_factory=list)
    problems: list[tuple[Path, str]] = field(default_factory=list)


# --------------------------------------------------------------------------- arguments

def _threshold(text: str) -> tuple[str, float | None]:
    if text in ("auto", "seed"):
        return text, None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected auto, seed or a number in (0, 1), got {text!r}") from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"a fixed threshold must be in (0, 1), got {value}")
    return "fixed", value


def _int_at_least(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {value}")
        return value
    return parse


_positive_int = _int_at_least(1)
_non_negative_int = _int_at_least(0)

_ANONYMIZE_EPILOG = (
    "Every input is accounted for in the summary and the --report: images (single-frame "
    f"{', '.join(sorted(IMAGE_EXTENSIONS))}) and videos are anonymized; multi-frame images (animated GIF, PNG or "
    "WebP, multi-page TIFF) and HEIC, AVIF and camera raw files fail as unsupported; a JPEG's extra MPF images "
    "(previews, depth maps) are dropped. In folders, hidden files and folders, links to folders (not followed), "
    "broken links, special files and other file types are skipped with the reason. A video that decodes to fewer "
    "frames than its container declares is written with a warning; one whose output does not decode back to "
    "every written frame fails.")


def _model_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model")
    group.add_argument("--model", help="model folder or Hugging Face Hub repo id (default: the embedded hub/ model)")
    group.add_argument("--revision", help="Hub revision (branch, tag or commit) of --model")
    group.add_argument("--device", help="torch device, e.g. cpu, cuda, cuda:1, mps (default: best available)")
    group.add_argument("--input-size", type=_non_negative_int, metavar="PX",
                       help="resize the long side to PX for the network; 0 = original size (default: the model's "
                            "inference.json, else 1024)")
    group.add_argument("--batch-size", type=_positive_int, default=8, help="frames per network pass (default: 8)")
    group.add_argument("--backend", choices=("auto", "torch", "onnx"), default="auto",
                       help="network runtime: onnx (onnxruntime, CPU), torch, or auto: onnx on the CPU, else torch "
                            "(default: auto)")
    group.add_argument("--threshold", type=_threshold, default=("auto", None), metavar="auto|seed|FLOAT",
                       help="mask threshold: auto (calibrated Otsu), seed (2018 rule) or a fixed probability")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``faceerase`` command."""
    parser = argparse.ArgumentParser(prog="faceerase", description="Find every face with a U-Net and erase it.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    anon = commands.add_parser(
        "anonymize", help="anonymize images, folders, videos or a webcam",
        description="Anonymize images, folders (recursively, mirroring the tree) and videos into OUT. "
                    "One folder is mirrored into OUT; with several inputs each goes to OUT/<its name>. "
                    "With a single file, OUT may be the output file name.", epilog=_ANONYMIZE_EPILOG)
    anon.add_argument("paths", nargs="*", type=Path, metavar="PATH", help="image, video or folder")
    anon.add_argument("-o", "--output", type=Path, metavar="OUT", help="output folder (or file for a single input)")
    anon.add_argument("--webcam", type=int, nargs="?", const=0, metavar="INDEX",
                      help="anonymize camera INDEX (default 0) into the video OUT until Ctrl-C or --max-frames")
    anon.add_argument("--max-frames", type=_positive_int, help="stop --webcam after this many frames")
    anon.add_argument("--method", choices=METHODS, default="inpaint_telea", help="how faces are erased")
    anon.add_argument("--dilation", type=_non_negative_int, metavar="PX",
                      help="grow the mask by this many pixels (default: the model's inference.json, else 8)")
    anon.add_argument("--mask-shape", choices=MASK_SHAPES, help="predicted mask (default), or an ellipse/box per region")
    anon.add_argument("--temporal-window", type=_positive_int, default=DEFAULT_TEMPORAL_WINDOW, metavar="N",
                      help="videos: mask the max probability over the last N frames (1 = off; default: %(default)s)")
    anon.add_argument("--resume", action="store_true",
                      help="skip inputs whose output exists and is not older than the input; "
                           "append to the --report")
    anon.add_argument("--keep-metadata", action="store_true", help=describe_kept())
    anon.add_argument("--max-pixels", type=_positive_int, metavar="N",
                      help="images of more than N pixels fail before they are decoded (default: "
                           f"${MAX_PIXELS_ENV}, else {MAX_PIXELS}; memory grows with the image size)")
    anon.add_argument("--report", type=Path, metavar="FILE.jsonl",
                      help="write an audit record per input (anonymized, failed or skipped, with why); "
                           "it must not be an input or an output")
    _model_options(anon)
    anon.set_defaults(handler=_cmd_anonymize)

    ev = commands.add_parser("evaluate", help="face coverage recall and collateral on WIDER FACE",
                             description="Evaluate the model on a local WIDER FACE folder; prints JSON.")
    ev.add_argument("--data", type=Path, required=True, help="WIDER FACE root folder (official layout)")
    ev.add_argument("--split", default="val", choices=("train", "val"), help="default: val")
    ev.add_argument("--limit", type=_positive_int, help="evaluate only the first N images")
    ev.add_argument("--json", type=Path, metavar="OUT.json", help="also write the report to this file")
    _model_options(ev)
    ev.set_defaults(handler=_cmd_evaluate)

    ex = commands.add_parser("export-onnx", help="export a model to ONNX for onnxruntime and onnxruntime-web",
                             description="Export MODEL (folder or Hub repo id; default: the embedded hub/ model) to "
                                         "ONNX: opset 17, dynamic batch, height and width (multiples of the "
                                         "model's size divisor), its inference settings in the file's metadata. "
                                         "Written into a model folder as model.onnx, FaceErase's onnx backend "
                                         "uses it instead of exporting at start-up.")
    ex.add_argument("model", nargs="?", metavar="MODEL", help="model folder or Hub repo id (default: hub/)")
    ex.add_argument("-o", "--output", type=Path, required=True, metavar="FILE.onnx")
    ex.add_argument("--revision", help="Hub revision of MODEL")
    ex.set_defaults(handler=_cmd_export_onnx)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``faceerase`` console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except UsageError as error:
        print(f"faceerase: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("faceerase: interrupted", file=sys.stderr)
        return 130


# --------------------------------------------------------------------------- model

def _load_model(args: argparse.Namespace, device: str | None):
    """``--model`` (and ``--revision``) loaded on ``device``; a model that does not load is a usage error."""
    from faceerase.pipeline import ModelLoadError, load_model

    try:
        with contextlib.redirect_stdout(sys.stderr):  # huggingface_hub prints progress; stdout is for results
            return load_model(args.model, revision=args.revision, device=device)
    except ModelLoadError as error:
        raise UsageError(f"cannot load the model: {error}") from None


def _make_eraser(args: argparse.Namespace, **post: Any) -> tuple["FaceEraser", dict[str, Any]]:
    """Load the model and wrap it; returns the eraser and the model's identity for reports."""
    from faceerase.pipeline import DEFAULT_MODEL_DIR, FaceEraser

    model = _load_model(args, args.device)
    mode, value = args.threshold
    options: dict[str, Any] = {k: v for k, v in post.items() if v is not None}  # None: library default
    if args.input_size is not None:
        options["input_size"] = args.input_size  # 0: original resolution
    eraser = FaceEraser(model, device=args.device, threshold=mode, threshold_value=value,
                        batch_size=args.batch_size, backend=args.backend, **options)
    identity = {"id": str(args.model or DEFAULT_MODEL_DIR), "revision": args.revision,
                "weights_sha256": model.weights_sha256(), "backend": eraser.backend}
    return eraser, identity


# --------------------------------------------------------------------------- planning

def _kind(path: Path) -> str | None:
    suffix = path.suffix.lower()
    return "image" if suffix in IMAGE_EXTENSIONS else "video" if suffix in VIDEO_EXTENSIONS else None


def _unsupported(path: Path) -> str:
    """Why the file ``path`` cannot be anonymized (it is neither an image nor a video this tool reads)."""
    suffix = path.suffix.lower()
    if suffix in UNREADABLE_IMAGE_EXTENSIONS:
        return f"unsupported image format {suffix!r}: convert it to JPEG or PNG first"
    return (f"unsupported format {suffix or '(no extension)'!r}; expected an image "
            f"({', '.join(sorted(IMAGE_EXTENSIONS))}) or a video")


def _target(source: Path, destination: Path) -> Job:
    kind = _kind(source)
    if kind is not None and _kind(destination) != kind:
        raise UsageError(f"output {destination} must be {'an' if kind == 'image' else 'a'} {kind} like {source}")
    if kind == "video":
        destination = destination.with_suffix(output_suffix(destination))
    return Job(source, destination, kind or "")


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
        return Skip(path, "not a regular file")
    suffix = path.suffix.lower()
    if _kind(path) is None and suffix not in UNREADABLE_IMAGE_EXTENSIONS:
        return Skip(path, "not an image or video", f"({suffix or 'no extension'})")
    return None


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
        elif _kind(path) is not None:
            media.append(path)
        else:
            found.problems.append((path, _unsupported(path)))


def plan(paths: list[Path], out: Path) -> Plan:
    """Map inputs to outputs: every input and every entry of an input folder becomes a job, a skip or a problem.

    Raises :class:`UsageError` when an output would overwrite an input or land inside an input folder.
    """
    found = Plan()
    out_resolved = out.resolve()
    single_file_out = len(paths) == 1 and _kind(out) is not None
    for path in paths:
        if not path.exists():
            found.problems.append((path, "no such file or folder"))
        elif path.is_dir():
            if _is_within(out_resolved, path.resolve()):
                raise UsageError(f"output {out} is inside the input folder {path}; choose another output folder")
            root = out if len(paths) == 1 else out / path.resolve().name
            seen_before = len(found.skips) + len(found.problems)
            media: list[Path] = []
            _scan(path, found, media)
            if not media:
                others = len(found.skips) + len(found.problems) > seen_before
                found.problems.append((path, "folder has no images or videos" if others else "empty folder"))
            found.jobs += [_target(p, root / p.relative_to(path)) for p in media]
        elif _kind(path) is None:
            found.problems.append((path, _unsupported(path)))
        else:
            found.jobs.append(_target(path, out if single_file_out else out / path.name))
    inputs = {job.source.resolve() for job in found.jobs}
    seen: dict[Path, Path] = {}
    for job in found.jobs:
        resolved = job.destination.resolve()
        if resolved in inputs:
            raise UsageError(f"output {job.destination} would overwrite an input; choose another output")
        if resolved in seen:
            raise UsageError(f"{job.source} and {seen[resolved]} would both be written to {job.destination}")
        seen[resolved] = job.source
    return found


def _same_file(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` name the same file, through links too (either may not exist yet)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return a.resolve() == b.resolve()


def _check_report_path(report: Path | None, inputs: list[Path], todo: Plan) -> None:
    """Refuse a ``--report`` that is an input or an output of the run: it would be overwritten with JSON."""
    if report is None:
        return
    paths = [*inputs, *(s.path for s in todo.skips), *(p for p, _ in todo.problems),
             *(p for job in todo.jobs for p in (job.source, job.destination))]
    if any(_same_file(report, path) for path in paths):
        raise UsageError(f"the report {report} is an input or an output of this run; choose another --report file")


# --------------------------------------------------------------------------- images

def write_image(pixels: np.ndarray, destination: Path, *, exif: bytes | None = None) -> None:
    """Encode RGB ``pixels`` to ``destination`` (format from its extension) atomically, with no metadata
    other than ``exif``."""
    fmt = Image.registered_extensions()[destination.suffix.lower()]
    options: dict[str, Any] = {"quality": 95} if fmt in ("JPEG", "WEBP") else {}
    if exif:
        options["exif"] = exif
    with atomic_output(destination) as tmp, tmp.open("wb") as handle:
        Image.fromarray(pixels).save(handle, format=fmt, **options)


def _frame_count(source: Path) -> int:
    """Frames in the image ``source``: 1 for a JPEG whose extra MPF images (previews, depth maps) are dropped,
    and for a file that does not open (:func:`~faceerase.images.load_image` then says why)."""
    try:
        with Image.open(source) as image:
            return 1 if image.format == "MPO" else getattr(image, "n_frames", 1)
    except Exception:  # noqa: BLE001 - decoders raise many types; load_image reports them clearly
        return 1


def _regions(regions: list) -> list[dict[str, Any]]:
    return [{"box": [int(v) for v in r.box], "area": int(r.area), "score": round(float(r.score), 4),
             "mean_score": round(float(r.mean_score), 4)} for r in regions]


def _anonymize_image(eraser: "FaceEraser", job: Job, args: argparse.Namespace) -> dict[str, Any]:
    frames = _frame_count(job.source)
    if frames > 1:
        raise InvalidImageError(f"unsupported: multi-frame image ({frames} frames); only single-frame images "
                                f"are anonymized")
    result = eraser(load_image(job.source, max_pixels=args.max_pixels))
    write_image(result.anonymized, job.destination, exif=allowed_exif(job.source) if args.keep_metadata else None)
    return {"threshold": round(float(result.threshold), 4), "regions": _regions(result.regions),
            "n_regions": len(result.regions)}


def _anonymize_video_job(eraser: "FaceEraser", job: Job, args: argparse.Namespace) -> dict[str, Any]:
    total = probe_video(job.source).frame_count or None
    with tqdm(desc=job.source.name, total=total, unit="frame", leave=False, file=sys.stderr) as bar:
        summary = anonymize_video(eraser, job.source, job.destination, temporal_window=args.temporal_window,
                                  batch_size=args.batch_size, keep_metadata=args.keep_metadata,
                                  on_frame=bar.update)
    frame_regions = [{"frame": i, "regions": _regions(r)} for i, r in enumerate(summary.regions) if r]
    return {"frames": summary.frames, "audio": summary.audio, "warnings": summary.warnings,
            "threshold_range": [round(min(summary.thresholds), 4), round(max(summary.thresholds), 4)],
            "n_regions": sum(len(r) for r in summary.regions), "frame_regions": frame_regions}


# --------------------------------------------------------------------------- anonymize command

def _cmd_anonymize(args: argparse.Namespace) -> int:
    if args.output is None:
        raise UsageError("the output -o/--output is required")
    if args.webcam is not None:
        if args.paths:
            raise UsageError("give either PATHs or --webcam, not both")
        return _run_webcam(args)
    if not args.paths:
        raise UsageError("nothing to anonymize: give at least one PATH (or --webcam)")
    if args.max_frames is not None:
        raise UsageError("--max-frames only applies to --webcam")
    todo = plan(args.paths, args.output)
    _check_report_path(args.report, args.paths, todo)
    for path in remove_stale_temp_files(sorted({job.destination.parent for job in todo.jobs})):
        print(f"removed {path}, a temporary file left by an interrupted run", file=sys.stderr)
    eraser, context = _eraser_and_context(args) if todo.jobs else (None, {})
    report = _open_report(args.report, args.resume)
    outcomes = _Outcomes(report)
    try:
        for path, message in todo.problems:
            outcomes.failed(path, message, {"input": str(path)})
        for skip in todo.skips:
            outcomes.skipped(skip, {"input": str(skip.path)})
        for job in tqdm(todo.jobs, desc="files", unit="file", file=sys.stderr, disable=len(todo.jobs) < 2):
            _process(eraser, job, args, outcomes, context)
    finally:
        if report:
            report.close()
    print(outcomes.summary())
    return 1 if outcomes.counts["failed"] else 0


def _eraser_and_context(args: argparse.Namespace) -> tuple["FaceEraser", dict[str, Any]]:
    """The eraser for the anonymize command, and the model and settings every report line of a file carries."""
    eraser, identity = _make_eraser(args, method=args.method, dilation=args.dilation, mask_shape=args.mask_shape)
    settings = {**dataclasses.asdict(eraser.options), "input_size": eraser.input_size,
                "extra_scales": list(eraser.settings.extra_scales), "temporal_window": args.temporal_window}
    return eraser, {"model": identity, "settings": settings}


def _up_to_date(job: Job) -> bool:
    """Whether ``job``'s output exists and is not older than its input (``--resume`` skips it)."""
    try:
        return job.destination.stat().st_mtime_ns >= job.source.stat().st_mtime_ns
    except FileNotFoundError:
        return False


def _process(eraser: "FaceEraser", job: Job, args: argparse.Namespace, outcomes: "_Outcomes",
             context: dict[str, Any]) -> None:
    """Anonymize one file (or skip it with ``--resume``) and record the outcome."""
    record: dict[str, Any] = {"input": str(job.source), "output": str(job.destination), "kind": job.kind}
    if args.resume and _up_to_date(job):
        outcomes.skipped(Skip(job.source, "output up to date (--resume)"), record)
        return
    start = time.perf_counter()
    try:
        job.destination.parent.mkdir(parents=True, exist_ok=True)
        anonymize = _anonymize_image if job.kind == "image" else _anonymize_video_job
        record.update(anonymize(eraser, job, args))
    except (ValueError, OSError, RuntimeError) as error:  # InvalidImageError and VideoError are ValueErrors
        record["seconds"] = round(time.perf_counter() - start, 3)
        outcomes.failed(job.source, str(error) or type(error).__name__, {**record, **context})
    else:
        record["seconds"] = round(time.perf_counter() - start, 3)
        outcomes.anonymized({**record, **context})


class _Outcomes:
    """Counts what happened to each input, prints failures and warnings, and writes the ``--report`` lines."""

    def __init__(self, report: TextIO | None):
        self.report = report
        self.counts = {"ok": 0, "failed": 0, "warned": 0, "regions": 0}
        self.skip_reasons: Counter[str] = Counter()
        self.start = time.perf_counter()

    def anonymized(self, record: dict[str, Any]) -> None:
        for warning in record.get("warnings", []):
            tqdm.write(f"warning: {record['input']}: {warning}", file=sys.stderr)
        self.counts["ok"] += 1
        self.counts["warned"] += bool(record.get("warnings"))
        self.counts["regions"] += record["n_regions"]
        _record(self.report, {**record, "status": "ok"})

    def failed(self, path: Path, message: str, record: dict[str, Any]) -> None:
        where = "" if str(path) in message else f"{path}: "
        tqdm.write(f"error: {where}{message}", file=sys.stderr)
        self.counts["failed"] += 1
        _record(self.report, {**record, "status": "failed", "error": message})

    def skipped(self, skip: Skip, record: dict[str, Any]) -> None:
        self.skip_reasons[skip.reason] += 1
        _record(self.report, {**record, "status": "skipped", "reason": skip.message})

    def summary(self) -> str:
        """One line: files anonymized (with warnings), failed and skipped (by reason), face regions, time."""
        ok, failed, warned, regions = (self.counts[k] for k in ("ok", "failed", "warned", "regions"))
        skipped = sum(self.skip_reasons.values())
        total = ok + failed + skipped
        reasons = ", ".join(f"{n} {reason}" for reason, n in sorted(self.skip_reasons.items()))
        return (f"{total} file{'s' * (total != 1)}: {ok} anonymized{f' ({warned} with warnings)' * bool(warned)}, "
                f"{failed} failed, {skipped} skipped{f' ({reasons})' * bool(reasons)}; "
                f"{regions} face region{'s' * (regions != 1)}; {time.perf_counter() - self.start:.1f} s")


def _open_report(path: Path | None, resume: bool) -> TextIO | None:
    if path is None:
        return None
    try:
        return path.open("a" if resume else "w", encoding="utf-8")
    except OSError as error:
        raise UsageError(f"cannot write the report {path}: {error.strerror or error}") from None


def _record(report: TextIO | None, record: dict[str, Any]) -> None:
    if report is not None:
        stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
        report.write(json.dumps({"timestamp": stamp, **record}) + "\n")
        report.flush()


# --------------------------------------------------------------------------- webcam

def _camera_frames(index: int, limit: int | None) -> Iterator[np.ndarray]:
    import cv2

    capture = cv2.VideoCapture(index)
    try:
        if not capture.isOpened():
            raise UsageError(f"no camera found at index {index}")
        for count, frame in enumerate(read_frames(capture)):
            if limit is not None and count >= limit:
                return
            yield frame
    finally:
        capture.release()


def _run_webcam(args: argparse.Namespace) -> int:
    out: Path = args.output
    if out.suffix.lower() not in VIDEO_EXTENSIONS:
        out = out / f"webcam-{datetime.now():%Y%m%d-%H%M%S}.mp4"
    out = out.with_suffix(output_suffix(out))
    frames = _camera_frames(args.webcam, args.max_frames)
    first = next(frames, None)
    if first is None:
        raise UsageError(f"camera {args.webcam} gives no frames")
    eraser, _ = _make_eraser(args, method=args.method, dilation=args.dilation, mask_shape=args.mask_shape)
    print(f"recording anonymized camera {args.webcam} to {out}; Ctrl-C to stop", file=sys.stderr)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        count = _record_camera(eraser, first, frames, out, args.temporal_window)
    except (VideoError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"{count} frames written to {out}")
    return 0


def _record_camera(eraser: "FaceEraser", first: np.ndarray, rest: Iterator[np.ndarray], out: Path,
                   window: int) -> int:
    """Anonymize ``first`` and ``rest`` into the video ``out`` atomically until the frames end or Ctrl-C;
    return the frame count."""
    count = 0
    with atomic_output(out) as tmp:
        writer = open_writer(tmp, 30.0, first.shape[1], first.shape[0])
        try:
            stream = anonymize_frames(eraser, _chain(first, rest), TemporalMax(window), batch_size=1)
            for result in tqdm(stream, unit="frame", file=sys.stderr):
                writer.write(result.anonymized[:, :, ::-1].copy())
                count += 1
        except KeyboardInterrupt:
            pass
        finally:
            writer.release()
        check_frame_count(tmp, count, out)
    return count


def _chain(first: np.ndarray, rest: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    yield first
    yield from rest


# --------------------------------------------------------------------------- evaluate command

def _cmd_export_onnx(args: argparse.Namespace) -> int:
    from faceerase.onnx_model import OnnxExportError, export_onnx

    if args.output.suffix != ".onnx":
        raise UsageError(f"the output must be a .onnx file, got {args.output}")
    model = _load_model(args, "cpu")
    try:
        data = export_onnx(model)
    except OnnxExportError as error:
        print(f"faceerase: error: {error}", file=sys.stderr)
        return 1
    with atomic_output(args.output) as tmp:
        tmp.write_bytes(data)
    print(f"wrote {args.output} ({len(data) / 2**20:.1f} MiB, size divisor {model.size_divisor})")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from faceerase.evaluation import evaluate_widerface

    if not args.data.is_dir():
        raise UsageError(f"WIDER FACE folder not found: {args.data}")
    eraser, identity = _make_eraser(args)
    try:
        report = evaluate_widerface(eraser, args.data, split=args.split, limit=args.limit)
    except (ValueError, OSError) as error:
        print(f"error: {args.data}: {error}", file=sys.stderr)
        return 1
    report = {"model": identity, "split": args.split, **report}
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
