"""Video anonymization: frames decoded by OpenCV, anonymized in batches with temporal smoothing, encoded by ffmpeg
(H.264 by default) with the source's audio.

Every frame stream goes through :func:`anonymize_frames` (network, :class:`TemporalMax`, post-processing):
video files and the CLI's ``--webcam`` through :func:`write_anonymized_video`, the app's webcam tab
directly. With :class:`TemporalMax` a face seen in frame ``t`` stays masked for the next ``window - 1``
frames even if the network misses it.

Writing a video overlaps its stages: a worker thread runs the network on one batch while the calling thread
decodes the next frames and post-processes the batch before, piping each anonymized frame as raw RGB to an ffmpeg
process that encodes it on its own cores and muxes in the source's audio in the same pass (:class:`VideoOutput`).
Only anonymized frames reach ffmpeg. Without ffmpeg on PATH, OpenCV's writer is used instead (MPEG-4 Part 2, no
audio) and a warning says so.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import subprocess
import tempfile
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import cv2
import numpy as np

from faceerase.media.metadata import allowed_video_tags
from faceerase.media.outputs import atomic_output, temp_path
from faceerase.model.settings import NO_IMAGE, EraseSettings

if TYPE_CHECKING:
    from faceerase.erase.pipeline import EraseResult, FaceEraser

NO_VIDEO = f"the method {NO_IMAGE} analyses images only: choose another method for videos"
"""Why a video is refused with the method that writes no image."""
VIDEO_EXTENSIONS = frozenset({".mp4", ".mov", ".m4v", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".flv"})
# Containers an anonymized video keeps (anything else is written as .mp4), with the codec OpenCV writes them in when
# ffmpeg is not on PATH.
_WRITABLE = {".mp4": "mp4v", ".mov": "mp4v", ".m4v": "mp4v", ".mkv": "mp4v", ".avi": "MJPG"}
_OPENCV_CODECS = {"mp4v": "mpeg4", "MJPG": "mjpeg"}  # their ffmpeg names, for the record
_MP4_FAMILY = frozenset({".mp4", ".mov", ".m4v"})
DEFAULT_TEMPORAL_WINDOW = EraseSettings().temporal_window
"""Frames in the temporal maximum unless given: the default of :attr:`EraseSettings.temporal_window
<faceerase.model.settings.EraseSettings.temporal_window>`."""
VIDEO_CODECS = ("libx264", "libx265")
"""The ffmpeg encoders of :class:`VideoOutput`: H.264 (plays everywhere) and H.265 (smaller files)."""
DEFAULT_CRF = 20
MAX_CRF = 51
ENCODER_PRESET = "veryfast"
"""The x264/x265 speed preset: a few milliseconds a frame at 640x480, far below the network's time."""
AUDIO_MODES = ("keep", "drop")
AUDIO_DROPPED = "dropped (--audio drop)"
""":attr:`VideoSummary.audio` of a source whose audio was dropped as asked."""
_AUDIO_UNKNOWN = "unknown (ffmpeg and ffprobe not found on PATH: an audio track, if any, was not copied)"


class VideoError(ValueError):
    """A video that cannot be opened, decoded or written."""


@dataclass(frozen=True)
class VideoOutput:
    """How anonymized videos are written by ffmpeg: with the encoder ``codec`` (one of :data:`VIDEO_CODECS`) at the
    constant rate factor ``crf`` (0-51: lower is better and larger; about 18-20 looks like the source) and preset
    :data:`ENCODER_PRESET`; the source's audio tracks kept (``audio="keep"``) or dropped (``"drop"``: voices are
    personal data too)."""

    codec: str = VIDEO_CODECS[0]
    crf: int = DEFAULT_CRF
    audio: str = "keep"

    def __post_init__(self) -> None:
        if self.codec not in VIDEO_CODECS:
            raise ValueError(f"unknown video codec {self.codec!r}; choose one of {VIDEO_CODECS}")
        if isinstance(self.crf, bool) or not isinstance(self.crf, int) or not 0 <= self.crf <= MAX_CRF:
            raise ValueError(f"crf must be a whole number from 0 to {MAX_CRF}, got {self.crf!r}")
        if self.audio not in AUDIO_MODES:
            raise ValueError(f"unknown audio mode {self.audio!r}; choose one of {AUDIO_MODES}")


def pixel_format(width: int, height: int) -> str:
    """The pixel format ffmpeg encodes a ``width`` x ``height`` video in: ``yuv420p`` (what every player decodes)
    when both sides are even, else ``yuv444p``, which keeps an odd size exactly: ``yuv420p`` halves the colour
    resolution and so needs even sides, and padding or cropping would change the size or lose pixels."""
    return "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p"


class TemporalMax:
    """Pixel-wise maximum of the last ``window`` probability maps.

    ``window=1`` disables smoothing. A map of a different shape (new resolution) restarts the window.
    """

    def __init__(self, window: int = DEFAULT_TEMPORAL_WINDOW):
        if window < 1:
            raise ValueError(f"temporal window must be >= 1, got {window}")
        self.window = window
        self._maps: deque[np.ndarray] = deque(maxlen=window)

    def reset(self) -> None:
        """Forget all previous frames (e.g. at a scene cut or a new stream)."""
        self._maps.clear()

    def __call__(self, prob: np.ndarray) -> np.ndarray:
        """Add this frame's map and return the maximum over the window (float32, same shape)."""
        if self._maps and self._maps[-1].shape != prob.shape:
            self.reset()
        self._maps.append(np.asarray(prob, dtype=np.float32))
        return np.maximum.reduce(list(self._maps)) if len(self._maps) > 1 else self._maps[0].copy()


@dataclass(frozen=True)
class VideoInfo:
    """Stream properties of a readable video."""

    fps: Fraction  # exact (30000/1001, not 29.97) when ffprobe is on PATH: see probe_video
    width: int
    height: int
    frame_count: int | None  # as its container declares it (ffprobe's nb_frames); None when it declares none (MKV,
    # WebM) or ffprobe is not on PATH: an estimate from the duration is no fact to compare the decoded frames with


def output_suffix(path: Path) -> str:
    """The extension an anonymized copy of ``path`` gets (the input's for MP4, MOV, M4V, MKV and AVI, else .mp4)."""
    suffix = path.suffix.lower()
    return suffix if suffix in _WRITABLE else ".mp4"


def probe_video(path: str | Path) -> VideoInfo:
    """Open ``path`` and read its properties; :class:`VideoError` if it has no decodable frame.

    The frame rate is ffprobe's ``r_frame_rate`` unless the stream's average rate differs from it by more than
    0.1% (a variable frame rate: the frames are then timed at the average rate, so that the video keeps its
    duration); without ffprobe, OpenCV's.
    """
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise VideoError("cannot open video (corrupt or unsupported codec)")
        ok, frame = capture.read()
        if not ok or frame is None:
            raise VideoError("video has no decodable frames (corrupt or empty)")
        fps = capture.get(cv2.CAP_PROP_FPS)
    finally:
        capture.release()
    stream = _ffprobe_video_stream(Path(path))
    declared = stream.get("nb_frames", "")
    return VideoInfo(fps=_frame_rate(stream) or _as_rate(fps if fps > 0 else 25.0), width=frame.shape[1],
                     height=frame.shape[0], frame_count=int(declared) if declared.isdigit() else None)


def _as_rate(fps: float | Fraction) -> Fraction:
    """``fps`` as a fraction; a float as the nearest one with a denominator up to 1001 (29.97... is 30000/1001)."""
    return fps if isinstance(fps, Fraction) else Fraction(fps).limit_denominator(1001)


def _parse_rate(text: str | None) -> Fraction | None:
    try:
        rate = Fraction(text)  # type: ignore[arg-type]  (None: TypeError)
    except (TypeError, ValueError, ZeroDivisionError):  # absent, malformed or "0/0"
        return None
    return rate if rate > 0 else None


def _frame_rate(stream: dict[str, str]) -> Fraction | None:
    """The rate the frames of ``stream`` (ffprobe's fields) are written at, as :func:`probe_video` says."""
    exact, average = _parse_rate(stream.get("r_frame_rate")), _parse_rate(stream.get("avg_frame_rate"))
    if exact is None or (average is not None and abs(average - exact) > exact / 1000):
        return average
    return exact


def _ffprobe_video_stream(path: Path) -> dict[str, str]:
    """ffprobe's ``r_frame_rate``, ``avg_frame_rate`` and ``nb_frames`` of the first video stream of ``path`` that
    is not cover art; empty when ffprobe is not on PATH or cannot read them."""
    ffprobe = shutil.which("ffprobe")
    if ffprobe is None:
        return {}
    result = subprocess.run([ffprobe, "-v", "error", "-select_streams", "v", "-show_entries",
                             "stream=r_frame_rate,avg_frame_rate,nb_frames:stream_disposition=attached_pic",
                             "-of", "json", str(path)], capture_output=True, errors="replace")
    try:
        streams = json.loads(result.stdout or "{}").get("streams", [])
    except json.JSONDecodeError:
        return {}
    return next((stream for stream in streams if not stream.get("disposition", {}).get("attached_pic")), {})


def read_frames(capture: cv2.VideoCapture) -> Iterator[np.ndarray]:
    """RGB uint8 frames from an open capture until it ends."""
    while True:
        ok, frame = capture.read()
        if not ok or frame is None:
            return
        yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)


# --------------------------------------------------------------------------- writing

@dataclass(frozen=True)
class _Recipe:
    """What goes into a written video besides its frames."""

    output: VideoOutput
    ffmpeg: str | None  # None: OpenCV writes the frames, without audio or tags
    audio: str  # what becomes of the source's audio: VideoSummary.audio
    audio_codec: str | None = None  # ffmpeg's -c:a for the source's audio tracks ("copy" or "aac"); None: none written
    source: Path | None = None
    tags: dict[str, str] = field(default_factory=dict)


def _recipe(output: VideoOutput, source: Path | None, destination: Path, keep_metadata: bool) -> _Recipe:
    """How ``destination`` is written: by ffmpeg when it is on PATH, with the audio of ``source`` (None: a stream
    without audio) as ``output.audio`` asks, with ``keep_metadata`` and ffmpeg the allow-listed tags of ``source``."""
    ffmpeg = shutil.which("ffmpeg")
    tags = allowed_video_tags(source) if keep_metadata and source is not None and ffmpeg else {}
    audio = False if source is None else has_audio(source)
    if audio is False:
        return _Recipe(output, ffmpeg, "none", tags=tags)
    if output.audio == "drop":
        return _Recipe(output, ffmpeg, AUDIO_DROPPED, tags=tags)
    if ffmpeg is None:
        return _Recipe(output, None, "dropped (ffmpeg not found on PATH)" if audio else _AUDIO_UNKNOWN)
    if _audio_copies_into(ffmpeg, source, destination):
        return _Recipe(output, ffmpeg, "kept", "copy", source, tags)
    return _Recipe(output, ffmpeg, "kept (re-encoded as AAC)", "aac", source, tags)


def _audio_copies_into(ffmpeg: str, source: Path, destination: Path) -> bool:
    """Whether ffmpeg can copy the audio tracks of ``source`` unchanged into a file like ``destination`` (MP4, for
    one, holds no ADPCM): a trial that writes the container's header alone beside ``destination``, removed at once."""
    trial = temp_path(destination)
    try:
        return subprocess.run([ffmpeg, "-v", "error", "-nostdin", "-y", "-i", str(source), "-map", "0:a", "-c", "copy",
                               "-t", "0", str(trial)], capture_output=True).returncode == 0
    finally:
        trial.unlink(missing_ok=True)


def _encode_command(recipe: _Recipe, path: Path, fps: Fraction, width: int, height: int) -> list[str]:
    """The ffmpeg command that encodes raw RGB frames from its standard input into ``path`` by ``recipe``: the
    source's audio tracks muxed in when it keeps them, no metadata but its tags."""
    assert recipe.ffmpeg is not None
    output, mp4 = recipe.output, path.suffix.lower() in _MP4_FAMILY
    inputs = ["-f", "rawvideo", "-pix_fmt", "rgb24", "-video_size", f"{width}x{height}",
              "-framerate", f"{fps.numerator}/{fps.denominator}", "-i", "pipe:0"]
    streams = ["-map", "0:v", "-c:v", output.codec, "-preset", ENCODER_PRESET, "-crf", str(output.crf),
               "-pix_fmt", pixel_format(width, height)]
    if recipe.audio_codec is not None:
        inputs += ["-i", str(recipe.source)]
        streams += ["-map", "1:a", "-c:a", recipe.audio_codec]
    if output.codec == "libx265":  # quiet; and tagged hvc1 in MP4, as Apple's players need
        streams += ["-x265-params", "log-level=error", *(["-tag:v", "hvc1"] if mp4 else [])]
    container = ["-map_metadata", "-1", "-map_chapters", "-1", *(["-movflags", "+faststart"] if mp4 else [])]
    for key, value in recipe.tags.items():
        container += ["-metadata", f"{key}={value}"]
    return [recipe.ffmpeg, "-hide_banner", "-nostdin", "-v", "error", "-y", *inputs, *streams, *container, str(path)]


class FrameWriter(Protocol):
    """Where anonymized RGB frames go: :func:`open_writer`'s writers."""

    def write(self, frame: np.ndarray) -> None:
        """Append one RGB uint8 frame of the writer's size."""

    def release(self) -> None:
        """Finish the file; :class:`VideoError` when it could not be written."""


class _FfmpegWriter:
    """RGB frames piped to an ffmpeg process that encodes them (and muxes in audio) into a file."""

    def __init__(self, command: list[str]):
        self._log = tempfile.TemporaryFile()  # a file, not a pipe: a chatty ffmpeg can never block on it
        # In a session of its own, a Ctrl-C at the terminal reaches only this process, which then ends the video.
        self._process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                         stderr=self._log, start_new_session=True)
        self._error: str | None = None

    def write(self, frame: np.ndarray) -> None:
        try:
            self._process.stdin.write(np.ascontiguousarray(frame).data)
        except BrokenPipeError:  # ffmpeg stopped: release says why
            self.release()
            raise VideoError("ffmpeg stopped reading frames; the output was not kept") from None

    def release(self) -> None:
        if self._error is None:
            with contextlib.suppress(BrokenPipeError):
                self._process.stdin.close()
            code = self._process.wait()
            self._log.seek(0)
            message = self._log.read().decode("utf-8", "replace")
            self._log.close()
            self._error = "" if code == 0 else _first_line(message)
        if self._error:
            raise VideoError(f"ffmpeg could not write the video ({self._error}); the output was not kept")


class _OpenCVWriter:
    """OpenCV's writer, when ffmpeg is not on PATH: MPEG-4 Part 2 (Motion JPEG in AVI)."""

    def __init__(self, path: Path, fps: Fraction, width: int, height: int):
        fourcc = cv2.VideoWriter_fourcc(*_opencv_fourcc(path))
        self._writer = cv2.VideoWriter(str(path), fourcc, float(fps), (width, height))
        if not self._writer.isOpened():
            raise VideoError(f"OpenCV cannot write {path.suffix} video")

    def write(self, frame: np.ndarray) -> None:
        self._writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))

    def release(self) -> None:
        self._writer.release()


def _opencv_fourcc(path: Path) -> str:
    return _WRITABLE.get(path.suffix.lower(), "mp4v")


def open_writer(path: Path, fps: Fraction, width: int, height: int, recipe: _Recipe) -> FrameWriter:
    """A writer of ``width`` x ``height`` RGB frames into the video ``path`` at ``fps``: ffmpeg by ``recipe``, or
    OpenCV when the recipe has no ffmpeg."""
    if recipe.ffmpeg is None:
        return _OpenCVWriter(path, fps, width, height)
    return _FfmpegWriter(_encode_command(recipe, path, fps, width, height))


@dataclass
class VideoSummary:
    """What :func:`write_anonymized_video` did: frame count, per-frame regions and threshold, encoding, audio,
    warnings."""

    frames: int = 0
    regions: list[list] = field(default_factory=list)  # faceerase.erase.masks.Region per frame
    thresholds: list[float] = field(default_factory=list)
    # "none" (no audio track), "kept", "kept (re-encoded as AAC)", AUDIO_DROPPED, "dropped (why)" or "unknown (why)"
    audio: str = "none"
    codec: str = ""  # the encoder of the frames: one of VIDEO_CODECS, or "mpeg4 (OpenCV)" / "mjpeg (OpenCV)"
    crf: int | None = None  # its constant rate factor; None for OpenCV
    pixel_format: str | None = None  # yuv420p or yuv444p (pixel_format()); None for OpenCV
    warnings: list[str] = field(default_factory=list)  # one line each: no ffmpeg, truncated source, audio, streams


def _batches(frames: Iterable[np.ndarray], size: int) -> Iterator[list[np.ndarray]]:
    batch: list[np.ndarray] = []
    for frame in frames:
        batch.append(frame)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _predicted(eraser: "FaceEraser", frames: Iterable[np.ndarray],
               batch_size: int) -> Iterator[tuple[list[np.ndarray], list[np.ndarray]]]:
    """Each batch of ``frames`` with its probability maps, the network running one batch ahead on a worker thread:
    while the caller post-processes batch ``k``, the network runs on batch ``k + 1`` and ``frames`` yields batch
    ``k + 2`` (on the calling thread: a camera and its Ctrl-C stay on it)."""
    network = ThreadPoolExecutor(max_workers=1, thread_name_prefix="faceerase-network")
    try:
        ahead = None
        for batch in _batches(frames, batch_size):
            future = network.submit(eraser.predict, batch)
            if ahead is not None:
                yield ahead[0], ahead[1].result()
            ahead = (batch, future)
        if ahead is not None:
            yield ahead[0], ahead[1].result()
    finally:
        network.shutdown(cancel_futures=True)


def anonymize_frames(eraser: "FaceEraser", frames: Iterable[np.ndarray], smoother: TemporalMax,
                     batch_size: int = 8, **options) -> Iterator["EraseResult"]:
    """Anonymize a frame stream: batched network passes, temporal max of the maps, then post-processing
    (``options`` override the eraser's, as in :meth:`FaceEraser.postprocess`). The network runs one batch ahead on
    a worker thread, so that it overlaps reading the frames and post-processing them (onnxruntime, torch and
    OpenCV release the GIL). The one stream path of the library: :func:`write_anonymized_video` (videos, the CLI's
    webcam) and the app's webcam tab go through it."""
    with contextlib.closing(_predicted(eraser, frames, max(1, batch_size))) as predicted:
        for batch, probs in predicted:
            for frame, prob in zip(batch, probs):
                yield eraser.postprocess(frame, smoother(prob), **options)


def write_anonymized_video(eraser: "FaceEraser", frames: Iterable[np.ndarray], destination: Path,
                           fps: float | Fraction, *, temporal_window: int = DEFAULT_TEMPORAL_WINDOW,
                           batch_size: int = 8, output: VideoOutput = VideoOutput(),
                           audio_source: Path | None = None, keep_metadata: bool = False,
                           on_frame: Callable[[int], None] | None = None) -> VideoSummary:
    """Anonymize the RGB ``frames`` (:func:`anonymize_frames` with a ``temporal_window`` max) into the video
    ``destination`` at ``fps`` and the size of the first frame, atomically, encoded by ffmpeg as ``output`` says.

    With ``audio_source`` its audio tracks are kept or dropped as ``output.audio`` says (``summary.audio``): copied, or
    re-encoded as AAC when their codec cannot be copied into the output's container. With ``keep_metadata`` the tags of
    :data:`faceerase.media.metadata.VIDEO_TAGS` of ``audio_source`` are written; other metadata never is. Without ffmpeg
    on PATH, OpenCV writes the frames (``summary.warnings`` says so) and the audio is dropped or unknown, as
    ``summary.audio`` says. When ffmpeg cannot write the file (a full disk, an unknown encoder, an undecodable audio
    track) it is a :class:`VideoError`. The finished file is decoded again before it replaces ``destination``: when
    fewer frames come back than were written it is a :class:`VideoError`; so are a stream with no frame and a frame of
    another size. After any error nothing is left behind. ``on_frame(1)`` is called after each frame (progress bars).
    The eraser's method ``none`` (no image) is a :class:`ValueError` (:data:`NO_VIDEO`).
    """
    if eraser.settings.method == NO_IMAGE:
        raise ValueError(NO_VIDEO)
    with atomic_output(destination) as tmp:
        recipe = _recipe(output, audio_source, destination, keep_metadata)
        summary = _write_frames(eraser, frames, tmp, _as_rate(fps), TemporalMax(temporal_window), batch_size, recipe,
                                on_frame)
        check_frame_count(tmp, summary.frames, destination)
    return summary


def anonymize_video(eraser: "FaceEraser", source: Path, destination: Path, *,
                    temporal_window: int = DEFAULT_TEMPORAL_WINDOW, batch_size: int = 8,
                    output: VideoOutput = VideoOutput(), keep_metadata: bool = False,
                    on_frame: Callable[[int], None] | None = None) -> VideoSummary:
    """Anonymize every frame of ``source`` into ``destination`` (same frame rate, as :func:`probe_video` reads it,
    and size) with :func:`write_anonymized_video`, audio included.

    A ``source`` with more than one video stream (cover art not counted) is a :class:`VideoError`: only files with
    one video stream are supported. ``summary.warnings`` says when ``source`` decodes to fewer frames than its
    container declares (truncated or corrupt: the output holds every frame that decoded; a container that declares
    no count, such as MKV, is trusted), when its audio was, or may have been, lost, and when its video streams
    could not be counted (neither ffprobe nor ffmpeg on PATH: the one OpenCV decodes is anonymized, any other is
    not written).
    """
    info = probe_video(source)
    streams = count_video_streams(source)
    if streams is not None and streams > 1:
        raise VideoError(f"{streams} video streams: only files with one video stream are supported")
    capture = cv2.VideoCapture(str(source))
    try:
        summary = write_anonymized_video(eraser, read_frames(capture), destination, info.fps,
                                         temporal_window=temporal_window, batch_size=batch_size, output=output,
                                         audio_source=source, keep_metadata=keep_metadata, on_frame=on_frame)
    finally:
        capture.release()
    if info.frame_count is not None and info.frame_count > summary.frames:
        summary.warnings.append(f"only {summary.frames} of the {info.frame_count} frames its container declares "
                                f"could be decoded (truncated or corrupt video?)")
    if not summary.audio.startswith(("none", "kept", AUDIO_DROPPED)):
        summary.warnings.append(f"audio {summary.audio}")
    if streams is None:
        summary.warnings.append("video streams not counted (ffmpeg and ffprobe not found on PATH): if the file has "
                                "more than one, only one was anonymized and written")
    return summary


def _write_frames(eraser: "FaceEraser", frames: Iterable[np.ndarray], path: Path, fps: Fraction,
                  smoother: TemporalMax, batch_size: int, recipe: _Recipe,
                  on_frame: Callable[[int], None] | None) -> VideoSummary:
    """Anonymize ``frames`` into the video ``path`` by ``recipe``, its size that of the first frame."""
    summary = VideoSummary(audio=recipe.audio)
    writer: FrameWriter | None = None
    try:
        with contextlib.closing(anonymize_frames(eraser, frames, smoother, batch_size)) as results:
            for result in results:
                height, width = result.anonymized.shape[:2]
                if writer is None:
                    size = (height, width)
                    writer = open_writer(path, fps, width, height, recipe)
                    _record_encoding(summary, recipe, path, width, height)
                elif (height, width) != size:
                    raise VideoError(f"frame size changes within the video, from {size[1]}x{size[0]} to "
                                     f"{width}x{height}")
                writer.write(result.anonymized)
                summary.frames += 1
                summary.regions.append(result.regions)
                summary.thresholds.append(result.threshold)
                if on_frame:
                    on_frame(1)
    except BaseException:
        if writer is not None:
            with contextlib.suppress(VideoError):  # the first error is the one to report
                writer.release()
        raise
    if writer is None:
        raise VideoError("video has no decodable frames (corrupt or empty)")
    writer.release()
    return summary


def _record_encoding(summary: VideoSummary, recipe: _Recipe, path: Path, width: int, height: int) -> None:
    """Note in ``summary`` how the frames of ``path`` are encoded; warn when OpenCV encodes them instead of ffmpeg."""
    if recipe.ffmpeg is not None:
        summary.codec, summary.crf = recipe.output.codec, recipe.output.crf
        summary.pixel_format = pixel_format(width, height)
        return
    codec = _OPENCV_CODECS[_opencv_fourcc(path)]
    summary.codec = f"{codec} (OpenCV)"
    summary.warnings.append(f"ffmpeg not found on PATH: encoded by OpenCV as {codec}, not {recipe.output.codec}")


def count_frames(path: Path) -> int:
    """How many frames of the video ``path`` decode."""
    capture = cv2.VideoCapture(str(path))
    try:
        count = 0
        while capture.grab():
            count += 1
        return count
    finally:
        capture.release()


def check_frame_count(path: Path, written: int, destination: Path) -> None:
    """Raise :class:`VideoError` unless the video ``path`` (to become ``destination``) decodes to ``written``
    frames: a writer that fails silently (full disk, codec error) must not pass for a finished output."""
    decoded = count_frames(path)
    if decoded != written:
        raise VideoError(f"{written} frames were written to {destination} but {decoded} decode back "
                         f"(write failed); the output was not kept")


def has_audio(path: Path) -> bool | None:
    """Whether ``path`` has an audio stream, asked of ffprobe or else ffmpeg (None when neither is on PATH)."""
    if ffprobe := shutil.which("ffprobe"):
        result = subprocess.run([ffprobe, "-v", "error", "-select_streams", "a", "-show_entries", "stream=index",
                                 "-of", "csv=p=0", str(path)], capture_output=True, text=True)
        return bool(result.stdout.strip())
    if ffmpeg := shutil.which("ffmpeg"):
        result = subprocess.run([ffmpeg, "-hide_banner", "-i", str(path)], capture_output=True, text=True)
        return re.search(r"^\s*Stream #\S+.*: Audio:", result.stderr, re.MULTILINE) is not None
    return None


def count_video_streams(path: Path) -> int | None:
    """How many video streams ``path`` has, cover art (attached pictures) not counted, asked of ffprobe or else
    ffmpeg (None when neither is on PATH); :class:`VideoError` when ffprobe cannot read it."""
    if ffprobe := shutil.which("ffprobe"):
        result = subprocess.run([ffprobe, "-v", "error", "-select_streams", "v", "-show_entries",
                                 "stream_disposition=attached_pic", "-of", "csv=p=0", str(path)],
                                capture_output=True, errors="replace")
        if result.returncode != 0:
            raise VideoError(f"ffprobe cannot read its streams: {_first_line(result.stderr)}")
        return result.stdout.split().count("0")
    if ffmpeg := shutil.which("ffmpeg"):
        result = subprocess.run([ffmpeg, "-hide_banner", "-i", str(path)], capture_output=True, errors="replace")
        streams = re.findall(r"^\s*Stream #\S+.*: Video:.*$", result.stderr, re.MULTILINE)
        return sum("(attached pic)" not in stream for stream in streams)
    return None


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "no error message")
