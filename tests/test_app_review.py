"""The image tab's review (issue 20): model regions kept un-erased and regions added by hand, applied without a
network pass, per session, recorded in the downloadable audit record. Driven through gradio_client (``/erase`` then
``/review``) against the app on the shipped model (``conftest.app_urls["shipped"]``), which finds one region in the
astronaut example: her face."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

gradio_client = pytest.importorskip("gradio_client")
from fixtures_app import REPO  # noqa: E402

pytestmark = pytest.mark.slow  # an app server: Gradio alone takes seconds to import

ASTRONAUT = REPO / "faceerase" / "examples" / "astronaut.jpg"
BADGE = (130, 340, 80, 80)  # the mission badge on her suit: textured, and nothing masked there


@pytest.fixture(scope="module")
def astronaut():
    """The astronaut as the app's eraser sees it (the shipped model, the page's default settings, its fixed
    threshold slider at 0.5): the eraser and its result, whose one region is the face."""
    from faceerase.erase.pipeline import DEFAULT_MODEL_DIR, FaceEraser, load_model

    eraser = FaceEraser(load_model(DEFAULT_MODEL_DIR), threshold_value=0.5)
    result = eraser(ASTRONAUT)
    x, y, w, h = BADGE
    assert len(result.regions) == 1 and not result.mask[y:y + h, x:x + w].any()
    return eraser, result


@pytest.fixture
def client(app_urls, tmp_path):
    """A new session of the app on the shipped model."""
    return gradio_client.Client(app_urls["shipped"], verbose=False, download_files=tmp_path)


def erase(client, image: Path = ASTRONAUT, **controls) -> tuple:
    return client.predict(gradio_client.handle_file(str(image)), **controls, api_name="/erase")


def review(client, shape: str = "ellipse", **action) -> tuple:
    """``/review`` with one action: ``toggle=id``, ``click=[x, y]`` or ``add=[x, y, w, h]``. Returns the mask overlay,
    result, summary, review picture, region table and record."""
    return client.predict(json.dumps(action), shape, api_name="/review")


def pixels(path: str) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def masked(overlay: dict) -> np.ndarray:
    """The mask shown in the overlay (its annotation's opaque pixels; nothing when it has none)."""
    shape = pixels(overlay["image"]).shape[:2]
    if not overlay["annotations"]:
        return np.zeros(shape, bool)
    return np.asarray(Image.open(overlay["annotations"][0]["image"]))[:, :, 3] > 0


def record_of(path: str) -> dict:
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    assert len(lines) == 1, "the record is one JSON line (a line of an edits file)"
    return json.loads(lines[0])


def test_a_kept_face_stays_and_an_added_box_is_erased_as_the_library_does(client, astronaut, tmp_path):
    from faceerase.erase.edits import Edits, added_shape
    from faceerase.media.images import write_image

    eraser, found = astronaut
    face = found.regions[0].box
    original = found.image
    fx, fy, fw, fh = face
    *_, regions, record = erase(client)
    assert "| 1 | 1.00 | erased |" in regions
    assert record_of(record)["edits"] == {"kept": [], "added": []}

    overlay, result, summary, picture, regions, record = review(client, toggle=1)
    assert "network skipped" in summary and summary.startswith("**0 regions") and "1 kept, 0 added" in summary
    assert "| 1 | 1.00 | **kept** |" in regions
    assert not masked(overlay).any()
    face_change = np.abs(pixels(result).astype(int) - original)[fy:fy + fh, fx:fx + fw].mean()
    assert face_change < 3, "the kept face is the original (re-encoded as JPEG)"

    overlay, result, summary, picture, regions, record = review(client, add=list(BADGE))
    bx, by, bw, bh = BADGE
    expected_mask = np.zeros(original.shape[:2], bool)
    expected_mask[by:by + bh, bx:bx + bw] = added_shape(bw, bh, "ellipse")
    assert np.array_equal(masked(overlay), expected_mask)
    assert "| 2 | " in regions and "added" in regions and "1 kept, 1 added" in summary
    change = np.abs(pixels(result).astype(int) - original).mean(axis=-1)
    assert change[expected_mask].mean() > 15, "the badge is erased"
    assert change[fy:fy + fh, fx:fx + fw].mean() < 3, "the face is still kept"
    expected = eraser.postprocess(original, found.probabilities, keep=[1], add=[BADGE])
    write_image(expected.anonymized, tmp_path / "expected.jpg")
    assert np.array_equal(pixels(result), pixels(tmp_path / "expected.jpg")), "the library's result, encoded alike"
    assert pixels(picture).shape == original.shape

    data = record_of(record)
    assert Path(record).name == "astronaut.faceerase.json"
    assert data["edits"] == {"kept": [{"id": 1, "box": list(face)}],
                             "added": [{"id": 2, "box": list(BADGE), "shape": "ellipse"}]}
    assert [(r["id"], r["source"], r["erased"]) for r in data["regions"]] == [(1, "model", False), (2, "added", True)]
    assert (data["n_regions"], data["face_estimate"], data["kind"], data["status"]) == (1, 1, "image", "anonymized")
    assert (data["input"], data["output"]) == ("astronaut.jpg", "astronaut-anonymized.jpg")
    assert data["model"] == eraser.identity and data["settings"] == eraser.settings.to_dict()
    assert datetime.fromisoformat(data["timestamp"]).tzinfo is not None
    again = eraser.postprocess(original, found.probabilities, edits=Edits.from_record(data))
    assert np.array_equal(again.mask, masked(overlay)), "the record applies the same review again"


def test_clicks_toggle_a_region_and_remove_an_added_one(client, astronaut):
    fx, fy, fw, fh = astronaut[1].regions[0].box
    erase(client, method="solid")
    centre = [fx + fw // 2, fy + fh // 2]
    assert "**kept**" in review(client, click=centre)[4]
    overlay, _, summary, _, regions, _ = review(client, click=centre)
    assert "| 1 | 1.00 | erased |" in regions and "reviewed" not in summary
    assert np.array_equal(masked(overlay), astronaut[1].mask)
    review(client, shape="box", add=list(BADGE))
    assert masked(review(client, toggle=1)[0])[BADGE[1]:BADGE[1] + BADGE[3], BADGE[0]:BADGE[0] + BADGE[2]].all()
    overlay, _, summary, _, regions, record = review(client, click=[BADGE[0] + 2, BADGE[1] + 2])  # a box's corner
    assert "added" not in regions and not masked(overlay).any() and "1 kept, 0 added" in summary
    with pytest.raises(gradio_client.exceptions.AppError, match="No region there"):
        review(client, click=[5, 500])


def test_the_edits_follow_the_settings_and_a_new_image_clears_them(client):
    erase(client)
    review(client, toggle=1)
    review(client, add=list(BADGE))
    summary, _, _, record = erase(client, method="blur")[5:]
    assert "network skipped" in summary and "1 kept, 1 added" in summary
    assert len(record_of(record)["edits"]["kept"]) == 1
    summary, _, regions, record = erase(client, dilation=50)[5:]  # the face region grows: not the one kept
    assert "the kept ones are erased again" in summary and "0 kept, 1 added" in summary
    assert "**kept**" not in regions and record_of(record)["edits"]["kept"] == []
    assert record_of(record)["edits"]["added"][0]["box"] == list(BADGE)
    summary, _, regions, record = erase(client, REPO / "faceerase" / "examples" / "coffee.jpg")[5:]
    assert "reviewed" not in summary and regions.startswith("No regions")
    assert record_of(record)["edits"] == {"kept": [], "added": []}


def test_a_review_is_never_seen_by_another_session(app_urls, tmp_path):
    alice, bob = (gradio_client.Client(app_urls["shipped"], verbose=False, download_files=tmp_path / name)
                  for name in ("alice", "bob"))
    with pytest.raises(gradio_client.exceptions.AppError, match="nothing to review yet"):
        review(bob, toggle=1)
    erase(alice)
    review(alice, toggle=1)
    review(alice, add=list(BADGE))
    *_, regions, record = erase(bob)  # the same photo
    assert "| 1 | 1.00 | erased |" in regions and "added" not in regions
    assert record_of(record)["edits"] == {"kept": [], "added": []}
    with pytest.raises(gradio_client.exceptions.AppError, match="There is no region 2: the image has 1 region"):
        review(bob, toggle=2)
    summary, _, _, record = erase(alice, method="mosaic")[5:]
    assert "1 kept, 1 added" in summary
    assert [e["id"] for e in record_of(record)["edits"]["kept"]] == [1]


@pytest.mark.parametrize("action, message", [
    ("not json", "Invalid review action"),
    ('{"keep": 1}', "Invalid review action"),
    ('{"add": [1, 2, 3]}', "Invalid review action"),
    ('{"click": [1, 2], "toggle": 1}', "Invalid review action"),
    ('{"toggle": 7}', "There is no region 7"),
    ('{"add": [600, 600, 50, 50]}', "Cannot add this region: the added box .* lies outside the 512x512 image"),
    ('{"add": [10, 10, 0, 40]}', "Cannot add this region: an added box is"),
])
def test_malformed_actions_are_refused_with_a_clear_message(client, action, message):
    erase(client)
    with pytest.raises(gradio_client.exceptions.AppError, match=message):
        client.predict(action, api_name="/review")


# --------------------------------------------------------------------------- the review's pieces, without a server

def regions_of(*boxes: tuple[int, int, int, int], added: int = 0) -> list:
    from faceerase.erase.masks import Region

    n = len(boxes) - added
    return [Region(box=box, score=0.9, mean_score=0.5, area=box[2] * box[3], id=i,
                   source="model" if i <= n else "added") for i, box in enumerate(boxes, start=1)]


def test_a_click_picks_the_smallest_box_under_it():
    import app

    regions = regions_of((0, 0, 100, 100), (40, 40, 20, 20), (200, 0, 10, 10))
    assert app.region_at(regions, 50, 50) == 2
    assert app.region_at(regions, 10, 10) == 1
    assert app.region_at(regions, 209, 9) == 3
    assert app.region_at(regions, 210, 5) is None  # just right of the third box


def test_toggling_keeps_with_the_reviewed_box_and_removes_an_added_region():
    import app
    from faceerase.erase.edits import Added, Edits

    edits = Edits(add=(Added((5, 5, 10, 10)), Added((50, 50, 10, 10), "box")))
    regions = regions_of((0, 0, 30, 30), (100, 100, 40, 40), (5, 5, 10, 10), (50, 50, 10, 10), added=2)
    kept = app.toggled(edits, regions, 2)
    assert (kept.keep, kept.kept_boxes) == ((2,), ((100, 100, 40, 40),))
    assert app.toggled(kept, regions, 2) == edits
    assert app.toggled(edits, regions, 3).add == (Added((50, 50, 10, 10), "box"),)
    with pytest.raises(app.gr.Error):
        app.toggled(edits, regions, 5)


def test_the_review_picture_numbers_each_region_in_its_colour():
    import app
    from faceerase.erase.masks import Region

    image = np.full((200, 300, 3), 100, np.uint8)
    mask = np.zeros((200, 300), bool)
    mask[20:60, 20:60] = True
    regions = [Region(box=(20, 20, 40, 40), score=0.9, mean_score=0.5, area=1600, id=1),
               Region(box=(100, 100, 30, 30), score=0.8, mean_score=0.5, area=900, id=2, erased=False),
               Region(box=(200, 120, 50, 50), score=0.1, mean_score=0.05, area=1900, id=3, source="added")]
    picture = app.review_picture(image, mask, regions)
    for region, color in zip(regions, (app.BOX_COLOR, app.KEPT_COLOR, app.ADDED_COLOR)):
        x, y, w, h = region.box
        assert (picture[y + h - 1, x + w // 2] == color).all()  # the box's bottom edge
    assert (picture[40, 40] != 100).any() and (picture[40, 40] == picture[45, 45]).all()  # the mask tinted
    assert (picture[150, 50] == 100).all()  # away from the regions
    assert np.array_equal(image, np.full((200, 300, 3), 100, np.uint8))  # the original untouched
    table = app.region_table(regions)
    assert "| 1 | 0.90 | erased |" in table and "| 2 | 0.80 | **kept** |" in table and "| 3 | 0.10 | added |" in table


def test_a_review_action_reuses_the_decoded_image_and_the_original_it_showed(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))
    from types import SimpleNamespace

    import app
    from faceerase.erase.pipeline import DEFAULT_MODEL_DIR

    handlers = app.Handlers(*app.load(str(DEFAULT_MODEL_DIR)), max_pixels=10**7)
    upload = {"path": str(ASTRONAUT), "orig_name": "astronaut.jpg"}
    state = handlers.erase_image(upload, None, SimpleNamespace(session_hash="alice"))[-1]
    with Image.open(state.original) as shown:  # shown only: a JPEG, a tenth of a PNG's time on a large photo
        assert shown.format == "JPEG" and np.abs(np.asarray(shown, int) - pixels(ASTRONAUT)).mean() < 2
    monkeypatch.setattr(handlers, "read_upload", lambda upload: pytest.fail("the upload was decoded again"))
    overlay, *_, state_after = handlers.review(json.dumps({"toggle": 1}), "ellipse", state)
    assert overlay["image"]["path"] == state.original == state_after.original
    assert overlay["annotations"] == []  # the face kept: nothing masked
    Path(state.original).unlink()  # as Gradio's delete_cache does after 30 minutes
    overlay = handlers.review(json.dumps({"toggle": 1}), "ellipse", state_after)[0]
    assert overlay["image"]["path"] != state.original and Path(overlay["image"]["path"]).exists()
    assert len(overlay["annotations"]) == 1  # the face erased again


@pytest.mark.parametrize("text, action", [
    ("1", {"toggle": 1}), (" 2 ", {"toggle": 2}),
    ("130, 340, 80, 80", {"add": [130, 340, 80, 80]}), ("130 340 80.6 80", {"add": [130, 340, 80.6, 80]}),
])
def test_a_typed_number_or_box_is_the_action_a_click_or_a_drag_sends(text, action):
    import app

    assert app.typed_action(text) == app.parse_action(json.dumps(action))


@pytest.mark.parametrize("text", ["", "one", "1, 2", "1, 2, 3, 4, 5", "1; rm", "1,,2,3,4"])
def test_anything_else_typed_is_refused_with_what_to_type(text):
    import app
    import gradio as gr

    with pytest.raises(gr.Error, match="Type a region's number"):
        app.typed_action(text)


def test_the_keyboard_keeps_and_adds_regions_as_the_pointer_does(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))
    from types import SimpleNamespace

    import app
    from faceerase.erase.pipeline import DEFAULT_MODEL_DIR

    handlers = app.Handlers(*app.load(str(DEFAULT_MODEL_DIR)), max_pixels=10**7)
    upload = {"path": str(ASTRONAUT), "orig_name": "astronaut.jpg"}
    state = handlers.erase_image(upload, None, SimpleNamespace(session_hash="bob"), fixed=0.5)[-1]
    typed = handlers.typed_review("1", "ellipse", state)
    assert typed[0]["annotations"] == [] and "| 1 | 1.00 | **kept** |" in typed[4]
    x, y, w, h = BADGE
    typed = handlers.typed_review(f"{x}, {y}, {w}, {h}", "box", typed[-1])
    dragged = handlers.review(json.dumps({"add": list(BADGE)}), "box", handlers.review(
        json.dumps({"toggle": 1}), "ellipse", state)[-1])
    assert typed[4] == dragged[4] and typed[-1].edits == dragged[-1].edits
    mask = np.asarray(Image.open(typed[0]["annotations"][0]["image"]["path"]))[:, :, 3] > 0
    assert mask[y:y + h, x:x + w].all() and mask.sum() == w * h  # the badge's box, the face kept
