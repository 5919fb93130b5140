"""anonymize-dataset accounts for what it reads as ``faceerase anonymize`` does (issue 16, items 5-7): a Hub source
leaves no copy of its originals in the Hugging Face caches, every entry of a folder source is a row or is reported
with why it is not, and a multi-frame image fails in a row as it fails as a file."""

from __future__ import annotations

import hashlib
import io
import json
import re
import tempfile
from pathlib import Path

import datasets
import huggingface_hub
import httpx2
import numpy as np
import pyarrow.parquet as pq
import pytest
from huggingface_hub.utils._http import default_client_factory
from PIL import Image

from faceerase.cli import main
from faceerase.engines.files import FileJob, JobOptions, process_job
from faceerase.engines.hf_datasets import ANONYMIZED, ERROR, FAILED, REGIONS, STATUS, anonymize_dataset, load_source
from faceerase.erase.pipeline import FaceEraser

HUB_REPO = "faceerase-test/street-photos"
HUB_COMMIT = "0123456789abcdef0123456789abcdef01234567"


def encoded(pixels: np.ndarray, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt, **options)
    return buffer.getvalue()


def multi_frame(first: np.ndarray, second: np.ndarray, fmt: str) -> bytes:
    """Two frames: a face-less ``first`` and ``second`` (the face) after it."""
    buffer = io.BytesIO()
    Image.fromarray(first).save(buffer, format=fmt, save_all=True, append_images=[Image.fromarray(second)])
    return buffer.getvalue()


# --------------------------------------------------------------------------- item 5: Hub sources

def noise_png() -> bytes:
    """A PNG of random pixels with a text chunk: bytes that appear in a file only if that file holds a copy of
    the original (its anonymized copy, re-encoded without metadata, differs even when no face was found)."""
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("Author", "Jane Doe")
    pixels = np.random.default_rng(5).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    return encoded(pixels, "PNG", pnginfo=info)


@pytest.fixture
def hub_caches(tmp_path, monkeypatch) -> list[Path]:
    """The Hugging Face caches (hub downloads, datasets) and the temporary folder, all under ``tmp_path``."""
    caches = [tmp_path / "hf-home" / "hub", tmp_path / "datasets-cache", tmp_path / "tmp"]
    for folder in caches:
        folder.mkdir(parents=True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(caches[0]))
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", caches[1])
    monkeypatch.setattr(datasets.config, "DOWNLOADED_DATASETS_PATH", caches[1] / "downloads")
    monkeypatch.setattr(tempfile, "tempdir", str(caches[2]))
    return caches


@pytest.fixture
def fake_hub(tmp_path, monkeypatch):
    """The Hub dataset repo :data:`HUB_REPO` (one parquet file holding :func:`noise_png`, stored uncompressed),
    served by huggingface_hub's own HTTP client through a mock transport: ``load_dataset`` resolves, lists and
    downloads it with its real code and caches. Nothing else answers, and nothing reaches the network."""
    table = datasets.Dataset.from_dict(
        {"image": [{"bytes": noise_png(), "path": None}], "caption": ["street"]},
        features=datasets.Features({"image": datasets.Image(), "caption": datasets.Value("string")})).data.table
    pq.write_table(table, tmp_path / "train.parquet", compression="NONE")
    files = {"data/train-00000-of-00001.parquet": (tmp_path / "train.parquet").read_bytes()}
    api = f"/api/datasets/{HUB_REPO}"

    def entry(path: str) -> dict:
        return {"type": "file", "path": path, "size": len(files[path]), "oid": hashlib.sha1(files[path]).hexdigest()}

    def answer(request: httpx2.Request) -> httpx2.Response:
        path = request.url.path
        if (match := re.fullmatch(rf"/datasets/{HUB_REPO}/resolve/[^/]+/(.+)", path)) and match[1] in files:
            data = files[match[1]]
            headers = {"x-repo-commit": HUB_COMMIT, "etag": f'"{hashlib.sha1(data).hexdigest()}"',
                       "content-length": str(len(data))}
            return httpx2.Response(200, headers=headers, content=b"" if request.method == "HEAD" else data)
        if re.fullmatch(rf"{api}(/revision/.+)?", path):
            return httpx2.Response(200, json={"id": HUB_REPO, "sha": HUB_COMMIT, "private": False,
                                              "siblings": [{"rfilename": name} for name in files]})
        if match := re.fullmatch(rf"{api}/tree/[^/]+/?(.*)", path):
            folder = match[1]
            names = [name for name in files if name.startswith(f"{folder}/" if folder else "")]
            listed = {name[len(folder):].lstrip("/").split("/")[0] for name in names}
            return httpx2.Response(200, json=[
                entry(f"{folder}/{name}".lstrip("/")) if f"{folder}/{name}".lstrip("/") in files
                else {"type": "directory", "path": f"{folder}/{name}".lstrip("/"), "oid": "0" * 40, "size": 0}
                for name in sorted(listed)])
        return httpx2.Response(404, headers={"x-error-code": "EntryNotFound"}, json={"error": "not found"})

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    huggingface_hub.set_client_factory(lambda: httpx2.Client(transport=httpx2.MockTransport(answer),
                                                             follow_redirects=True))
    yield HUB_REPO
    huggingface_hub.set_client_factory(default_client_factory)


def holding(folders: list[Path], data: bytes) -> list[Path]:
    """The files under ``folders`` whose content holds ``data``."""
    return [path for folder in folders for path in folder.rglob("*") if path.is_file() and data in path.read_bytes()]


def test_a_hub_source_leaves_no_original_in_the_caches(fake_hub, hub_caches, tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["anonymize-dataset", fake_hub, "-o", str(out), "--model", str(tiny_model_dir),
                 "--backend", "torch"]) == 0
    assert capsys.readouterr().out.startswith("1 rows: 1 anonymized, 0 failed")
    assert load_source(out)["caption"][:] == ["street"]  # the repo was really downloaded and read
    assert holding(hub_caches, noise_png()) == []  # the download, the Arrow copy and the scratch folder are gone
    assert not any(hub_caches[2].glob("faceerase-dataset-*"))

    # a run that fails after the download cleans up too
    assert main(["anonymize-dataset", fake_hub, "-o", str(tmp_path / "out2"), "--model", str(tiny_model_dir),
                 "--backend", "torch", "--image-column", "photo"]) == 2
    assert "no column 'photo'" in capsys.readouterr().err
    assert holding(hub_caches, noise_png()) == []
    assert not any(hub_caches[2].glob("faceerase-dataset-*"))


def test_load_source_puts_a_hub_download_in_its_cache_dir(fake_hub, hub_caches, tmp_path):
    scratch = tmp_path / "scratch"
    assert load_source(fake_hub, cache_dir=scratch)["caption"][:] == ["street"]  # the one split, found
    assert holding(hub_caches, noise_png()) == []
    assert holding([scratch], noise_png())  # what was downloaded and copied is in the scratch folder only
    assert huggingface_hub.constants.HF_HUB_CACHE == str(hub_caches[0])  # the default cache is back


# --------------------------------------------------------------------------- item 6: folder sources

@pytest.fixture
def mixed_folder(tmp_path, face_image) -> Path:
    """13 entries: 5 images the plan takes (a corrupt one and an animated GIF among them), an icon, HEIC, DNG,
    a video, a file without extension, one of an unknown type, a dot-file and a hidden folder; and the
    metadata file that gives the rows a column."""
    folder = tmp_path / "photos"
    (folder / ".thumbnails").mkdir(parents=True)
    (folder / ".thumbnails" / "face.jpg").write_bytes(encoded(face_image, "JPEG"))
    (folder / "face.jpg").write_bytes(encoded(face_image, "JPEG"))
    (folder / "flipped.png").write_bytes(encoded(face_image[:, ::-1].copy(), "PNG"))
    (folder / "scan.tiff").write_bytes(encoded(face_image, "TIFF"))
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a JPEG")
    (folder / "animated.gif").write_bytes(multi_frame(face_image[:, ::-1].copy(), face_image, "GIF"))
    (folder / "favicon.ico").write_bytes(encoded(face_image, "ICO"))
    (folder / "phone.heic").write_bytes(b"\x00\x00\x00\x18ftypheic not decodable here")
    (folder / "camera.dng").write_bytes(b"II*\x00 raw sensor data")
    (folder / "clip.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not a real video")
    (folder / "README").write_text("photos from the street party")
    (folder / "notes.xyz").write_text("who is who")
    (folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (folder / "metadata.jsonl").write_text("".join(
        json.dumps({"file_name": name, "caption": name}) + "\n"
        for name in ("face.jpg", "flipped.png", "scan.tiff", "broken.jpg", "animated.gif", "favicon.ico")))
    return folder


def read_report(path: Path) -> dict[str, dict]:
    return {Path(record["input"]).name: record for record in map(json.loads, path.read_text().splitlines())}


def test_every_entry_of_a_folder_is_a_row_or_reported_as_anonymize_reports_it(mixed_folder, tiny_model_dir,
                                                                              tmp_path, capsys):
    model = ["--model", str(tiny_model_dir), "--backend", "torch"]
    assert main(["anonymize", str(mixed_folder), "-o", str(tmp_path / "files"), "--report",
                 str(tmp_path / "files.jsonl"), *model]) == 1
    assert main(["anonymize-dataset", str(mixed_folder), "-o", str(tmp_path / "dataset"), "--report",
                 str(mixed_folder / "report.jsonl"), *model]) == 2  # the next run would read it
    assert "is inside the source folder or the output" in capsys.readouterr().err
    assert not (mixed_folder / "report.jsonl").exists() and not (tmp_path / "dataset").exists()
    assert main(["anonymize-dataset", str(mixed_folder), "-o", str(tmp_path / "dataset"), "--report",
                 str(tmp_path / "dataset.jsonl"), *model]) == 1
    out, err = capsys.readouterr()

    rows = load_source(tmp_path / "dataset")
    statuses = dict(zip(rows["caption"][:], rows[STATUS][:], strict=True))
    assert statuses == {"face.jpg": ANONYMIZED, "flipped.png": ANONYMIZED, "scan.tiff": ANONYMIZED,
                        "broken.jpg": FAILED, "animated.gif": FAILED}  # the plan's images, and only them
    files, left_out = read_report(tmp_path / "files.jsonl"), read_report(tmp_path / "dataset.jsonl")
    # every entry that is no row is in the report, with the very record anonymize writes for it
    assert sorted(left_out) == [".DS_Store", ".thumbnails", "README", "camera.dng", "clip.mp4", "favicon.ico",
                                "notes.xyz", "phone.heic"]
    for name, record in left_out.items():
        if name != "clip.mp4":
            assert {k: v for k, v in record.items() if k != "timestamp"} == \
                   {k: v for k, v in files[name].items() if k != "timestamp"}
    assert left_out["phone.heic"]["error"] == "unsupported image format '.heic': convert it to JPEG or PNG first"
    assert left_out[".DS_Store"] | {"timestamp": ""} == {"timestamp": "", "input": str(mixed_folder / ".DS_Store"),
                                                         "status": "skipped", "reason": "hidden file"}
    assert left_out["clip.mp4"]["status"] == "failed" and "faceerase anonymize" in left_out["clip.mp4"]["error"]
    # the summary counts every entry; each failed one is named on stderr, as anonymize names them
    assert out.strip() == (f"5 rows: 3 anonymized, 2 failed (faceerase_status, faceerase_error); 8 files left out: "
                           f"3 failed, 5 skipped (1 hidden file, 1 hidden folder, 3 not an image or video); "
                           f"saved to {tmp_path / 'dataset'}")
    for name in ("phone.heic", "camera.dng", "clip.mp4"):
        assert f"error: {mixed_folder / name}: " in err
    assert "metadata.jsonl" not in err + out + (tmp_path / "dataset.jsonl").read_text()  # it is the rows' column


def test_an_image_the_imagefolder_builder_leaves_out_fails(tmp_path, face_image):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("listed.jpg", "unlisted.jpg"):
        (folder / name).write_bytes(encoded(face_image, "JPEG"))
    (folder / "metadata.jsonl").write_text(json.dumps({"file_name": "listed.jpg", "caption": "x"}) + "\n")
    (folder / "split").mkdir()
    from faceerase.engines.hf_datasets import open_source

    source = open_source(folder, cache_dir=tmp_path / "scratch")
    assert source.dataset["caption"][:] == ["x"]
    assert [(path.name, message.split(":")[0]) for path, message in source.left_out.problems] == \
           [("unlisted.jpg", "not read by the imagefolder builder")]


def test_a_folder_split_accounts_for_the_other_splits(tmp_path, face_image):
    from faceerase.engines.hf_datasets import open_source

    for split in ("train", "test"):
        (tmp_path / "photos" / split).mkdir(parents=True)
        (tmp_path / "photos" / split / f"{split}.jpg").write_bytes(encoded(face_image, "JPEG"))
    source = open_source(tmp_path / "photos", "test", cache_dir=tmp_path / "scratch")
    assert len(source.dataset) == 1 and not source.left_out.problems
    assert [(skip.path.name, skip.message) for skip in source.left_out.skips] == \
           [("train.jpg", "in another split ('train')")]


# --------------------------------------------------------------------------- item 7: multi-frame images

def test_a_multi_frame_row_fails_as_the_command_fails_the_file(tmp_path, tiny_model_dir, face_image):
    blank = np.full_like(face_image, 128)
    images = {"two-page.tiff": multi_frame(blank, face_image, "TIFF"),
              "animated.gif": multi_frame(blank, face_image, "GIF"),
              "one-page.tiff": encoded(face_image, "TIFF")}
    eraser = FaceEraser(str(tiny_model_dir), backend="torch")
    verdicts = {}
    for name, data in images.items():
        (tmp_path / name).write_bytes(data)
        record = process_job(eraser, FileJob(tmp_path / name, tmp_path / "out" / name, "image"), JobOptions(), {})
        verdicts[name] = record.get("error")
    assert verdicts["two-page.tiff"].startswith("unsupported: multi-frame image (2 frames)")
    assert verdicts["animated.gif"].startswith("unsupported: multi-frame image (2 frames)")
    assert verdicts["one-page.tiff"] is None

    rows = [{"bytes": data, "path": None} for data in images.values()]
    rows.append({"bytes": None, "path": str(tmp_path / "two-page.tiff")})  # stored as a path to the file
    dataset = datasets.Dataset.from_dict({"image": rows, "name": [*images, "two-page.tiff"]},
                                         features=datasets.Features({"image": datasets.Image(decode=False),
                                                                     "name": datasets.Value("string")}))
    result = anonymize_dataset(dataset, model=str(tiny_model_dir), backend="torch")
    for row in result:
        assert row[ERROR] == verdicts[row["name"]]
        assert row[STATUS] == (FAILED if verdicts[row["name"]] else ANONYMIZED)
        assert (row["image"] is None) == (row[STATUS] == FAILED) and (row[REGIONS] is None) == (row[STATUS] == FAILED)
