"""Video anonymization: temporal smoothing, frame-exact output, atomic writes, bad videos, streams and audio."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from faceerase import video
from faceerase.pipeline import FaceEraser
from faceerase.video import (TemporalMax, VideoError, anonymize_video, count_frames, count_video_streams, has_audio,
                             output_suffix, probe_video, write_anonymized_video)
from fixtures_app import make_low_model, write_video

needs_ffmpeg = pytest.mark.skipif(not (shutil.which("ffmpeg") and shutil.which("ffprobe")),
                                  reason="ffmpeg/ffprobe not on PATH (.ci/run installs Debian's ffmpeg)")


@pytest.fixture(scope="module")
def eraser() -> FaceEraser:
    return FaceEraser(make_low_model(), input_size=64, threshold_mode="seed", method="solid")


def test_temporal_max_covers_a_single_missed_frame():
    face = np.zeros((4, 4), np.float32)
    face[1:3, 1:3] = 0.9
    missed = np.zeros_like(face)
    smoother = TemporalMax(window=3)
    outputs = [smoother(p) for p in (face, face, missed, face, missed, missed, missed)]
    threshold = 0.5
    assert all((out > threshold).sum() == 4 for out in outputs[:6])  # the dropped frame stays masked
    assert (outputs[6] > threshold).sum() == 0  # ...but the face does not linger past the window


def test_temporal_max_window_one_is_identity_and_resets_on_new_size():
    smoother = TemporalMax(window=1)
    a, b = np.full((2, 2), 0.8, np.float32), np.full((2, 2), 0.1, np.float32)
    smoother(a)
    assert np.array_equal(smoother(b), b)
    smoother = TemporalMax(window=4)
    smoother(a)
    assert np.array_equal(smoother(np.zeros((3, 3), np.float32)), np.zeros((3, 3)))
    with pytest.raises(ValueError):
        TemporalMax(window=0)


def test_video_keeps_frame_count_fps_and_size(eraser, tmp_path):
    source, output = tmp_path / "clip.mp4", tmp_path / "out" / "clip.mp4"
    write_video(source, frames=10, size=(96, 64), fps=12.0)
    output.parent.mkdir()
    summary = anonymize_video(eraser, source, output, temporal_window=3, batch_size=4)
    assert summary.frames == 10 and len(summary.regions) == 10
    info = probe_video(output)
    assert (info.width, info.height, info.fps) == (96, 64, pytest.approx(12.0))
    capture = cv2.VideoCapture(str(output))
    count = 0
    while capture.read()[0]:
        count += 1
    assert count == 10
    assert sorted(p.name for p in output.parent.iterdir()) == ["clip.mp4"]  # no temporary file left


def frames_of(path: Path) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    frames = []
    while (frame := capture.read()[1]) is not None:
        frames.append(frame[:, :, ::-1].copy())
    return frames


def test_a_frame_stream_is_written_like_the_video_it_came_from(eraser, tmp_path):
    write_video(tmp_path / "clip.mp4", frames=6, size=(96, 64), fps=12.0)
    frames, seen = frames_of(tmp_path / "clip.mp4"), []
    summary = write_anonymized_video(eraser, iter(frames), tmp_path / "stream.avi", 12.0, batch_size=4,
                                     on_frame=seen.append)
    assert summary.frames == 6 == len(seen) == count_frames(tmp_path / "stream.avi") and summary.audio == "none"
    info = probe_video(tmp_path / "stream.avi")
    assert (info.width, info.height, info.fps) == (96, 64, pytest.approx(12.0))
    assert all(summary.regions) and all(np.abs(out.astype(int) - frame).max() > 100  # solid black over the mask
                                        for out, frame in zip(frames_of(tmp_path / "stream.avi"), frames))
    anonymize_video(eraser, tmp_path / "clip.mp4", tmp_path / "file.avi", batch_size=4)
    assert (tmp_path / "stream.avi").read_bytes() == (tmp_path / "file.avi").read_bytes()  # one path


def test_a_frame_stream_that_changes_size_or_is_empty_leaves_nothing(eraser, tmp_path):
    frames = [np.full((64, 96, 3), 90, np.uint8), np.full((48, 64, 3), 90, np.uint8)]
    with pytest.raises(VideoError, match="frame size changes within the video, from 96x64 to 64x48"):
        write_anonymized_video(eraser, frames, tmp_path / "out.mp4", 10.0)
    with pytest.raises(VideoError, match="no decodable frames"):
        write_anonymized_video(eraser, [], tmp_path / "out.mp4", 10.0)
    assert list(tmp_path.iterdir()) == []


def test_audio_is_reported_as_unknown_without_ffmpeg_and_ffprobe(eraser, tmp_path, monkeypatch):
    monkeypatch.setattr("faceerase.video.shutil.which", lambda name: None)
    source = tmp_path / "clip.avi"
    write_video(source, frames=3)
    assert output_suffix(source) == ".avi" and output_suffix(Path("x.webm")) == ".mp4"
    summary = anonymize_video(eraser, source, tmp_path / "out.avi")
    assert summary.audio.startswith("unknown (ffmpeg and ffprobe not found on PATH")
    assert summary.warnings == [f"audio {summary.audio}", "video streams not counted (ffmpeg and ffprobe not found "
                                "on PATH): if the file has more than one, only one was anonymized and written"]


def test_corrupt_video_raises_and_leaves_nothing(eraser, tmp_path):
    source = tmp_path / "broken.mp4"
    source.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    with pytest.raises(VideoError):
        anonymize_video(eraser, source, tmp_path / "out.mp4")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.mp4"]


@needs_ffmpeg
def test_audio_is_kept_with_ffmpeg(eraser, tmp_path):
    source = tmp_path / "talk.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=96x64:rate=10:duration=1",
                    "-f", "lavfi", "-i", "sine=frequency=440:duration=1", "-c:v", "mpeg4", "-c:a", "aac",
                    "-shortest", "-metadata", "title=secret", str(source)], check=True)
    assert has_audio(source)
    output = tmp_path / "out.mp4"
    summary = anonymize_video(eraser, source, output)
    assert summary.audio == "kept" and has_audio(output)
    assert summary.frames == probe_video(output).frame_count == 10
    tags = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format_tags", "-of", "json", str(output)],
                          capture_output=True, text=True, check=True).stdout
    assert "secret" not in tags  # container metadata stripped by default


def ffmpeg(*args: str | Path) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", *map(str, args)], check=True)


def records(report: Path) -> list[dict]:
    return [json.loads(line) for line in report.read_text().splitlines()]


def talk(path: Path) -> Path:
    """A 1 s clip with a sine tone as its AAC audio track."""
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=96x64:rate=10:duration=1", "-f", "lavfi", "-i",
           "sine=frequency=440:duration=1", "-c:v", "mpeg4", "-c:a", "aac", "-shortest", path)
    return path


@pytest.mark.slow
@needs_ffmpeg
@pytest.mark.parametrize("tools", ["ffprobe", "ffmpeg only"])
def test_a_second_video_stream_fails_the_file(run, tmp_path, monkeypatch, face_image, tools):
    if tools == "ffmpeg only":
        which = shutil.which
        monkeypatch.setattr(video.shutil, "which", lambda name: None if name == "ffprobe" else which(name))
    cv2.imwrite(str(tmp_path / "face.png"), face_image[..., ::-1])
    two = tmp_path / "two.mkv"  # a plain first stream, the face in the second
    ffmpeg("-f", "lavfi", "-i", "color=c=gray:size=120x100:rate=10:duration=1", "-loop", "1", "-framerate", "10",
           "-t", "1", "-i", tmp_path / "face.png", "-map", "0:v", "-map", "1:v", "-c:v", "mpeg4", two)
    ffmpeg("-i", talk(tmp_path / "talk.mp4"), "-i", tmp_path / "face.png", "-map", "0", "-map", "1", "-c", "copy",
           "-c:v:1", "png", "-disposition:v:1", "attached_pic", tmp_path / "cover.mp4")
    assert (count_video_streams(two), count_video_streams(tmp_path / "cover.mp4")) == (2, 1)  # cover art: no video
    code, out, err = run("anonymize", two, tmp_path / "cover.mp4", "-o", tmp_path / "out",
                         "--report", tmp_path / "r.jsonl")
    assert code == 1, err
    done, failed = sorted(records(tmp_path / "r.jsonl"), key=lambda r: r["status"])
    assert failed["status"] == "failed" and failed["input"] == str(two)
    assert failed["error"] == "2 video streams: only files with one video stream are supported"
    assert done["status"] == "anonymized" and done["audio"] == "kept" and done["warnings"] == []
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["cover.mp4"]  # nothing left for two.mkv


@pytest.mark.slow
@needs_ffmpeg
@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full to make writes fail with ENOSPC")
def test_audio_lost_on_a_full_disk_fails_the_file_and_resume_redoes_it(run, tmp_path, monkeypatch):
    source, report = talk(tmp_path / "talk.mp4"), tmp_path / "r.jsonl"
    full = tmp_path / "full.mp4"  # the audio mux writes here: every write fails with "No space left on device"
    full.symlink_to("/dev/full")
    monkeypatch.setattr(video, "temp_path", lambda destination: full)
    code, out, err = run("anonymize", source, "-o", tmp_path / "out", "--report", report)
    assert code == 1 and "0 anonymized" in out and "1 failed" in out, (out, err)
    [record] = records(report)
    assert record["status"] == "failed" and "No space left on device" in record["error"]
    assert record["error"].startswith("ffmpeg could not write its audio track into the output")
    assert list((tmp_path / "out").iterdir()) == []  # no output, no temporary file
    monkeypatch.undo()  # space again: --resume redoes the file
    code, out, err = run("anonymize", source, "-o", tmp_path / "out", "--report", report, "--resume")
    assert code == 0, err
    assert [r["status"] for r in records(report)] == ["failed", "anonymized"] and records(report)[1]["audio"] == "kept"
    assert has_audio(tmp_path / "out/talk.mp4")


@needs_ffmpeg
def test_audio_that_cannot_be_copied_into_the_container_is_re_encoded(eraser, tmp_path):
    source = tmp_path / "swf.flv"  # ADPCM audio: no MP4 codec tag, so it cannot be stream-copied into .mp4
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=96x64:rate=10:duration=1", "-f", "lavfi", "-i",
           "sine=duration=1:sample_rate=22050", "-c:v", "flv1", "-c:a", "adpcm_swf", "-shortest", source)
    output = tmp_path / f"out{output_suffix(source)}"
    summary = anonymize_video(eraser, source, output)
    assert output.suffix == ".mp4" and summary.audio == "kept (re-encoded as AAC)"
    assert not [w for w in summary.warnings if "audio" in w] and has_audio(output)
