"""The Ray engine of the ``anonymize`` command: the files of a run anonymized by a pool of Ray actors.

The driver (the process that calls :func:`anonymize_with_ray`, or ``faceerase anonymize --engine ray``) plans the
run as the local engine does, removes stale temporary files, and sends the jobs (paths only, as rows of
:func:`ray.data.from_items`) to ``map_batches`` with :class:`EraseFiles`, a callable class: each actor builds the
eraser once and runs :func:`faceerase.engines.files.process_job` on its rows, which reads each input where it lies and
writes its output atomically. The audit records stream back to the driver, which alone counts them and writes
the report. Inputs and outputs must therefore be at the same absolute paths on the driver and on every node
(shared storage); the paths are made absolute before planning.

Ray is an optional dependency (``pip install 'faceerase[ray]'``), imported only when a run starts.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import socket
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import Any

from faceerase.engines.files import (AuditReport, FileJob, JobOptions, PlanError, failure_record, is_input_or_output,
                                     plan, process_job, record_context)
from faceerase.engines.runs import RunSummary, account_for
from faceerase.erase.pipeline import EraserSpec
from faceerase.media.outputs import remove_stale_temp_files
from faceerase.model.loading import is_local_source

INSTALL_HINT = "pip install 'faceerase[ray]'"
MAX_BLOCKS = 4096
"""At most this many blocks of jobs: up to it, one job per block, so that a long video holds back no other file."""

logger = logging.getLogger(__name__)

_QUIET_LOGGERS = {"ray.data": logging.WARNING,  # not the INFO lines of every execution
                  "ray.data._internal.progress": logging.ERROR}  # not "progress bars disabled"


class RayUnavailableError(ImportError):
    """Ray Data is not installed."""


def require_ray() -> ModuleType:
    """The ``ray`` module with Ray Data imported; :class:`RayUnavailableError` says how to install it."""
    try:
        import ray
        import ray.data
    except ImportError:
        raise RayUnavailableError(f"the ray engine needs Ray Data, which is not installed: {INSTALL_HINT}") from None
    return ray


class EraseFiles:
    """A Ray Data callable class (``map_batches(EraseFiles, fn_constructor_args=(eraser_args, options))``): each
    actor builds the eraser of ``eraser_args`` (an :class:`~faceerase.erase.pipeline.EraserSpec`) once; each row
    (``source``, ``destination``, ``kind``: a :class:`~faceerase.engines.files.FileJob`) is anonymized by
    :func:`~faceerase.engines.files.process_job` into the column ``record``, the audit record as JSON text (records of
    images, videos and failures have different fields)."""

    def __init__(self, eraser_args: EraserSpec, options: JobOptions):
        self.eraser = eraser_args.build()
        self.options = options
        self.context = record_context(self.eraser, self.eraser.identity)

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[str]]:
        """The records of the batch's jobs; a file that cannot be anonymized gives a failed record."""
        columns = zip(batch["source"], batch["destination"], batch["kind"], strict=True)
        jobs = [FileJob(Path(source), Path(destination), str(kind)) for source, destination, kind in columns]
        return {"record": [json.dumps(process_job(self.eraser, job, self.options, self.context)) for job in jobs]}


def anonymize_with_ray(paths: Sequence[str | Path], out: str | Path, *, eraser_args: EraserSpec = EraserSpec(),
                       options: JobOptions = JobOptions(), report: str | Path | None = None, actors: int = 2,
                       num_cpus_per_actor: float = 1.0, num_gpus_per_actor: float = 0.0, address: str | None = None,
                       on_record: Callable[[dict[str, Any]], object] | None = None) -> RunSummary:
    """Anonymize images, videos and folders ``paths`` into ``out`` as ``faceerase anonymize`` does, on Ray.

    Planning, outputs, ``options.resume`` and the JSON Lines ``report`` (appended to when resuming) are the
    command's; every input is counted in the returned summary and has a record in the report (in the order the
    files finish), and ``on_record`` sees each record. See :func:`ray_records` for ``actors``, the resources of
    each actor and ``address``. Raises :class:`~faceerase.engines.files.PlanError` for inputs and outputs (or a report)
    that cannot be run as given, :class:`~faceerase.model.loading.ModelLoadError` when the model does not load,
    :class:`RayUnavailableError` without Ray, :class:`ValueError` for settings Ray cannot run and
    :class:`ConnectionError` for a cluster it cannot reach.
    """
    require_ray()
    inputs, out = [Path(path).absolute() for path in paths], Path(out).absolute()
    todo = plan(inputs, out)
    if report is not None and is_input_or_output(Path(report), inputs, todo):
        raise PlanError(f"the report {report} is an input or an output of this run; choose another report file")
    for path in remove_stale_temp_files(sorted({job.destination.parent for job in todo.jobs})):
        logger.warning("removed %s, a temporary file left by an interrupted run", path)
    with ray_records(todo.jobs, eraser_args, options, actors=actors, num_cpus_per_actor=num_cpus_per_actor,
                     num_gpus_per_actor=num_gpus_per_actor, address=address) as records:
        audit = AuditReport(Path(report), append=options.resume) if report is not None else None
        with audit or contextlib.nullcontext():
            return account_for(todo, records, audit, on_record)


@contextlib.contextmanager
def ray_records(jobs: Sequence[FileJob], eraser_args: EraserSpec, options: JobOptions, *, actors: int = 2,
                num_cpus_per_actor: float = 1.0, num_gpus_per_actor: float = 0.0,
                address: str | None = None) -> Iterator[Iterator[dict[str, Any]]]:
    """Run ``jobs`` (absolute paths) on a pool of ``actors`` Ray actors; yields an iterator of their audit
    records, in the order the files finish.

    Each actor reserves ``num_cpus_per_actor`` CPUs and ``num_gpus_per_actor`` GPUs: with GPUs it runs the torch
    backend on its GPU (``eraser_args`` must leave the backend at auto or torch and the device unset or cuda),
    without them it runs on the CPU. ``address`` is given to ``ray.init`` (``"auto"``: the cluster of this node,
    ``"ray://HEAD:10001"``: a remote cluster through Ray Client); None starts a local Ray with enough CPUs for
    the actors, unless this process is connected to Ray already: that connection is used and left open. A Ray
    this function started is shut down on exit. Before any file, one Ray task with an actor's resources loads
    the model: :class:`~faceerase.model.loading.ModelLoadError` when it does not load. An unreachable ``HOST:PORT`` is a
    :class:`ConnectionError`. Ray's progress bars and INFO logs are off, and so are the logs of its workers
    (the records carry the errors of files); Ray's own errors are raised. An actor that crashes (say, on a file that
    crashes its decoder) is not restarted: the run ends with Ray's error, and ``--resume`` continues it.
    """
    if actors < 1:
        raise ValueError(f"actors must be >= 1, got {actors}")
    if num_cpus_per_actor < 0 or num_gpus_per_actor < 0:
        raise ValueError("the CPUs and GPUs of an actor cannot be negative")
    relative = [path for job in jobs for path in (job.source, job.destination) if not path.is_absolute()]
    if relative:
        raise ValueError(f"Ray actors may run on other machines: give absolute paths, not {relative[0]}")
    eraser_args = _actor_eraser_args(eraser_args, num_gpus_per_actor, num_cpus_per_actor)
    ray = require_ray()
    if address is not None:
        _check_reachable(address)
    if not jobs:
        yield iter(())
        return
    resources = {"num_cpus": num_cpus_per_actor, **({"num_gpus": num_gpus_per_actor} if num_gpus_per_actor else {})}
    with _quiet(ray), _connection(ray, address, cpus=math.ceil(actors * num_cpus_per_actor)) as started:
        gpus = ray.cluster_resources().get("GPU", 0)
        if started and num_gpus_per_actor > gpus:
            raise ValueError(f"an actor needs {num_gpus_per_actor:g} GPU but this machine has {gpus:g}")
        _check_model(ray, eraser_args, resources)
        yield _records(ray, jobs, eraser_args, options, min(actors, len(jobs)), resources)


def _actor_eraser_args(eraser_args: EraserSpec, num_gpus: float, num_cpus: float) -> EraserSpec:
    """``eraser_args`` for an actor: a local model folder by its absolute path; the torch backend on CUDA for a
    GPU actor, the CPU otherwise, with onnxruntime on as many threads as the actor has CPUs (not every core of
    the node, which the node's other actors share)."""
    model = eraser_args.model
    if model is not None and is_local_source(model):
        model = str(Path(model).expanduser().absolute())
    device = eraser_args.device
    if num_gpus:
        if eraser_args.backend == "onnx":
            raise ValueError("GPU actors run the torch backend (the onnx backend runs on the CPU); "
                             "leave the backend at auto or torch")
        if device not in (None, "cuda"):
            raise ValueError(f"GPU actors run on the GPU Ray gives them; leave the device unset, not {device!r}")
        return replace(eraser_args, model=model, backend="torch", device="cuda")
    if device not in (None, "cpu"):
        raise ValueError(f"actors without GPUs run on the CPU: device {device!r} needs GPUs per actor")
    threads = eraser_args.threads or max(1, math.floor(num_cpus))
    return replace(eraser_args, model=model, device="cpu", threads=threads)


def _check_reachable(address: str) -> None:
    """A ``HOST:PORT`` address must accept connections (``ray.init`` would retry it for ever)."""
    if address in ("auto", "local") or "://" in address:
        return
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=10).close()
    except (OSError, ValueError) as error:
        raise ConnectionError(f"cannot reach the Ray cluster at {address}: {error}") from None


@contextlib.contextmanager
def _quiet(ray: ModuleType) -> Iterator[None]:
    """No progress bars and no INFO logs from Ray Data while the run lasts; warnings and errors stay."""
    context = ray.data.DataContext.get_current()
    bars = context.enable_progress_bars
    levels = {name: logging.getLogger(name).level for name in _QUIET_LOGGERS}
    context.enable_progress_bars = False
    for name, level in _QUIET_LOGGERS.items():
        logging.getLogger(name).setLevel(level)
    try:
        yield
    finally:
        context.enable_progress_bars = bars
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


@contextlib.contextmanager
def _connection(ray: ModuleType, address: str | None, cpus: int) -> Iterator[bool]:
    """Connected to Ray (see :func:`ray_records`); yields whether this call started a local Ray."""
    if ray.is_initialized():
        if address is not None:
            raise ValueError(f"this process is connected to Ray already; leave the address out to use that "
                             f"connection, not {address!r}")
        yield False
        return
    quiet = {"logging_level": logging.ERROR, "log_to_driver": False}  # records carry the errors of files
    if address is None:
        ray.init("local", num_cpus=max(os.cpu_count() or 1, cpus), include_dashboard=False, **quiet)
    else:
        ray.init(address, **quiet)
    try:
        yield address is None
    finally:
        ray.shutdown()


def _load_error(eraser_args: EraserSpec) -> tuple[bool, str] | None:
    """Why the eraser of ``eraser_args`` cannot be built: (whether the model does not load, else a setting is
    refused; the message). None when it can."""
    from faceerase.model.loading import ModelLoadError

    try:
        eraser_args.build()
    except ModelLoadError as error:
        return True, str(error)
    except ValueError as error:
        return False, str(error)
    return None


def _check_model(ray: ModuleType, eraser_args: EraserSpec, resources: dict[str, float]) -> None:
    """Load the model once in a Ray task with an actor's resources: a model that does not load fails here,
    before any file is touched, instead of killing every actor."""
    from faceerase.model.loading import ModelLoadError

    error = ray.get(ray.remote(_load_error).options(**resources).remote(eraser_args))
    if error is not None:
        model_error, message = error
        raise ModelLoadError(message) if model_error else ValueError(message)


def _records(ray: ModuleType, jobs: Sequence[FileJob], eraser_args: EraserSpec, options: JobOptions, actors: int,
             resources: dict[str, float]) -> Iterator[dict[str, Any]]:
    rows = [{"source": str(job.source), "destination": str(job.destination), "kind": job.kind} for job in jobs]
    # max_restarts=0: by default Ray Data restarts a crashed actor and retries its batch for ever, so a file that
    # crashes the process decoding it would never let the run end; here it ends the run (--resume continues it).
    # Without restarts Ray also stops printing, for every actor pool, an error-level line that restarts may fail
    # (ray-project/ray#57733). Ray 2.60 takes max_restarts only through its deprecated **ray_remote_args.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "`ray_remote_args` is deprecated", DeprecationWarning)
        dataset = ray.data.from_items(rows, override_num_blocks=min(len(rows), MAX_BLOCKS)).map_batches(
            EraseFiles, fn_constructor_args=(eraser_args, options), compute=ray.data.ActorPoolStrategy(size=actors),
            batch_size=1, batch_format="numpy", max_restarts=0, **resources)
    done: set[str] = set()
    try:
        for row in dataset.iter_rows():
            record = json.loads(row["record"])
            done.add(record["input"])
            yield record
    except ray.exceptions.RayError as error:  # an actor died (a file crashed its process, a node was lost)
        reason = f"not anonymized: the Ray run stopped ({type(error).__name__}: {_first_line(str(error))})"
        for job in jobs:  # every file without a record fails with the reason, so the summary and report count it
            if str(job.source) not in done:
                yield failure_record(job.source, reason)


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "no message")
