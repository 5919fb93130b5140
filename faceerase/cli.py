"""The ``faceerase`` command: ``anonymize`` images, folders, videos or a webcam (in this process or on Ray);
``anonymize-dataset`` a Hugging Face dataset; ``evaluate`` on WIDER FACE; ``export-onnx``. Argument parsing,
progress and messages only: the work is in :mod:`faceerase.batch`, :mod:`faceerase.runs`,
:mod:`faceerase.ray_engine`, :mod:`faceerase.hf_datasets` and :mod:`faceerase.video`.

Every message naming a path or other user-provided text is printed through
:func:`faceerase.outputs.printable` (control characters escaped, as in the JSON report).

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
import signal
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from itertools import chain
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
from tqdm import tqdm

from faceerase import __version__
from faceerase.anonymize import BLUR_SIGMA_FRACTION, METHODS, MOSAIC_BLOCKS
from faceerase.batch import (ANONYMIZED, AuditReport, Job, JobOptions, PlanError, is_input_or_output, plan,
                             process_job, record_context)
from faceerase.images import IMAGE_EXTENSIONS, MAX_PIXELS, MAX_PIXELS_ENV
from faceerase.masks import MASK_SHAPES
from faceerase.metadata import describe_kept
from faceerase.onnx_model import CPU_PROVIDER, execution_providers
from faceerase.outputs import atomic_output, printable, remove_stale_temp_files
from faceerase.pipeline import BACKENDS, FaceEraser, ModelLoadError, load_model
from faceerase.ray_engine import INSTALL_HINT, RayUnavailableError, ray_records, require_ray
from faceerase.runs import EraserArgs, RunSummary, account_for
from faceerase.video import (DEFAULT_TEMPORAL_WINDOW, VIDEO_EXTENSIONS, VideoError, output_suffix, probe_video,
                             read_frames, write_anonymized_video)

_WEBCAM_FPS = 30.0


class UsageError(Exception):
    """A command line that cannot be run as given (exit code 2)."""


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


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {value:g}")
    return value


def _execution_provider(name: str) -> str:
    available = execution_providers()
    if name not in available:
        raise argparse.ArgumentTypeError(
            f"unknown execution provider {name!r}; available here: "
            f"{', '.join(available) or 'none (onnxruntime is not installed)'}")
    return name


_ANONYMIZE_EPILOG = (
    "Every input is accounted for in the summary and the --report: images (single-frame "
    f"{', '.join(sorted(IMAGE_EXTENSIONS))}) and videos are anonymized; multi-frame images (animated GIF, PNG or "
    "WebP, multi-page TIFF) and HEIC, AVIF and camera raw files fail as unsupported; a JPEG's extra MPF images "
    "(previews, depth maps) are dropped. In folders, hidden files and folders, links to folders (not followed), "
    "broken links, special files (named pipes, sockets, devices) and other file types are skipped with the reason; "
    "a special file named as a PATH fails, never opened. A video that decodes to fewer "
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
    group.add_argument("--backend", choices=BACKENDS, default="auto",
                       help="network runtime: onnx (onnxruntime), torch, or auto: onnx on the CPU, else torch "
                            "(default: auto)")
    group.add_argument("--execution-provider", type=_execution_provider, metavar="NAME",
                       help="onnxruntime execution provider of the onnx backend, e.g. CUDAExecutionProvider (an "
                            f"unknown NAME lists those installed; default: {CPU_PROVIDER}); implies --backend onnx")
    group.add_argument("--threshold", type=_threshold, default=("auto", None), metavar="auto|seed|FLOAT",
                       help="mask threshold: auto (calibrated Otsu), seed (2018 rule) or a fixed probability")


def _erase_options(parser: argparse.ArgumentParser) -> None:
    """How the faces are erased, and the image size limit: the same for files and datasets."""
    parser.add_argument("--method", choices=METHODS, default="inpaint_telea", help="how faces are erased")
    parser.add_argument("--dilation", type=_non_negative_int, metavar="PX",
                        help="grow the mask by this many pixels (default: the model's inference.json, else 8)")
    parser.add_argument("--dilation-ratio", type=_non_negative_float, metavar="R",
                        help="grow each region by R x its box's longer side where that is more than --dilation "
                             "(default: the model's inference.json, else 0)")
    parser.add_argument("--mosaic-size", type=_positive_int, metavar="BLOCKS",
                        help="--method mosaic: blocks along each region's longer side; fewer is coarser "
                             f"(default: {MOSAIC_BLOCKS})")
    parser.add_argument("--blur-strength", type=_positive_float, metavar="F",
                        help="--method blur: Gaussian sigma as a fraction of each region's longer side; larger is "
                             f"blurrier (default: {BLUR_SIGMA_FRACTION})")
    parser.add_argument("--mask-shape", choices=MASK_SHAPES,
                        help="predicted mask (default), or an ellipse/box per region")
    parser.add_argument("--max-pixels", type=_positive_int, metavar="N",
                        help="images of more than N pixels fail before they are decoded (default: "
                             f"${MAX_PIXELS_ENV}, else {MAX_PIXELS}; memory grows with the image size)")


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {value:g}")
    return value


def _engine_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "engine", "--engine ray reads the files with Ray Data and anonymizes them in a pool of Ray actors, each "
                  "loading the model once; the inputs and OUT must be at the same paths on every node (shared "
                  "storage). Outputs, --resume, the --report and the summary are those of the local engine "
                  f"(report records in the order files finish). Needs {INSTALL_HINT}.")
    group.add_argument("--engine", choices=("local", "ray"), default="local",
                       help="local: one file after the other in this process (default); ray: a pool of Ray actors")
    group.add_argument("--address", metavar="ADDRESS",
                       help="the Ray cluster: auto (the cluster of this node), ray://HEAD:10001 (Ray Client) or "
                            "HOST:PORT (default: start a local Ray on this machine)")
    group.add_argument("--actors", type=_positive_int, metavar="N", help="actors in the pool (default: 2)")
    group.add_argument("--cpus-per-actor", type=_positive_float, metavar="F",
                       help="CPUs Ray reserves for each actor (default: 1)")
    group.add_argument("--gpus-per-actor", type=_positive_float, metavar="F",
                       help="GPUs for each actor (fractions share a GPU): a GPU actor runs the torch backend on "
                            "CUDA (leave --backend at auto and --device unset); default: CPU actors")


class _Parser(argparse.ArgumentParser):
    """An argument parser whose error messages (quoting the arguments given) are :func:`printable`."""

    def error(self, message: str) -> NoReturn:
        super().error(printable(message))


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``faceerase`` command."""
    parser = _Parser(prog="faceerase", description="Find every face with a U-Net and erase it.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
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
    _erase_options(anon)
    anon.add_argument("--temporal-window", type=_positive_int, default=DEFAULT_TEMPORAL_WINDOW, metavar="N",
                      help="videos: mask the max probability over the last N frames (1 = off; default: %(default)s)")
    anon.add_argument("--resume", action="store_true",
                      help="skip inputs whose output exists and is not older than the input; "
                           "append to the --report")
    anon.add_argument("--keep-metadata", action="store_true", help=describe_kept())
    anon.add_argument("--report", type=Path, metavar="FILE.jsonl",
                      help="write an audit record per input (anonymized, failed or skipped, with why); "
                           "it must not be an input or an output")
    anon.add_argument("-q", "--quiet", action="store_true",
                      help="no progress bars (errors, warnings and the summary are still printed)")
    _model_options(anon)
    _engine_options(anon)
    anon.set_defaults(handler=_cmd_anonymize)

    data = commands.add_parser(
        "anonymize-dataset", help="anonymize the images of a Hugging Face dataset",
        description="Anonymize the image column of one split of SOURCE (a Hugging Face Hub dataset id, a folder "
                    "written by save_to_disk, or a folder of images read with the imagefolder builder) and save "
                    "the result with save_to_disk into OUT. Every row is kept with its other columns; the result "
                    "gains audit columns (faceerase_status, faceerase_error, faceerase_regions, "
                    "faceerase_threshold, faceerase_model, faceerase_weights_sha256). A row whose image cannot be "
                    "decoded keeps no image and is marked failed; images are re-encoded without metadata. A folder "
                    "is planned as the anonymize command plans it: the files that become no row (other types, "
                    "hidden, HEIC, videos, ...) are counted in the summary, each failed one is named, and --report "
                    "lists each with why.")
    data.add_argument("source", metavar="SOURCE", help="Hub dataset id, save_to_disk folder or folder of images")
    data.add_argument("-o", "--output", type=Path, required=True, metavar="OUT",
                      help="new folder for the anonymized dataset (save_to_disk)")
    data.add_argument("--split", help="the split to anonymize (needed when SOURCE has several)")
    data.add_argument("--config", metavar="NAME", help="configuration of a Hub dataset")
    data.add_argument("--dataset-revision", metavar="REV", help="revision of a Hub dataset")
    data.add_argument("--image-column", default="image", metavar="NAME", help="default: %(default)s")
    data.add_argument("--num-proc", type=_positive_int, metavar="N",
                      help="worker processes (Dataset.map num_proc), each loading the model once "
                           "(default: this process)")
    data.add_argument("--push-to-hub", metavar="REPO_ID",
                      help="also push the result to this Hub dataset repo (private unless --public)")
    data.add_argument("--public", action="store_true", help="push as a public dataset")
    data.add_argument("--report", type=Path, metavar="FILE.jsonl",
                      help="write an audit record per file of a folder SOURCE that is no row (failed or skipped, "
                           "with why; the rows' audit is in their columns); not in SOURCE or OUT")
    _erase_options(data)
    _model_options(data)
    data.set_defaults(handler=_cmd_anonymize_dataset)

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
        print(printable(f"faceerase: error: {error}"), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("faceerase: interrupted", file=sys.stderr)
        return 130


# --------------------------------------------------------------------------- model

def _load_model(args: argparse.Namespace, device: str | None):
    """``--model`` (and ``--revision``) loaded on ``device``; a model that does not load is a usage error."""
    try:
        with contextlib.redirect_stdout(sys.stderr):  # huggingface_hub prints progress; stdout is for results
            return load_model(args.model, revision=args.revision, device=device)
    except ModelLoadError as error:
        raise UsageError(f"cannot load the model: {error}") from None


def _eraser_args(args: argparse.Namespace, *, post: bool = True) -> EraserArgs:
    """The eraser's arguments from the model options, and with ``post`` from the erase options."""
    mode, value = args.threshold
    if args.execution_provider is not None and args.backend == "torch":
        raise UsageError("--execution-provider is for the onnx backend, not --backend torch")
    erase = {"method": args.method, "dilation": args.dilation, "dilation_ratio": args.dilation_ratio,
             "mask_shape": args.mask_shape, "mosaic_blocks": args.mosaic_size,
             "blur_strength": args.blur_strength} if post else {}
    return EraserArgs(model=args.model, revision=args.revision, device=args.device, backend=args.backend,
                      threshold_mode=mode, threshold_value=value, batch_size=args.batch_size,
                      input_size=args.input_size, execution_provider=args.execution_provider, **erase)


def _make_eraser(eraser_args: EraserArgs) -> tuple[FaceEraser, dict[str, Any]]:
    """The eraser for ``--model`` (on the onnx backend, its ``model.onnx`` alone when it is up to date: no
    torch); returns it with the model's identity for reports."""
    try:
        with contextlib.redirect_stdout(sys.stderr):  # huggingface_hub prints progress; stdout is for results
            return eraser_args.build()
    except ModelLoadError as error:
        raise UsageError(f"cannot load the model: {error}") from None


# --------------------------------------------------------------------------- anonymize command

_RAY_OPTIONS = ("address", "actors", "cpus_per_actor", "gpus_per_actor")


def _cmd_anonymize(args: argparse.Namespace) -> int:
    if args.output is None:
        raise UsageError("the output -o/--output is required")
    ray_options = [f"--{name.replace('_', '-')}" for name in _RAY_OPTIONS if getattr(args, name) is not None]
    if args.engine == "local" and ray_options:
        raise UsageError(f"{ray_options[0]} only applies to --engine ray")
    if args.gpus_per_actor and args.execution_provider is not None:
        raise UsageError("GPU actors (--gpus-per-actor) run the torch backend; --execution-provider is for the "
                         "onnx backend")
    if args.webcam is not None:
        if args.paths:
            raise UsageError("give either PATHs or --webcam, not both")
        if args.engine == "ray":
            raise UsageError("--webcam runs on the local engine only")
        return _run_webcam(args)
    if not args.paths:
        raise UsageError("nothing to anonymize: give at least one PATH (or --webcam)")
    if args.max_frames is not None:
        raise UsageError("--max-frames only applies to --webcam")
    paths, out = args.paths, args.output
    if args.engine == "ray":
        _require_ray()
        paths, out = [path.absolute() for path in paths], out.absolute()  # the same paths on every node
    try:
        todo = plan(paths, out)
    except PlanError as error:
        raise UsageError(str(error)) from None
    if args.report is not None and is_input_or_output(args.report, paths, todo):
        raise UsageError(f"the report {args.report} is an input or an output of this run; "
                         f"choose another --report file")
    for path in remove_stale_temp_files(sorted({job.destination.parent for job in todo.jobs})):
        print(printable(f"removed {path}, a temporary file left by an interrupted run"), file=sys.stderr)
    options = JobOptions(keep_metadata=args.keep_metadata, max_pixels=args.max_pixels,
                         temporal_window=args.temporal_window, resume=args.resume)
    eraser_args = _eraser_args(args)
    with contextlib.ExitStack() as stack:
        if args.engine == "ray":
            records = _ray_records(stack, args, todo.jobs, eraser_args, options)
        else:
            records = _local_records(todo.jobs, eraser_args, options, progress=not args.quiet)
        report = stack.enter_context(_open_report(args.report, args.resume))
        files = tqdm(records, desc="files", unit="file", total=len(todo.jobs), file=sys.stderr,
                     disable=args.quiet or len(todo.jobs) < 2)
        summary = account_for(todo, files, report, on_record=_announce)
    print(summary)
    return 1 if summary.failed else 0


def _cmd_anonymize_dataset(args: argparse.Namespace) -> int:
    import datasets

    from faceerase.hf_datasets import (DatasetError, PushError, anonymize_dataset, check_output, open_source,
                                       save_result, status_counts)
    if args.public and args.push_to_hub is None:
        raise UsageError("--public only applies to --push-to-hub")
    try:
        check_output(args.output)  # before any row is anonymized
    except DatasetError as error:
        raise UsageError(str(error)) from None
    if args.report is not None:
        _check_dataset_report(args.report, args.source, args.output)
    eraser_args = _eraser_args(args)
    options = {name: value for name, value in dataclasses.asdict(eraser_args).items()
               if name not in ("model", "revision") and value is not None}
    # What this command prepares on the way stays out of the source folder and the caches: whatever loading the
    # source copies of the un-erased originals (the image folder's Arrow tables, a Hub dataset's downloaded files
    # and Arrow copy) in a scratch folder removed at the end, the map's output in datasets' temporary files
    # (caching off) removed at exit.
    caching = datasets.is_caching_enabled()
    datasets.disable_caching()
    try:
        with tempfile.TemporaryDirectory(prefix="faceerase-dataset-") as scratch, \
                _open_report(args.report, resume=False) as report:
            with contextlib.redirect_stdout(sys.stderr):  # huggingface_hub prints progress; stdout is for results
                source = open_source(args.source, args.split, config=args.config, revision=args.dataset_revision,
                                     cache_dir=scratch)
            left_out = account_for(source.left_out, (), report, on_record=_announce)
            with contextlib.redirect_stdout(sys.stderr):
                result = anonymize_dataset(source.dataset, args.image_column, model=args.model,
                                           revision=args.revision, max_pixels=args.max_pixels,
                                           num_proc=args.num_proc, **options)
            save_result(result, args.output, push_to_hub=args.push_to_hub, private=not args.public)
            counts = status_counts(result)
    except ModelLoadError as error:
        raise UsageError(f"cannot load the model: {error}") from None
    except DatasetError as error:
        raise UsageError(str(error)) from None
    except PushError as error:
        print(printable(f"faceerase: error: {error}"), file=sys.stderr)
        return 1
    finally:
        if caching:
            datasets.enable_caching()
    print(printable(f"{len(result)} rows: {counts['anonymized']} anonymized, {counts['failed']} failed "
                    f"(faceerase_status, faceerase_error); {_left_out_summary(left_out)}saved to {args.output}"
                    + (f" and pushed to {args.push_to_hub}" if args.push_to_hub else "")))
    return 1 if counts["failed"] or left_out.failed else 0


def _check_dataset_report(report: Path, source: str, output: Path) -> None:
    """Refuse an anonymize-dataset ``--report`` inside the source folder or the output folder."""
    folders = [output, *([Path(source).expanduser()] if Path(source).expanduser().exists() else [])]
    where = report.resolve()
    if any(where == folder.resolve() or folder.resolve() in where.parents for folder in folders):
        raise UsageError(f"the report {report} is inside the source folder or the output; "
                         f"choose another --report file")


def _left_out_summary(left_out: RunSummary) -> str:
    """The part of the anonymize-dataset summary that counts the files of the source that became no row."""
    if not left_out.total:
        return ""
    reasons = ", ".join(f"{n} {reason}" for reason, n in sorted(left_out.skipped.items()))
    return (f"{left_out.total} files left out: {left_out.failed} failed, {sum(left_out.skipped.values())} skipped"
            f"{f' ({reasons})' * bool(reasons)}; ")


def _local_records(jobs: list[Job], eraser_args: EraserArgs, options: JobOptions, *,
                   progress: bool) -> Iterator[dict[str, Any]]:
    """The records of ``jobs`` anonymized one after the other in this process (the model loads first); with
    ``progress``, a progress bar over the frames of each video."""
    if not jobs:
        return iter(())
    eraser, identity = _make_eraser(eraser_args)
    context = record_context(eraser, options, identity)

    def records() -> Iterator[dict[str, Any]]:
        for job in jobs:
            with _frame_bar(job, progress) as on_frame:
                yield process_job(eraser, job, options, context, on_frame=on_frame)
    return records()


def _require_ray() -> None:
    try:
        require_ray()
    except RayUnavailableError as error:
        raise UsageError(str(error)) from None


def _ray_records(stack: contextlib.ExitStack, args: argparse.Namespace, jobs: list[Job], eraser_args: EraserArgs,
                 options: JobOptions) -> Iterator[dict[str, Any]]:
    """The records of ``jobs`` anonymized by Ray actors (``--address``, ``--actors``, ``--cpus-per-actor``,
    ``--gpus-per-actor``), once the model has loaded; Ray stays up until ``stack`` closes."""
    try:
        return stack.enter_context(ray_records(
            jobs, eraser_args, options, actors=args.actors or 2, num_cpus_per_actor=args.cpus_per_actor or 1.0,
            num_gpus_per_actor=args.gpus_per_actor or 0.0, address=args.address))
    except ModelLoadError as error:
        raise UsageError(f"cannot load the model: {error}") from None
    except (ValueError, ConnectionError) as error:
        raise UsageError(f"cannot run on Ray: {error}") from None


def _open_report(path: Path | None, resume: bool) -> contextlib.AbstractContextManager[AuditReport | None]:
    """The ``--report`` (appended to with ``--resume``), or nothing when none was asked for."""
    if path is None:
        return contextlib.nullcontext()
    try:
        return AuditReport(path, append=resume)
    except OSError as error:
        raise UsageError(str(error)) from None


@contextlib.contextmanager
def _frame_bar(job: Job, progress: bool) -> Iterator[Callable[[int], object] | None]:
    """A progress bar over the frames of a video job, yielding its update function (None for an image, or
    without ``progress``)."""
    if job.kind != "video" or not progress:
        yield None
        return
    try:
        total = probe_video(job.source).frame_count or None
    except VideoError:  # process_job reports it
        total = None
    with tqdm(desc=printable(job.source.name), total=total, unit="frame", leave=False, file=sys.stderr) as bar:
        yield bar.update


def _announce(record: dict[str, Any]) -> None:
    """Print the warnings of an anonymized file and the error of a failed input (above the progress bars)."""
    if record["status"] == ANONYMIZED:
        for warning in record.get("warnings", []):
            tqdm.write(printable(f"warning: {record['input']}: {warning}"), file=sys.stderr)
    elif record["status"] == "failed":
        message = record["error"]
        where = "" if record["input"] in message else f"{record['input']}: "
        tqdm.write(printable(f"error: {where}{message}"), file=sys.stderr)


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


@contextlib.contextmanager
def _until_ctrl_c(frames: Iterable[np.ndarray]) -> Iterator[Iterator[np.ndarray]]:
    """``frames``, ending at the first Ctrl-C instead of raising :class:`KeyboardInterrupt`, so that the frames
    so far are written out; a second Ctrl-C interrupts as usual."""
    stopped = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopped
        stopped = True
        signal.signal(signal.SIGINT, previous)

    def until_stopped() -> Iterator[np.ndarray]:
        for item in frames:
            if stopped:
                return
            yield item

    previous = signal.signal(signal.SIGINT, stop)
    try:
        yield until_stopped()
    finally:
        signal.signal(signal.SIGINT, previous)


def _run_webcam(args: argparse.Namespace) -> int:
    out: Path = args.output
    if out.suffix.lower() not in VIDEO_EXTENSIONS:
        out = out / f"webcam-{datetime.now():%Y%m%d-%H%M%S}.mp4"
    out = out.with_suffix(output_suffix(out))
    frames = _camera_frames(args.webcam, args.max_frames)
    first = next(frames, None)
    if first is None:
        raise UsageError(f"camera {args.webcam} gives no frames")
    eraser, _ = _make_eraser(_eraser_args(args))
    print(printable(f"recording anonymized camera {args.webcam} to {out}; Ctrl-C to stop"), file=sys.stderr)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with _until_ctrl_c(chain([first], frames)) as stream, \
                tqdm(unit="frame", file=sys.stderr, disable=args.quiet) as bar:
            summary = write_anonymized_video(eraser, stream, out, _WEBCAM_FPS, temporal_window=args.temporal_window,
                                             batch_size=1, on_frame=bar.update)
    except (VideoError, OSError) as error:
        print(printable(f"error: {error}"), file=sys.stderr)
        return 1
    print(printable(f"{summary.frames} frames written to {out}"))
    return 0


# --------------------------------------------------------------------------- evaluate command

def _cmd_export_onnx(args: argparse.Namespace) -> int:
    from faceerase.onnx_model import OnnxExportError, export_onnx

    if args.output.suffix != ".onnx":
        raise UsageError(f"the output must be a .onnx file, got {args.output}")
    model = _load_model(args, "cpu")
    try:
        data = export_onnx(model)
    except OnnxExportError as error:
        print(printable(f"faceerase: error: {error}"), file=sys.stderr)
        return 1
    with atomic_output(args.output) as tmp:
        tmp.write_bytes(data)
    print(printable(f"wrote {args.output} ({len(data) / 2**20:.1f} MiB, size divisor {model.size_divisor})"))
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from faceerase.evaluation import evaluate_widerface

    if not args.data.is_dir():
        raise UsageError(f"WIDER FACE folder not found: {args.data}")
    eraser, identity = _make_eraser(_eraser_args(args, post=False))
    try:
        report = evaluate_widerface(eraser, args.data, split=args.split, limit=args.limit)
    except (ValueError, OSError) as error:
        print(printable(f"error: {args.data}: {error}"), file=sys.stderr)
        return 1
    report = {"model": identity, "split": args.split, **report}
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
