"""faceerase.engines.hf_datasets: anonymizing a datasets.Dataset with the shipped model, and loading and saving
sources."""

from __future__ import annotations

import io
import json
import signal
from pathlib import Path

import datasets
import huggingface_hub
import numpy as np
import pytest
from PIL import ExifTags, Image, ImageCms

from faceerase.engines.hf_datasets import (ANONYMIZED, AUDIT_COLUMNS, ERROR, FAILED, MODEL, REGIONS, STATUS, THRESHOLD,
                                           WEIGHTS, DatasetError, PushError, anonymize_dataset, load_source,
                                           save_result, status_counts)
from faceerase.erase.pipeline import DEFAULT_MODEL_DIR, WEIGHTS_NAME, EraserSpec, FaceEraser, load_model
from faceerase.media.images import load_image
from faceerase.model.network import FaceEraseUNet
from faceerase.model.settings import EraseSettings

EXAMPLES = Path(__file__).resolve().parents[1] / "faceerase" / "examples"
ASTRONAUT_FACE = (175, 60, 93, 105)  # x, y, w, h: Eileen Collins' face in astronaut.jpg (as in test_shipped_model)
FEATURES = datasets.Features({"image": datasets.Image(), "caption": datasets.Value("string"),
                              "id": datasets.Value("int32")})

pytestmark = pytest.mark.skipif(not (DEFAULT_MODEL_DIR / WEIGHTS_NAME).is_file(),
                                reason=f"no shipped model: {DEFAULT_MODEL_DIR / WEIGHTS_NAME} is missing")


def astronaut_with_metadata() -> bytes:
    """astronaut.jpg re-saved with camera EXIF, a GPS position, XMP and an ICC profile."""
    exif = Image.Exif()
    exif.update({0x010F: "Canon", 0x0110: "EOS 5D"})
    exif.get_ifd(ExifTags.IFD.GPSInfo).update({1: "N", 2: (48.0, 51.0, 24.0), 3: "E", 4: (2.0, 21.0, 3.0)})
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    buffer = io.BytesIO()
    with Image.open(EXAMPLES / "astronaut.jpg") as image:
        image.save(buffer, format="JPEG", quality=95, exif=exif.tobytes(), icc_profile=srgb,
                   xmp=b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF/></x:xmpmeta>')
    return buffer.getvalue()


def chelsea_png() -> bytes:
    """chelsea.jpg (a cat: no face) as a PNG with a text chunk."""
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("Author", "Jane Doe")
    buffer = io.BytesIO()
    with Image.open(EXAMPLES / "chelsea.jpg") as image:
        image.save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def source() -> datasets.Dataset:
    """A face (JPEG with metadata), no face (PNG), a truncated JPEG and a row without an image, with two more
    columns."""
    face = astronaut_with_metadata()
    with Image.open(io.BytesIO(face)) as image:  # the input really carries what must go
        assert image.getexif().get_ifd(ExifTags.IFD.GPSInfo) and "icc_profile" in image.info and "xmp" in image.info
    truncated = (EXAMPLES / "coffee.jpg").read_bytes()[:3000]
    images = [{"bytes": face, "path": None}, {"bytes": chelsea_png(), "path": "/home/jane/cats/chelsea.png"},
              {"bytes": truncated, "path": None}, None]
    return datasets.Dataset.from_dict({"image": images, "caption": ["astronaut", "cat", "broken", "missing"],
                                       "id": [10, 11, 12, 13]}, features=FEATURES)


@pytest.fixture(scope="module")
def anonymized(source) -> datasets.Dataset:
    return anonymize_dataset(source)


def decoded(value: dict) -> np.ndarray:
    return load_image(value["bytes"])


def test_every_row_and_column_is_kept_and_the_audit_columns_are_added(source, anonymized):
    assert len(anonymized) == len(source)
    assert anonymized.column_names == ["image", "caption", "id", *AUDIT_COLUMNS]
    assert anonymized["caption"][:] == source["caption"][:] and anonymized["id"][:] == source["id"][:]
    assert anonymized.features["image"] == datasets.Image()
    assert anonymized[STATUS][:] == [ANONYMIZED, ANONYMIZED, FAILED, FAILED]
    assert status_counts(anonymized) == {ANONYMIZED: 2, FAILED: 2}


def test_the_face_is_erased_and_the_rest_of_the_photo_kept(source, anonymized):
    row = anonymized.cast_column("image", datasets.Image(decode=False))[0]
    assert row[ERROR] is None and 0 < row[THRESHOLD] < 1
    (region,) = row[REGIONS]  # her face, and nothing else
    fx, fy, fw, fh = ASTRONAUT_FACE
    box = (region["x"], region["y"], region["w"], region["h"])
    assert box[0] <= fx + fw / 2 <= box[0] + box[2] and box[1] <= fy + fh / 2 <= box[1] + box[3]
    assert region["score"] > 0.9 and region["area"] > 0.5 * fw * fh
    before = load_image(source.cast_column("image", datasets.Image(decode=False))[0]["image"]["bytes"]).astype(int)
    after = decoded(row["image"]).astype(int)
    assert after.shape == before.shape
    assert np.abs(after - before)[fy:fy + fh, fx:fx + fw].mean() > 10
    outside = np.ones(before.shape[:2], bool)
    outside[box[1] - 8:box[1] + box[3] + 8, box[0] - 8:box[0] + box[2] + 8] = False
    assert np.abs(after - before)[outside].mean() < 2  # only JPEG re-encoding noise


def test_a_face_less_image_is_anonymized_with_no_region(anonymized):
    row = anonymized[1]
    assert row[STATUS] == ANONYMIZED and row[REGIONS] == [] and row[ERROR] is None
    assert row["image"].size == Image.open(EXAMPLES / "chelsea.jpg").size


def test_a_row_that_cannot_be_decoded_keeps_no_image_and_says_why(anonymized):
    broken, missing = anonymized[2], anonymized[3]
    assert broken["image"] is None and broken[STATUS] == FAILED and "truncated or corrupt" in broken[ERROR]
    assert missing["image"] is None and missing[STATUS] == FAILED and missing[ERROR] == "the row has no image"
    for row in (broken, missing):
        assert row[REGIONS] is None and row[THRESHOLD] is None and row[MODEL] and row[WEIGHTS]


def test_output_images_are_re_encoded_without_metadata_or_paths(anonymized):
    stored = anonymized.cast_column("image", datasets.Image(decode=False))["image"][:2]
    assert [value["path"] for value in stored] == [None, None]  # no original path (it named a person)
    for value, fmt in zip(stored, ("JPEG", "PNG"), strict=True):
        with Image.open(io.BytesIO(value["bytes"])) as image:
            assert image.format == fmt and image.mode == "RGB"
            assert len(image.getexif()) == 0
            assert not {"exif", "icc_profile", "xmp", "Author"} & set(image.info)


def test_the_model_and_its_weights_are_recorded(anonymized):
    model = load_model()
    assert set(anonymized[MODEL][:]) == {str(DEFAULT_MODEL_DIR)} == {model.name_or_path}
    assert set(anonymized[WEIGHTS][:]) == {model.weights_sha256()}


def test_one_settings_object_reaches_every_row_as_it_reaches_the_eraser(source, low_model_dir):
    settings = EraseSettings(input_size=64, threshold_mode="seed", dilation=1, mask_shape="box", method="solid",
                             color=(0, 255, 0))
    result = anonymize_dataset(source.select([1]), model=str(low_model_dir), settings=settings, batch_size=2)
    expected = FaceEraser(low_model_dir, settings=settings)(chelsea_png())
    assert expected.mask.any() and not expected.mask.all()
    assert result[THRESHOLD][0] == pytest.approx(expected.threshold)
    assert np.array_equal(np.asarray(result[0]["image"]), expected.anonymized)  # a PNG: lossless
    assert result[MODEL][0] == str(low_model_dir)


@pytest.mark.slow
def test_two_worker_processes_give_the_same_dataset(source, anonymized):
    assert anonymize_dataset(source, num_proc=2).to_dict() == anonymized.to_dict()


@pytest.mark.slow
def test_forked_workers_run_torch_after_their_parent_did(source):
    """GNU OpenMP's thread pool does not survive a fork: a worker running torch multi-threaded after its parent
    did would hang forever, so the map must finish before the alarm."""
    cats = source.select([1, 1])  # one face-less image per worker: the hang needs no face
    in_process = anonymize_dataset(cats, backend="torch")  # the parent runs torch on every core

    def hung(signum, frame):
        pytest.fail("the map's worker processes hung")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(120)
    try:
        forked = anonymize_dataset(cats, backend="torch", num_proc=2)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert forked.to_dict() == in_process.to_dict()


def test_a_worker_refuses_a_model_whose_weights_changed_since_the_run_began():
    spec = EraserSpec(str(DEFAULT_MODEL_DIR), device="cpu", weights_sha256="0" * 64)
    with pytest.raises(RuntimeError, match="weights of .*hub changed while the run was going on"):
        spec.build()


@pytest.mark.slow
def test_an_image_failing_in_the_eraser_fails_alone(source, monkeypatch):
    postprocess = FaceEraser.postprocess
    cat_shape = load_image(EXAMPLES / "chelsea.jpg").shape

    def fail_on_the_cat(self, image, prob, **overrides):
        if np.asarray(image).shape == cat_shape:
            raise RuntimeError("out of memory")
        return postprocess(self, image, prob, **overrides)

    monkeypatch.setattr(FaceEraser, "postprocess", fail_on_the_cat)
    result = anonymize_dataset(source.select([0, 1]), method="solid", threshold_mode="fixed", threshold_value=0.5)
    assert result[STATUS][:] == [ANONYMIZED, FAILED]
    assert result[1]["image"] is None and result[ERROR][:] == [None, "out of memory"]
    assert result[THRESHOLD][0] == 0.5  # the eraser options were applied


def test_an_image_over_the_pixel_limit_fails(source):
    result = anonymize_dataset(source.select([1]), max_pixels=10_000)
    assert result[STATUS][:] == [FAILED] and result[0]["image"] is None
    assert "over the limit of 10,000 pixels" in result[ERROR][0]


def test_a_dataset_dict_has_every_split_anonymized(source):
    splits = datasets.DatasetDict({"train": source.select([0]), "test": source.select([2])})
    result = anonymize_dataset(splits)
    assert isinstance(result, datasets.DatasetDict) and list(result) == ["train", "test"]
    assert result["train"][STATUS][:] == [ANONYMIZED] and result["test"][STATUS][:] == [FAILED]


def test_unusable_inputs_are_refused_with_the_reason(source, anonymized):
    with pytest.raises(DatasetError, match=r"no column 'photo'; its columns are \['image', 'caption', 'id'\]"):
        anonymize_dataset(source, "photo")
    with pytest.raises(DatasetError, match=r"column 'caption' of the dataset is Value\('string'\), not an Image"):
        anonymize_dataset(source, "caption")
    with pytest.raises(DatasetError, match="split 'test' has no column 'image'"):
        anonymize_dataset(datasets.DatasetDict({"train": source, "test": source.rename_column("image", "x")}))
    with pytest.raises(DatasetError, match="already has the audit column.*anonymized before"):
        anonymize_dataset(anonymized)
    with pytest.raises(DatasetError, match="streaming is not supported"):
        anonymize_dataset(source.to_iterable_dataset())
    with pytest.raises(TypeError, match="model folder or Hub repo id"):
        anonymize_dataset(source, model=FaceEraseUNet.from_preset("live", base_channels=4, depth=2))
    with pytest.raises(DatasetError, match="not made by anonymize_dataset"):
        status_counts(source)


# --------------------------------------------------------------------------- sources and results

@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No Hub, and a datasets cache of this test's own."""
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "datasets-cache")


def test_a_saved_dataset_is_a_source_and_a_result(source, anonymized, tmp_path, offline):
    save_result(anonymized, tmp_path / "out")
    loaded = load_source(tmp_path / "out")
    assert loaded.to_dict() == anonymized.to_dict()
    with pytest.raises(DatasetError, match="already exists"):
        save_result(anonymized, tmp_path / "out")

    save_result(datasets.DatasetDict({"train": source, "test": source.select([1])}), tmp_path / "dict")
    assert load_source(tmp_path / "dict", "test")["caption"][:] == ["cat"]
    with pytest.raises(DatasetError, match=r"has the splits \['train', 'test'\]; choose one with split= \(--split\)"):
        load_source(tmp_path / "dict")
    with pytest.raises(DatasetError, match=r"has no split 'val'; its splits are \['train', 'test'\]"):
        load_source(tmp_path / "dict", "val")


def test_an_image_folder_is_a_source(tmp_path, offline):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "jane.jpg").write_bytes(astronaut_with_metadata())
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a JPEG")
    (folder / "metadata.jsonl").write_text("".join(json.dumps({"file_name": name, "caption": caption}) + "\n"
                                                   for name, caption in [("broken.jpg", "b"), ("jane.jpg", "j")]))
    loaded = load_source(folder)
    assert sorted(loaded["caption"][:]) == ["b", "j"]
    result = anonymize_dataset(loaded)
    statuses = dict(zip(result["caption"][:], result[STATUS][:], strict=True))
    assert statuses == {"j": ANONYMIZED, "b": FAILED}
    stored = result.cast_column("image", datasets.Image(decode=False))["image"][:]
    assert all(value is None or (value["path"] is None and value["bytes"]) for value in stored)  # no file link

    with pytest.raises(DatasetError, match="is a file"):
        load_source(folder / "jane.jpg")
    with pytest.raises(DatasetError, match="cannot read .* as a folder of images"):
        load_source((tmp_path / "empty").mkdir() or tmp_path / "empty")


def test_unknown_sources_and_failed_pushes_say_why(source, tmp_path, offline):
    with pytest.raises(DatasetError, match="no such folder"):
        load_source("./no/such/folder")
    with pytest.raises(DatasetError, match="cannot load the Hub dataset 'someone/faces' .*no local folder"):
        load_source("someone/faces", "train")
    with pytest.raises(PushError, match=r"could not push to the Hub dataset repo 'me/faces'.*saved in"):
        save_result(source.select([1]), tmp_path / "saved", push_to_hub="me/faces")
    assert load_source(tmp_path / "saved")["caption"][:] == ["cat"]


# --------------------------------------------------------------------------- the anonymize-dataset command

def test_the_command_anonymizes_an_image_folder_into_a_saved_dataset(tmp_path, offline, capsys):
    from faceerase.cli import main

    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "jane.jpg").write_bytes(astronaut_with_metadata())
    (folder / "cat.png").write_bytes(chelsea_png())
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a JPEG")
    out = tmp_path / "anonymized"
    before = sorted(path.name for path in folder.iterdir())
    assert main(["anonymize-dataset", str(folder), "-o", str(out), "--method", "solid"]) == 1  # a row failed
    # no copy of the un-erased photos is left behind: not in the source folder, not in the datasets cache
    assert sorted(path.name for path in folder.iterdir()) == before
    assert not list((tmp_path / "datasets-cache").rglob("*.arrow"))
    assert capsys.readouterr().out.strip() == (f"3 rows: 2 anonymized, 1 failed (faceerase_status, faceerase_error); "
                                               f"saved to {out}")
    saved = load_source(out)
    assert sorted(saved[STATUS][:]) == [ANONYMIZED, ANONYMIZED, FAILED]
    face = next(row for row in saved if row[REGIONS])
    x, y, w, h = ASTRONAUT_FACE
    assert (np.asarray(face["image"])[y + 30:y + 70, x + 30:x + 60] == 0).all()  # solid fill over her face
    assert main(["anonymize-dataset", str(folder), "-o", str(out)]) == 2  # never over an existing output
    assert "already exists" in capsys.readouterr().err


@pytest.mark.parametrize(("output", "refused"), [("/proc/faceerase-nope", "/proc/faceerase-nope"),
                                                 ("{tmp}/a-file/out", "{tmp}/a-file")])
def test_the_command_refuses_an_output_it_cannot_create_before_any_row(source, tmp_path, offline, capsys,
                                                                       monkeypatch, output, refused):
    from faceerase.cli import main
    from faceerase.engines import hf_datasets

    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("rows were anonymized for an output that cannot be written")

    monkeypatch.setattr(hf_datasets, "anonymize_dataset", never)
    save_result(source.select([1]), tmp_path / "saved")
    (tmp_path / "a-file").write_text("a file where the output's parent folder should be")
    output, refused = output.format(tmp=tmp_path), refused.format(tmp=tmp_path)
    capsys.readouterr()
    assert main(["anonymize-dataset", str(tmp_path / "saved"), "-o", output]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"faceerase: error: cannot create the folder {refused}: ") and err.count("\n") == 1
    assert not Path(output).exists()


def test_the_command_refuses_what_it_cannot_run(source, tmp_path, offline, capsys):
    from faceerase.cli import main

    save_result(datasets.DatasetDict({"train": source.select([1]), "test": source.select([1])}), tmp_path / "dict")
    assert main(["anonymize-dataset", str(tmp_path / "dict"), "-o", str(tmp_path / "out")]) == 2
    assert "has the splits ['train', 'test']; choose one" in capsys.readouterr().err
    assert main(["anonymize-dataset", str(tmp_path / "dict"), "--split", "test", "-o", str(tmp_path / "out"),
                 "--image-column", "picture"]) == 2
    assert "picture" in capsys.readouterr().err
    assert main(["anonymize-dataset", str(tmp_path / "dict"), "--split", "test", "-o", str(tmp_path / "out"),
                 "--model", str(tmp_path / "no-model")]) == 2
    assert "cannot load the model: no model folder" in capsys.readouterr().err
    assert main(["anonymize-dataset", str(tmp_path / "dict"), "--split", "test", "-o", str(tmp_path / "out"),
                 "--public"]) == 2
    assert "--public only applies to --push-to-hub" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    saved = sorted(str(path.relative_to(tmp_path)) for path in (tmp_path / "dict").rglob("*"))
    assert main(["anonymize-dataset", str(tmp_path / "dict"), "--split", "test", "-o", str(tmp_path / "out"),
                 "--push-to-hub", "me/faces"]) == 1  # offline: the push fails, the saved copy stays
    assert sorted(str(path.relative_to(tmp_path)) for path in (tmp_path / "dict").rglob("*")) == saved  # no cache
    assert "could not push to the Hub dataset repo 'me/faces'" in capsys.readouterr().err
    assert load_source(tmp_path / "out")["caption"][:] == ["cat"]
