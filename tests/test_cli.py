"""The ``faceerase`` command line: folders, videos, metadata, atomic writes, resume, errors, exit codes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from faceerase import cli
from faceerase.media import video
from fixtures_app import REPO, write_image, write_video

GPS_IFD = 0x8825


def exif_jpeg(path: Path, orientation: int = 6) -> None:
    """A 40x24 JPEG (displayed 24x40 with orientation 6) with camera EXIF, a GPS position and XMP."""
    exif = Image.Exif()
    exif[0x010F] = "FaceCam"  # Make
    exif[0x0112] = orientation
    exif.get_ifd(GPS_IFD).update({1: "N", 2: (48.0, 51.0, 24.0), 3: "E", 4: (2.0, 21.0, 3.0)})
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF/></x:xmpmeta>'
    Image.new("RGB", (40, 24), (200, 120, 90)).save(path, exif=exif.tobytes(), xmp=xmp)
    with Image.open(path) as image:
        assert "xmp" in image.info and image.getexif().get_ifd(GPS_IFD)


def files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_folder_is_mirrored_with_a_report(run, tmp_path, low_model_dir):
    src = tmp_path / "photos"
    for rel in ("a.jpg", "trip/b.png", "trip/day2/c.webp"):
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        write_image(src / rel, size=(48, 32))
    (src / "notes.txt").write_text("not an image")
    code, out, err = run("anonymize", src, "-o", tmp_path / "out", "--threshold", "0.001",
                         "--report", tmp_path / "report.jsonl")
    assert code == 0, err
    assert files(tmp_path / "out") == ["a.jpg", "trip/b.png", "trip/day2/c.webp"]
    assert Image.open(tmp_path / "out/trip/day2/c.webp").size == (48, 32)
    assert "4 files: 3 anonymized, 0 failed, 1 skipped (1 not an image or video); 3 regions (about 3 faces)" in out
    records = [json.loads(line) for line in (tmp_path / "report.jsonl").read_text().splitlines()]
    assert [r["status"] for r in records] == ["skipped"] + ["anonymized"] * 3
    assert records[0]["input"] == str(src / "notes.txt") and records[0]["reason"] == "not an image or video (.txt)"
    record = records[1]
    assert record["regions"] == [{"box": [0, 0, 48, 32], "area": 48 * 32, "score": pytest.approx(0.0067, abs=1e-3),
                                  "mean_score": pytest.approx(0.0067, abs=1e-3), "faces": 1,
                                  "id": 1, "source": "model", "erased": True}]
    assert record["threshold"] == 0.001 and record["timestamp"]
    assert record["model"]["id"] == str(low_model_dir) and len(record["model"]["weights_sha256"]) == 64


def test_a_single_file_can_be_written_to_a_file_name(run, tmp_path):
    write_image(tmp_path / "a.png")
    assert run("anonymize", tmp_path / "a.png", "-o", tmp_path / "new/b.jpg")[0] == 0
    assert files(tmp_path / "new") == ["b.jpg"] and Image.open(tmp_path / "new/b.jpg").format == "JPEG"


def test_several_inputs_go_to_their_own_subfolders(run, tmp_path):
    for folder in ("x", "y"):
        (tmp_path / folder).mkdir()
        write_image(tmp_path / folder / "same.png")
    write_image(tmp_path / "single.png")
    code, _, err = run("anonymize", tmp_path / "x", tmp_path / "y", tmp_path / "single.png", "-o", tmp_path / "out")
    assert code == 0, err
    assert files(tmp_path / "out") == ["single.png", "x/same.png", "y/same.png"]


def test_video_through_the_cli_keeps_frames_fps_and_size(run, tmp_path):
    write_video(tmp_path / "clip.mp4", frames=10, size=(96, 64), fps=15.0)
    code, out, err = run("anonymize", tmp_path / "clip.mp4", "-o", tmp_path / "anon.mp4", "--threshold", "seed",
                         "--temporal-window", "4", "--batch-size", "3", "--report", tmp_path / "r.jsonl")
    assert code == 0, err
    capture = cv2.VideoCapture(str(tmp_path / "anon.mp4"))
    assert capture.get(cv2.CAP_PROP_FPS) == pytest.approx(15.0)
    frames = []
    while (frame := capture.read()[1]) is not None:
        frames.append(frame)
    assert len(frames) == 10 and frames[0].shape == (64, 96, 3)
    record = json.loads((tmp_path / "r.jsonl").read_text())
    assert record["frames"] == 10 and record["kind"] == "video"
    if shutil.which("ffprobe") or shutil.which("ffmpeg"):  # either tells that the clip has no audio track
        assert record["audio"] == "none" and record["warnings"] == [] and "audio" not in err
    else:
        assert record["audio"].startswith("unknown (ffmpeg and ffprobe not found on PATH")
        assert f"audio {record['audio']}" in record["warnings"]


def test_metadata_is_stripped_by_default_and_orientation_applied(run, tmp_path):
    exif_jpeg(tmp_path / "gps.jpg")
    code, _, err = run("anonymize", tmp_path / "gps.jpg", "-o", tmp_path / "out")
    assert code == 0, err
    with Image.open(tmp_path / "out/gps.jpg") as image:
        assert image.size == (24, 40)  # rotated pixels
        assert len(image.getexif()) == 0 and "exif" not in image.info and "xmp" not in image.info


def test_keep_metadata_keeps_exif_but_not_orientation_nor_gps(run, tmp_path):
    exif_jpeg(tmp_path / "gps.jpg")
    code, _, err = run("anonymize", tmp_path / "gps.jpg", "-o", tmp_path / "out", "--keep-metadata")
    assert code == 0, err
    with Image.open(tmp_path / "out/gps.jpg") as image:
        exif = image.getexif()
        assert image.size == (24, 40)
        assert exif[0x010F] == "FaceCam" and 0x0112 not in exif
        assert not exif.get_ifd(GPS_IFD) and "xmp" not in image.info


def test_writes_are_atomic(run, tmp_path, monkeypatch):
    write_image(tmp_path / "a.png")

    def failing_save(self, fp, *args, **kwargs):
        fp.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", failing_save)
    code, _, err = run("anonymize", tmp_path / "a.png", "-o", tmp_path / "out")
    assert code == 1 and "disk full" in err
    assert files(tmp_path / "out") == []  # neither a partial output nor a temporary file


def test_resume_skips_existing_outputs(run, tmp_path):
    (tmp_path / "in").mkdir()
    for name in ("a.png", "b.png"):
        write_image(tmp_path / "in" / name)
    assert run("anonymize", tmp_path / "in", "-o", tmp_path / "out")[0] == 0
    (tmp_path / "out/b.png").unlink()
    before = (tmp_path / "out/a.png").stat().st_mtime_ns
    code, out, _ = run("anonymize", tmp_path / "in", "-o", tmp_path / "out", "--resume")
    assert code == 0 and "1 anonymized, 0 failed, 1 skipped" in out
    assert (tmp_path / "out/a.png").stat().st_mtime_ns == before and (tmp_path / "out/b.png").exists()


def test_bad_inputs_are_reported_and_good_ones_processed(run, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    write_image(src / "good.jpg")
    (src / "corrupt.jpg").write_bytes(b"\xff\xd8\xff garbage")
    (src / "broken.mp4").write_bytes(b"\x00" * 512)
    (tmp_path / "empty").mkdir()
    (tmp_path / "doc.pdf").write_bytes(b"%PDF-1.4")
    code, out, err = run("anonymize", src, tmp_path / "empty", tmp_path / "missing.png", tmp_path / "doc.pdf",
                         "-o", tmp_path / "out", "--report", tmp_path / "r.jsonl")
    assert code == 1
    assert files(tmp_path / "out") == ["in/good.jpg"]
    lines = err.strip().splitlines()
    for name, reason in (("empty", "empty folder"), ("missing.png", "no such file"), ("doc.pdf", "unsupported format"),
                         ("corrupt.jpg", "not a recognised image"), ("broken.mp4", "video")):
        assert any(name in line and reason in line for line in lines), (name, err)
    assert "Traceback" not in err
    assert "6 files: 1 anonymized, 5 failed" in out
    statuses = [json.loads(line)["status"] for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert sorted(statuses) == ["anonymized"] + ["failed"] * 5


def test_images_over_max_pixels_fail_with_the_limit_and_the_option(run, tmp_path, monkeypatch):
    write_image(tmp_path / "small.png", size=(80, 60))
    write_image(tmp_path / "big.png", size=(160, 120))
    code, out, err = run("anonymize", tmp_path / "small.png", tmp_path / "big.png", "-o", tmp_path / "out",
                         "--max-pixels", "5000")
    assert code == 1 and "2 files: 1 anonymized, 1 failed" in out
    assert "big.png is 160x120 = 19,200 pixels, over the limit of 5,000 pixels" in err
    assert "--max-pixels" in err and files(tmp_path / "out") == ["small.png"]
    monkeypatch.setenv("FACEERASE_MAX_PIXELS", "5000")  # the default when --max-pixels is not given
    assert "over the limit of 5,000 pixels" in run("anonymize", tmp_path / "big.png", "-o", tmp_path / "o2")[2]
    assert run("anonymize", tmp_path / "big.png", "-o", tmp_path / "o3", "--max-pixels", "20000")[0] == 0


def test_refuses_to_overwrite_inputs(run, tmp_path):
    write_image(tmp_path / "a.png")
    original = (tmp_path / "a.png").read_bytes()
    code, _, err = run("anonymize", tmp_path / "a.png", "-o", tmp_path / "a.png")
    assert code == 2 and "overwrite an input" in err
    code, _, err = run("anonymize", tmp_path, "-o", tmp_path)
    assert code == 2 and "inside the input folder" in err
    code, _, err = run("anonymize", tmp_path, "-o", tmp_path / "anonymized")
    assert code == 2 and "inside the input folder" in err
    assert (tmp_path / "a.png").read_bytes() == original and files(tmp_path) == ["a.png"]


def test_usage_errors_exit_2(run, tmp_path, capsys):
    write_image(tmp_path / "a.png")
    assert run("anonymize", tmp_path / "a.png")[0] == 2  # no -o
    code, _, err = run("anonymize", tmp_path / "a.png", "-o", tmp_path / "a.mp4")
    assert code == 2 and "must be an image" in err
    assert cli.main(["anonymize", str(tmp_path / "a.png"), "-o", str(tmp_path / "o"),
                     "--model", str(tmp_path / "nope")]) == 2
    assert "cannot load the model" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["anonymize", str(tmp_path / "a.png"), "-o", str(tmp_path / "o"), "--threshold", "1.5"])
    assert exit_info.value.code == 2 and "fixed threshold must be in (0, 1)" in capsys.readouterr().err


def test_webcam_without_camera_is_a_clear_message(run, tmp_path):
    code, _, err = run("anonymize", "--webcam", "7", "-o", tmp_path / "cam.mp4", "--max-frames", "2")
    assert code == 2 and "no camera found at index 7" in err


def test_webcam_frames_are_recorded_anonymized(run, tmp_path, monkeypatch):
    frames = [np.full((48, 64, 3), 40 * i, np.uint8) for i in range(5)]
    monkeypatch.setattr(cli, "_camera_frames", lambda index, limit: iter(frames[:limit]))
    code, out, err = run("anonymize", "--webcam", "-o", tmp_path / "rec", "--max-frames", "4")
    assert code == 0, err
    [video] = (tmp_path / "rec").iterdir()
    assert video.suffix == ".mp4" and "4 frames written" in out
    assert int(cv2.VideoCapture(str(video)).get(cv2.CAP_PROP_FRAME_COUNT)) == 4


def test_ctrl_c_ends_a_webcam_recording_and_keeps_it(run, tmp_path, monkeypatch):
    def camera(index, limit):
        for i in range(100):
            if i == 3:
                os.kill(os.getpid(), signal.SIGINT)  # the user presses Ctrl-C while frame 3 is read
            yield np.full((48, 64, 3), 20 * i, np.uint8)

    monkeypatch.setattr(cli, "_camera_frames", camera)
    handler = signal.getsignal(signal.SIGINT)
    code, out, err = run("anonymize", "--webcam", "-o", tmp_path / "cam.avi")
    assert code == 0, err
    assert "3 frames written" in out and video.count_frames(tmp_path / "cam.avi") == 3
    assert signal.getsignal(signal.SIGINT) is handler  # Ctrl-C interrupts as usual again
    assert [p.name for p in tmp_path.iterdir()] == ["cam.avi"]


def test_evaluate_prints_json(run, tmp_path, monkeypatch):
    calls = {}

    def fake_evaluate(eraser, root, split="val", limit=None):
        calls.update(root=root, split=split, limit=limit)
        return {"n_images": 2, "recall": {"all": 0.5}}

    monkeypatch.setattr("faceerase.training.evaluation.evaluate_widerface", fake_evaluate)
    (tmp_path / "widerface").mkdir()
    code, out, _ = run("evaluate", "--data", tmp_path / "widerface", "--limit", "2", "--json", tmp_path / "e.json")
    assert code == 0 and calls == {"root": tmp_path / "widerface", "split": "val", "limit": 2}
    report = json.loads(out)
    assert report["recall"] == {"all": 0.5} and report == json.loads((tmp_path / "e.json").read_text())
    assert run("evaluate", "--data", tmp_path / "nowhere")[0] == 2


@pytest.mark.slow
def test_console_script_reports_errors_without_traceback(low_model_dir, tmp_path):
    (tmp_path / "bad.png").write_bytes(b"nope")
    result = subprocess.run([sys.executable, "-m", "faceerase.cli", "anonymize", str(tmp_path / "bad.png"),
                             str(tmp_path / "gone.jpg"), "-o", str(tmp_path / "out"), "--model", str(low_model_dir)],
                            capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "bad.png" in result.stderr and "gone.jpg: no such file" in result.stderr
