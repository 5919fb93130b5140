"""Video anonymization: temporal smoothing, the batched and overlapped pipeline, frame-exact H.264 output (frame
count, rate, duration, size), atomic writes, bad videos, streams and audio kept or dropped."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest

from faceerase import cli
from faceerase.erase.pipeline import FaceEraser
from faceerase.media import outputs, video
from faceerase.media.video import (AUDIO_DROPPED, TemporalMax, VideoError, VideoOutput, anonymize_video, count_frames,
                                   count_video_streams, has_audio, output_suffix, probe_video, write_anonymized_video)
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


def test_frames_go_to_the_network_in_batches_while_the_next_frames_are_read(eraser, tmp_path, monkeypatch):
    fifth_frame_read = threading.Event()
    calls: list[tuple[int, bool]] = []
    predict = eraser.predict

    def watched_predict(batch):
        # The first pass waits until frame 5 (of the second batch) is read: a pipeline that reads the next frames
        # only after the network has finished with this batch never gets there.
        calls.append((len(batch), threading.current_thread() is threading.main_thread()))
        if len(calls) == 1:
            calls.append((-1, fifth_frame_read.wait(timeout=10)))
        return predict(batch)

    def frames():
        for i in range(10):
            if i == 5:
                fifth_frame_read.set()
            yield np.full((64, 96, 3), 20 * i, np.uint8)

    monkeypatch.setattr(eraser, "predict", watched_predict)
    summary = write_anonymized_video(eraser, frames(), tmp_path / "out.mp4", 10.0, batch_size=4)
    assert summary.frames == 10 == count_frames(tmp_path / "out.mp4")
    assert calls == [(4, False), (-1, True), (4, False), (2, False)]  # batches of 4, off the main thread, overlapped


def test_a_frame_stream_that_changes_size_or_is_empty_leaves_nothing(eraser, tmp_path):
    frames = [np.full((64, 96, 3), 90, np.uint8), np.full((48, 64, 3), 90, np.uint8)]
    with pytest.raises(VideoError, match="frame size changes within the video, from 96x64 to 64x48"):
        write_anonymized_video(eraser, frames, tmp_path / "out.mp4", 10.0)
    with pytest.raises(VideoError, match="no decodable frames"):
        write_anonymized_video(eraser, [], tmp_path / "out.mp4", 10.0)
    assert list(tmp_path.iterdir()) == []


def test_a_stream_that_fails_midway_leaves_no_output_and_no_temporary_file(eraser, tmp_path):
    def frames():
        for i in range(12):
            yield np.full((64, 96, 3), 20 * i, np.uint8)
        raise OSError("camera unplugged")

    with pytest.raises(OSError, match="camera unplugged"):
        write_anonymized_video(eraser, frames(), tmp_path / "out.mp4", 10.0, batch_size=4)
    assert list(tmp_path.iterdir()) == []


def test_video_output_options_are_checked():
    assert VideoOutput() == VideoOutput(codec="libx264", crf=20, audio="keep")
    for bad, message in (({"codec": "mpeg4"}, "unknown video codec 'mpeg4'"), ({"crf": 52}, "crf must be"),
                         ({"crf": 2.5}, "crf must be"), ({"audio": "mute"}, "unknown audio mode 'mute'")):
        with pytest.raises(ValueError, match=message):
            VideoOutput(**bad)


def test_without_ffmpeg_opencv_writes_the_video_and_says_so(eraser, tmp_path, monkeypatch):
    monkeypatch.setattr("faceerase.media.video.shutil.which", lambda name: None)
    source = tmp_path / "clip.avi"
    write_video(source, frames=3)
    assert output_suffix(source) == ".avi" and output_suffix(Path("x.webm")) == ".mp4"
    summary = anonymize_video(eraser, source, tmp_path / "out.avi")
    assert summary.audio.startswith("unknown (ffmpeg and ffprobe not found on PATH")
    assert (summary.codec, summary.crf, summary.pixel_format) == ("mjpeg (OpenCV)", None, None)
    assert summary.warnings == ["ffmpeg not found on PATH: encoded by OpenCV as mjpeg, not libx264",
                                f"audio {summary.audio}", "video streams not counted (ffmpeg and ffprobe not found "
                                "on PATH): if the file has more than one, only one was anonymized and written"]
    assert count_frames(tmp_path / "out.avi") == 3


def test_corrupt_video_raises_and_leaves_nothing(eraser, tmp_path):
    source = tmp_path / "broken.mp4"
    source.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    with pytest.raises(VideoError):
        anonymize_video(eraser, source, tmp_path / "out.mp4")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.mp4"]


# --------------------------------------------------------------------------- with ffmpeg

def ffmpeg(*args: str | Path) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", *map(str, args)], check=True)


def records(report: Path) -> list[dict]:
    return [json.loads(line) for line in report.read_text().splitlines()]


def talk(path: Path, rate: str = "10", seconds: float = 1) -> Path:
    """A clip of ``seconds`` at ``rate`` frames per second with a sine tone as its AAC audio track."""
    ffmpeg("-f", "lavfi", "-i", f"testsrc=size=96x64:rate={rate}:duration={seconds}", "-f", "lavfi", "-i",
           f"sine=frequency=440:duration={seconds}", "-c:v", "mpeg4", "-c:a", "aac", "-shortest", path)
    return path


def probe(path: Path) -> dict:
    """ffprobe on the video stream of ``path``: codec, tag, pixel format, size, ``r_frame_rate``, the frames it
    decodes (``nb_read_frames``) and ``duration`` in seconds (the file's, for containers that give none per stream)."""
    data = json.loads(subprocess.run(
        ["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries",
         "stream=codec_name,codec_tag_string,pix_fmt,width,height,r_frame_rate,nb_read_frames,duration"
         ":format=duration", "-of", "json", str(path)], capture_output=True, text=True, check=True).stdout)
    stream = data["streams"][0]
    return {**stream, "nb_read_frames": int(stream["nb_read_frames"]),
            "duration": float(stream.get("duration", data["format"]["duration"]))}


@needs_ffmpeg
@pytest.mark.parametrize("container", [".mp4", ".mkv", ".mov", ".avi"])
def test_output_is_h264_yuv420p_with_the_inputs_frames_rate_and_duration(eraser, tmp_path, container):
    source = tmp_path / f"ntsc{container}"  # 30000/1001 frames per second: no float survives exactly
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=96x64:rate=30000/1001:duration=1", "-c:v", "libx264",
           "-pix_fmt", "yuv420p", source)
    output = tmp_path / "out" / source.name
    output.parent.mkdir()
    summary = anonymize_video(eraser, source, output, batch_size=4)
    before, after = probe(source), probe(output)
    assert (after["codec_name"], after["pix_fmt"]) == ("h264", "yuv420p")
    assert (summary.codec, summary.crf, summary.pixel_format, summary.warnings) == ("libx264", 20, "yuv420p", [])
    assert after["nb_read_frames"] == before["nb_read_frames"] == summary.frames == 30
    assert after["r_frame_rate"] == before["r_frame_rate"] == "30000/1001"
    assert abs(after["duration"] - before["duration"]) < 1001 / 30000
    assert (after["width"], after["height"]) == (96, 64)
    assert os.listdir(output.parent) == [source.name]


@needs_ffmpeg
def test_a_variable_frame_rate_video_keeps_its_duration(eraser, tmp_path):
    source = tmp_path / "vfr.mp4"  # 20 frames in the first second, 20 in the next two
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=96x64:rate=20:duration=2", "-vf",
           "setpts='if(lt(N,20),N/20,1+(N-20)/10)/TB'", "-vsync", "vfr", "-c:v", "libx264", "-pix_fmt", "yuv420p",
           source)
    info = probe_video(source)  # 40 frames in 2.85 s (the last lasts as long as the one before)
    assert probe(source)["r_frame_rate"] == "20/1" and info.fps == Fraction(40 * 20, 57)
    anonymize_video(eraser, source, tmp_path / "out.mp4", batch_size=8)
    after = probe(tmp_path / "out.mp4")
    assert after["nb_read_frames"] == 40 and abs(after["duration"] - probe(source)["duration"]) < 1 / info.fps


@needs_ffmpeg
def test_an_odd_sized_video_keeps_its_exact_size_in_yuv444p(eraser, tmp_path):
    source = tmp_path / "odd.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=97x63:rate=10:duration=1", "-c:v", "libx264", "-pix_fmt", "yuv444p",
           source)
    summary = anonymize_video(eraser, source, tmp_path / "out.mp4", batch_size=4)
    after = probe(tmp_path / "out.mp4")
    assert (after["width"], after["height"], after["pix_fmt"], after["nb_read_frames"]) == (97, 63, "yuv444p", 10)
    assert summary.pixel_format == "yuv444p"
    assert [frame.shape for frame in frames_of(tmp_path / "out.mp4")] == [(63, 97, 3)] * 10


@needs_ffmpeg
def test_audio_is_kept_with_ffmpeg(eraser, tmp_path):
    source = tmp_path / "talk.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=96x64:rate=10:duration=1", "-f", "lavfi", "-i",
           "sine=frequency=440:duration=1", "-c:v", "mpeg4", "-c:a", "aac", "-shortest", "-metadata", "title=secret",
           "-metadata:s:a:0", "title=voice of Alice", source)
    assert has_audio(source)
    output = tmp_path / "out.mp4"
    summary = anonymize_video(eraser, source, output)
    assert summary.audio == "kept" and has_audio(output)
    assert summary.frames == probe_video(output).frame_count == 10
    tags = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format_tags:stream_tags", "-of", "json",
                           str(output)], capture_output=True, text=True, check=True).stdout
    assert "secret" not in tags and "Alice" not in tags  # container and stream metadata stripped by default


@needs_ffmpeg
def test_audio_is_dropped_when_asked(eraser, tmp_path):
    output = tmp_path / "out.mp4"
    summary = anonymize_video(eraser, talk(tmp_path / "talk.mp4"), output, output=VideoOutput(audio="drop"))
    assert summary.audio == AUDIO_DROPPED and summary.warnings == []
    assert has_audio(output) is False and probe(output)["nb_read_frames"] == 10


@needs_ffmpeg
def test_a_remuxed_mkv_is_not_reported_truncated(run, tmp_path):
    clip = tmp_path / "clip.mp4"  # its audio outlasts the video by a few milliseconds, as a camera's often does
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=96x64:rate=25:duration=1", "-f", "lavfi", "-i", "sine=duration=1.03",
           "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", clip)
    ffmpeg("-i", clip, "-c", "copy", tmp_path / "clip.mkv")
    assert cv2.VideoCapture(str(tmp_path / "clip.mkv")).get(cv2.CAP_PROP_FRAME_COUNT) == 26  # OpenCV's estimate
    code, out, err = run("anonymize", tmp_path / "clip.mkv", "-o", tmp_path / "out.mkv", "--report",
                         tmp_path / "r.jsonl")
    assert code == 0 and "warning" not in err, err
    [record] = records(tmp_path / "r.jsonl")
    assert record["frames"] == 25 == probe(tmp_path / "out.mkv")["nb_read_frames"] and record["warnings"] == []
    assert (record["codec"], record["crf"], record["pixel_format"], record["audio"]) == ("libx264", 20, "yuv420p",
                                                                                         "kept")


@pytest.mark.slow
@needs_ffmpeg
def test_codec_crf_and_audio_options_of_the_command(run, tmp_path):
    source = talk(tmp_path / "talk.mp4")
    sizes = {}
    for crf in ("10", "40"):
        code, _, err = run("anonymize", source, "-o", tmp_path / crf / "talk.mp4", "--codec", "libx265", "--crf", crf,
                           "--audio", "drop", "--report", tmp_path / f"{crf}.jsonl")
        assert code == 0, err
        [record] = records(tmp_path / f"{crf}.jsonl")
        assert (record["codec"], record["crf"], record["audio"]) == ("libx265", int(crf), AUDIO_DROPPED)
        after = probe(tmp_path / crf / "talk.mp4")
        assert (after["codec_name"], after["codec_tag_string"], after["nb_read_frames"]) == ("hevc", "hvc1", 10)
        assert has_audio(tmp_path / crf / "talk.mp4") is False
        sizes[crf] = (tmp_path / crf / "talk.mp4").stat().st_size
    assert sizes["10"] > 1.5 * sizes["40"]  # a lower CRF is a better, larger video


@pytest.mark.parametrize(("option", "message"), [("--crf=52", "expected an integer from 0 to 51, got 52"),
                                                 ("--codec=mpeg4", "invalid choice: 'mpeg4'"),
                                                 ("--audio=mute", "invalid choice: 'mute'")])
def test_bad_video_options_are_usage_errors(tmp_path, capsys, option, message):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["anonymize", str(tmp_path), "-o", str(tmp_path / "out"), option])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


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
def test_a_full_disk_fails_the_file_and_resume_redoes_it(run, tmp_path, monkeypatch):
    source, report = talk(tmp_path / "talk.mp4"), tmp_path / "r.jsonl"
    full = tmp_path / "full.mp4"  # the output's temporary file: every write fails with "No space left on device"
    full.symlink_to("/dev/full")
    monkeypatch.setattr(outputs, "temp_path", lambda destination: full)
    code, out, err = run("anonymize", source, "-o", tmp_path / "out", "--report", report)
    assert code == 1 and "0 anonymized" in out and "1 failed" in out, (out, err)
    [record] = records(report)
    assert record["status"] == "failed" and "No space left on device" in record["error"]
    assert record["error"].startswith("ffmpeg could not write the video")
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
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4", "swf.flv"]  # the trial copy is gone
