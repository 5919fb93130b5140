"""The ``faceerase`` command: ``anonymize`` images, folders, videos or a webcam; ``evaluate`` on WIDER FACE.

Exit codes: 0 everything succeeded, 1 some input failed (each reported on one line, the run goes on),
2 usage error (bad option, output that would overwrite an input, model that does not load).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import numpy as np
from PIL import Image
from tqdm import tqdm

from faceerase.anonymize import METHODS
from faceerase.masks import MASK_SHAPES
from faceerase.video import (DEFAULT_TEMPORAL_WINDOW, VIDEO_EXTENSIONS, TemporalMax, anonymize_frames, anonymize_video,
                             open_writer, output_suffix, probe_video, read_frames)

if TYPE_CHECKING:
    from faceerase.pipeline import FaceEraser

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
EXIF_ORIENTATION = 0x0112


class UsageError(Exception):
    """A command line that cannot be run as given (exit code 2)."""


@dataclass(frozen=True)
class Job:
    """One input file and where its anonymized copy goes."""

    source: Path
    destination: Path
    kind: str  # "image" or "video"


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


def _model_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model")
    group.add_argument("--model", help="model folder or Hugging Face Hub repo id (default: the embedded hub/ model)")
    group.add_argument("--revision", help="Hub revision (branch, tag or commit) of --model")
    group.add_argument("--device", help="torch device, e.g. cpu, cuda, cuda:1, mps (default: best available)")
    group.add_argument("--input-size", type=_non_negative_int, metavar="PX",
                       help="resize the long side to PX for the network; 0 = original size (default: the model's "
                            "inference.json, else 1024)")
    group.add_argument("--batch-size", type=_positive_int, default=8, help="frames per network pass (default: 8)")
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
                    "With a single file, OUT may be the output file name.")
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
    anon.add_argument("--resume", action="store_true", help="skip inputs whose output already exists")
    anon.add_argument("--keep-metadata", action="store_true",
                      help="keep EXIF (minus orientation) in images; default strips EXIF, GPS and XMP")
    anon.add_argument("--report", type=Path, metavar="FILE.jsonl", help="write an audit record per file")
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

def _make_eraser(args: argparse.Namespace, **post: Any) -> tuple["FaceEraser", dict[str, Any]]:
    """Load the model and wrap it; returns the eraser and the model's identity for reports."""
    from faceerase.pipeline import DEFAULT_MODEL_DIR, FaceEraser, ModelLoadError, load_model

    try:
        with contextlib.redirect_stdout(sys.stderr):  # huggingface_hub prints progress; stdout is for results
            model = load_model(args.model, revision=args.revision, device=args.device)
    except ModelLoadError as error:
        raise UsageError(f"cannot load the model: {error}") from None
    mode, value = args.threshold
    options: dict[str, Any] = {k: v for k, v in post.items() if v is not None}  # None: library default
    if args.input_size is not None:
        options["input_size"] = args.input_size  # 0: original resolution
    eraser = FaceEraser(model, device=args.device, threshold=mode, threshold_value=value,
                        batch_size=args.batch_size, **options)
    identity = {"id": str(args.model or DEFAULT_MODEL_DIR), "revision": args.revision,
                "weights_sha256": weights_sha256(model)}
    return eraser, identity


def weights_sha256(model: Any) -> str:
    """SHA-256 over the model's tensors in state-dict order (independent of the file format)."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


# --------------------------------------------------------------------------- planning

def _kind(path: Path) -> str | None:
    suffix = path.suffix.lower()
    return "image" if suffix in IMAGE_EXTENSIONS else "video" if suffix in VIDEO_EXTENSIONS else None


def _target(source: Path, destination: Path) -> Job:
    kind = _kind(source)
    if kind is not None and _kind(destination) != kind:
        raise UsageError(f"output {destination} must be {'an' if kind == 'image' else 'a'} {kind} like {source}")
    if kind == "video":
        destination = destination.with_suffix(output_suffix(destination))
    return Job(source, destination, kind or "")


def _is_within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def plan(paths: list[Path], out: Path) -> tuple[list[Job], list[tuple[Path, str]]]:
    """Map inputs to outputs; returns the jobs and per-input problems (missing, unsupported, empty).

    Raises :class:`UsageError` when an output would overwrite an input or land inside an input folder.
    """
    jobs: list[Job] = []
    problems: list[tuple[Path, str]] = []
    out_resolved = out.resolve()
    single_file_out = len(paths) == 1 and _kind(out) is not None
    for path in paths:
        if not path.exists():
            problems.append((path, "no such file or folder"))
        elif path.is_dir():
            if _is_within(out_resolved, path.resolve()):
                raise UsageError(f"output {out} is inside the input folder {path}; choose another output folder")
            root = out if len(paths) == 1 else out / path.resolve().name
            files = [p for p in sorted(path.rglob("*")) if p.is_file() and not p.name.startswith(".")]
            media = [p for p in files if _kind(p)]
            if not media:
                problems.append((path, "folder has no images or videos" if files else "empty folder"))
            jobs += [_target(p, root / p.relative_to(path)) for p in media]
        elif _kind(path) is None:
            problems.append((path, f"unsupported format {path.suffix or '(no extension)'!r}; expected an image "
                                   f"({', '.join(sorted(IMAGE_EXTENSIONS))}) or a video"))
        else:
            jobs.append(_target(path, out if single_file_out else out / path.name))
    inputs = {job.source.resolve() for job in jobs}
    seen: dict[Path, Path] = {}
    for job in jobs:
        resolved = job.destination.resolve()
        if resolved in inputs:
            raise UsageError(f"output {job.destination} would overwrite an input; choose another output")
        if resolved in seen:
            raise UsageError(f"{job.source} and {seen[resolved]} would both be written to {job.destination}")
        seen[resolved] = job.source
    return jobs, problems


# --------------------------------------------------------------------------- images

def _exif_without_orientation(source: Path) -> bytes | None:
    with Image.open(source) as image:
        exif = image.getexif()
    exif.pop(EXIF_ORIENTATION, None)
    return exif.tobytes() if len(exif) else None


def write_image(pixels: np.ndarray, destination: Path, *, exif: bytes | None = None) -> None:
    """Encode RGB ``pixels`` to ``destination`` (format from its extension) atomically, with no metadata
    other than ``exif``."""
    fmt = Image.registered_extensions()[destination.suffix.lower()]
    options: dict[str, Any] = {"quality": 95} if fmt in ("JPEG", "WEBP") else {}
    if exif:
        options["exif"] = exif
    fd, tmp = tempfile.mkstemp(prefix=f".{destination.stem}.", suffix=".tmp", dir=destination.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            Image.fromarray(pixels).save(handle, format=fmt, **options)
        os.replace(tmp, destination)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _regions(regions: list) -> list[dict[str, Any]]:
    return [{"box": [int(v) for v in r.box], "area": int(r.area), "score": round(float(r.score), 4),
             "mean_score": round(float(r.mean_score), 4)} for r in regions]


def _anonymize_image(eraser: "FaceEraser", job: Job, keep_metadata: bool) -> dict[str, Any]:
    from faceerase.images import load_image

    result = eraser(load_image(job.source))
    write_image(result.anonymized, job.destination,
                exif=_exif_without_orientation(job.source) if keep_metadata else None)
    return {"threshold": round(float(result.threshold), 4), "regions": _regions(result.regions),
            "n_regions": len(result.regions)}


def _anonymize_video_job(eraser: "FaceEraser", job: Job, args: argparse.Namespace) -> dict[str, Any]:
    total = probe_video(job.source).frame_count or None
    with tqdm(desc=job.source.name, total=total, unit="frame", leave=False, file=sys.stderr) as bar:
        summary = anonymize_video(eraser, job.source, job.destination, temporal_window=args.temporal_window,
                                  batch_size=args.batch_size, keep_metadata=args.keep_metadata,
                                  on_frame=bar.update)
    if summary.audio.startswith("dropped"):
        tqdm.write(f"warning: {job.source}: audio {summary.audio}", file=sys.stderr)
    frame_regions = [{"frame": i, "regions": _regions(r)} for i, r in enumerate(summary.regions) if r]
    return {"frames": summary.frames, "audio": summary.audio,
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
    jobs, problems = plan(args.paths, args.output)
    for path, message in problems:
        print(f"error: {path}: {message}", file=sys.stderr)
    if not jobs:
        return 1
    eraser, identity = _make_eraser(args, method=args.method, dilation=args.dilation, mask_shape=args.mask_shape)
    settings = {**dataclasses.asdict(eraser.options), "input_size": eraser.input_size,
                "extra_scales": list(eraser.settings.extra_scales),
                "temporal_window": args.temporal_window}
    report = _open_report(args.report, args.resume)
    counts = {"ok": 0, "failed": len(problems), "skipped": 0}
    regions = 0
    start = time.perf_counter()
    try:
        for path, message in problems:
            _record(report, {"input": str(path), "status": "failed", "error": message})
        for job in tqdm(jobs, desc="files", unit="file", file=sys.stderr, disable=len(jobs) < 2):
            if args.resume and job.destination.exists():
                counts["skipped"] += 1
                _record(report, {"input": str(job.source), "output": str(job.destination), "status": "skipped"})
                continue
            record: dict[str, Any] = {"input": str(job.source), "output": str(job.destination), "kind": job.kind}
            file_start = time.perf_counter()
            try:
                job.destination.parent.mkdir(parents=True, exist_ok=True)
                if job.kind == "image":
                    record.update(_anonymize_image(eraser, job, args.keep_metadata))
                else:
                    record.update(_anonymize_video_job(eraser, job, args))
                record["status"] = "ok"
                counts["ok"] += 1
                regions += record["n_regions"]
            except (ValueError, OSError, RuntimeError) as error:  # InvalidImageError and VideoError are ValueErrors
                message = str(error) or type(error).__name__
                where = "" if str(job.source) in message else f"{job.source}: "
                tqdm.write(f"error: {where}{message}", file=sys.stderr)
                record.update(status="failed", error=message)
                counts["failed"] += 1
            record["seconds"] = round(time.perf_counter() - file_start, 3)
            _record(report, {**record, "model": identity, "settings": settings})
    finally:
        if report:
            report.close()
    total = sum(counts.values())
    print(f"{total} file{'s' * (total != 1)}: {counts['ok']} anonymized, {counts['failed']} failed, "
          f"{counts['skipped']} skipped; {regions} face region{'s' * (regions != 1)}; "
          f"{time.perf_counter() - start:.1f} s")
    return 1 if counts["failed"] else 0


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
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.stem}.", suffix=f".tmp{out.suffix}", dir=out.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    print(f"recording anonymized camera {args.webcam} to {out}; Ctrl-C to stop", file=sys.stderr)
    count = 0
    try:
        writer = open_writer(tmp, 30.0, first.shape[1], first.shape[0])
        try:
            stream = anonymize_frames(eraser, _chain(first, frames), TemporalMax(args.temporal_window), batch_size=1)
            for result in tqdm(stream, unit="frame", file=sys.stderr):
                writer.write(result.anonymized[:, :, ::-1].copy())
                count += 1
        except KeyboardInterrupt:
            pass
        finally:
            writer.release()
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    print(f"{count} frames written to {out}")
    return 0


def _chain(first: np.ndarray, rest: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    yield first
    yield from rest


# --------------------------------------------------------------------------- evaluate command

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
