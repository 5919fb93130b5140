"""Video anonymization: frame reading/writing with OpenCV, temporal smoothing, audio muxing with ffmpeg.

Every frame stream goes through :func:`anonymize_frames` (network, :class:`TemporalMax`, post-processing):
video files and the CLI's ``--webcam`` through :func:`write_anonymized_video`, the app's webcam tab
directly. With :class:`TemporalMax` a face seen in frame ``t`` stays masked for the next ``window - 1``
frames even if the network misses it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from faceerase.metadata import allowed_video_tags
from faceerase.outputs import atomic_output, temp_path

if TYPE_CHECKING:
    from faceerase.pipeline import EraseResult, FaceEraser

VIDEO_EXTENSIONS = frozenset({".mp4", ".mov", ".m4v", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".flv"})
# Containers OpenCV can write with a widely available codec; anything else is written as .mp4.
_WRITABLE = {".mp4": "mp4v", ".mov": "mp4v", ".m4v": "mp4v", ".mkv": "mp4v", ".avi": "MJPG"}
DEFAULT_TEMPORAL_WINDOW = 3


class VideoError(ValueError):
    """A video that cannot be opened, decoded or written."""


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

    fps: float
    width: int
    height: int
    frame_count: int  # as reported by the container; may be approximate


def output_suffix(path: Path) -> str:
    """The extension an anonymized copy of ``path`` gets (same as input when OpenCV can write it)."""
    suffix = path.suffix.lower()
    return suffix if suffix in _WRITABLE else ".mp4"


def probe_video(path: str | Path) -> VideoInfo:
    """Open ``path`` and read its properties; :class:`VideoError` if it has no decodable frame."""
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise VideoError("cannot open video (corrupt or unsupported codec)")
        ok, frame = capture.read()
        if not ok or frame is None:
            raise VideoError("video has no decodable frames (corrupt or empty)")
        fps = capture.get(cv2.CAP_PROP_FPS)
        return VideoInfo(fps=fps if fps and fps > 0 else 25.0, width=frame.shape[1], height=frame.shape[0],
                         frame_count=int(capture.get(cv2.CAP_PROP_FRAME_COUNT)))
    finally:
        capture.release()


def read_frames(capture: cv2.VideoCapture) -> Iterator[np.ndarray]:
    """RGB uint8 frames from an open capture until it ends."""
    while True:
        ok, frame = capture.read()
        if not ok or frame is None:
            return
        yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)


def open_writer(path: Path, fps: float, width: int, height: int) -> cv2.VideoWriter:
    """An OpenCV writer for ``path`` with the codec suited to its extension."""
    fourcc = cv2.VideoWriter_fourcc(*_WRITABLE.get(path.suffix.lower(), "mp4v"))
    writer = cv2.VideoWriter(str(path), fourcc, fps, (width, height))
    if not writer.isOpened():
        raise VideoError(f"OpenCV cannot write {path.suffix} video")
    return writer


@dataclass
class VideoSummary:
    """What :func:`write_anonymized_video` did: frame count, per-frame regions and threshold, audio, warnings."""

    frames: int = 0
    regions: list[list] = field(default_factory=list)  # faceerase.masks.Region per frame
    thresholds: list[float] = field(default_factory=list)
    # "none" (no audio track), "kept", "kept (re-encoded as AAC)", "dropped (why)" or "unknown (why)"
    audio: str = "none"
    warnings: list[str] = field(default_factory=list)  # one line each: truncated source, audio lost, streams


def _batches(frames: Iterable[np.ndarray], size: int) -> Iterator[list[np.ndarray]]:
    batch: list[np.ndarray] = []
    for frame in frames:
        batch.append(frame)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def anonymize_frames(eraser: "FaceEraser", frames: Iterable[np.ndarray], smoother: TemporalMax,
                     batch_size: int = 8, **options) -> Iterator["EraseResult"]:
    """Anonymize a frame stream: batched network pass, temporal max of the maps, then post-processing
    (``options`` override the eraser's, as in :meth:`FaceEraser.postprocess`). The one stream path of the
    library: :func:`write_anonymized_video` (videos, the CLI's webcam) and the app's webcam tab go through it."""
    for batch in _batches(frames, max(1, batch_size)):
        for frame, prob in zip(batch, eraser.predict(batch)):
            yield eraser.postprocess(frame, smoother(prob), **options)


def write_anonymized_video(eraser: "FaceEraser", frames: Iterable[np.ndarray], destination: Path, fps: float, *,
                           temporal_window: int = DEFAULT_TEMPORAL_WINDOW, batch_size: int = 8,
                           audio_source: Path | None = None, keep_metadata: bool = False,
                           on_frame: Callable[[int], None] | None = None) -> VideoSummary:
    """Anonymize the RGB ``frames`` (:func:`anonymize_frames` with a ``temporal_window`` max) into the video
    ``destination`` at ``fps`` and the size of the first frame, atomically.

    With ``audio_source`` its audio (and with ``keep_metadata`` its tags of
    :data:`faceerase.metadata.VIDEO_TAGS`) is copied in with ffmpeg (``summary.audio``); other metadata is never
    written. Audio whose codec cannot be copied into the output's container is re-encoded as AAC
    (``"kept (re-encoded as AAC)"``); audio that ffmpeg cannot write at all (a full disk, an undecodable track)
    is a :class:`VideoError`, as are tags that cannot be written. Without ffmpeg on PATH the audio is dropped or
    unknown, as ``summary.audio`` says. The finished file is decoded again before it replaces ``destination``:
    when fewer frames come back than were written it is a :class:`VideoError`; so are a stream with no frame and
    a frame of another size. After any :class:`VideoError` nothing is left behind. ``on_frame(1)`` is called
    after each frame (progress bars).
    """
    with atomic_output(destination) as tmp:
        summary = _write_frames(eraser, frames, tmp, fps, TemporalMax(temporal_window), batch_size, on_frame)
        if audio_source is not None:
            summary.audio = _mux(tmp, audio_source, keep_metadata)
        check_frame_count(tmp, summary.frames, destination)
    return summary


def anonymize_video(eraser: "FaceEraser", source: Path, destination: Path, *,
                    temporal_window: int = DEFAULT_TEMPORAL_WINDOW, batch_size: int = 8, keep_metadata: bool = False,
                    on_frame: Callable[[int], None] | None = None) -> VideoSummary:
    """Anonymize every frame of ``source`` into ``destination`` (same fps and size) with
    :func:`write_anonymized_video`, audio included.

    A ``source`` with more than one video stream (cover art not counted) is a :class:`VideoError`: only files with
    one video stream are supported. ``summary.warnings`` says when ``source`` decodes to fewer frames than its
    container declares (truncated or corrupt: the output holds every frame that decoded), when its audio was, or
    may have been, lost, and when its video streams could not be counted (neither ffprobe nor ffmpeg on PATH: the
    one OpenCV decodes is anonymized, any other is not written).
    """
    info = probe_video(source)
    streams = count_video_streams(source)
    if streams is not None and streams > 1:
        raise VideoError(f"{streams} video streams: only files with one video stream are supported")
    capture = cv2.VideoCapture(str(source))
    try:
        summary = write_anonymized_video(eraser, read_frames(capture), destination, info.fps,
                                         temporal_window=temporal_window, batch_size=batch_size,
                                         audio_source=source, keep_metadata=keep_metadata, on_frame=on_frame)
    finally:
        capture.release()
    if info.frame_count > summary.frames:
        summary.warnings.append(f"only {summary.frames} of the {info.frame_count} frames its container declares "
                                f"could be decoded (truncated or corrupt video?)")
    if not summary.audio.startswith(("none", "kept")):
        summary.warnings.append(f"audio {summary.audio}")
    if streams is None:
        summary.warnings.append("video streams not counted (ffmpeg and ffprobe not found on PATH): if the file has "
                                "more than one, only one was anonymized and written")
    return summary


def _write_frames(eraser: "FaceEraser", frames: Iterable[np.ndarray], path: Path, fps: float,
                  smoother: TemporalMax, batch_size: int, on_frame: Callable[[int], None] | None) -> VideoSummary:
    """Anonymize ``frames`` into the silent video ``path``, its size that of the first frame."""
    summary = VideoSummary()
    writer: cv2.VideoWriter | None = None
    try:
        for result in anonymize_frames(eraser, frames, smoother, batch_size):
            height, width = result.anonymized.shape[:2]
            if writer is None:
                size = (height, width)
                writer = open_writer(path, fps, width, height)
            elif (height, width) != size:
                raise VideoError(f"frame size changes within the video, from {size[1]}x{size[0]} to "
                                 f"{width}x{height}")
            writer.write(cv2.cvtColor(result.anonymized, cv2.COLOR_RGB2BGR))
            summary.frames += 1
            summary.regions.append(result.regions)
            summary.thresholds.append(result.threshold)
            if on_frame:
                on_frame(1)
    finally:
        if writer is not None:
            writer.release()
    if summary.frames == 0:
        raise VideoError("video has no decodable frames (corrupt or empty)")
    return summary


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


def _mux(video: Path, source: Path, keep_metadata: bool) -> str:
    """Copy ``source``'s audio (and with ``keep_metadata`` its allow-listed tags) into ``video`` in place with
    ffmpeg; return what happened to the audio (see :attr:`VideoSummary.audio`).

    Audio is stream-copied, or re-encoded as AAC when its codec cannot be copied into ``video``'s container. When
    neither works (no space left, a track ffmpeg cannot decode) it is a :class:`VideoError`: the audio was asked
    for and could not be written, so the file must not pass for finished (and ``--resume`` must redo it)."""
    audio = has_audio(source)
    tags = allowed_video_tags(source) if keep_metadata else {}
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        if audio is None:
            return "unknown (ffmpeg and ffprobe not found on PATH: an audio track, if any, was not copied)"
        return "dropped (ffmpeg not found on PATH)" if audio else "none"
    if not audio and not tags:
        return "none"
    muxed = temp_path(video)
    command = [ffmpeg, "-y", "-v", "error", "-i", str(video), "-i", str(source), "-map", "0:v:0", "-map", "1:a?",
               "-c:v", "copy", "-map_metadata", "-1"]
    for key, value in tags.items():
        command += ["-metadata", f"{key}={value}"]
    attempts = {"kept": ["-c:a", "copy"], "kept (re-encoded as AAC)": ["-c:a", "aac"]} if audio else {"none": []}
    try:
        for state, audio_codec in attempts.items():
            result = subprocess.run([*command, *audio_codec, str(muxed)], capture_output=True, errors="replace")
            if result.returncode == 0:
                os.replace(muxed, video)
                return state
    finally:
        muxed.unlink(missing_ok=True)
    what = "its audio track" if audio else "its kept metadata tags"
    raise VideoError(f"ffmpeg could not write {what} into the output ({_first_line(result.stderr)}); "
                     f"the output was not kept")
