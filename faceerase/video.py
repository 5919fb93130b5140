"""Video anonymization: frame reading/writing with OpenCV, temporal smoothing, audio muxing with ffmpeg.

:class:`TemporalMax` is shared by the CLI (files and ``--webcam``) and the app's webcam tab: a face
seen in frame ``t`` stays masked for the next ``window - 1`` frames even if the network misses it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

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
    """What :func:`anonymize_video` did: frame count, per-frame results' regions and threshold."""

    frames: int = 0
    regions: list[list] = field(default_factory=list)  # faceerase.masks.Region per frame
    thresholds: list[float] = field(default_factory=list)
    audio: str = "none"  # "kept", "dropped (...)" or "none"


def _batches(frames: Iterator[np.ndarray], size: int) -> Iterator[list[np.ndarray]]:
    batch: list[np.ndarray] = []
    for frame in frames:
        batch.append(frame)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def anonymize_frames(eraser: "FaceEraser", frames: Iterator[np.ndarray], smoother: TemporalMax,
                     batch_size: int = 8) -> Iterator["EraseResult"]:
    """Anonymize a frame stream: batched network pass, temporal max of the maps, then post-processing."""
    for batch in _batches(frames, max(1, batch_size)):
        for frame, prob in zip(batch, eraser.predict(batch)):
            yield eraser.postprocess(frame, smoother(prob))


def anonymize_video(eraser: "FaceEraser", source: Path, destination: Path, *, temporal_window: int = 3,
                    batch_size: int = 8, keep_metadata: bool = False,
                    on_frame: Callable[[int], None] | None = None) -> VideoSummary:
    """Anonymize every frame of ``source`` into ``destination`` (same fps and size), atomically.

    Audio is copied with ffmpeg when it is on PATH (``summary.audio``); otherwise the output is
    silent and ``summary.audio`` says why. Container metadata is dropped unless ``keep_metadata``.
    ``on_frame(n)`` is called after each frame (progress bars).
    """
    info = probe_video(source)
    summary = VideoSummary()
    capture = cv2.VideoCapture(str(source))
    fd, tmp_name = tempfile.mkstemp(prefix=f".{destination.stem}.", suffix=f".tmp{destination.suffix}",
                                    dir=destination.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        writer = open_writer(tmp, info.fps, info.width, info.height)
        try:
            for result in anonymize_frames(eraser, read_frames(capture), TemporalMax(temporal_window), batch_size):
                if result.anonymized.shape[:2] != (info.height, info.width):
                    raise VideoError("frame size changes within the video")
                writer.write(cv2.cvtColor(result.anonymized, cv2.COLOR_RGB2BGR))
                summary.frames += 1
                summary.regions.append(result.regions)
                summary.thresholds.append(result.threshold)
                if on_frame:
                    on_frame(1)
        finally:
            writer.release()
            capture.release()
        if summary.frames == 0:
            raise VideoError("video has no decodable frames (corrupt or empty)")
        summary.audio = _mux_audio(tmp, source, keep_metadata)
        os.replace(tmp, destination)
    finally:
        tmp.unlink(missing_ok=True)
    return summary


def has_audio(path: Path) -> bool | None:
    """Whether ``path`` has an audio stream (None when ffprobe is unavailable)."""
    ffprobe = shutil.which("ffprobe")
    if ffprobe is None:
        return None
    result = subprocess.run([ffprobe, "-v", "error", "-select_streams", "a", "-show_entries", "stream=index",
                             "-of", "csv=p=0", str(path)], capture_output=True, text=True)
    return bool(result.stdout.strip())


def _mux_audio(video: Path, source: Path, keep_metadata: bool) -> str:
    """Copy ``source``'s audio into ``video`` in place with ffmpeg; return what happened to audio."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        return "dropped (ffmpeg not found on PATH)"
    if has_audio(source) is False:
        return "none"
    muxed = video.with_name(video.stem + ".mux" + video.suffix)
    base = [ffmpeg, "-y", "-v", "error", "-i", str(video), "-i", str(source), "-map", "0:v:0", "-map", "1:a?",
            "-c:v", "copy", "-shortest"]
    if not keep_metadata:
        base += ["-map_metadata", "-1"]
    try:
        for audio_codec in (["-c:a", "copy"], ["-c:a", "aac"]):
            if subprocess.run([*base, *audio_codec, str(muxed)], capture_output=True).returncode == 0:
                os.replace(muxed, video)
                return "kept"
        return "dropped (ffmpeg could not copy the audio stream)"
    finally:
        muxed.unlink(missing_ok=True)
