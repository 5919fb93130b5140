"""A person's review (regions kept un-erased, regions added) applied by the library and by ``--regions``, on the
astronaut photo with the shipped model: its one region is Eileen Collins' face."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from faceerase import cli
from faceerase.engines.files import image_findings
from faceerase.engines.review import EditsFileError, match_edits, read_edits
from faceerase.erase.edits import Added, Edits, added_shape, box_iou, clip_box
from faceerase.erase.overlay import KEPT_COLOR
from faceerase.erase.pipeline import FaceEraser
from faceerase.media.images import load_image
from fixtures_app import write_video

EXAMPLES = Path(__file__).resolve().parents[1] / "faceerase" / "examples"
SKY = (10, 10, 60, 40)  # x, y, w, h: an un-masked corner of the astronaut photo


@pytest.fixture(scope="module")
def eraser() -> FaceEraser:
    return FaceEraser(device="cpu")


@pytest.fixture(scope="module")
def astronaut(eraser) -> tuple[np.ndarray, np.ndarray]:
    image = load_image(EXAMPLES / "astronaut.jpg")
    return image, eraser.predict([image])[0]


def inside(box: tuple[int, int, int, int]) -> tuple[slice, slice]:
    x, y, w, h = box
    return slice(y, y + h), slice(x, x + w)


def test_a_kept_region_is_left_as_it_was_and_an_added_ellipse_is_erased(eraser, astronaut):
    image, prob = astronaut
    plain = eraser.postprocess(image, prob)
    assert [r.id for r in plain.regions] == [1] and plain.regions[0].erased and not plain.edits
    face = plain.regions[0].box
    assert not np.array_equal(plain.anonymized[inside(face)], image[inside(face)])

    reviewed = eraser.postprocess(image, prob, keep=[1], add=[SKY])
    assert np.array_equal(reviewed.anonymized[inside(face)], image[inside(face)])  # the face, untouched
    ellipse = added_shape(SKY[2], SKY[3])
    assert np.array_equal(reviewed.mask[inside(SKY)], ellipse)  # the ellipse inscribed in the box, nothing else
    assert not reviewed.mask[inside(face)].any()
    changed = (reviewed.anonymized != image).any(axis=2)
    assert changed[inside(SKY)][ellipse].mean() > 0.5 and not changed[~reviewed.mask].any()
    kept, added = reviewed.regions
    assert (kept.id, kept.source, kept.erased, kept.box) == (1, "model", False, face)
    assert (added.id, added.source, added.erased, added.box, added.area) == (2, "added", True, SKY, ellipse.sum())
    findings = image_findings(reviewed)
    assert findings["n_regions"] == 1 and findings["face_estimate"] == 1
    assert findings["edits"] == {"kept": [{"id": 1, "box": list(face)}],
                                 "added": [{"id": 2, "box": list(SKY), "shape": "ellipse"}]}
    assert [r["erased"] for r in findings["regions"]] == [False, True]


def test_a_second_review_from_the_record_gives_the_same_image(eraser, astronaut):
    image, prob = astronaut
    first = eraser.postprocess(image, prob, keep=[1], add=[SKY], add_shape="box")
    record = json.loads(json.dumps({"input": "astronaut.jpg", **image_findings(first)}))
    again = eraser.postprocess(image, prob, edits=Edits.from_record(record))
    assert np.array_equal(again.anonymized, first.anonymized) and again.regions == first.regions
    assert first.mask[inside(SKY)].all()  # the box shape: every pixel of the box


def test_an_added_box_erases_over_a_kept_region_and_is_clipped_to_the_image(eraser, astronaut):
    image, prob = astronaut
    face = eraser.postprocess(image, prob).regions[0].box
    h, w = image.shape[:2]
    result = eraser.postprocess(image, prob, keep=[1], add=[face, (w - 20, h - 10, 50, 50)], add_shape="box")
    assert result.mask[inside(face)].all()
    assert result.regions[2].box == (w - 20, h - 10, 20, 10)
    assert clip_box((-5, -5, 10, 10), 100, 100) == (0, 0, 5, 5)


@pytest.mark.parametrize("edits, message", [
    ({"keep": [2]}, "no region 2 to keep: the image has 1 region"),
    ({"add": [(600, 600, 10, 10)]}, "lies outside the 512x512 image"),
    ({"edits": Edits(keep=(1,), kept_boxes=((0, 0, 5, 5),))}, "review this image again"),
])
def test_edits_that_do_not_fit_the_image_are_refused(eraser, astronaut, edits, message):
    image, prob = astronaut
    with pytest.raises(ValueError, match=message):
        eraser.postprocess(image, prob, **edits)


def test_malformed_edits_are_refused():
    with pytest.raises(ValueError, match="whole numbers from 1"):
        Edits(keep=(0,))
    with pytest.raises(ValueError, match="w and h >= 1"):
        Added((0, 0, 0, 5))
    with pytest.raises(ValueError, match="unknown shape"):
        Edits.of(add=[(0, 0, 5, 5)], add_shape="star")
    with pytest.raises(ValueError, match="needs an 'id'"):
        Edits.from_record({"edits": {"kept": [{"box": [0, 0, 1, 1]}], "added": []}})
    with pytest.raises(ValueError, match=r"a box is \[x, y, w, h\]"):
        Edits.from_record({"edits": {"kept": [], "added": [{"box": [1, 2, 3]}]}})
    assert box_iou((0, 0, 10, 10), (5, 0, 10, 10)) == pytest.approx(1 / 3)


def test_draw_boxes_marks_a_kept_region(eraser, astronaut):
    image, prob = astronaut
    result = eraser.postprocess(image, prob, keep=[1], draw_boxes=True)
    x, y, w, h = result.regions[0].box
    assert tuple(result.anonymized[y + h // 2, x]) == KEPT_COLOR


def test_an_edits_file_is_read_and_matched_to_the_inputs(tmp_path):
    edits = tmp_path / "edits.jsonl"
    lines = [{"input": "a/x.jpg", "edits": {"kept": [{"id": 1, "box": [0, 0, 4, 4]}], "added": []}},
             {"input": "b/y.mp4", "kind": "video", "status": "anonymized"},  # a report's video line: passed over
             {"input": "y.jpg", "edits": {"kept": [], "added": []}},  # a file with nothing edited
             {"input": "z.png", "edits": {"kept": [], "added": [{"box": [1, 2, 3, 4]}]}}]
    edits.write_text("\n".join(json.dumps(line) for line in lines) + "\n\n")
    entries = read_edits(edits)
    assert [(n, name) for n, name, _ in entries] == [(1, "a/x.jpg"), (4, "z.png")]
    sources = [tmp_path / "a" / "x.jpg", tmp_path / "in" / "z.png"]
    matched = match_edits([(n, str(tmp_path / name) if "/" in name else name, e) for n, name, e in entries],
                          sources)
    assert matched == {str(sources[0]): entries[0][2], str(sources[1]): entries[1][2]}
    assert matched[str(sources[1])].add == (Added((1, 2, 3, 4)),)

    with pytest.raises(EditsFileError, match="line 4: no input of this run is 'z.png'"):
        match_edits(entries[1:], [tmp_path / "other.png"], edits)
    with pytest.raises(EditsFileError, match="2 inputs are named z.png"):
        match_edits(entries[1:], [tmp_path / "1" / "z.png", tmp_path / "2" / "z.png"])
    with pytest.raises(EditsFileError, match="already has edits, on line 4"):
        match_edits([entries[1], entries[1]], sources)
    edits.write_text('{"input": "x.jpg", "edits": {"kept": [{"id": 1}], "added": []}}\nnot json\n')
    with pytest.raises(EditsFileError, match="line 2 is not JSON"):
        read_edits(edits)
    edits.write_text('{"edits": {"kept": [{"id": 1}], "added": []}}\n')
    with pytest.raises(EditsFileError, match="line 1 has edits but no 'input'"):
        read_edits(edits)


def anonymize(*args: str | Path) -> int:
    return cli.main(["anonymize", *map(str, args), "-q"])


def test_the_cli_applies_a_review_recorded_as_a_report_line(tmp_path, monkeypatch, capsys):
    """A first run's report line, edited as the app's download would be, applied with --regions: the face stays,
    the sky box is erased, the record lists both edits; resuming erases the reviewed image again."""
    monkeypatch.chdir(tmp_path)
    photo = Path("in/astronaut.jpg")
    photo.parent.mkdir()
    photo.write_bytes((EXAMPLES / "astronaut.jpg").read_bytes())
    assert anonymize("in", "-o", "out", "--report", "first.jsonl") == 0
    record = json.loads(Path("first.jsonl").read_text())
    face = record["regions"][0]["box"]
    record["edits"] = {"kept": [{"id": 1, "box": face}], "added": [{"box": list(SKY)}]}
    Path("edits.jsonl").write_text(json.dumps(record) + "\n")
    capsys.readouterr()

    assert anonymize("in", "-o", "out", "--resume", "--regions", "edits.jsonl", "--report", "second.jsonl") == 0
    assert "review: 1 region kept un-erased, 1 added" in capsys.readouterr().out
    second = json.loads(Path("second.jsonl").read_text())
    assert second["status"] == "anonymized" and second["n_regions"] == 1
    assert second["edits"] == {"kept": [{"id": 1, "box": face}],
                               "added": [{"id": 2, "box": list(SKY), "shape": "ellipse"}]}
    original, output = load_image(photo), load_image(Path("out/astronaut.jpg"))
    x, y, w, h = face
    face_pixels = np.abs(output[y:y + h, x:x + w].astype(int) - original[y:y + h, x:x + w])
    assert face_pixels.mean() < 3  # only JPEG noise: the face is there
    sky = np.abs(output[inside(SKY)].astype(int) - original[inside(SKY)]).sum(axis=2)
    assert (sky[added_shape(SKY[2], SKY[3])] > 0).mean() > 0.5


def test_the_cli_refuses_edits_it_cannot_apply(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    Path("astronaut.jpg").write_bytes((EXAMPLES / "astronaut.jpg").read_bytes())
    write_video(Path("clip.mp4"), frames=2)
    edits = Path("edits.jsonl")
    edits.write_text(json.dumps({"input": "other.jpg", "edits": {"kept": [{"id": 1}], "added": []}}) + "\n")
    assert anonymize("astronaut.jpg", "-o", "out", "--regions", edits) == 2
    assert "line 1: no input of this run is 'other.jpg'" in capsys.readouterr().err
    assert not Path("out").exists()

    edits.write_text("\n".join(json.dumps(line) for line in [
        {"input": "astronaut.jpg", "edits": {"kept": [{"id": 1, "box": [0, 0, 5, 5]}], "added": []}},
        {"input": "clip.mp4", "edits": {"kept": [], "added": [{"box": [0, 0, 5, 5]}]}}]) + "\n")
    assert anonymize("astronaut.jpg", "clip.mp4", "-o", "out", "--regions", edits, "--report", "r.jsonl") == 1
    failures = {Path(r["input"]).name: r["error"] for r in map(json.loads, Path("r.jsonl").read_text().splitlines())}
    assert "review this image again" in failures["astronaut.jpg"]
    assert "apply to images, not to videos" in failures["clip.mp4"]
    assert not list(Path("out").rglob("*.*"))  # nothing written for either
    assert anonymize("--webcam", "-o", "cam.mp4", "--regions", edits) == 2
    assert "--regions applies to images" in capsys.readouterr().err
