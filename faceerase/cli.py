"""The ``faceerase`` command: ``anonymize`` images, folders, videos or a webcam (in this process or on Ray);
``anonymize-dataset`` a Hugging Face dataset; ``evaluate`` on WIDER FACE; ``export-onnx``; ``calibrate`` a model's
inference settings. Argument parsing, progress and messages only: the work is in :mod:`faceerase.engines.files`,
:mod:`faceerase.engines.runs`, :mod:`faceerase.engines.ray_engine`, :mod:`faceerase.engines.hf_datasets`,
:mod:`faceerase.media.video` and :mod:`faceerase.training.calibration`.

Every message naming a path or other user-provided text is printed through
:func:`faceerase.media.outputs.printable` (control characters escaped, as in the JSON report).

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
from faceerase.engines.files import (ANONYMIZED, AuditReport, FileJob, JobOptions, Plan, PlanError, is_input_or_output,
                                     plan, process_job, record_context)
from faceerase.engines.ray_engine import INSTALL_HINT, RayUnavailableError, ray_records, require_ray
from faceerase.engines.review import EditsFileError, match_edits, read_edits
from faceerase.engines.runs import RunSummary, account_for
from faceerase.erase.edits import Edits
from faceerase.erase.pipeline import EraserSpec, FaceEraser, ModelLoadError, load_model
from faceerase.media.images import IMAGE_EXTENSIONS, MAX_PIXELS, MAX_PIXELS_ENV
from faceerase.media.metadata import describe_kept
from faceerase.media.outputs import atomic_output, printable, remove_stale_temp_files
from faceerase.media.video import (AUDIO_MODES, DEFAULT_CRF, MAX_CRF, VIDEO_CODECS, VIDEO_EXTENSIONS, VideoError,
                                   VideoOutput, output_suffix, probe_video, read_frames, write_anonymized_video)
from faceerase.model.onnx_model import CPU_PROVIDER, execution_providers
from faceerase.model.runners import BACKENDS
from faceerase.model.settings import (DEFAULT_SETTINGS, GROUPS, NO_IMAGE, EraseSettings, format_setting,
                                      parse_setting, setting_kind)
from faceerase.training.calibration import SCALE_SETS, CalibrationConfig, calibrate

_WEBCAM_FPS = 30.0


class UsageError(Exception):
    """A command line that cannot be run as given (exit code 2)."""


# --------------------------------------------------------------------------- arguments

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
    """Which model runs where, and the settings of erasing (:func:`_settings_options`)."""
    group = parser.add_argument_group("model")
    group.add_argument("--model", help="model folder or Hugging Face Hub repo id (default: the embedded hub/ model)")
    group.add_argument("--revision", help="Hub revision (branch, tag or commit) of --model")
    group.add_argument("--device", help="torch device, e.g. cpu, cuda, cuda:1, mps (default: best available)")
    group.add_argument("--batch-size", type=_positive_int, default=8, help="frames per network pass (default: 8)")
    group.add_argument("--backend", choices=BACKENDS, default="auto",
                       help="network runtime: onnx (onnxruntime), torch, or auto: onnx on the CPU, else torch "
                            "(default: auto)")
    group.add_argument("--execution-provider", type=_execution_provider, metavar="NAME",
                       help="onnxruntime execution provider of the onnx backend, e.g. CUDAExecutionProvider (an "
                            f"unknown NAME lists those installed; default: {CPU_PROVIDER}); implies --backend onnx")
    _settings_options(parser)


def _settings_options(parser: argparse.ArgumentParser) -> None:
    """One option per :class:`~faceerase.model.settings.EraseSettings` field, in its group, with its flag, help and
    choices; an option not given leaves the setting to the model's ``inference.json`` or the field's default."""
    calibrated = DEFAULT_SETTINGS.values()
    for group in GROUPS:
        options = parser.add_argument_group(f"{group} settings")
        for f in dataclasses.fields(EraseSettings):
            flag = f.metadata.get("flag", "--" + f.name.replace("_", "-"))
            if f.metadata["group"] != group or flag is None:
                continue
            origin = "the model's inference.json, else " if f.name in calibrated else ""
            help = f"{f.metadata['help']} (default: {origin}{format_setting(calibrated.get(f.name, f.default))})"
            if setting_kind(f.name) is bool:
                options.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, help=help)
            else:
                choices = f.metadata.get("choices")
                metavar = f.metadata.get("metavar") or ("{" + ",".join(choices) + "}" if choices else None)
                options.add_argument(flag, dest=f.name, type=_setting_type(f.name), metavar=metavar, help=help)


def _setting_type(name: str) -> Callable[[str], dict[str, Any]]:
    """The argparse type of the setting ``name``: the fields its text sets
    (:func:`faceerase.model.settings.parse_setting`, which checks them)."""
    def parse(text: str) -> dict[str, Any]:
        try:
            return parse_setting(name, text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None
    return parse


def _erase_options(parser: argparse.ArgumentParser) -> None:
    """The image size limit of files and datasets."""
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


def _crf(text: str) -> int:
    value = _non_negative_int(text)
    if value > MAX_CRF:
        raise argparse.ArgumentTypeError(f"expected an integer from 0 to {MAX_CRF}, got {value}")
    return value


def _video_options(parser: argparse.ArgumentParser) -> None:
    """How videos are encoded: codec, quality, audio kept or dropped."""
    group = parser.add_argument_group(
        "videos", "Videos are encoded by ffmpeg (without it on PATH, by OpenCV as MPEG-4 Part 2, with a warning), "
                  "keeping every frame, the frame rate and the size; an odd width or height is encoded as yuv444p, "
                  "else yuv420p.")
    group.add_argument("--codec", choices=VIDEO_CODECS, default=VIDEO_CODECS[0],
                       help="libx264 (H.264, plays everywhere) or libx265 (H.265, smaller) (default: %(default)s)")
    group.add_argument("--crf", type=_crf, default=DEFAULT_CRF, metavar=f"0-{MAX_CRF}",
                       help="quality (constant rate factor): lower is better and larger; about 18-20 looks like the "
                            "source (default: %(default)s)")
    group.add_argument("--audio", choices=AUDIO_MODES, default="keep",
                       help="keep the audio tracks (copied, or re-encoded as AAC where the container needs it) or "
                            "drop them: voices are personal data too (default: %(default)s)")


def _video_output(args: argparse.Namespace) -> VideoOutput:
    """The :class:`VideoOutput` of ``--codec``, ``--crf`` and ``--audio``."""
    return VideoOutput(codec=args.codec, crf=args.crf, audio=args.audio)


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
                      help="anonymize camera INDEX (default 0) into the video OUT until Ctrl-C or --max-frames, one "
                           "network pass a frame at --live-input-size (--input-size and --extra-scales, given, win)")
    anon.add_argument("--max-frames", type=_positive_int, help="stop --webcam after this many frames")
    _erase_options(anon)
    anon.add_argument("--resume", action="store_true",
                      help="skip inputs whose output exists and is not older than the input; "
                           "append to the --report")
    anon.add_argument("--keep-metadata", action="store_true", help=describe_kept())
    anon.add_argument("--regions", type=Path, metavar="EDITS.jsonl",
                      help="apply a person's review: JSON Lines of audit records (the app's or the web page's "
                           "downloaded record, a report's lines) whose 'edits' keep regions un-erased (by id) or add "
                           "boxes to erase; each names its image as 'input' (path as in the report, or a file name "
                           "unique in the run). A kept region no longer found fails its file; images with edits are "
                           "erased again even with --resume")
    _video_options(anon)
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

    rule = CalibrationConfig()
    cal = commands.add_parser(
        "calibrate", help="choose a model's inference settings on WIDER FACE train and face-less photos",
        description="Choose MODEL's inference settings (extra passes, auto-threshold floor, mask growth, minimum "
                    "region area) by the calibration rule of faceerase.training.calibration: the highest recall of the "
                    "valid train faces at least --min-face-height high, under limits on the collateral and on the "
                    "masked share of held-out face-less photos (doubled until a candidate meets them). Val is never "
                    "looked at. Prints every candidate and the choice as Markdown; --write saves the choice as "
                    "MODEL/inference.json. The defaults are the rule's.")
    cal.add_argument("model", metavar="MODEL", help="model folder (or Hub repo id, without --write)")
    cal.add_argument("--data", type=Path, required=True, metavar="FOLDER",
                     help="WIDER FACE root folder (official layout); its train split is used")
    cal.add_argument("--negatives", type=Path, required=True, metavar="FOLDER",
                     help="held-out face-less photos (scripts/make_negatives.py's OUT/calibration)")
    cal.add_argument("--images", type=_positive_int, default=rule.images, metavar="N",
                     help="random train images, seed 0 (default: %(default)s)")
    cal.add_argument("--negative-images", type=_positive_int, metavar="N", help="random face-less photos "
                     "(default: all)")
    cal.add_argument("--input-size", type=_non_negative_int, default=rule.input_size, metavar="PX",
                     help="the network's long side; 0 = original size (default: %(default)s)")
    cal.add_argument("--ceiling", type=float, default=rule.ceiling, metavar="P",
                     help="auto-threshold ceiling of every candidate (default: %(default)s)")
    grid = cal.add_argument_group("candidates (one value each: a single candidate)")
    grid.add_argument("--scale-sets", nargs="+", choices=list(SCALE_SETS), default=list(rule.scale_sets),
                      help="extra passes (default: all)")
    grid.add_argument("--floors", type=float, nargs="+", default=list(rule.floors), metavar="P",
                      help="auto-threshold floors (default: %(default)s)")
    grid.add_argument("--dilations", type=_non_negative_int, nargs="+", default=list(rule.dilations), metavar="PX",
                      help="mask growth (default: %(default)s)")
    grid.add_argument("--ratios", type=_non_negative_float, nargs="+", default=list(rule.ratios), metavar="R",
                      help="dilation ratios (default: %(default)s)")
    grid.add_argument("--min-areas", type=_non_negative_int, nargs="+", default=list(rule.min_areas), metavar="PX",
                      help="minimum region areas (default: %(default)s)")
    limits = cal.add_argument_group("the rule's objective and limits")
    limits.add_argument("--min-face-height", type=_positive_int, default=rule.min_face_height, metavar="PX",
                        help="recall over the valid faces at least this high (default: %(default)s)")
    limits.add_argument("--max-collateral", type=_positive_float, default=rule.max_collateral, metavar="F",
                        help="collateral on the train images, a fraction of the image (default: %(default)s)")
    limits.add_argument("--max-negative", type=_positive_float, default=rule.max_negative, metavar="F",
                        help="mean masked share of the face-less photos (default: %(default)s)")
    limits.add_argument("--max-negative-worst", type=_positive_float, default=rule.max_negative_worst, metavar="F",
                        help="largest masked share of any face-less photo (default: %(default)s)")
    cal.add_argument("--live-input-size", type=_positive_int, default=rule.live_input_size, metavar="PX",
                     help="recorded for the webcam (default: %(default)s)")
    cal.add_argument("--write", action="store_true",
                     help="write the chosen settings to MODEL/inference.json (a model.onnx keeps the settings it "
                          "was exported with, which the web page reads: export it again)")
    cal.add_argument("--json", type=Path, metavar="OUT.json", help="also write every candidate and the choice")
    cal.add_argument("--markdown", type=Path, metavar="OUT.md", help="also write the printed Markdown")
    cal.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    cal.set_defaults(handler=_cmd_calibrate)
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


def _settings(args: argparse.Namespace) -> EraseSettings:
    """The settings the options give (None where the model's ``inference.json`` decides)."""
    values: dict[str, Any] = {}
    for f in dataclasses.fields(EraseSettings):
        value = getattr(args, f.name, None)  # the fields an option's text sets, or a switch's bool
        if value is not None:
            values.update(value if isinstance(value, dict) else {f.name: value})
    try:
        return EraseSettings().updated(**values)
    except ValueError as error:  # settings that do not go together, such as a floor above the ceiling
        raise UsageError(str(error)) from None


def _eraser_spec(args: argparse.Namespace) -> EraserSpec:
    """The eraser the model and settings options ask for."""
    if args.execution_provider is not None and args.backend == "torch":
        raise UsageError("--execution-provider is for the onnx backend, not --backend torch")
    return EraserSpec(model=args.model, revision=args.revision, settings=_settings(args), backend=args.backend,
                      device=args.device, execution_provider=args.execution_provider, batch_size=args.batch_size)


def _make_eraser(spec: EraserSpec) -> FaceEraser:
    """The eraser of ``spec`` (on the onnx backend, the model's ``model.onnx`` alone when it is up to date: no
    torch); a model that does not load, or a runtime it cannot run on, is a usage error."""
    try:
        with contextlib.redirect_stdout(sys.stderr):  # huggingface_hub prints progress; stdout is for results
            return spec.build()
    except ModelLoadError as error:
        raise UsageError(f"cannot load the model: {error}") from None
    except ValueError as error:
        raise UsageError(str(error)) from None


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
        if _settings(args).method == NO_IMAGE:
            raise UsageError(f"--method {NO_IMAGE} writes no video: choose another method for --webcam")
        if args.regions is not None:
            raise UsageError("--regions applies to images, not to --webcam")
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
    options = JobOptions(keep_metadata=args.keep_metadata, max_pixels=args.max_pixels, resume=args.resume,
                         video=_video_output(args), edits=_review(args.regions, todo))
    spec = _eraser_spec(args)
    with contextlib.ExitStack() as stack:
        if args.engine == "ray":
            records = _ray_records(stack, args, todo.jobs, spec, options)
        else:
            records = _local_records(todo.jobs, spec, options, progress=not args.quiet)
        report = stack.enter_context(_open_report(args.report, args.resume))
        files = tqdm(records, desc="files", unit="file", total=len(todo.jobs), file=sys.stderr,
                     disable=args.quiet or len(todo.jobs) < 2)
        summary = account_for(todo, files, report, on_record=_announce)
    print(summary)
    return 1 if summary.failed else 0


def _review(path: Path | None, todo: Plan) -> dict[str, Edits]:
    """The ``--regions`` edits by input (none without the option); a UsageError says what does not match."""
    if path is None:
        return {}
    try:
        return match_edits(read_edits(path), [job.source for job in todo.jobs], path)
    except EditsFileError as error:
        raise UsageError(str(error)) from None


def _cmd_anonymize_dataset(args: argparse.Namespace) -> int:
    import datasets

    from faceerase.engines.hf_datasets import (DatasetError, PushError, anonymize_dataset, check_output, open_source,
                                               save_result, status_counts)
    if args.public and args.push_to_hub is None:
        raise UsageError("--public only applies to --push-to-hub")
    try:
        check_output(args.output)  # before any row is anonymized
    except DatasetError as error:
        raise UsageError(str(error)) from None
    if args.report is not None:
        _check_dataset_report(args.report, args.source, args.output)
    spec = _eraser_spec(args)
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
                result = anonymize_dataset(source.dataset, args.image_column, model=spec.model,
                                           max_pixels=args.max_pixels, num_proc=args.num_proc,
                                           **spec.eraser_options())
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


def _local_records(jobs: list[FileJob], spec: EraserSpec, options: JobOptions, *,
                   progress: bool) -> Iterator[dict[str, Any]]:
    """The records of ``jobs`` anonymized one after the other in this process (the model loads first); with
    ``progress``, a progress bar over the frames of each video."""
    if not jobs:
        return iter(())
    eraser = _make_eraser(spec)
    context = record_context(eraser, eraser.identity)

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


def _ray_records(stack: contextlib.ExitStack, args: argparse.Namespace, jobs: list[FileJob], spec: EraserSpec,
                 options: JobOptions) -> Iterator[dict[str, Any]]:
    """The records of ``jobs`` anonymized by Ray actors (``--address``, ``--actors``, ``--cpus-per-actor``,
    ``--gpus-per-actor``), once the model has loaded; Ray stays up until ``stack`` closes."""
    try:
        return stack.enter_context(ray_records(
            jobs, spec, options, actors=args.actors or 2, num_cpus_per_actor=args.cpus_per_actor or 1.0,
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
def _frame_bar(job: FileJob, progress: bool) -> Iterator[Callable[[int], object] | None]:
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
    spec = _eraser_spec(args)
    eraser = _make_eraser(spec)
    # One pass a frame at the live input size, unless the options ask for other passes.
    eraser = eraser.with_settings(eraser.settings.live().updated(input_size=spec.settings.input_size,
                                                                 extra_scales=spec.settings.extra_scales))
    print(printable(f"recording anonymized camera {args.webcam} to {out}; Ctrl-C to stop"), file=sys.stderr)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with _until_ctrl_c(chain([first], frames)) as stream, \
                tqdm(unit="frame", file=sys.stderr, disable=args.quiet) as bar:
            summary = write_anonymized_video(eraser, stream, out, _WEBCAM_FPS,
                                             temporal_window=eraser.settings.temporal_window, batch_size=1,
                                             output=_video_output(args), on_frame=bar.update)
    except (VideoError, OSError) as error:
        print(printable(f"error: {error}"), file=sys.stderr)
        return 1
    for warning in summary.warnings:
        print(printable(f"warning: {warning}"), file=sys.stderr)
    print(printable(f"{summary.frames} frames written to {out}"))
    return 0


# --------------------------------------------------------------------------- evaluate command

def _cmd_export_onnx(args: argparse.Namespace) -> int:
    from faceerase.model.onnx_model import OnnxExportError, export_onnx

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
    from faceerase.training.evaluation import evaluate_widerface

    if not args.data.is_dir():
        raise UsageError(f"WIDER FACE folder not found: {args.data}")
    eraser = _make_eraser(_eraser_spec(args))
    try:
        report = evaluate_widerface(eraser, args.data, split=args.split, limit=args.limit)
    except (ValueError, OSError) as error:
        print(printable(f"error: {args.data}: {error}"), file=sys.stderr)
        return 1
    report = {"model": eraser.identity, "split": args.split, **report}
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n", encoding="utf-8")
    return 0


# --------------------------------------------------------------------------- calibrate command

def _cmd_calibrate(args: argparse.Namespace) -> int:
    if args.write and not Path(args.model).is_dir():
        raise UsageError(f"--write writes into a local model folder; {args.model} is none")
    if not args.data.is_dir():
        raise UsageError(f"WIDER FACE folder not found: {args.data}")
    try:
        config = CalibrationConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(CalibrationConfig)})
    except ValueError as error:
        raise UsageError(str(error)) from None
    try:
        with contextlib.redirect_stdout(sys.stderr):  # huggingface_hub prints progress; stdout is for results
            result = calibrate(args.model, args.data, args.negatives, config, progress=not args.quiet)
    except ModelLoadError as error:
        raise UsageError(f"cannot load the model: {error}") from None
    except (ValueError, OSError) as error:  # no face-less photo, no face to score, unreadable data
        print(printable(f"faceerase: error: {error}"), file=sys.stderr)
        return 1
    markdown = result.markdown()
    print("\n".join(printable(line) for line in markdown.splitlines()))
    if args.json:
        args.json.write_text(json.dumps(result.report(), indent=2) + "\n", encoding="utf-8")
    if args.markdown:
        args.markdown.write_text(markdown, encoding="utf-8")
    if args.write:
        print(printable(f"wrote {result.settings.save(args.model)}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
