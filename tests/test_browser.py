"""End to end in a real headless Chromium (the system /usr/bin/chromium driven by playwright)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fixtures_app import REPO, write_image

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]  # a synthetic camera
pytestmark = pytest.mark.slow  # Chromium

if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} is missing (apt-get install -y chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module")
def page(app_urls):
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1400, "height": 1000}, permissions=["camera"])
        page = context.new_page()
        page.set_default_timeout(30_000)
        page.goto(app_urls["ok"])
        yield page
        browser.close()


def test_an_example_runs_and_the_result_appears(page):
    page.locator("button.gallery-item").first.click()  # astronaut.jpg
    page.wait_for_selector("#result-image img")
    page.wait_for_function("document.querySelector('#summary').innerText.includes('region')")
    assert "threshold" in page.inner_text("#summary")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "app-image.png"), full_page=True)


def test_webcam_frames_are_streamed_back_with_a_frame_rate(page):
    page.get_by_role("tab", name="Webcam").click()
    page.get_by_text("Click to Access Webcam").click()
    page.get_by_label("capture photo").click()  # starts streaming
    page.wait_for_function("document.querySelector('#fps').innerText.includes('frames/s')")
    assert "ms per frame" in page.inner_text("#fps")
    # the camera asked for 640x480, each frame sent back in the message itself as a JPEG (no file on the server)
    page.wait_for_function("document.querySelector('#live-image img')?.naturalWidth > 0")
    assert page.get_attribute("#live-image img", "src").startswith("data:image/jpeg;base64,")
    assert page.eval_on_selector("#live-image img", "img => [img.naturalWidth, img.naturalHeight]") == [640, 480]
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "app-webcam.png"), full_page=True)


def test_after_a_bad_file_the_input_takes_the_next_one(page, app_urls, tmp_path):
    """A file that is no image: an error, and the input shows its upload area again (not a collapsed broken
    image); the next photo is anonymized, its threshold shown (hidden until then) and its download named after it."""
    broken, photo = tmp_path / "broken.jpg", tmp_path / "my photo.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg" * 20)
    write_image(photo, size=(120, 90))
    page = page.context.new_page()  # a fresh page: nothing uploaded yet
    page.set_default_timeout(30_000)
    page.goto(app_urls["ok"])
    assert not page.locator("#threshold-used").is_visible()
    page.locator("#input-image input[type=file]").set_input_files(str(broken))
    page.get_by_text("Cannot read this file: broken.jpg").wait_for()
    page.get_by_text("Click to Upload").wait_for()
    assert page.locator("#input-image img").count() == 0
    page.locator("#input-image input[type=file]").set_input_files(str(photo))
    page.wait_for_function("document.querySelector('#summary').innerText.includes('region')")
    assert page.locator("#threshold-used input").input_value() not in ("", "0")
    assert page.locator("#result-image a[download]").get_attribute("download") == "my_photo-anonymized.jpg"
    page.close()


def open_app(browser, url: str):
    """A page of the app at ``url`` in a browser context of its own: a session of its own."""
    page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
    page.set_default_timeout(60_000)
    page.goto(url)
    return page


def on_review_picture(page, x: float, y: float) -> tuple[float, float]:
    """Where the pixel (``x``, ``y``) of the image is on the screen: the review picture, scrolled into view, shows
    the whole image letterboxed in its element."""
    page.locator("#review-image img").scroll_into_view_if_needed()
    left, top, width, height, natural_w, natural_h = page.eval_on_selector("#review-image img", """img => {
        const r = img.getBoundingClientRect();
        return [r.left, r.top, r.width, r.height, img.naturalWidth, img.naturalHeight]; }""")
    scale = min(width / natural_w, height / natural_h)
    return (left + (width - natural_w * scale) / 2 + (x + 0.5) * scale,
            top + (height - natural_h * scale) / 2 + (y + 0.5) * scale)


def served_file(page, selector: str, attribute: str) -> bytes:
    return page.request.get(page.get_attribute(selector, attribute)).body()


def test_review_keeps_a_clicked_face_erases_a_dragged_box_and_records_both(page, app_urls):
    """Issue 20's review by pointer on the shipped model: a click on the astronaut's face keeps it, a drag over her
    mission badge (nothing masked there) erases it; the result, the region list and the downloaded record follow,
    and another session sees none of it."""
    import io
    import json

    import numpy as np
    from PIL import Image

    def pixels(data: bytes) -> np.ndarray:
        return np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(int)

    original = pixels((REPO / "faceerase" / "examples" / "astronaut.jpg").read_bytes())
    alice = open_app(page.context.browser, app_urls["shipped"])
    alice.locator("button.gallery-item").first.click()  # astronaut.jpg
    alice.wait_for_function("document.querySelector('#region-list').innerText.includes('erased')")
    found = json.loads(served_file(alice, "#review-record a", "href"))
    assert len(found["regions"]) == 1 and found["edits"] == {"kept": [], "added": []}
    fx, fy, fw, fh = found["regions"][0]["box"]
    assert np.abs(pixels(served_file(alice, "#result-image img", "src")) - original)[fy:fy + fh, fx:fx + fw].mean() > 10

    alice.mouse.click(*on_review_picture(alice, fx + fw / 2, fy + fh / 2))
    alice.wait_for_function("document.querySelector('#region-list').innerText.includes('kept')")
    badge = (130, 340, 80, 80)
    alice.mouse.move(*on_review_picture(alice, badge[0], badge[1]))
    alice.mouse.down()
    alice.mouse.move(*on_review_picture(alice, badge[0] + badge[2] / 2, badge[1] + badge[3] / 2), steps=5)
    assert alice.locator("#review-band").is_visible()  # the rubber band follows the pointer
    alice.mouse.move(*on_review_picture(alice, badge[0] + badge[2], badge[1] + badge[3]), steps=5)
    alice.mouse.up()
    alice.wait_for_function("document.querySelector('#region-list').innerText.includes('added')")
    assert "1 kept, 1 added" in alice.inner_text("#summary") and "network skipped" in alice.inner_text("#summary")
    assert alice.locator("#review-band").count() == 0

    assert alice.get_attribute("#review-record a", "download") == "astronaut.faceerase.json"
    with alice.expect_download() as download:
        alice.locator("#review-record a").click()
    record = json.loads(Path(download.value.path()).read_text())
    assert record["edits"]["kept"] == [{"id": 1, "box": [fx, fy, fw, fh]}]
    (added,) = record["edits"]["added"]
    assert added["id"] == 2 and added["shape"] == "ellipse"
    assert np.abs(np.subtract(added["box"], badge)).max() <= 2, added["box"]
    assert (record["input"], record["output"], record["n_regions"]) == ("astronaut.jpg", "astronaut-anonymized.jpg", 1)

    change = np.abs(pixels(served_file(alice, "#result-image img", "src")) - original).mean(axis=-1)
    assert change[fy:fy + fh, fx:fx + fw].mean() < 3, "the kept face is unchanged (but for the JPEG encoding)"
    bx, by, bw, bh = added["box"]
    assert change[by + bh // 4:by + 3 * bh // 4, bx + bw // 4:bx + 3 * bw // 4].mean() > 15, "the badge is erased"
    ARTIFACTS.mkdir(exist_ok=True)
    alice.screenshot(path=str(ARTIFACTS / "app-review.png"), full_page=True)

    bob = open_app(page.context.browser, app_urls["shipped"])
    bob.locator("button.gallery-item").first.click()
    bob.wait_for_function("document.querySelector('#region-list').innerText.includes('erased')")
    assert "kept" not in bob.inner_text("#region-list") and "added" not in bob.inner_text("#region-list")
    assert json.loads(served_file(bob, "#review-record a", "href"))["edits"] == {"kept": [], "added": []}
    assert "kept" in alice.inner_text("#region-list") and "added" in alice.inner_text("#region-list")
    alice.context.close()
    bob.context.close()
