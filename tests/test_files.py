"""faceerase.engines.files: planning inputs, one file into an audit record, the report; on real photos, videos and
bad files."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from faceerase.engines.files import (UP_TO_DATE, AuditReport, FileJob, JobOptions, PlanError, Skip, failure_record,
                                     file_kind, is_input_or_output, is_up_to_date, plan, process_job, record_context,
                                     skip_record)
from faceerase.erase.pipeline import DEFAULT_MODEL_DIR, WEIGHTS_NAME, FaceEraser
from faceerase.media.video import count_frames, probe_video
from fixtures_app import REPO, write_video

EXAMPLES = REPO / "faceerase" / "examples"
ASTRONAUT_FACE = (175, 60, 93, 105)  # x, y, w, h of Eileen Collins' face in astronaut.jpg
MODEL = {"id": "test-model", "revision": None, "weights_sha256": "0" * 64, "backend": "onnx"}


@pytest.fixture(scope="module")
def eraser(low_model_dir) -> FaceEraser:
    """The tiny model as the CLI builds it with ``--input-size 64 --threshold seed``: seed always masks a region."""
    return FaceEraser(low_model_dir, input_size=64, threshold_mode="seed")


@pytest.fixture(scope="module")
def shipped() -> FaceEraser:
    if not (DEFAULT_MODEL_DIR / WEIGHTS_NAME).is_file():
        pytest.skip(f"no shipped model: {DEFAULT_MODEL_DIR / WEIGHTS_NAME} is missing")
    return FaceEraser(device="cpu")


def photo(folder: Path, name: str = "astronaut.jpg", as_name: str | None = None) -> Path:
    """A copy of the example photo ``name`` in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy(EXAMPLES / name, folder / (as_name or name)))


def job_for(source: Path, out: Path) -> FileJob:
    [job] = plan([source], out).jobs
    return job


# --------------------------------------------------------------------------- planning

def test_file_kind_follows_the_extension():
    assert [file_kind(Path(name)) for name in ("a.JPG", "b.webp", "c.MOV", "d.mkv", "e.heic", "f.txt", "g")] == [
        "image", "image", "video", "video", None, None, None]


def test_plan_mirrors_a_folder_and_accounts_for_every_entry(tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    photo(src)
    photo(src / "trip", "coffee.jpg")
    write_video(tmp_path / "clip.mp4", frames=2)
    (tmp_path / "clip.mp4").rename(src / "trip/clip.webm")  # planning goes by the extension
    photo(src, "chelsea.jpg", ".hidden.jpg")
    photo(src / ".cache", "chelsea.jpg")
    (src / "notes.txt").write_text("not a photo")
    (src / "phone.heic").write_bytes(b"\0\0\0\x18ftypheic")
    (src / "elsewhere").symlink_to(tmp_path, target_is_directory=True)
    (src / "gone.jpg").symlink_to(tmp_path / "missing.jpg")
    todo = plan([src], out)
    assert todo.jobs == [FileJob(src / "astronaut.jpg", out / "astronaut.jpg", "image"),
                         FileJob(src / "trip/clip.webm", out / "trip/clip.mp4", "video"),  # OpenCV writes no WebM
                         FileJob(src / "trip/coffee.jpg", out / "trip/coffee.jpg", "image")]
    assert [(s.path.name, s.message) for s in todo.skips] == [
        (".cache", "hidden folder"), (".hidden.jpg", "hidden file"), ("elsewhere", "link to a folder (not followed)"),
        ("gone.jpg", "broken link"), ("notes.txt", "not an image or video (.txt)")]
    assert todo.skips[-1].reason == "not an image or video"
    assert todo.problems == [(src / "phone.heic", "unsupported image format '.heic': convert it to JPEG or PNG first")]


def test_plan_of_several_inputs_and_of_missing_ones(tmp_path):
    for folder in ("x", "y"):
        photo(tmp_path / folder)
    single = photo(tmp_path, "coffee.jpg")
    (tmp_path / "empty").mkdir()
    todo = plan([tmp_path / "x", tmp_path / "y", single, tmp_path / "empty", tmp_path / "nope.png"], tmp_path / "o")
    assert [job.destination for job in todo.jobs] == [tmp_path / "o/x/astronaut.jpg", tmp_path / "o/y/astronaut.jpg",
                                                      tmp_path / "o/coffee.jpg"]
    assert todo.problems == [(tmp_path / "empty", "empty folder"), (tmp_path / "nope.png", "no such file or folder")]
    assert plan([single], tmp_path / "new.png").jobs == [FileJob(single, tmp_path / "new.png", "image")]


@pytest.mark.parametrize(("inputs", "out", "message"), [
    (["a.jpg"], "a.jpg", "would overwrite an input"),
    (["in"], "in/anonymized", "is inside the input folder"),
    (["a.jpg"], "a.mp4", "must be an image like"),
    (["in/a.jpg", "a.jpg"], "o", "would both be written to"),
])
def test_plan_never_writes_over_an_input_or_twice_to_one_output(tmp_path, inputs, out, message):
    photo(tmp_path, as_name="a.jpg")
    photo(tmp_path / "in", as_name="a.jpg")
    with pytest.raises(PlanError, match=message):
        plan([tmp_path / p for p in inputs], tmp_path / out)


def test_is_input_or_output_sees_through_links(tmp_path):
    src = photo(tmp_path / "in")
    (tmp_path / "in/notes.txt").write_text("notes")
    (tmp_path / "link.jpg").symlink_to(src)
    todo = plan([tmp_path / "in"], tmp_path / "out")
    for path in (src, tmp_path / "link.jpg", tmp_path / "out/astronaut.jpg", tmp_path / "in/notes.txt",
                 tmp_path / "in"):
        assert is_input_or_output(path, [tmp_path / "in"], todo), path
    assert not is_input_or_output(tmp_path / "report.jsonl", [tmp_path / "in"], todo)


def test_jobs_and_options_reject_bad_values():
    with pytest.raises(ValueError, match="unknown job kind 'audio'"):
        FileJob(Path("a.wav"), Path("b.wav"), "audio")
    with pytest.raises(ValueError, match="max_pixels must be a positive"):
        JobOptions(max_pixels=0)


# --------------------------------------------------------------------------- one file

def test_a_real_photo_is_anonymized_where_the_face_is(shipped, tmp_path):
    job = job_for(photo(tmp_path / "in"), tmp_path / "out")
    record = process_job(shipped, job, JobOptions(), record_context(shipped, MODEL))
    assert record["status"] == "anonymized" and record["n_regions"] == 1
    x, y, w, h = record["regions"][0]["box"]
    fx, fy, fw, fh = ASTRONAUT_FACE
    overlap = max(0, min(x + w, fx + fw) - max(x, fx)) * max(0, min(y + h, fy + fh) - max(y, fy))
    assert overlap >= 0.95 * fw * fh  # the region's box covers the face (drawn by hand: a pixel may differ)
    before = np.asarray(Image.open(job.source), np.int16)
    after = np.asarray(Image.open(job.destination), np.int16)
    assert after.shape == before.shape
    face, background = (slice(fy, fy + fh), slice(fx, fx + fw)), (slice(400, 512), slice(0, 150))
    assert np.abs(after[face] - before[face]).mean() > 20  # erased
    assert np.abs(after[background] - before[background]).mean() < 3  # only re-encoded


def test_records_are_the_report_lines_and_outputs_the_clis_bytes(run, eraser, tmp_path):
    photo(tmp_path / "in")
    write_video(tmp_path / "in/clip.mp4", frames=5)
    code, _, err = run("anonymize", tmp_path / "in", "-o", tmp_path / "cli", "--threshold", "seed",
                       "--report", tmp_path / "report.jsonl")
    assert code == 0, err
    reported = [json.loads(line) for line in (tmp_path / "report.jsonl").read_text().splitlines()]
    options = JobOptions()
    context = record_context(eraser, reported[0]["model"])
    records = [process_job(eraser, job, options, context) for job in plan([tmp_path / "in"], tmp_path / "lib").jobs]
    for name in ("astronaut.jpg", "clip.mp4"):
        assert (tmp_path / "lib" / name).read_bytes() == (tmp_path / "cli" / name).read_bytes(), name
    assert [list(r) for r in records] == [list(r) for r in reported]
    assert list(records[0]) == ["timestamp", "input", "output", "kind", "threshold", "regions", "n_regions",
                                "face_estimate", "edits", "seconds", "model", "settings", "status"]
    varying = {"timestamp", "seconds", "output"}
    assert [{k: v for k, v in r.items() if k not in varying} for r in records] == [
        {k: v for k, v in r.items() if k not in varying} for r in reported]
    assert [json.loads(json.dumps(r)) for r in records] == records  # JSON-serialisable as they are
    assert records[1]["settings"]["threshold_mode"] == "seed" and records[1]["settings"]["input_size"] == 64


def test_a_corrupt_photo_fails_with_the_reason_and_leaves_nothing(eraser, tmp_path):
    source = tmp_path / "in/broken.jpg"
    source.parent.mkdir()
    source.write_bytes((EXAMPLES / "coffee.jpg").read_bytes()[:2000])  # cut off mid-scan
    job = job_for(source, tmp_path / "out")
    record = process_job(eraser, job, JobOptions(), {"model": MODEL})
    assert record["status"] == "failed" and record["model"] == MODEL
    assert record["error"].startswith(f"{source} is truncated or corrupt")
    assert list(record) == ["timestamp", "input", "output", "kind", "seconds", "model", "status", "error"]
    assert list((tmp_path / "out").iterdir()) == []


def animated(path: Path) -> None:
    Image.open(EXAMPLES / "chelsea.jpg").save(path, save_all=True, append_images=[Image.new("RGB", (451, 300))])


@pytest.mark.parametrize(("name", "make", "options", "error"), [
    ("fake.gif", lambda p: p.write_bytes(b"GIF89a not really"), JobOptions(), "is not a recognised image format"),
    ("anim.gif", animated, JobOptions(),
     "unsupported: multi-frame image (2 frames); only single-frame images are anonymized"),
    ("cat.jpg", lambda p: shutil.copy(EXAMPLES / "chelsea.jpg", p), JobOptions(max_pixels=100_000),
     "is 451x300 = 135,300 pixels, over the limit of 100,000 pixels"),
])
def test_unusable_images_fail_with_a_clear_error(eraser, tmp_path, name, make, options, error):
    make(tmp_path / name)
    record = process_job(eraser, job_for(tmp_path / name, tmp_path / "out"), options, {})
    assert record["status"] == "failed" and error in record["error"]
    assert list((tmp_path / "out").iterdir()) == []


@contextlib.contextmanager
def writers_after(fifo: Path, seconds: float) -> Iterator[None]:
    """After ``seconds``, until the block ends, keep opening ``fifo`` for writing and closing it: whatever is stuck
    opening it (a regression) then reads an empty file instead of waiting for ever."""
    done = threading.Event()

    def unblock() -> None:
        done.wait(seconds)
        while not done.wait(0.2):
            with contextlib.suppress(OSError):  # no reader now
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))

    thread = threading.Thread(target=unblock, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


@pytest.mark.parametrize("kind", ["image", "video"])
def test_a_file_replaced_by_a_named_pipe_after_planning_fails_without_being_opened(eraser, tmp_path, kind):
    source = tmp_path / ("clip.mp4" if kind == "video" else "photo.jpg")
    os.mkfifo(source)  # opening it would wait for a writer for ever
    with writers_after(source, seconds=10):
        record = process_job(eraser, FileJob(source, tmp_path / "out" / source.name, kind), JobOptions(), {})
    assert record["status"] == "failed" and record["error"] == "not a regular file (named pipe)"
    assert not (tmp_path / "out").exists()


def test_plan_fails_special_files_it_is_given_and_skips_those_it_finds(tmp_path):
    (tmp_path / "in").mkdir()
    os.mkfifo(tmp_path / "in/pipe.jpg")
    os.mkfifo(tmp_path / "named.jpg")
    todo = plan([tmp_path / "in", tmp_path / "named.jpg"], tmp_path / "out")
    assert todo.jobs == [] and todo.problems[-1] == (tmp_path / "named.jpg", "not a regular file (named pipe)")
    assert todo.skips == [Skip(tmp_path / "in/pipe.jpg", "not a regular file", "(named pipe)")]


def test_an_output_that_cannot_be_written_fails_the_file(eraser, tmp_path):
    source = photo(tmp_path)
    (tmp_path / "out").write_text("a file where the output folder should be")
    record = process_job(eraser, FileJob(source, tmp_path / "out/astronaut.jpg", "image"), JobOptions(), {})
    assert record["status"] == "failed" and f"File exists: '{tmp_path / 'out'}'" in record["error"]


def test_a_video_is_anonymized_frame_by_frame(eraser, tmp_path):
    write_video(tmp_path / "clip.mp4", frames=7, size=(96, 64), fps=10.0)
    job = job_for(tmp_path / "clip.mp4", tmp_path / "out")
    frames: list[int] = []
    two = eraser.with_settings(replace(eraser.settings, temporal_window=2))
    record = process_job(two, job, JobOptions(), record_context(two, MODEL), on_frame=frames.append)
    assert record["status"] == "anonymized" and record["kind"] == "video" and frames == [1] * 7
    assert record["settings"]["temporal_window"] == 2
    assert record["frames"] == 7 == count_frames(job.destination) and record["n_regions"] >= 7
    assert [r["frame"] for r in record["frame_regions"]] == list(range(7))
    low, high = record["threshold_range"]
    assert 0 < low <= high < 1
    info = probe_video(job.destination)
    assert (info.width, info.height, info.fps) == (96, 64, pytest.approx(10.0))


def test_a_corrupt_video_fails(eraser, tmp_path):
    (tmp_path / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    record = process_job(eraser, job_for(tmp_path / "broken.mp4", tmp_path / "out"), JobOptions(), {})
    assert record["status"] == "failed" and "video" in record["error"]
    assert list((tmp_path / "out").iterdir()) == []


def test_resume_skips_outputs_not_older_than_their_input(eraser, tmp_path):
    job = job_for(photo(tmp_path / "in"), tmp_path / "out")
    resume = JobOptions(resume=True)
    assert not is_up_to_date(job)
    assert process_job(eraser, job, resume, {})["status"] == "anonymized" and is_up_to_date(job)
    written = job.destination.stat().st_mtime_ns
    record = process_job(eraser, job, resume, {"model": MODEL})
    assert {k: v for k, v in record.items() if k != "timestamp"} == {
        "input": str(job.source), "output": str(job.destination), "kind": "image", "status": "skipped",
        "reason": UP_TO_DATE}
    assert job.destination.stat().st_mtime_ns == written
    assert process_job(eraser, job, JobOptions(), {})["status"] == "anonymized"  # without resume it is redone
    old = job.source.stat().st_mtime_ns - 10**9
    os.utime(job.destination, ns=(old, old))  # the input was edited since
    assert not is_up_to_date(job) and process_job(eraser, job, resume, {})["status"] == "anonymized"


def test_keep_metadata_keeps_allowed_exif_of_a_real_photo(eraser, tmp_path):
    source = tmp_path / "astronaut.jpg"
    exif = Image.Exif()
    exif.update({0x010F: "FaceCam", 0x8298: "NASA"})  # Make, Copyright
    exif.get_ifd(0x8825).update({1: "N", 2: (28.0, 34.0, 0.0)})  # GPS
    Image.open(EXAMPLES / "astronaut.jpg").save(source, exif=exif.tobytes())
    for keep, expected in ((False, {}), (True, {0x010F: "FaceCam", 0x8298: "NASA"})):
        job = FileJob(source, tmp_path / f"{keep}.jpg", "image")
        assert process_job(eraser, job, JobOptions(keep_metadata=keep), {})["status"] == "anonymized"
        with Image.open(job.destination) as image:
            assert dict(image.getexif()) == expected and not image.getexif().get_ifd(0x8825)


# --------------------------------------------------------------------------- records and report

def test_skip_and_failure_records():
    skip = skip_record(Skip(Path("in/notes.txt"), "not an image or video", "(.txt)"))
    assert list(skip) == ["timestamp", "input", "status", "reason"]
    assert skip["status"] == "skipped" and skip["reason"] == "not an image or video (.txt)"
    failure = failure_record(Path("in/photo.heic"), "unsupported image format '.heic'")
    assert (failure["input"], failure["status"], failure["error"]) == ("in/photo.heic", "failed",
                                                                       "unsupported image format '.heic'")
    assert failure["timestamp"].endswith("+00:00")


def test_the_audit_report_writes_one_json_line_per_record_and_appends(tmp_path):
    path = tmp_path / "report.jsonl"
    first = failure_record(Path("a.png"), "no such file or folder")
    second = skip_record(Skip(Path(".b"), "hidden file"))
    with AuditReport(path) as report:
        report.write(first)
        assert path.read_text() == json.dumps(first) + "\n"  # flushed as written
    with AuditReport(path, append=True) as report:
        report.write(second)
    assert [json.loads(line) for line in path.read_text().splitlines()] == [first, second]
    with AuditReport(path) as report:
        report.write(second)
    assert path.read_text() == json.dumps(second) + "\n"
    with pytest.raises(OSError, match=f"cannot write the report {tmp_path / 'no/r.jsonl'}: No such file"):
        AuditReport(tmp_path / "no/r.jsonl")
