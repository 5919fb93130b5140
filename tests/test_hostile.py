"""``faceerase anonymize`` against hostile inputs: hidden previews, odd files, failing writers, interrupted runs.

Every bad input is built here in ``tmp_path``; no binary fixture is committed.
"""

from __future__ import annotations

import base64
import errno
import io
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import ExifTags, Image, ImageCms

from faceerase import cli
from faceerase.media import video
from fixtures_app import REPO, write_image, write_video

ASCII, SHORT, LONG, RATIONAL, UNDEFINED = 2, 3, 4, 5, 7
MAKER_NOTE, SERIAL = ExifTags.Base.MakerNote.value, ExifTags.Base.BodySerialNumber.value
SOI = b"\xff\xd8"


def files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def records(report: Path) -> list[dict]:
    return [json.loads(line) for line in report.read_text().splitlines()]


def jpeg(pixels: np.ndarray, quality: int = 75) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


# --------------------------------------------------------------------------- 1. metadata allow-list

def tiff_ifd(entries: list[tuple[int, int, int, int | bytes]], at: int, next_ifd: int = 0) -> bytes:
    """A little-endian TIFF IFD to be placed at offset ``at``: entries are (tag, type, count, value), an int
    value is stored inline, longer byte values right after the table."""
    data_at = at + 2 + 12 * len(entries) + 4
    table, data = struct.pack("<H", len(entries)), b""
    for tag, kind, count, value in sorted(entries):
        if isinstance(value, int):
            inline = struct.pack("<I", value)
        elif len(value) <= 4:
            inline = value.ljust(4, b"\0")
        else:
            inline = struct.pack("<I", data_at + len(data))
            data += value + b"\0" * (len(value) % 2)
        table += struct.pack("<HHI", tag, kind, count) + inline
    return table + struct.pack("<I", next_ifd) + data


def camera_exif(preview: bytes) -> bytes:
    """EXIF as a camera writes it: make, model, date and f-number (harmless), a GPS position, a serial
    number, a MakerNote holding a JPEG preview of the photo and an IFD1 JPEG thumbnail."""
    def text(value: str) -> bytes:
        return value.encode() + b"\0"

    gps_at, ifd1_at, thumbnail_at = 0x100, 0x200, 0x300
    exif_at = thumbnail_at + len(preview) + len(preview) % 2
    ifd0 = tiff_ifd([(0x010F, ASCII, 8, text("FaceCam")), (0x0110, ASCII, 5, text("FC-1")),
                     (0x8769, LONG, 1, exif_at), (0x8825, LONG, 1, gps_at)], 8, next_ifd=ifd1_at)
    gps = tiff_ifd([(1, ASCII, 2, b"N\0"), (2, RATIONAL, 3, struct.pack("<6I", 48, 1, 51, 1, 24, 1))], gps_at)
    ifd1 = tiff_ifd([(0x0103, SHORT, 1, 6), (0x0201, LONG, 1, thumbnail_at), (0x0202, LONG, 1, len(preview))],
                    ifd1_at)
    sub = tiff_ifd([(0x9003, ASCII, 20, text("2024:05:01 12:00:00")), (0x829D, RATIONAL, 1, struct.pack("<2I", 28, 10)),
                    (SERIAL, ASCII, 6, text("SN123")), (MAKER_NOTE, UNDEFINED, len(preview), preview)], exif_at)
    blob = bytearray(exif_at)
    for at, part in ((0, b"II*\0" + struct.pack("<I", 8)), (8, ifd0), (gps_at, gps), (ifd1_at, ifd1),
                     (thumbnail_at, preview)):
        blob[at:at + len(part)] = part
    return b"Exif\0\0" + bytes(blob) + sub


def test_keep_metadata_never_keeps_previews_thumbnails_gps_or_serials(run, tmp_path, face_image):
    preview = jpeg(face_image)
    xmp = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
           b'<rdf:Description xmlns:xmpGImg="http://ns.adobe.com/xap/1.0/g/img/" xmpGImg:image="'
           + base64.b64encode(preview) + b'"/></rdf:RDF></x:xmpmeta>')
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.fromarray(face_image).save(tmp_path / "photo.jpg", exif=camera_exif(preview), xmp=xmp, icc_profile=srgb)
    with Image.open(tmp_path / "photo.jpg") as original:  # the crafted file holds what a camera writes
        exif = original.getexif()
        assert exif.get_ifd(ExifTags.IFD.Exif)[MAKER_NOTE].startswith(SOI)
        assert exif.get_ifd(ExifTags.IFD.IFD1)[0x0202] == len(preview) and exif.get_ifd(ExifTags.IFD.GPSInfo)
    code, _, err = run("anonymize", tmp_path / "photo.jpg", "-o", tmp_path / "out", "--keep-metadata")
    assert code == 0, err
    data = (tmp_path / "out/photo.jpg").read_bytes()
    assert data.startswith(SOI) and data.find(SOI, 2) == -1  # no embedded JPEG anywhere
    with Image.open(tmp_path / "out/photo.jpg") as image:
        exif = image.getexif()
        sub = exif.get_ifd(ExifTags.IFD.Exif)
        assert exif[0x010F] == "FaceCam" and exif[0x0110] == "FC-1"
        assert sub[0x9003] == "2024:05:01 12:00:00" and float(sub[0x829D]) == 2.8
        assert MAKER_NOTE not in sub and SERIAL not in sub
        assert not exif.get_ifd(ExifTags.IFD.IFD1) and not exif.get_ifd(ExifTags.IFD.GPSInfo)
        assert "xmp" not in image.info and "icc_profile" not in image.info
        assert {marker for marker, _ in image.applist} <= {"APP0", "APP1"}


ISO, IMAGE_DESCRIPTION, LENS_MODEL = 0x8827, 0x010E, 0xA434


def packed_shorts(data: bytes) -> tuple[int, ...]:
    """``data`` as little-endian SHORT values (padded to an even length)."""
    return tuple(int(v) for v in np.frombuffer(data + b"\0" * (len(data) % 2), "<u2"))


@pytest.mark.parametrize("case", ["ISO of 4 KB", "ISO as text", "description of 4 KB", "binary lens model"])
def test_keep_metadata_never_keeps_a_picture_packed_into_an_allowed_tag(run, tmp_path, face_image, case):
    face = jpeg(face_image, quality=95)
    assert 4_000 < len(face) < 10_000
    sub = {"ISO of 4 KB": {ISO: packed_shorts(face)},
           "ISO as text": {ISO: base64.b64encode(face).decode()},
           "description of 4 KB": {},
           "binary lens model": {LENS_MODEL: face[:60].decode("latin-1")}}[case]
    exif = Image.Exif()
    exif.update({0x010F: "FaceCam", **({IMAGE_DESCRIPTION: base64.b64encode(face).decode()}
                                      if case == "description of 4 KB" else {})})
    exif.get_ifd(ExifTags.IFD.Exif).update({0x9003: "2024:05:01 12:00:00", **sub})
    Image.fromarray(face_image).save(tmp_path / "photo.jpg", exif=exif.tobytes())
    with Image.open(tmp_path / "photo.jpg") as original:  # the crafted file carries the face
        carried = {**original.getexif(), **original.getexif().get_ifd(ExifTags.IFD.Exif)}
        assert carried.get(ISO, carried.get(IMAGE_DESCRIPTION, carried.get(LENS_MODEL)))
    code, _, err = run("anonymize", tmp_path / "photo.jpg", "-o", tmp_path / "out", "--keep-metadata")
    assert code == 0, err
    data = (tmp_path / "out/photo.jpg").read_bytes()
    assert face[600:640] not in data and base64.b64encode(face)[600:640] not in data and data.find(SOI, 2) == -1
    with Image.open(tmp_path / "out/photo.jpg") as image:
        exif = image.getexif()
        sub = exif.get_ifd(ExifTags.IFD.Exif)
        assert exif[0x010F] == "FaceCam" and sub[0x9003] == "2024:05:01 12:00:00"  # the rest is kept
        assert ISO not in sub and LENS_MODEL not in sub and IMAGE_DESCRIPTION not in exif  # dropped, not truncated


def test_keep_metadata_keeps_ordinary_camera_values(run, tmp_path, face_image):
    exif = Image.Exif()
    exif.update({0x010F: "FaceCam", 0x0110: "FC-1 Mark II", 0x0132: "2024:05:01 12:00:00",
                 0x013B: "Jane Doe", IMAGE_DESCRIPTION: "Team photo, spring meeting " * 9})  # 243 characters
    exif.get_ifd(ExifTags.IFD.Exif).update({
        ISO: (100, 200), 0x829A: 1 / 250, 0x829D: 2.8, 0x9010: "+02:00", 0x9290: "123", 0x9209: 16,
        0xA405: 50, 0xA432: (24.0, 70.0, 2.8, 4.0), LENS_MODEL: "FC 24-70mm F2.8-4"})
    Image.fromarray(face_image).save(tmp_path / "photo.jpg", exif=exif.tobytes())
    code, _, err = run("anonymize", tmp_path / "photo.jpg", "-o", tmp_path / "out", "--keep-metadata")
    assert code == 0, err
    with Image.open(tmp_path / "photo.jpg") as original, Image.open(tmp_path / "out/photo.jpg") as image:
        assert dict(image.getexif()) == dict(original.getexif()) | {0x8769: image.getexif()[0x8769]}
        assert (dict(image.getexif().get_ifd(ExifTags.IFD.Exif))
                == dict(original.getexif().get_ifd(ExifTags.IFD.Exif)))


@pytest.mark.parametrize("suffix", [".png", ".webp", ".tif"])
def test_keep_metadata_drops_the_maker_note_in_every_format(run, tmp_path, face_image, suffix):
    exif = Image.Exif()
    exif[0x010F] = "FaceCam"
    exif.get_ifd(ExifTags.IFD.Exif).update({0x9003: "2024:05:01 12:00:00", MAKER_NOTE: jpeg(face_image)})
    Image.fromarray(face_image).save(tmp_path / f"photo{suffix}", exif=exif.tobytes())
    code, _, err = run("anonymize", tmp_path / f"photo{suffix}", "-o", tmp_path / "out", "--keep-metadata")
    assert code == 0, err
    assert SOI + b"\xff" not in (tmp_path / f"out/photo{suffix}").read_bytes()  # no JPEG start (SOI, marker)
    with Image.open(tmp_path / f"out/photo{suffix}") as image:
        exif = image.getexif()
        sub = exif.get_ifd(ExifTags.IFD.Exif)
        assert exif[0x010F] == "FaceCam" and sub[0x9003] == "2024:05:01 12:00:00" and MAKER_NOTE not in sub


def test_the_extra_images_of_a_multi_picture_jpeg_are_dropped(run, tmp_path, face_image):
    primary = Image.new("RGB", (120, 100), (90, 120, 200))
    primary.save(tmp_path / "phone.jpg", "MPO", save_all=True, append_images=[Image.fromarray(face_image)])
    assert (tmp_path / "phone.jpg").read_bytes().find(SOI, 2) > 0
    code, _, err = run("anonymize", tmp_path / "phone.jpg", "-o", tmp_path / "out", "--keep-metadata")
    assert code == 0, err
    assert (tmp_path / "out/phone.jpg").read_bytes().find(SOI, 2) == -1
    with Image.open(tmp_path / "out/phone.jpg") as image:
        assert image.format == "JPEG" and getattr(image, "n_frames", 1) == 1


def test_help_lists_the_metadata_kept(capsys):
    with pytest.raises(SystemExit):
        cli.main(["anonymize", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "EXIF Make, Model," in help_text and "DateTimeOriginal" in help_text and "creation_time" in help_text
    assert "Never GPS, thumbnails, previews, MakerNote" in help_text


@pytest.mark.skipif(not (shutil.which("ffmpeg") and shutil.which("ffprobe")), reason="ffmpeg/ffprobe not on PATH")
def test_keep_metadata_keeps_only_allowed_video_tags(run, tmp_path):
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=96x64:rate=10:duration=1",
                    "-c:v", "mpeg4", "-metadata", "title=Holiday", "-metadata", "location=+48.8584+002.2945/",
                    "-metadata", "comment=call me on 555-0100", str(tmp_path / "trip.mp4")], check=True)
    code, _, err = run("anonymize", tmp_path / "trip.mp4", "-o", tmp_path / "out", "--keep-metadata")
    assert code == 0, err
    tags = json.loads(subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format_tags", "-of", "json",
                                      str(tmp_path / "out/trip.mp4")], capture_output=True, text=True).stdout)
    tags = tags["format"]["tags"]
    assert tags["title"] == "Holiday" and not {"location", "location-eng", "comment"} & set(tags)


# --------------------------------------------------------------------------- 2. report path

@pytest.mark.parametrize("case", ["input", "output", "skipped input", "link to an input"])
def test_the_report_is_never_an_input_or_an_output(run, tmp_path, case):
    (tmp_path / "in").mkdir()
    write_image(tmp_path / "in/a.png")
    (tmp_path / "in/notes.txt").write_text("my notes")
    (tmp_path / "link.png").symlink_to(tmp_path / "in/a.png")
    report = {"input": tmp_path / "in/a.png", "output": tmp_path / "out/a.png",
              "skipped input": tmp_path / "in/notes.txt", "link to an input": tmp_path / "link.png"}[case]
    before = {name: (tmp_path / "in" / name).read_bytes() for name in ("a.png", "notes.txt")}
    code, _, err = run("anonymize", tmp_path / "in", "-o", tmp_path / "out", "--report", report)
    assert code == 2 and err.strip() == (f"faceerase: error: the report {report} is an input or an output of this "
                                         f"run; choose another --report file")
    assert {name: (tmp_path / "in" / name).read_bytes() for name in before} == before
    assert not (tmp_path / "out").exists()


def test_resume_appends_to_the_report(run, tmp_path):
    (tmp_path / "in").mkdir()
    for name in ("a.png", "b.png"):
        write_image(tmp_path / "in" / name)
    report = tmp_path / "report.jsonl"
    assert run("anonymize", tmp_path / "in", "-o", tmp_path / "out", "--report", report)[0] == 0
    first = report.read_text()
    (tmp_path / "out/b.png").unlink()
    assert run("anonymize", tmp_path / "in", "-o", tmp_path / "out", "--report", report, "--resume")[0] == 0
    assert report.read_text().startswith(first)
    assert [(Path(r["input"]).name, r["status"]) for r in records(report)] == [
        ("a.png", "anonymized"), ("b.png", "anonymized"), ("a.png", "skipped"), ("b.png", "anonymized")]


# --------------------------------------------------------------------------- 3. video written, then checked

class LossyWriter:
    """Wraps an OpenCV writer that silently stops storing frames after ``keep``, as on a full disk."""

    def __init__(self, writer: cv2.VideoWriter, keep: int):
        self.writer, self.keep = writer, keep

    def write(self, frame: np.ndarray) -> None:
        if self.keep > 0:
            self.writer.write(frame)
            self.keep -= 1

    def release(self) -> None:
        self.writer.release()


def test_a_video_that_does_not_decode_back_fully_fails_and_leaves_nothing(run, tmp_path, monkeypatch):
    write_video(tmp_path / "clip.mp4", frames=10)
    real_open_writer = video.open_writer
    monkeypatch.setattr(video, "open_writer", lambda *args: LossyWriter(real_open_writer(*args), keep=4))
    code, out, err = run("anonymize", tmp_path / "clip.mp4", "-o", tmp_path / "out", "--report", tmp_path / "r.jsonl")
    assert code == 1 and "0 anonymized, 1 failed" in out
    assert f"10 frames were written to {tmp_path / 'out/clip.mp4'} but 4 decode back" in err
    assert files(tmp_path / "out") == []
    [record] = records(tmp_path / "r.jsonl")
    assert record["status"] == "failed" and "4 decode back" in record["error"]


# --------------------------------------------------------------------------- 4. every input accounted for

def test_every_entry_of_a_folder_is_anonymized_failed_or_skipped_with_a_reason(run, tmp_path):
    src, elsewhere = tmp_path / "in", tmp_path / "elsewhere"
    for folder in (src / "sub", src / ".thumbnails", elsewhere):
        folder.mkdir(parents=True)
    for path in (src / "good.png", src / "sub/inner.png", src / ".hidden.jpg", src / ".thumbnails/face.jpg",
                 elsewhere / "x.png"):
        write_image(path)
    frames = [Image.new("RGB", (40, 30), (40 * i, 90, 160)) for i in range(3)]
    frames[0].save(src / "still.gif")
    frames[0].save(src / "anim.gif", save_all=True, append_images=frames[1:])
    frames[0].save(src / "pages.tif", save_all=True, append_images=frames[1:2])
    (src / "photo.heic").write_bytes(b"\0\0\0\x18ftypheic" + bytes(64))
    (src / "notes.txt").write_text("not an image")
    (src / "linked").symlink_to(elsewhere)
    (src / "dangling.jpg").symlink_to(tmp_path / "gone.jpg")
    os.mkfifo(src / "pipe.jpg")
    (src / "null.png").symlink_to(os.devnull)
    code, out, err = run("anonymize", src, "-o", tmp_path / "out", "--report", tmp_path / "r.jsonl")
    assert code == 1
    assert files(tmp_path / "out") == ["good.png", "still.gif", "sub/inner.png"]
    assert ("13 files: 3 anonymized, 3 failed, 7 skipped (1 broken link, 1 hidden file, 1 hidden folder, "
            "1 link to a folder (not followed), 2 not a regular file, 1 not an image or video)") in out
    outcome = {Path(r["input"]).name: (r["status"], r.get("error") or r.get("reason"))
               for r in records(tmp_path / "r.jsonl")}
    assert outcome == {
        "good.png": ("anonymized", None), "still.gif": ("anonymized", None), "inner.png": ("anonymized", None),
        "anim.gif": ("failed", "unsupported: multi-frame image (3 frames); only single-frame images are anonymized"),
        "pages.tif": ("failed", "unsupported: multi-frame image (2 frames); only single-frame images are anonymized"),
        "photo.heic": ("failed", "unsupported image format '.heic': convert it to JPEG or PNG first"),
        "notes.txt": ("skipped", "not an image or video (.txt)"), ".hidden.jpg": ("skipped", "hidden file"),
        ".thumbnails": ("skipped", "hidden folder"), "linked": ("skipped", "link to a folder (not followed)"),
        "dangling.jpg": ("skipped", "broken link"), "pipe.jpg": ("skipped", "not a regular file (named pipe)"),
        "null.png": ("skipped", "not a regular file (character device)")}
    for name in ("anim.gif", "pages.tif", "photo.heic"):
        assert any(line.startswith("error: ") and name in line for line in err.splitlines()), name


@pytest.mark.slow
def test_special_files_named_on_the_command_line_fail_at_once(low_model_dir, tmp_path):
    write_image(tmp_path / "good.png")
    os.mkfifo(tmp_path / "pipe.jpg")  # opening it would wait for a writer for ever
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(tmp_path / "sock.png"))
    (tmp_path / "zero.jpg").symlink_to("/dev/zero")  # reading it never ends
    inputs = [tmp_path / name for name in ("pipe.jpg", "sock.png", "zero.jpg", "good.png")]
    try:
        result = subprocess.run([sys.executable, "-m", "faceerase.cli", "anonymize", *map(str, inputs), "-o",
                                 str(tmp_path / "out"), "--report", str(tmp_path / "r.jsonl"), "--model",
                                 str(low_model_dir), "--input-size", "64"],
                                capture_output=True, text=True, cwd=REPO, timeout=120)
    finally:
        server.close()
    assert result.returncode == 1, result.stderr
    assert "4 files: 1 anonymized, 3 failed, 0 skipped" in result.stdout
    kinds = {"pipe.jpg": "named pipe", "sock.png": "socket", "zero.jpg": "character device"}
    for name, kind in kinds.items():
        assert f"error: {tmp_path / name}: not a regular file ({kind})" in result.stderr.splitlines()
    outcome = {Path(r["input"]).name: (r["status"], r.get("error")) for r in records(tmp_path / "r.jsonl")}
    assert outcome == {"good.png": ("anonymized", None),
                       **{name: ("failed", f"not a regular file ({kind})") for name, kind in kinds.items()}}
    assert files(tmp_path / "out") == ["good.png"]


def test_a_file_name_cannot_forge_lines_or_terminal_codes(run, tmp_path):
    evil = "evil\n1 file: 1 anonymized, 0 failed\r\x1b[2K\x9b\u2028"
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / f"{evil}.png").write_bytes(b"not a PNG")  # fails: its name is printed
    write_video(tmp_path / "in" / f"{evil}.mp4", frames=3)  # its name is the progress bar's
    code, out, err = run("anonymize", tmp_path / "in", "-o", tmp_path / "out", "--report", tmp_path / "r.jsonl")
    assert code == 1 and out.splitlines() == [out.strip()] and out.startswith("2 files: 1 anonymized, 1 failed")
    assert not any(raw in err for raw in ("\x1b[2K", "\x9b", "\u2028"))  # (progress bars draw with \r, ESC [A)
    assert not any(line.startswith("1 file") for line in err.splitlines())
    escaped = "evil\\n1 file: 1 anonymized, 0 failed\\r\\x1b[2K\\x9b\\u2028"
    assert f"error: {tmp_path / 'in' / escaped}.png is not a recognised image format" in err.splitlines()
    assert {r["input"] for r in records(tmp_path / "r.jsonl")} == {str(tmp_path / "in" / evil) + suffix
                                                                   for suffix in (".png", ".mp4")}
    code, _, err = run("anonymize", tmp_path / "in", "-o", tmp_path / "out2", "--report",
                       tmp_path / "in" / f"{evil}.png")
    assert code == 2 and err.splitlines() == [f"faceerase: error: the report {tmp_path / 'in' / escaped}.png is an "
                                              f"input or an output of this run; choose another --report file"]


def test_a_truncated_video_is_written_with_a_warning(run, tmp_path):
    clip = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 12.0, (96, 64))
    for i in range(10):
        writer.write(np.full((64, 96, 3), 25 * i, np.uint8))
    writer.release()
    clip.write_bytes(clip.read_bytes()[:int(clip.stat().st_size * 0.9)])  # the camera died mid-recording
    decodable = video.count_frames(clip)
    assert 0 < decodable < 10 == video.probe_video(clip).frame_count
    code, out, err = run("anonymize", clip, "-o", tmp_path / "out", "--report", tmp_path / "r.jsonl")
    assert code == 0 and "1 anonymized (1 with warnings), 0 failed" in out
    warning = (f"only {decodable} of the 10 frames its container declares could be decoded "
               f"(truncated or corrupt video?)")
    assert f"warning: {clip}: {warning}" in err
    [record] = records(tmp_path / "r.jsonl")
    assert record["status"] == "anonymized" and record["frames"] == decodable and record["warnings"] == [warning]
    assert video.count_frames(tmp_path / "out/clip.avi") == decodable


# --------------------------------------------------------------------------- 5. temporary files and --resume

def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_stale_temporary_files_of_this_tool_are_removed_and_nothing_else(run, tmp_path):
    write_image(tmp_path / "a.png")
    out = tmp_path / "out"
    out.mkdir()
    stale = out / f".a.png.faceerase-{dead_pid()}-k3j_x9q0.tmp.png"
    kept = [out / f".a.png.faceerase-{os.getpid()}-abcdefgh.tmp.png",  # a live run's
            out / ".a.abcdefgh.tmp", out / "notes.tmp", out / ".a.png.faceerase-x-abcdefgh.tmp.png"]
    for path in [stale, *kept]:
        path.write_bytes(b"partial")
    code, _, err = run("anonymize", tmp_path / "a.png", "-o", out)
    assert code == 0 and f"removed {stale}, a temporary file left by an interrupted run" in err
    assert not stale.exists() and all(path.exists() for path in kept) and (out / "a.png").exists()


def test_write_errors_name_the_output_not_the_temporary_file(run, tmp_path, monkeypatch):
    write_image(tmp_path / "a.png")
    real_replace = os.replace

    def replace(src, dst):
        if ".tmp" in str(src):
            raise OSError(errno.EIO, os.strerror(errno.EIO), str(src), None, str(dst))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    code, _, err = run("anonymize", tmp_path / "a.png", "-o", tmp_path / "out")
    assert code == 1 and ".tmp" not in err
    assert f"error: {tmp_path / 'a.png'}: cannot write {tmp_path / 'out/a.png'}: Input/output error" in err
    assert files(tmp_path / "out") == []


def test_resume_redoes_outputs_older_than_their_input(run, tmp_path):
    write_image(tmp_path / "a.png")
    assert run("anonymize", tmp_path / "a.png", "-o", tmp_path / "out")[0] == 0
    output = tmp_path / "out/a.png"
    old = (tmp_path / "a.png").stat().st_mtime_ns - 10**9
    os.utime(output, ns=(old, old))  # the input was edited after the run
    code, out, _ = run("anonymize", tmp_path / "a.png", "-o", tmp_path / "out", "--resume")
    assert code == 0 and "1 anonymized, 0 failed, 0 skipped" in out and output.stat().st_mtime_ns > old
    code, out, _ = run("anonymize", tmp_path / "a.png", "-o", tmp_path / "out", "--resume")
    assert code == 0 and "0 anonymized, 0 failed, 1 skipped (1 output up to date (--resume))" in out


# --------------------------------------------------------------------------- 6. file modes

@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_outputs_get_the_mode_of_the_umask(run, tmp_path, umask):
    write_image(tmp_path / "a.png")
    write_video(tmp_path / "clip.mp4", frames=3)
    previous = os.umask(umask)
    try:
        code, _, err = run("anonymize", tmp_path / "a.png", tmp_path / "clip.mp4", "-o", tmp_path / "out")
    finally:
        os.umask(previous)
    assert code == 0, err
    modes = {name: (tmp_path / "out" / name).stat().st_mode & 0o777 for name in ("a.png", "clip.mp4")}
    assert modes == {"a.png": 0o666 & ~umask, "clip.mp4": 0o666 & ~umask}


# --------------------------------------------------------------------------- 7. audio warnings

@pytest.mark.parametrize(("audio", "state"), [
    (False, "none"),
    (True, "dropped (ffmpeg not found on PATH)"),
    (None, "unknown (ffmpeg and ffprobe not found on PATH: an audio track, if any, was not copied)")])
def test_audio_warning_only_when_audio_is_or_may_be_lost(run, tmp_path, monkeypatch, audio, state):
    monkeypatch.setattr(video.shutil, "which", lambda name: None)
    monkeypatch.setattr(video, "has_audio", lambda path: audio)
    monkeypatch.setattr(video, "count_video_streams", lambda path: 1)
    write_video(tmp_path / "clip.mp4", frames=3)
    code, _, err = run("anonymize", tmp_path / "clip.mp4", "-o", tmp_path / "out", "--report", tmp_path / "r.jsonl")
    assert code == 0, err
    [record] = records(tmp_path / "r.jsonl")
    assert record["audio"] == state
    no_ffmpeg = "ffmpeg not found on PATH: encoded by OpenCV as mpeg4, not libx264"  # every video says so
    assert record["warnings"] == [no_ffmpeg, *([] if audio is False else [f"audio {state}"])]
    assert (f"warning: {tmp_path / 'clip.mp4'}: audio" in err) is (audio is not False)
