"""The static page web/ in a real headless Chromium (the system /usr/bin/chromium driven by playwright): it erases
faces like the Python pipeline end to end, lets a person review the result (keep a region, add one) and download the
audit record, makes no network request after loading, and reports its errors. The numeric parity of its modules with
the Python package, step by step, is tested under Node (test_web_parity.py)."""

from __future__ import annotations

import base64
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
WEB = REPO / "web"
ORT_DIST = WEB / "node_modules" / "onnxruntime-web" / "dist"
ASTRONAUT = REPO / "faceerase" / "examples" / "astronaut.jpg"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]  # a synthetic camera
pytestmark = pytest.mark.slow  # Chromium, node and static servers

if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} is missing (apt-get install -y chromium)", allow_module_level=True)
if not ORT_DIST.is_dir():
    pytest.skip(f"{ORT_DIST} is missing: run `npm ci` in web/ (scripts/install.sh does)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api")

# After the skips: importing the package is the slow part.
import faceerase
from faceerase.erase.edits import Edits, added_shape
from faceerase.erase.fill import METHODS
from faceerase.erase.masks import MASK_SHAPES
from faceerase.erase.thresholds import compute_threshold
from faceerase.model.settings import EraseSettings

SETTINGS = json.loads((REPO / "hub" / "inference.json").read_text())


def serve(command: list[str]) -> tuple[subprocess.Popen, str]:
    """Start a static server whose first line of output holds its address; returns it and the page's URL."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    match = re.search(r"http://[\d.]+:\d+/", process.stdout.readline())
    if not match:
        process.kill()
        raise RuntimeError(f"{command} did not print its address")
    return process, match.group(0)


@pytest.fixture(scope="module")
def server():
    process, url = serve([sys.executable, str(WEB / "serve.py"), "--port", "0"])
    yield url
    process.terminate()
    process.wait()


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


class Page:
    """A page of the site, loaded, that records the URL of every request the browser makes."""

    def __init__(self, browser, url: str, init_script: str | None = None, *, width: int = 1400, touch: bool = False):
        self.url = url
        self.context = browser.new_context(viewport={"width": width, "height": 1000}, permissions=["camera"],
                                           accept_downloads=True, has_touch=touch)
        if init_script:
            self.context.add_init_script(init_script)
        self.page = self.context.new_page()
        self.page.set_default_timeout(90_000)
        self.requests: list[str] = []
        self.page.on("request", lambda request: self.requests.append(request.url))

    def open(self, state: str = "ready") -> Page:
        self.page.goto(self.url)
        self.page.wait_for_selector(f"body[data-state={state}]")
        self.loaded = len(self.requests)
        return self

    def erase(self, path: Path) -> None:
        self.page.set_input_files("#file", str(path))
        self.page.wait_for_selector(f"#summary:has-text('{path.name}')")

    def pixels(self, canvas: str) -> np.ndarray:
        """The RGB pixels of a canvas of the page (read back losslessly as PNG)."""
        url = self.page.evaluate("id => document.getElementById(id).toDataURL('image/png')", canvas)
        return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB"))

    def requests_after_load(self) -> list[str]:
        return self.requests[self.loaded:]

    def on_review(self, x: int, y: int) -> tuple[float, float]:
        """The page coordinates of the centre of image pixel (x, y) on the review view (scrolled into view)."""
        view = self.page.locator("#review")
        view.scroll_into_view_if_needed()
        box = view.bounding_box()
        scale = box["width"] / self.page.evaluate("document.getElementById('review').width")
        return box["x"] + (x + 0.5) * scale, box["y"] + (y + 0.5) * scale

    def drag_box(self, x: int, y: int, w: int, h: int) -> None:
        """Drag the mouse across the review view from image pixel (x, y) to (x + w - 1, y + h - 1)."""
        self.page.mouse.move(*self.on_review(x, y))
        self.page.mouse.down()
        self.page.mouse.move(*self.on_review(x + w - 1, y + h - 1), steps=5)
        self.page.mouse.up()

    def record(self) -> dict:
        """The audit record that "Download record" saves."""
        with self.page.expect_download() as download:
            self.page.click("#download-record")
        assert download.value.suggested_filename.endswith("-record.json")
        lines = Path(download.value.path()).read_text().splitlines()
        assert len(lines) == 1  # one JSON line, as in the reports
        return json.loads(lines[0])


@pytest.fixture
def site(browser, server):
    page = Page(browser, server).open()
    yield page
    page.context.close()


@pytest.fixture(scope="module")
def eraser():
    return faceerase.FaceEraser(faceerase.load_model())


@pytest.fixture(scope="module")
def python_result(eraser):
    return eraser(ASTRONAUT)


def test_a_photo_is_erased_as_the_python_pipeline_erases_it_without_any_request(site, server, python_result):
    site.erase(ASTRONAUT)
    assert "1 face region" in site.page.inner_text("#summary")
    photo = site.pixels("photo")
    assert photo.shape == python_result.image.shape
    assert np.abs(photo.astype(int) - python_result.image).mean() < 0.5  # both decoders are libjpeg-turbo: 0 here
    # Measured 2026-11-26: probabilities within 0.014 of Python's (mean 0.0006, 8-bit canvas included), mask IoU
    # 0.9993 (12347 against 12356 pixels), the same threshold.
    prob = site.pixels("probability")[..., 0] / 255
    assert np.abs(prob - python_result.probabilities).mean() < 0.003
    assert np.quantile(np.abs(prob - python_result.probabilities), 0.999) < 0.03
    mask = site.pixels("mask")[..., 0] > 127
    assert (mask & python_result.mask).sum() / (mask | python_result.mask).sum() > 0.98
    assert float(site.page.inner_text("#threshold-output")) == pytest.approx(python_result.threshold, abs=0.002)
    result = site.pixels("result")
    changed = (result != photo).any(axis=-1)
    assert not (changed & ~mask).any(), "pixels outside the mask changed"
    assert changed[python_result.mask].mean() > 0.95, "the face was not erased"
    # The default fill of both: the same where both masks erase (the fill depends on the whole region's border).
    both = mask & python_result.mask
    assert np.abs(result.astype(int) - python_result.anonymized)[both].mean() < 1
    assert site.requests_after_load() == []
    assert all(url.startswith(server) for url in site.requests)
    assert {url.removeprefix(server) for url in site.requests} >= {
        "", "app.js", "model.onnx", "node_modules/onnxruntime-web/dist/ort-wasm-simd-threaded.wasm"}


def test_dropped_photos_are_erased_and_listed(site):
    site.erase(ASTRONAUT)
    coffee = base64.b64encode((REPO / "faceerase" / "examples" / "coffee.jpg").read_bytes()).decode()
    transfer = site.page.evaluate_handle("""(data) => {
        const transfer = new DataTransfer();
        const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
        transfer.items.add(new File([bytes], 'dropped.jpg', { type: 'image/jpeg' }));
        return transfer;
    }""", coffee)
    site.page.dispatch_event("#drop", "drop", {"dataTransfer": transfer})
    site.page.wait_for_selector("#summary:has-text('dropped.jpg')")
    assert site.pixels("result").shape == (400, 600, 3)
    site.page.click("#photos button:has-text('astronaut.jpg')")
    assert "astronaut.jpg: 1 face region" in site.page.inner_text("#summary")
    assert site.pixels("result").shape == (512, 512, 3)
    assert site.requests_after_load() == []


def test_threshold_modes_mask_shapes_and_methods(site, python_result):
    site.erase(ASTRONAUT)
    options = {name: site.page.eval_on_selector_all(f"#{name} option", "options => options.map((o) => o.value)")
               for name in ("threshold-mode", "mask-shape", "method")}
    assert options["mask-shape"] == list(MASK_SHAPES)
    # no OpenCV inpainting in the browser, and no replacement picture to read
    assert options["method"] == [m for m in METHODS if m not in ("inpaint_telea", "inpaint_ns", "image")]
    assert site.page.input_value("#method") == EraseSettings().method
    site.page.select_option("#threshold-mode", "seed")
    seed = compute_threshold(python_result.probabilities, "seed")
    assert float(site.page.inner_text("#threshold-output")) == pytest.approx(seed, abs=0.01)
    assert "2018 rule" in site.page.inner_text("#summary")
    predicted = site.pixels("mask")[..., 0] > 127
    for shape in ("ellipse", "box"):
        site.page.select_option("#mask-shape", shape)
        shaped = site.pixels("mask")[..., 0] > 127
        assert not (predicted & ~shaped).any() and shaped.sum() > predicted.sum(), shape
    site.page.select_option("#mask-shape", "predicted")
    site.page.fill("#threshold-value", "0.9")
    assert site.page.input_value("#threshold-mode") == "fixed"
    assert float(site.page.inner_text("#threshold-output")) == 0.9
    photo = site.pixels("photo")
    for method in options["method"]:
        site.page.select_option("#method", method)
        if method == "solid":
            site.page.fill("#color", "#ff0000")
        mask = site.pixels("mask")[..., 0] > 127
        result = site.pixels("result")
        changed = (result != photo).any(axis=-1)
        assert mask.sum() > 5000, method
        assert not (changed & ~mask).any(), f"{method} changed pixels outside the mask"
        assert changed[mask].mean() > 0.9, f"{method} left the face as it was"
        if method == "solid":
            assert (result[mask] == (255, 0, 0)).all()
    assert site.requests_after_load() == []


def test_the_download_holds_the_result_and_no_metadata(site):
    site.erase(ASTRONAUT)
    with site.page.expect_download() as png:
        site.page.click("#download")
    assert png.value.suggested_filename == "astronaut-anonymized.png"
    with Image.open(png.value.path()) as image:
        assert not image.getexif() and not image.text and "exif" not in image.info
        np.testing.assert_array_equal(np.asarray(image.convert("RGB")), site.pixels("result"))
    site.page.select_option("#format", "image/jpeg")
    with site.page.expect_download() as jpeg:
        site.page.click("#download")
    with Image.open(jpeg.value.path()) as image:
        assert image.format == "JPEG" and not image.getexif() and "exif" not in image.info
        assert np.abs(np.asarray(image, float) - site.pixels("result")).mean() < 3
    assert site.requests_after_load() == []


def test_a_review_keeps_a_region_adds_one_and_records_both(browser, server, eraser, python_result):
    # A narrow window scales the view down: taps and drags are mapped from CSS pixels to the photo's.
    site = Page(browser, server, width=420, touch=True).open()
    site.erase(ASTRONAUT)
    photo, face = site.pixels("photo"), python_result.regions[0].box
    assert (site.pixels("result") != photo).any()
    assert site.page.inner_text("#regions li").startswith("1 · score 1.00 · erased")
    centre = (face[0] + face[2] // 2, face[1] + face[3] // 2)
    site.page.touchscreen.tap(*site.on_review(*centre))  # a tap is a click
    site.page.wait_for_selector("#regions li.kept")
    np.testing.assert_array_equal(site.pixels("result"), photo)  # the only region, kept: nothing is erased
    assert "1 kept un-erased" in site.page.inner_text("#summary")
    site.page.mouse.click(*site.on_review(*centre))  # a second click erases it again
    site.page.wait_for_selector("#regions li.erased")
    assert (site.pixels("result") != photo).any(axis=-1)[python_result.mask].mean() > 0.95
    site.page.mouse.click(*site.on_review(*centre))
    site.page.wait_for_selector("#regions li.kept")

    box = (330, 380, 90, 60)  # the helmet, which the model leaves alone
    assert not python_result.mask[box[1]:box[1] + box[3], box[0]:box[0] + box[2]].any()
    site.drag_box(*box)
    site.page.wait_for_selector("#regions li.added")
    inside = np.zeros(photo.shape[:2], bool)
    inside[box[1]:box[1] + box[3], box[0]:box[0] + box[2]] = added_shape(box[2], box[3], "ellipse")
    changed = (site.pixels("result") != photo).any(axis=-1)
    assert not changed[~inside].any() and changed[inside].mean() > 0.9
    np.testing.assert_array_equal(site.pixels("mask")[..., 0] > 127, inside)
    assert "1 face region · 1 kept un-erased · 1 added" in site.page.inner_text("#summary")

    record = site.record()
    kept = record["regions"][0]["box"]
    assert record["edits"] == {"kept": [{"id": 1, "box": kept}],
                               "added": [{"id": 2, "box": list(box), "shape": "ellipse"}]}
    assert [(r["id"], r["source"], r["erased"]) for r in record["regions"]] == [(1, "model", False), (2, "added", True)]
    assert np.abs(np.subtract(kept, face)).max() <= 2
    assert (record["input"], record["output"], record["kind"], record["status"]) == (
        "astronaut.jpg", None, "image", "anonymized")
    assert (record["n_regions"], record["face_estimate"]) == (1, 1)  # the erased ones
    assert record["model"]["id"] == "model.onnx" and record["model"]["weights_sha256"] == eraser.identity[
        "weights_sha256"]
    assert record["settings"]["threshold_mode"] == "auto" and record["settings"]["dilation"] == SETTINGS["dilation"]
    # The package applies the page's record to its own probabilities: the same mask.
    again = eraser.postprocess(python_result.image, python_result.probabilities, edits=Edits.from_record(record))
    np.testing.assert_array_equal(again.mask, inside)
    assert site.requests_after_load() == []
    site.context.close()


def test_edits_belong_to_their_photo_and_settings_that_move_a_kept_region_reset_it(site, eraser, python_result):
    site.erase(ASTRONAUT)
    face = python_result.regions[0].box
    site.page.mouse.click(*site.on_review(face[0] + face[2] // 2, face[1] + face[3] // 2))
    site.drag_box(330, 380, 90, 60)
    site.page.wait_for_selector("#summary:has-text('1 kept un-erased · 1 added')")
    reviewed = Edits.from_record(site.record())  # its kept box: the face's when it was kept
    site.erase(REPO / "faceerase" / "examples" / "chelsea.jpg")
    assert "kept" not in site.page.inner_text("#summary") and "added" not in site.page.inner_text("#summary")
    assert site.page.locator("#regions li.kept, #regions li.added").count() == 0
    site.page.click("#photos button:has-text('astronaut.jpg')")
    assert "1 kept un-erased · 1 added" in site.page.inner_text("#summary")

    # An ellipse around the face: a larger box, but the same region (IoU about 0.56 >= 0.5), so it stays kept, as
    # the package keeps it under the same settings.
    site.page.select_option("#mask-shape", "ellipse")
    summary = site.page.inner_text("#summary")
    assert "1 kept un-erased · 1 added" in summary and "reset" not in summary
    record = site.record()
    assert record["edits"]["kept"] == [{"id": 1, "box": record["regions"][0]["box"]}]
    grown, kept = record["regions"][0]["box"], reviewed.kept_boxes[0]
    assert grown[2] > kept[2] and grown[3] > kept[3]  # recorded as it is now, as Edits.to_record records it
    image, prob = python_result.image, python_result.probabilities
    assert not eraser.postprocess(image, prob, mask_shape="ellipse", edits=reviewed).regions[0].erased

    # A threshold of 0 makes the whole photo one region: not the one kept, so the keep is dropped (the package
    # refuses it), and it stays dropped with the settings it was kept with.
    site.page.fill("#threshold-value", "0")
    summary = site.page.inner_text("#summary")
    assert "1 added" in summary and "kept regions were reset" in summary and "kept un-erased" not in summary
    assert site.page.locator("#regions li.erased").count() == 1 and site.page.locator("#regions li.added").count() == 1
    assert site.record()["edits"]["kept"] == []
    with pytest.raises(ValueError, match="where it was reviewed"):
        eraser.postprocess(image, prob, mask_shape="ellipse", threshold_mode="fixed", threshold_value=0.0,
                           edits=reviewed)
    site.page.select_option("#threshold-mode", "auto")
    site.page.select_option("#mask-shape", "predicted")
    assert "kept un-erased" not in site.page.inner_text("#summary")
    assert site.requests_after_load() == []


def test_camera_frames_are_erased_with_a_frame_rate(site):
    site.page.click("#camera")
    site.page.wait_for_selector("#fps:has-text('ms per frame')")
    readout = site.page.inner_text("#fps")
    assert "frames/s" in readout and f"network input {SETTINGS['live_input_size']} px" in readout
    assert "camera:" in site.page.inner_text("#summary")
    site.page.click("#stop")
    assert site.page.inner_text("#fps") == ""
    assert site.requests_after_load() == []


def test_images_it_cannot_use_are_reported(site):
    site.page.set_input_files("#file", {"name": "notes.txt", "mimeType": "text/plain", "buffer": b"not a photo"})
    site.page.wait_for_selector("#status.error:has-text('notes.txt is not an image this browser can decode')")
    tiny = io.BytesIO()
    Image.new("RGB", (8, 40)).save(tiny, format="PNG")
    site.page.set_input_files("#file", {"name": "tiny.png", "mimeType": "image/png", "buffer": tiny.getvalue()})
    site.page.wait_for_selector("#status.error:has-text('at least 16 pixels per side')")


def test_a_denied_camera_is_reported(browser, server):
    denied = "navigator.mediaDevices.getUserMedia = () => Promise.reject(new DOMException('no', 'NotAllowedError'));"
    page = Page(browser, server, init_script=denied).open()
    page.page.click("#camera")
    page.page.wait_for_selector("#status.error:has-text('Camera access was denied')")
    assert page.page.is_visible("#camera")
    page.context.close()


def test_a_model_that_does_not_load_is_reported(browser, server):
    page = Page(browser, server)
    page.page.route("**/model.onnx", lambda route: route.fulfill(status=404, body="gone"))
    page.open(state="error")
    assert "The model did not load: could not fetch the model model.onnx: HTTP 404" in page.page.inner_text("#status")
    assert page.page.is_disabled("#file") and page.page.is_disabled("#camera")
    page.context.close()


def test_the_published_folder_runs_from_a_plain_static_server(browser, tmp_path):
    subprocess.run(["bash", str(WEB / "publish.sh"), str(tmp_path / "site")], check=True, capture_output=True)
    # No COOP/COEP headers here: the page is not cross-origin isolated and runs on one thread.
    process, url = serve([sys.executable, "-u", "-m", "http.server", "--bind", "127.0.0.1", "-d",
                          str(tmp_path / "site"), "0"])
    try:
        page = Page(browser, url).open()
        assert "1 thread; cross-origin isolation is off" in page.page.inner_text("#model")
        page.erase(ASTRONAUT)
        assert "1 face region" in page.page.inner_text("#summary")
        assert page.requests_after_load() == []
        page.context.close()
    finally:
        process.terminate()
        process.wait()
